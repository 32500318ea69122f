"""The harness's data: what a run is asked to do, what it sees while running, what it reports.

Kept apart from the code that runs things so the dashboard and the report share one vocabulary
without importing the runner.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol

from proxy import FaultConfig, FaultEvent
from proxy.cli import fault_config_from_args

Mode = Literal["stateless", "stateful"]
ModeChoice = Literal["stateless", "stateful", "both"]

#: Downstream bytes before a stream's first number: the WELCOME frame (3-byte header + 23).
WELCOME_BYTES = 26
#: Stateful DATA frame: header, u32 index, u32 value; FINAL adds the 32-byte checksum.
STATEFUL_DATA_BYTES = 11
STATEFUL_FINAL_EXTRA = 32
#: Stateless DATA frame without its value: header and u32 index.
STATELESS_FRAME_OVERHEAD = 7
MIN_FAULT_WINDOW = 64

#: stderr lines that were not JSON events, kept per client to explain a failure.
DIAGNOSTIC_LINES = 8


def stream_bytes(mode: Mode, n: int) -> int:
    """Downstream bytes of one uninterrupted stream, at most (a = 255), for sizing the window.

    A stateless value a·2^i has at most 8 + i bits; a stateful frame has a fixed size.
    """
    if mode == "stateful":
        return WELCOME_BYTES + STATEFUL_DATA_BYTES * n + STATEFUL_FINAL_EXTRA
    values = sum((8 + i + 7) // 8 for i in range(n))
    return WELCOME_BYTES + STATELESS_FRAME_OVERHEAD * n + values


def modes_for(choice: ModeChoice) -> tuple[Mode, ...]:
    if choice == "both":
        return ("stateless", "stateful")
    return (choice,)


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

    clients: int = 10
    mode: ModeChoice = "both"
    n: int = 200
    seed: int | None = None
    interval: float = 0.01
    session_ttl: float = 30.0
    store: str = "memory://"
    concurrency: int | None = None
    #: None: 30 s plus four times the streaming time of every wave of clients.
    timeout: float | None = None
    # Faults (proxy.FaultConfig); fault_window None means one whole stream (see fault_window_bytes).
    drop_rate: float = 0.0
    reset_rate: float = 0.0
    blackhole_rate: float = 0.0
    fault_window: int | None = None
    refuse_rate: float = 0.0
    refuse_duration: float = 0.5
    limit_data: int | None = None
    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: int | None = None
    slice_size: int | None = None
    slice_delay: float = 0.0
    # What runs: the reference implementations unless a command template says otherwise.
    client_cmd: str | None = None
    client_args: tuple[str, ...] = ()
    #: Server command templates, used in turn by the instances (a mixed pool); empty: the
    #: reference server.
    server_cmd: tuple[str, ...] = ()
    #: None: one instance per ``server_cmd`` (at least one).
    servers: int | None = None
    kill_interval: float | None = None
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
        waves = math.ceil(self.clients / self.effective_concurrency) if self.clients else 0
        return 30.0 + 4 * self.n * self.interval * waves

    @property
    def fault_window_bytes(self) -> int:
        """Default: the size of one whole stream of the largest mode run.

        A terminal fault then cuts a connection at a uniform point of what it would carry, so
        early, middle and final frames are all hit; resumed connections carry less, so fewer
        of them are cut and every client finishes.
        """
        if self.fault_window is not None:
            return self.fault_window
        largest = max(stream_bytes(mode, self.n) for mode in self.modes)
        return max(MIN_FAULT_WINDOW, largest)

    def fault_config(self) -> FaultConfig:
        """Raises ValueError for impossible settings (the CLI turns it into exit status 2)."""
        return fault_config_from_args(self, fault_window=self.fault_window_bytes)

    def client_timing(self) -> ClientTiming:
        """Timeouts long enough for the configured shaping, short enough to notice a blackhole."""
        delay = self.latency + self.jitter + self.slice_delay
        if self.bandwidth:
            delay += WELCOME_BYTES / self.bandwidth
        return ClientTiming(
            backoff_initial=0.05,
            backoff_max=1.0,
            min_silence=max(0.5, 10 * self.interval, 4 * delay),
            connect_timeout=max(1.0, 4 * delay),
            max_retries=30,
        )

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["client_args"] = list(self.client_args)
        doc["server_cmd"] = list(self.server_cmd)
        doc["servers"] = self.server_count
        doc["fault_window"] = self.fault_window_bytes
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
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (ClientPhase.VERIFIED, ClientPhase.FINAL_LOST, ClientPhase.FAILED)


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
            "result": self.result,
        }
        if self.spec.mode == "stateful":
            doc["client_id"] = self.spec.client_id
        if not self.ok:
            doc["reason"] = self.reason or "did not finish"
            doc["diagnostics"] = list(self.diagnostics)
        return doc


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
        """JSON-able counters: the in-process server's, or what a supervisor can see."""
        ...

    def instances(self) -> list[ServerInstance]: ...

    async def sessions_held(self) -> int | None:
        """Live sessions in the store, when the harness can see the store."""
        ...


class ProxyView(Protocol):
    """The part of ``proxy.ChaosProxy`` the dashboard reads."""

    @property
    def counters(self) -> Any: ...

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

    @property
    def verified(self) -> int:
        return sum(client.ok for client in self.clients)

    @property
    def final_frames_lost(self) -> int:
        return sum(client.final_frame_lost for client in self.clients)

    @property
    def faults(self) -> dict[str, int]:
        faults = self.proxy.get("faults", {})
        return dict(faults) if isinstance(faults, dict) else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seed": self.seed,
            "proxy_seed": self.proxy_seed,
            "duration_s": round(self.duration_s, 3),
            "interrupted": self.interrupted,
            "timed_out": self.timed_out,
            "error": self.error,
            "verified": self.verified,
            "final_frames_lost": self.final_frames_lost,
            "config": self.options.to_json(),
            "clients": [client.to_json() for client in self.clients],
            "proxy": self.proxy,
            "server": self.server,
            "servers_killed": self.servers_killed,
        }
