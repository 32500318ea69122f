"""The harness's data: what a run is asked to do, what it sees while running, what it reports.

Kept apart from the code that runs things so the dashboard and the report share one vocabulary
without importing the runner.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shlex
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol

from proxy import ConnectionRecord, FaultConfig, FaultEvent, FaultKind
from proxy.faults import DRAWN_KINDS

Mode = Literal["stateless", "stateful"]
ModeChoice = Literal["stateless", "stateful", "both"]

#: Downstream bytes before a stream's first number: the WELCOME frame (3-byte header + 23).
WELCOME_BYTES = 26
#: Store URL schemes the servers can open (``reference.store.open_store``).
STORE_SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "rediss+cluster")

#: stderr lines that were not JSON events, kept per client to explain a failure.
DIAGNOSTIC_LINES = 8


def seeded_draw(seed: int, what: str, client: int, count: int) -> random.Random:
    """The generator of the harness server's ``count``-th draw of ``what`` (``a``, ``seed``)
    for client ``client`` in the run of seed ``seed`` (``harness.server_process``): shared so
    that the harness can list the values its server can have handed out."""
    return random.Random(f"{seed}:{what}:{client}:{count}")


def seeded_stateless_a(seed: int, client: int, count: int) -> int:
    """The ``a`` of the harness server's ``count``-th new stateless stream for ``client``."""
    return seeded_draw(seed, "a", client, count).randint(1, 255)


def modes_for(choice: ModeChoice) -> tuple[Mode, ...]:
    if choice == "both":
        return ("stateless", "stateful")
    return (choice,)


@dataclass(frozen=True, slots=True)
class StoreOption:
    """``--store``, parsed once: a store URL the servers open, or (``url`` None) the throwaway
    redis-server the harness starts itself (``--store redis``), whose URL ``resolved`` fills in
    once it runs."""

    url: str | None = "memory://"

    @classmethod
    def parse(cls, text: str) -> StoreOption:
        """``memory``, ``redis`` or a store URL; raises ValueError naming the choices."""
        if text == "memory":
            return cls("memory://")
        if text == "redis":
            return cls(None)
        if text.partition(":")[0] in STORE_SCHEMES and "://" in text:
            return cls(text)
        raise ValueError(
            f"--store {text!r}: use memory, redis (a throwaway redis-server), "
            "memory:// or redis://HOST:PORT/DB"
        )

    @property
    def managed(self) -> bool:
        """The harness runs the redis-server (``--store redis``), not yet started."""
        return self.url is None

    @property
    def shared(self) -> bool:
        """Every server instance sees the same sessions (anything but ``memory://``)."""
        return self.url is None or not self.url.startswith("memory:")

    @property
    def resolved_url(self) -> str:
        """The URL to open; for ``--store redis`` only once the redis-server runs."""
        if self.url is None:
            raise ValueError("--store redis: the harness's redis-server is not running yet")
        return self.url

    def __str__(self) -> str:
        return "redis" if self.url is None else self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTiming:
    """Client reconnection settings: the reference defaults (1 s backoff, 2 s silence) are
    tuned for 1 s intervals and would make a chaos run take minutes instead of seconds."""

    backoff_initial: float
    backoff_max: float
    min_silence: float
    connect_timeout: float
    max_retries: int

    def args(self) -> list[str]:
        return [
            "--backoff-initial",
            f"{self.backoff_initial:g}",
            "--backoff-max",
            f"{self.backoff_max:g}",
            "--min-silence",
            f"{self.min_silence:g}",
            "--connect-timeout",
            f"{self.connect_timeout:g}",
            "--max-retries",
            str(self.max_retries),
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosOptions:
    """Everything a run depends on; with ``seed`` set, faults and client choices are replayable."""

    clients: int = 20
    mode: ModeChoice = "both"
    n: int = 200
    seed: int | None = None
    interval: float = 0.01
    session_ttl: float = 30.0
    store: StoreOption = StoreOption()
    concurrency: int | None = None
    #: None: 30 s plus four times the streaming time of every wave of clients.
    timeout: float | None = None
    #: The proxy's faults. Drawn faults strike a byte uniform over what each connection
    #: carries (the proxy's sizer reads it off the WELCOME) unless ``sized_faults`` is false:
    #: then below ``faults.fault_window``, the standalone proxy's semantics.
    faults: FaultConfig = field(default_factory=FaultConfig)
    sized_faults: bool = True
    # What runs: the reference implementations unless a command template says otherwise.
    client_cmd: str | None = None
    client_args: tuple[str, ...] = ()
    #: Server command templates, used in turn by the instances (a mixed pool); empty: the
    #: reference server.
    server_cmd: tuple[str, ...] = ()
    #: None: one instance per ``server_cmd`` (at least one).
    servers: int | None = None
    kill_interval: float | None = None
    #: With the harness's own Redis (store "redis"): freeze it (SIGSTOP) for 0.5 to 3 s about
    #: every S seconds; restart it (persistence on, so no session is lost) about every S seconds.
    store_pause_interval: float | None = None
    store_restart_interval: float | None = None
    event_log: str | None = None
    server_start_timeout: float = 10.0
    #: Count a confirmed "final frame lost" (spec §16.6) as a failure too.
    strict: bool = False

    @property
    def modes(self) -> tuple[Mode, ...]:
        return modes_for(self.mode)

    @property
    def effective_concurrency(self) -> int:
        return self.concurrency or self.clients

    @property
    def server_count(self) -> int:
        """Server instances: ``servers``, else one per ``server_cmd``, else one."""
        return self.servers if self.servers is not None else max(1, len(self.server_cmd))

    @property
    def server_subprocess(self) -> bool:
        """In-process unless a command, several instances or kills ask for real processes."""
        return bool(self.server_cmd) or self.server_count > 1 or self.kill_interval is not None

    @property
    def effective_timeout(self) -> float:
        if self.timeout is not None:
            return self.timeout
        # Per wave of --concurrency clients, the 30 s too: a wave at --interval 0 still starts
        # its processes and connects (40 waves of one client took 31 s on a loaded machine).
        waves = math.ceil(self.clients / self.effective_concurrency) if self.clients else 0
        return (30.0 + 4 * self.n * self.interval) * max(1, waves)

    def rates(self) -> dict[str, float]:
        """The drawn fault kinds that are on, with their rates."""
        rates = {kind.value: self.faults.rate(kind) for kind in DRAWN_KINDS}
        return {kind: rate for kind, rate in rates.items() if rate > 0}

    def client_timing(self) -> ClientTiming:
        """Timeouts long enough for the configured shaping, short enough to notice a blackhole."""
        faults = self.faults
        delay = faults.latency + faults.jitter + faults.slice_delay
        if faults.bandwidth:
            delay += WELCOME_BYTES / faults.bandwidth
        return ClientTiming(
            backoff_initial=0.05,
            backoff_max=1.0,
            min_silence=max(1.0, 10 * self.interval, 4 * delay),
            connect_timeout=max(2.0, 4 * delay),
            max_retries=30,
        )

    def options_json(self) -> dict[str, Any]:
        """Exactly the options, as given: ``from_json`` rebuilds them (for ``--replay``)."""
        doc = dataclasses.asdict(self)
        doc["store"] = str(self.store)
        doc["client_args"] = list(self.client_args)
        doc["server_cmd"] = list(self.server_cmd)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ChaosOptions:
        """The options ``options_json`` wrote; raises ValueError for anything else."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(doc) - names
        if unknown:
            raise ValueError(f"unknown options {', '.join(sorted(unknown))}")
        values = dict(doc)
        for name in ("client_args", "server_cmd"):
            if name in values:
                values[name] = tuple(values[name])
        try:
            if "store" in values:
                values["store"] = StoreOption.parse(values["store"])
            if "faults" in values:
                values["faults"] = FaultConfig(**values["faults"])
            return cls(**values)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_json(self) -> dict[str, Any]:
        doc = self.options_json()
        doc["client_args"] = list(self.client_args)
        doc["server_cmd"] = list(self.server_cmd)
        doc["servers"] = self.server_count
        doc["concurrency"] = self.effective_concurrency
        doc["timeout"] = self.effective_timeout
        doc["client_timing"] = dataclasses.asdict(self.client_timing())
        return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSpec:
    """One client's fixed parameters, all derived from the run seed."""

    id: int
    mode: Mode
    n: int
    seed: int
    client_id: str


class ClientPhase(Enum):
    QUEUED = "queued"
    STARTING = "starting"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing off"
    EXITED = "exited"
    VERIFIED = "verified"
    #: spec/PROTOCOL.md §16.6, confirmed by the server: not a fault of the implementation.
    FINAL_LOST = "final lost"
    #: A corrupt fault hit the client, which failed loudly (checksum or value check, or an
    #: error exit) instead of claiming a result: what it must do.
    CORRUPTION_DETECTED = "corruption caught"
    FAILED = "failed"
    #: The client claimed success with a result that is wrong: the worst verdict there is.
    FALSE_SUCCESS = "FALSE SUCCESS"

    @property
    def finished(self) -> bool:
        return self in _FINISHED

    @property
    def acceptable(self) -> bool:
        """Passes a run: verified, or a non-success the client could not have avoided."""
        return self in (
            ClientPhase.VERIFIED,
            ClientPhase.FINAL_LOST,
            ClientPhase.CORRUPTION_DETECTED,
        )


_FINISHED = frozenset(
    {
        ClientPhase.VERIFIED,
        ClientPhase.FINAL_LOST,
        ClientPhase.CORRUPTION_DETECTED,
        ClientPhase.FAILED,
        ClientPhase.FALSE_SUCCESS,
    }
)


#: The reference client's ``--events`` phase names, and what the dashboard calls them.
EVENT_PHASES = {
    "connecting": ClientPhase.CONNECTING,
    "streaming": ClientPhase.CONNECTED,
    "backing_off": ClientPhase.BACKING_OFF,
    "done": ClientPhase.EXITED,
    "failed": ClientPhase.EXITED,
}


@dataclass(slots=True, eq=False)
class ClientState:
    """What the harness knows of one client so far; updated from its events and its exit."""

    spec: ClientSpec
    phase: ClientPhase = ClientPhase.QUEUED
    detail: str = ""
    received: int = 0
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None
    seed_checked: bool = False
    diagnostics: deque[str] = field(default_factory=lambda: deque(maxlen=DIAGNOSTIC_LINES))
    #: The command line the client ran with, and its own proxy port.
    argv: list[str] = field(default_factory=list)
    port: int | None = None
    #: Faults the proxy struck this client's connections with, in order.
    faults: list[FaultEvent] = field(default_factory=list)

    @property
    def corrupted(self) -> bool:
        return any(event.kind is FaultKind.CORRUPT for event in self.faults)

    @property
    def ok(self) -> bool:
        return self.phase is ClientPhase.VERIFIED

    @property
    def final_frame_lost(self) -> bool:
        return self.phase is ClientPhase.FINAL_LOST

    @property
    def outcome(self) -> str:
        """verified, final_lost, failed, or the live phase of a client still running."""
        return self.phase.name.lower()

    @property
    def reconnects(self) -> int:
        """The client's own count once it reports one, else what its events showed."""
        if self.result is not None:
            value = self.result.get("reconnects")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return max(0, self.attempts - 1)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def feed_line(self, line: str) -> None:
        """One stderr line: a JSON progress event, or a diagnostic worth keeping."""
        text = line.strip()
        if not text:
            return
        event: object = None
        if text.startswith("{"):
            try:
                event = json.loads(text)
            except ValueError:
                event = None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            self.diagnostics.append(text[:500])
            return
        self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        received = event.get("received")
        if isinstance(received, int) and not isinstance(received, bool):
            self.received = max(0, min(received, self.spec.n))
        match event["event"]:
            case "attempt":
                attempt = event.get("attempt")
                if isinstance(attempt, int):
                    self.attempts = max(self.attempts, attempt)
            case "phase":
                phase = EVENT_PHASES.get(str(event.get("phase")))
                if phase is not None and not self.phase.finished:
                    self.phase = phase
                    self.detail = str(event.get("detail", ""))[:120]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.spec.id,
            "mode": self.spec.mode,
            "n": self.spec.n,
            "ok": self.ok,
            "outcome": self.outcome,
            "reconnects": self.reconnects,
            "exit_code": self.exit_code,
            "seed_checked": self.seed_checked,
            "client_seed": self.spec.seed,
            "duration_s": None if self.duration is None else round(self.duration, 3),
            "command": shlex.join(self.argv) if self.argv else None,
            "faults": [fault_json(event) for event in self.faults],
            "result": self.result,
        }
        doc["client_id"] = self.spec.client_id
        if not self.ok:
            doc["reason"] = self.reason or "did not finish"
            doc["diagnostics"] = list(self.diagnostics)
        return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvidence:
    """What the server side shows of one stateful client's session, for its verdict.

    ``seed``: the seed the server handed out (None if never seen). ``seed_known``: the harness
    sees every session opened, so None means the server never opened one. ``changed_seed``: a
    later, different seed for the same session (servers broke it). ``completed``: the session
    was completed, i.e. FINAL was written (None: the harness cannot tell).
    """

    seed: int | None = None
    seed_known: bool = False
    changed_seed: int | None = None
    completed: bool | None = None


#: What a client whose server side the harness cannot see has as evidence.
NO_EVIDENCE = SessionEvidence()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInstance:
    """One server subprocess as the dashboard shows it."""

    port: int
    pid: int | None
    up: bool
    restarts: int


class ServerView(Protocol):
    """What the dashboard and report may ask of the servers, whichever way they run."""

    @property
    def ports(self) -> list[int]: ...

    @property
    def kills(self) -> int: ...

    def stats(self) -> dict[str, Any]:
        """JSON-able counters: the harness server's, or what a supervisor can see."""
        ...

    def instances(self) -> list[ServerInstance]: ...

    async def sessions_held(self) -> int | None:
        """Live sessions in the store, when the harness can see the store."""
        ...


class ProxyView(Protocol):
    """The part of ``proxy.ChaosProxy`` the dashboard reads."""

    @property
    def counters(self) -> Any: ...

    @property
    def connections(self) -> Sequence[ConnectionRecord]: ...

    def recent_events(self, limit: int = 20) -> list[FaultEvent]: ...


@dataclass(slots=True, eq=False)
class RunView:
    """The live state of a run, refreshed by the runner and drawn by the UI."""

    options: ChaosOptions
    seed: int
    proxy_seed: int
    clients: list[ClientState]
    started_at: float
    now: float
    proxy: ProxyView | None = None
    proxy_port: int | None = None
    servers: ServerView | None = None
    sessions_held: int | None = None

    @property
    def elapsed(self) -> float:
        return self.now - self.started_at


#: The ``--report`` document's layout version; bumped whenever a field changes meaning.
SCHEMA_VERSION = 3
#: Fault kinds that strike a connection (the report's ``faults``); shaping is not listed.
STRIKING_KINDS = frozenset({*DRAWN_KINDS, FaultKind.REFUSE, FaultKind.LIMIT_DATA})


def fault_json(event: FaultEvent) -> dict[str, Any]:
    """One fault as the report lists it: whose connection, what, and where in the stream."""
    doc: dict[str, Any] = {
        "client": event.client,
        "connection": event.client_connection,
        "kind": event.kind.value,
        "frame_index": event.frame_index,
        "frame": event.frame,
        "offset": event.offset_downstream,
        "t": round(event.t, 3),
        "upstream": event.upstream,
    }
    if event.xor is not None:
        doc["xor"] = event.xor
    return doc


def fault_what(event: FaultEvent) -> str:
    """``drop frame 117`` / ``reset frame 3 (welcome)`` / ``refuse at connect``."""
    if event.kind is FaultKind.REFUSE:
        return "refuse at connect"
    where = f"byte {event.offset_downstream}"
    if event.frame_index is not None:
        where = f"frame {event.frame_index}" + (
            f" ({event.frame})" if event.frame != "data" else ""
        )
    return f"{event.kind.value} {where}"


def describe_fault(event: FaultEvent) -> str:
    """``client 3 conn 2: drop frame 117``, as dashboard and plain lines show it."""
    who = f"client {event.client} conn {event.client_connection}"
    if event.client is None:
        who = f"proxy conn {event.connection}"
    return f"{who}: {fault_what(event)}"


@dataclass(slots=True, kw_only=True)
class ChaosReport:
    """The outcome of a run; ``to_json`` is the ``--report`` document."""

    ok: bool
    seed: int
    proxy_seed: int
    duration_s: float
    options: ChaosOptions
    clients: list[ClientState]
    proxy: dict[str, Any]
    server: dict[str, Any]
    servers_killed: int = 0
    interrupted: bool = False
    timed_out: bool = False
    error: str | None = None
    #: mode -> {connections, rates, expected, injected}: see ``harness.rates``.
    fault_rates: dict[str, Any] = field(default_factory=dict)
    #: The report this run replayed, if it was a replay.
    replay_of: str | None = None
    #: The options as asked (``options`` may have resolved ``--store redis`` to a URL).
    requested: ChaosOptions | None = None
    store_events: dict[str, int] = field(default_factory=dict)

    @property
    def verified(self) -> int:
        return sum(client.ok for client in self.clients)

    @property
    def final_frames_lost(self) -> int:
        return sum(client.final_frame_lost for client in self.clients)

    @property
    def corruptions_detected(self) -> int:
        return sum(client.phase is ClientPhase.CORRUPTION_DETECTED for client in self.clients)

    @property
    def false_successes(self) -> int:
        return sum(client.phase is ClientPhase.FALSE_SUCCESS for client in self.clients)

    @property
    def fault_counts(self) -> dict[str, int]:
        """Faults by kind, as the proxy counted them (shaping once per connection)."""
        faults = self.proxy.get("faults", {})
        return dict(faults) if isinstance(faults, dict) else {}

    def fault_list(self) -> list[dict[str, Any]]:
        """Every fault that struck a client's connection, by client and connection."""
        return [
            fault_json(event)
            for client in self.clients
            for event in client.faults
            if event.kind in STRIKING_KINDS
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "ok": self.ok,
            "seed": self.seed,
            "proxy_seed": self.proxy_seed,
            "seeds": {
                "run": self.seed,
                "proxy": self.proxy_seed,
                "clients": {str(client.spec.id): client.spec.seed for client in self.clients},
            },
            "duration_s": round(self.duration_s, 3),
            "interrupted": self.interrupted,
            "timed_out": self.timed_out,
            "error": self.error,
            "replay_of": self.replay_of,
            "verified": self.verified,
            "final_frames_lost": self.final_frames_lost,
            "corruptions_detected": self.corruptions_detected,
            "false_successes": self.false_successes,
            "options": (self.requested or self.options).options_json(),
            "config": self.options.to_json(),
            "fault_rates": self.fault_rates,
            "faults": self.fault_list(),
            "clients": [client.to_json() for client in self.clients],
            "proxy": self.proxy,
            "server": self.server,
            "servers_killed": self.servers_killed,
            "store_events": self.store_events,
        }


def fault_rates(rates: dict[str, float], records: Sequence[ConnectionRecord]) -> dict[str, Any]:
    """Per mode: connections that carried stream data, and per drawn kind its rate R, the
    expected count R x connections and the count injected on those connections.

    A rate R means: the probability that a connection carrying stream data is struck by that
    fault at a byte uniform over what it carries (so before its last byte); a resumed
    connection carries only the rest of its stream. ``connections`` counts those that reached
    the point their draw chose (every connection draws one, fault or not); ``cut_short``
    counts those something else ended first (a client giving up on a slow server, a killed
    server), which no drawn fault could strike.
    """
    table: dict[str, Any] = {}
    for record in records:
        if not record.carried_stream or record.label is None:
            continue
        row = table.setdefault(
            record.label,
            {
                "connections": 0,
                "cut_short": 0,
                "rates": dict(rates),
                "expected": {},
                "injected": dict.fromkeys(rates, 0),
            },
        )
        if not record.reached_point:
            row["cut_short"] += 1
            continue
        row["connections"] += 1
        fault = record.fault
        if fault is not None and fault.kind in DRAWN_KINDS:
            row["injected"][fault.kind.value] = row["injected"].get(fault.kind.value, 0) + 1
    for row in table.values():
        row["expected"] = {
            kind: round(rate * row["connections"], 2) for kind, rate in rates.items()
        }
    return dict(sorted(table.items()))
