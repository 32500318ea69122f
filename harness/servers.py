"""The servers behind the proxy: the harness's own reference server, or supervised subprocesses.

The harness's own server (``harness.server_process``, a process of its own) is the default
because only then does the harness see the store hand out every seed and complete every
session, and so recompute every stateful checksum and confirm every lost FINAL. Subprocesses
run any implementation (``--server-cmd``), several instances behind the proxy's round-robin
(``--servers``), and can be SIGKILLed and restarted on their port (``--kill-interval``) to test
resumption across a crash; with a shared store the harness reads each running client's seed
from it, which catches all but the sessions that open and complete between two reads, and (on
one ``redis://`` server that publishes keyspace events, as the harness's own redis-server does)
hears every session deleted, so it confirms or refutes every lost FINAL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shlex
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import Process, TaskStatus

from reference.store import SessionRecord, SessionStore, StoreError, open_store

from . import processes
from .clients import passes_client_id
from .keyevents import SessionDeletions
from .model import ChaosOptions, ClientState, ServerInstance, SessionEvidence
from .ports import free_ports

log = logging.getLogger("harness.servers")

HOST = "127.0.0.1"
SERVER_PLACEHOLDERS = ("port", "interval", "ttl", "store")
#: Arguments of ``python -m reference.server`` when no ``--server-cmd`` is given.
DEFAULT_SERVER_ARGS = (
    "--port {port} --interval {interval} --session-ttl {ttl} --store {store} --log-level warning"
)
#: Server stderr lines kept per instance, to explain a server that would not start.
SERVER_LOG_LINES = 20
#: Pause between readiness probes of a starting server: a bounded poll, since a foreign
#: implementation has no way to tell us it is listening other than by accepting.
READY_POLL = 0.05
#: Pause between reads of the shared store for the seeds of running stateful clients.
SEED_POLL = 0.05


class ServerStartError(Exception):
    """A server did not accept connections in time; the run cannot start."""


class OwnServer:
    """The harness's own reference server (``python -m harness.server_process``), supervised.

    It runs in a process of its own, so that a server writing at full speed and the proxy and
    supervision on this event loop cannot starve one another. Its randomness comes from the run
    seed, it listens on one port per client (``port_for``), and it reports every session it
    opens (with its seed) and completes: so every stateful checksum is recomputed and every
    "final frame lost" is confirmed or refuted. ``request`` is a barrier: its reply follows
    every report of what the server did before it was asked.
    """

    def __init__(self, process: Process, log_lines: deque[str]) -> None:
        self._process = process
        self._log = log_lines
        self._port = 0
        self._client_ports: dict[int, int] = {}
        self.sessions: dict[str, int] = {}
        self.completed: set[str] = set()
        #: The server's counters as of its last reply (zeros until then).
        self._stats: dict[str, Any] = {
            "connections_active": 0,
            "connections_total": 0,
            "streams_completed": 0,
            "errors_sent": {},
        }
        self._ready = anyio.Event()
        self._replies: dict[str, dict[str, Any]] = {}
        self._waiting: dict[str, anyio.Event] = {}
        self._tokens = 0
        self._send_lock = anyio.Lock()
        self._exited = False

    @property
    def ports(self) -> list[int]:
        return [self._port]

    def port_for(self, client: int) -> int:
        return self._client_ports.get(client, self._port)

    @property
    def kills(self) -> int:
        return 0

    def on_line(self, line: str) -> None:
        """One stdout line of the server (see ``harness.server_process``)."""
        try:
            doc = json.loads(line)
        except ValueError:
            log.warning("server: unexpected output %r", line[:200])
            return
        if not isinstance(doc, dict):
            return
        if "opened" in doc:
            self.sessions[str(doc["opened"])] = int(doc["seed"])
        elif "completed" in doc:
            self.completed.add(str(doc["completed"]))
        elif "reply" in doc:
            token = str(doc["reply"])
            self._stats = dict(doc.get("stats") or {})
            self._replies[token] = doc
            waiting = self._waiting.pop(token, None)
            if waiting is not None:
                waiting.set()
        elif "port" in doc:
            self._port = int(doc["port"])
            self._client_ports = {int(k): int(v) for k, v in doc["client_ports"].items()}
            self._ready.set()

    def exited(self) -> None:
        """The server's stdout ended: nobody will answer any more."""
        self._exited = True
        for waiting in self._waiting.values():
            waiting.set()
        self._waiting.clear()

    async def request(self) -> dict[str, Any] | None:
        """Ask the server for its counters; None if it is gone. The reply comes after every
        session report of what the server did before it read the request."""
        if self._exited or self._process.stdin is None:
            return None
        self._tokens += 1
        token = str(self._tokens)
        answered = self._waiting[token] = anyio.Event()
        try:
            async with self._send_lock:
                await self._process.stdin.send(f"{token}\n".encode())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._waiting.pop(token, None)
            return None
        await answered.wait()
        return self._replies.pop(token, None)

    async def evidence(self, client_id: str, *, started_at: float | None) -> SessionEvidence:
        """Every session the server opens and completes is reported; a request first makes
        sure the reports of everything it did before the client ended have been read."""
        synced = await self.request() is not None
        seed = self.sessions.get(client_id)
        return SessionEvidence(
            seed=seed,
            seed_known=synced or seed is not None,
            completed=True if client_id in self.completed else (False if synced else None),
        )

    def stats(self) -> dict[str, Any]:
        """The server's counters as of its last reply."""
        doc = dict(self._stats)
        doc["kind"] = "harness"
        doc["ports"] = self.ports
        return doc

    def instances(self) -> list[ServerInstance]:
        return []

    async def sessions_held(self) -> int | None:
        reply = await self.request()
        held = reply.get("held") if reply is not None else None
        return held if isinstance(held, int) else None


def own_server_argv(options: ChaosOptions, seed: int, clients: int) -> list[str]:
    """The harness server's command: floats in full (``repr``), so it paces exactly as asked."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    return processes.python_command(
        "harness.server_process",
        "--seed",
        str(seed),
        "--clients",
        str(max(1, clients)),
        "--interval",
        repr(float(options.interval)),
        "--session-ttl",
        repr(float(options.session_ttl)),
        "--store",
        options.store.resolved_url,
        "--log-level",
        level if level in ("debug", "info", "warning", "error", "critical") else "warning",
    )


#: Seconds the harness's own server is given per client port on top of
#: ``server_start_timeout``: it opens one listener per client, and opening thousands takes
#: seconds on a loaded machine (8,000 took 28 s here at load average 10).
START_TIMEOUT_PER_CLIENT = 0.005


def own_server_start_timeout(options: ChaosOptions, clients: int) -> float:
    """How long the harness's own server may take to listen on every port."""
    return options.server_start_timeout + START_TIMEOUT_PER_CLIENT * max(1, clients)


@asynccontextmanager
async def own_server(options: ChaosOptions, seed: int, clients: int) -> AsyncIterator[OwnServer]:
    """Start the harness's own server for clients 1..``clients``, wait until it listens, and
    stop it (SIGTERM, then SIGKILL) on the way out. Raises ServerStartError if it exits or
    does not listen within ``own_server_start_timeout``."""
    process = await processes.start(own_server_argv(options, seed, clients), stdin=subprocess.PIPE)
    log_lines: deque[str] = deque(maxlen=SERVER_LOG_LINES)
    server = OwnServer(process, log_lines)

    stdout_done, stderr_done = anyio.Event(), anyio.Event()

    async def read_stdout() -> None:
        try:
            await processes.read_lines(process.stdout, server.on_line)
        finally:
            server.exited()
            stdout_done.set()

    async def read_stderr() -> None:
        try:
            await processes.read_lines(process.stderr, relay)
        finally:
            stderr_done.set()

    def relay(line: str) -> None:
        log_lines.append(_relay_log_line(line))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_stdout)
            tg.start_soon(read_stderr)
            within = own_server_start_timeout(options, clients)
            with anyio.move_on_after(within):
                async with anyio.create_task_group() as start:

                    async def died() -> None:
                        await process.wait()
                        with anyio.move_on_after(1):
                            await stderr_done.wait()  # its last words explain why
                        start.cancel_scope.cancel()

                    start.start_soon(died)
                    await server._ready.wait()
                    start.cancel_scope.cancel()
            if not server._ready.is_set():
                exited = process.returncode is not None
                await processes.stop(process, grace=0)
                if exited:
                    raise ServerStartError(
                        "the harness's server did not start (status "
                        f"{process.returncode}): " + (" | ".join(log_lines) or "no output")
                    )
                raise ServerStartError(
                    f"the harness's server did not listen on its {clients + 1} ports (one per "
                    f"client) within {within:.3g} s, so it was stopped"
                    + (": " + " | ".join(log_lines) if log_lines else "")
                )
            try:
                yield server
            finally:
                # Closing stdin tells it to stop; its last lines (the log of every connection
                # it ended) are read to the end before the pipes close.
                deadline = anyio.current_time() + processes.TERMINATE_GRACE
                with anyio.CancelScope(shield=True, deadline=deadline):
                    if process.stdin is not None:
                        with contextlib.suppress(OSError, anyio.BrokenResourceError):
                            await process.stdin.aclose()
                    await stdout_done.wait()
                    await stderr_done.wait()
                tg.cancel_scope.cancel()
    finally:
        await processes.stop(process)


def _relay_log_line(line: str) -> str:
    """A JSON log line of the harness's server, logged again here under its own logger; its
    message (what a start-up error quotes, not the JSON around it)."""
    try:
        doc = json.loads(line)
        level = logging.getLevelName(str(doc["level"]).upper())
        name, message = str(doc["logger"]), str(doc["message"])
    except (ValueError, KeyError, TypeError):
        log.warning("server: %s", line)
        return line
    logging.getLogger(name).log(level if isinstance(level, int) else logging.WARNING, message)
    return message


@dataclass(slots=True, eq=False)
class _Instance:
    port: int
    argv: list[str]
    process: Process | None = None
    up: bool = False
    restarts: int = 0
    crashes: int = 0
    killing: bool = False
    #: It did not come back after an exit: its supervisor gave up on it.
    abandoned: bool = False
    log: deque[str] = field(default_factory=lambda: deque(maxlen=SERVER_LOG_LINES))


class SubprocessServers:
    """K server processes, each restarted on its own port whenever it dies.

    ``store``: the servers' shared store, when the harness could open it too; it counts the
    sessions held and, when the clients are told their ids, shows their seeds.
    """

    def __init__(
        self,
        options: ChaosOptions,
        instances: list[_Instance],
        store: SessionStore | None = None,
    ) -> None:
        self._options = options
        self._instances = instances
        self._kills = 0
        #: Set (and replaced) whenever an instance comes up or is given up on.
        self._came_up = anyio.Event()
        self._store = store
        #: First record read for each client id; None when the seeds cannot be watched.
        self._seeds: dict[str, SessionRecord] | None = (
            {} if store is not None and passes_client_id(options) else None
        )
        #: A later record whose seed differed from the first: a server changed the session.
        self._seed_changes: dict[str, SessionRecord] = {}
        #: When a session read earlier was first found gone (completed, or expired).
        self._vanished: dict[str, float] = {}
        #: The shared store's deletions, heard as keyspace events (``watch_deletions``).
        self._deletions: SessionDeletions | None = None

    @property
    def ports(self) -> list[int]:
        return [instance.port for instance in self._instances]

    @property
    def kills(self) -> int:
        return self._kills

    def port_for(self, client: int) -> int | None:
        """Clients share the round-robin over every instance."""
        return None

    @property
    def seeds(self) -> Mapping[str, SessionRecord] | None:
        """Seeds read from the shared store while their clients ran (``watch_seeds``).

        None when they cannot be: each server has a store of its own, or the clients are not
        told their ids. A session that opened and completed between two reads is missing.
        """
        return self._seeds

    async def evidence(self, client_id: str, *, started_at: float | None) -> SessionEvidence:
        """The seeds read while the client ran, and whether its session was completed.

        With keyspace events (``harness.keyevents``) completion is known exactly: a deletion
        of the session's key heard from Redis means COMPLETE ran; none, while the subscription
        was up from before the client started until now, means it never did. Otherwise the
        reads of ``watch_seeds`` decide: only completion deletes a session before its TTL runs
        out, and no session of this client can exist before the client started, so a session
        that was seen and then found gone less than ``--session-ttl`` after the client started
        was completed. Found gone later (or never seen) it cannot be told apart from an
        expiry: None.
        """
        first = self._seeds.get(client_id) if self._seeds is not None else None
        changed = self._seed_changes.get(client_id)
        completed: bool | None = None
        if self._deletions is not None:
            completed = await self._deletions.completed(client_id, started_at=started_at)
        if completed is None and first is not None and self._store is not None:
            gone_at = self._vanished.get(client_id)
            if gone_at is None:
                try:
                    present = await self._store.get(client_id) is not None
                except StoreError:
                    present = None
                if present is False:
                    gone_at = anyio.current_time()
                elif present:
                    completed = False
            ttl = self._options.session_ttl
            if gone_at is not None and started_at is not None and gone_at < started_at + ttl:
                completed = True
        return SessionEvidence(
            seed=first.seed if first is not None else None,
            changed_seed=changed.seed if changed is not None else None,
            completed=completed,
        )

    async def watch_deletions(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Until cancelled, hear every session the shared store deletes (``keyevents``); if
        the store does not publish deletions, return at once (``evidence`` polls instead)."""
        deletions = SessionDeletions(self._options.store.resolved_url)
        async with anyio.create_task_group() as tg:
            if await tg.start(deletions.run):
                self._deletions = deletions
            task_status.started()

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "subprocess",
            "ports": self.ports,
            "instances": len(self._instances),
            "up": sum(instance.up for instance in self._instances),
            "kills": self._kills,
            "restarts": sum(instance.restarts for instance in self._instances),
            "unexpected_exits": sum(instance.crashes for instance in self._instances),
            "commands": [shlex.join(instance.argv) for instance in self._instances],
        }

    def instances(self) -> list[ServerInstance]:
        return [
            ServerInstance(
                port=instance.port,
                pid=instance.process.pid if instance.process is not None else None,
                up=instance.up,
                restarts=instance.restarts,
            )
            for instance in self._instances
        ]

    async def sessions_held(self) -> int | None:
        if self._store is None:
            return None
        try:
            return await self._store.count()
        except StoreError:
            return None

    async def watch_seeds(self, clients: Sequence[ClientState]) -> None:
        """Until cancelled, every ``SEED_POLL`` seconds, read the seeds of running clients."""
        while True:
            await self.read_seeds(clients)
            await anyio.sleep(SEED_POLL)

    async def read_seeds(self, clients: Sequence[ClientState]) -> None:
        """Read the session of every running stateful client from the shared store.

        A session is in the store from its first WELCOME until its FINAL, so while a client
        runs its session, once it exists, holds the seed a server chose. The first record
        read is kept; one with another seed later is kept apart, to fail the client. A store
        error ends this pass (logged at debug): the next one tries again.
        """
        if self._store is None or self._seeds is None:
            return
        for state in clients:
            client_id = state.spec.client_id
            if state.spec.mode != "stateful" or client_id in self._seed_changes:
                continue
            if state.started_at is None or state.ended_at is not None:
                continue
            try:
                record = await self._store.get(client_id)
            except StoreError as exc:
                log.debug("cannot read session %s: %s", client_id, exc)
                return
            if record is None:
                if client_id in self._seeds:
                    self._vanished.setdefault(client_id, anyio.current_time())
                continue
            self._vanished.pop(client_id, None)  # a resume claimed it again: not gone
            first = self._seeds.setdefault(client_id, record)
            if record.seed != first.seed:
                self._seed_changes[client_id] = record
                log.warning(
                    "session %s changed seed from %d to %d", client_id, first.seed, record.seed
                )

    async def supervise(
        self, instance: _Instance, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one instance until cancelled, restarting it after every exit."""
        first = True
        while True:
            process = await processes.start(instance.argv, stdout=subprocess.DEVNULL)
            instance.process = process
            instance.killing = False
            drained = anyio.Event()

            async def drain(process: Process = process, drained: anyio.Event = drained) -> None:
                await processes.read_lines(process.stderr, instance.log.append)
                drained.set()

            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain)
                    try:
                        await self._wait_ready(instance, process, drained)
                    except ServerStartError:
                        tg.cancel_scope.cancel()  # a hung server would keep its stderr open
                        if first:
                            raise
                        log.error("server on port %d did not come back; left down", instance.port)
                        instance.abandoned = True
                        self._announce_up()
                        return
                    instance.up = True
                    self._announce_up()
                    if first:
                        task_status.started()
                        first = False
                    await process.wait()
                    instance.up = False
            finally:
                instance.up = False
                await processes.stop(process, grace=processes.TERMINATE_GRACE)
            if not instance.killing:
                instance.crashes += 1
                log.warning(
                    "server on port %d exited by itself (status %s): %s",
                    instance.port,
                    process.returncode,
                    " | ".join(instance.log) or "no output",
                )
            instance.restarts += 1

    async def _wait_ready(
        self, instance: _Instance, process: Process, drained: anyio.Event
    ) -> None:
        """Poll until the port accepts a connection, the process dies, or time runs out.

        ``drained`` is set once the server's stderr is read to its end: a server that exits
        at once is reported with its last words.
        """
        with anyio.move_on_after(self._options.server_start_timeout):
            while process.returncode is None:
                try:
                    stream = await anyio.connect_tcp(HOST, instance.port)
                except OSError:
                    await anyio.sleep(READY_POLL)
                    continue
                await stream.aclose()
                return
            with anyio.move_on_after(1):
                await drained.wait()
            raise ServerStartError(
                f"server on port {instance.port} exited with status {process.returncode}: "
                + (" | ".join(instance.log) or "no output")
            )
        raise ServerStartError(
            f"server on port {instance.port} did not accept connections within "
            f"{self._options.server_start_timeout:g} s: "
            + (" | ".join(instance.log) or "no output")
        )

    def _announce_up(self) -> None:
        self._came_up.set()
        self._came_up = anyio.Event()

    async def _all_back(self) -> None:
        """Return once every instance is up (or given up on)."""
        while not all((i.up and not i.killing) or i.abandoned for i in self._instances):
            await self._came_up.wait()

    async def kill_loop(self, interval: float, rng: random.Random) -> None:
        """SIGKILL one running server ``interval`` seconds after every server is up again;
        its supervisor restarts it.

        The interval counts from the last restart, not from the last kill, so kills never
        outpace restarts: on a busy machine, where a restart takes seconds, a fixed clock
        killed each instance as soon as it was back and left the clients nowhere to go.
        """
        while True:
            await self._all_back()
            await anyio.sleep(interval)
            running = [
                i for i in self._instances if i.up and not i.killing and i.process is not None
            ]
            if not running:
                continue
            victim = rng.choice(running)
            assert victim.process is not None
            victim.killing = True
            processes.kill_group(victim.process)
            self._kills += 1
            log.info("killed server on port %d (pid %d)", victim.port, victim.process.pid)


def server_argv(options: ChaosOptions, port: int, instance: int = 0) -> list[str]:
    """Instance ``instance``'s command: the ``--server-cmd`` templates are used in turn."""
    values = {
        "port": port,
        "interval": f"{options.interval:g}",
        "ttl": f"{options.session_ttl:g}",
        "store": options.store.resolved_url,
    }
    if not options.server_cmd:
        argv = processes.render_template(DEFAULT_SERVER_ARGS, values)
        return processes.python_command("reference.server", *argv)
    template = options.server_cmd[instance % len(options.server_cmd)]
    return processes.render_template(template, values)


@asynccontextmanager
async def subprocess_servers(
    options: ChaosOptions, rng: random.Random, clients: Sequence[ClientState]
) -> AsyncIterator[SubprocessServers]:
    """Start every instance (concurrently; each must answer in time) and supervise them.

    With a shared store, also watch it for the seeds of the running ``clients``.
    """
    store = None
    if options.store.shared:
        try:
            store = await open_store(options.store.resolved_url)
        except (StoreError, ValueError, OSError) as exc:
            log.warning("cannot open %s to count sessions and read seeds: %s", options.store, exc)
    ports = free_ports(options.server_count)
    instances = [
        _Instance(port=port, argv=server_argv(options, port, number))
        for number, port in enumerate(ports)
    ]
    servers = SubprocessServers(options, instances, store)
    try:
        async with anyio.create_task_group() as tg:
            for instance in servers._instances:
                await tg.start(servers.supervise, instance)
            if options.kill_interval is not None:
                tg.start_soon(servers.kill_loop, options.kill_interval, rng)
            if servers.seeds is not None and "stateful" in options.modes:
                tg.start_soon(servers.watch_seeds, clients)
            if store is not None and "stateful" in options.modes and _plain_redis(options):
                await tg.start(servers.watch_deletions)
            yield servers
            tg.cancel_scope.cancel()
    finally:
        if store is not None:
            with anyio.CancelScope(shield=True):
                await store.aclose()


def _plain_redis(options: ChaosOptions) -> bool:
    """Whether the store is one ``redis://`` server, whose keyspace events name every deletion
    (a cluster publishes each node's events on that node only)."""
    return urlsplit(options.store.resolved_url).scheme == "redis"


#: Whichever way the servers run; ``evidence`` gives what each shows of a client's session.
Servers = OwnServer | SubprocessServers
