"""Reference server: one port, both variants, any number of concurrent clients.

``python -m reference.server --port 9000``. The protocol rules live in ``reference.protocol``;
this module only moves bytes, keeps time and talks to the session store.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the heavy imports below (reference/early.py)
    from reference import early

    early.guard()

import argparse
import contextlib
import enum
import gc
import itertools
import logging
import resource
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskStatus

from .accept import accept_forever, raise_open_file_limit
from .cli import (
    SpecParser,
    add_common_arguments,
    add_version,
    configure_logging,
    interval_seconds,
    listen_port,
    positive_float,
    positive_int,
    program_name,
    run_program,
    ttl_seconds,
)
from .connlog import ConnectionLog, ConnectionTrace
from .gc_policy import run_server_gc_policy
from .pacing import (
    ClientWatch,
    TimerWheel,
    limit_send_buffer,
    socket_fd,
    unacked_bytes,
    write_now,
)
from .protocol import (
    NEED_DATA,
    Checksum,
    ConnectionClosed,
    Error,
    ErrorCode,
    Hello,
    LocalProtocolError,
    Mode,
    Number,
    RemoteProtocolError,
    ServerConnection,
    Welcome,
    seconds_to_ms,
    stateful_prefix_checksum,
    stateful_value,
)
from .store import Lease, SessionRecord, SessionStore, StoreError, open_store, redacted_url

log = logging.getLogger("reference.server")

EXIT_OK = 0

_RECEIVE_SIZE = 65536
#: Numbers due at the same moment (interval 0, or after a stall) are written in one batch of
#: about this many bytes, instead of one system call each. Small enough (about 750 frames) that
#: streams writing at full speed leave the event loop to new connections: with 64 KiB batches,
#: 20 streams at interval 0 kept a HELLO waiting for its WELCOME over a second (issue 12).
_BATCH_BYTES = 8192
#: How long shutdown waits to tell a client SHUTTING_DOWN and release its session.
_CLEANUP_TIMEOUT = 2.0
#: A write that makes no progress for this long means the client stopped reading: treat it as
#: gone, so its session's TTL starts instead of the lease being held until the kernel gives up
#: (minutes). Checked by one watchdog per server, not by a timer per write.
_WRITE_STALL_TIMEOUT = 10.0
#: FINAL waits until the peer's TCP has acknowledged every earlier byte (spec §16.6); a peer
#: whose acknowledgements make no progress for this long is treated as gone instead.
_FINAL_ACK_TIMEOUT = 10.0
#: The kernel's send buffer per connection: how far writes may run ahead of the client.
_SEND_BUFFER = 128 * 1024
#: Streams paced at least this slowly are driven by the server's timer wheel; faster ones (and
#: streams that are not TCP sockets) pace themselves in their own task.
_WHEEL_MIN_INTERVAL = 0.05
#: After an ERROR frame, how long to drain the client's unread bytes so that closing does not
#: turn into a reset that destroys the ERROR frame before the client reads it.
_LINGER = 1.0


class RandomSource(Protocol):
    """Where the server's randomness comes from; tests inject a deterministic one."""

    def stateless_a(self) -> int:
        """A uniform integer in 1..255."""
        ...

    def session_seed(self) -> int:
        """A uniform 64-bit seed."""
        ...


class SystemRandomSource:
    """Cryptographically secure: seeds must not be guessable or shared by two sessions."""

    def stateless_a(self) -> int:
        return 1 + secrets.randbelow(255)

    def session_seed(self) -> int:
        return secrets.randbits(64)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    port: int = 0
    host: str = "127.0.0.1"
    interval: float = 1.0
    session_ttl: float = 30.0
    handshake_timeout: float = 5.0
    max_connections: int = 1024
    lease_refresh: float = 1.0
    modes: frozenset[Mode] = frozenset(Mode)

    @property
    def interval_ms(self) -> int:
        """As announced in WELCOME and used for pacing: exact decimal, ties up (spec §13.1)."""
        return seconds_to_ms(self.interval)

    @property
    def ttl_ms(self) -> int:
        return seconds_to_ms(self.session_ttl)

    @property
    def lease_ms(self) -> int:
        """A lease outlives one missed refresh, so a crash never shortens the TTL window."""
        return self.ttl_ms + round(self.lease_refresh * 1000)


@dataclass(slots=True)
class ServerStats:
    """Live counters, read by the harness dashboard, by tests and by the scale benchmark."""

    connections_active: int = 0
    connections_total: int = 0
    streams_completed: int = 0
    errors_sent: dict[str, int] = field(default_factory=dict)
    #: Streams that ended without FINAL because the peer stopped acknowledging (spec §16.6).
    final_ack_timeouts: int = 0
    #: Cyclic garbage collections while serving, and their pauses in milliseconds.
    gc_collections: int = 0
    gc_pause_total_ms: float = 0.0
    gc_pause_max_ms: float = 0.0


class _Halted(Exception):
    """The stream ended while its task was writing; raised between writes (``_Writer.halt``)."""


class _Rejected(Exception):
    """Ends a connection with an ERROR frame; raised where the reason becomes known."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _End(enum.Enum):
    """How the streaming phase of a connection ended (or that it has not)."""

    RUNNING = enum.auto()
    DONE = enum.auto()  # FINAL written: complete the session
    BLOCKED = enum.auto()  # the kernel took only part of a paced write: finish in the task
    GONE = enum.auto()  # the client left, or a write failed
    STALLED = enum.auto()  # no progress writing, or FINAL never acknowledged
    LOST = enum.auto()  # the lease was lost to a newer connection or to expiry
    REJECTED = enum.auto()  # the client broke the protocol (``rejection`` says how)


#: Reasons that cut a write in progress: nobody reads what it would write, or it is stuck.
_CUTTING = frozenset({_End.GONE, _End.STALLED})


class _Lease:
    """A stateful connection's hold on its session, from claim or open to release or complete."""

    __slots__ = ("client_id", "handed_over", "held", "owner", "record", "run")

    def __init__(self, client_id: str, owner: str, record: SessionRecord) -> None:
        self.client_id = client_id
        self.owner = owner
        self.record = record
        #: False once completed, released or lost: then it is not ours to release.
        self.held = True
        #: The stream left the connection's task for the wheel: ``_finish`` releases it.
        self.handed_over = False
        self.run: _Run | None = None

    def lost(self) -> None:
        self.held = False
        if self.run is not None:
            self.run.end(_End.LOST)


class _Run:
    """One connection's stream: what is due next, and how to wake whoever finishes it.

    The same object is the timer wheel's entry while the wheel paces it (``on_due``; the
    connection then has no task, and ``on_ended`` hands it back to the server) and the state of
    the connection's own task otherwise (``scope`` wakes that task); whoever learns that the
    stream must end (the wheel, the client watch, the lease keeper, the write watchdog, the
    client watcher) calls ``end``.
    """

    __slots__ = (
        "a",
        "checksum",
        "conn",
        "due_tick",
        "end_reason",
        "fd",
        "frames",
        "index",
        "interval",
        "last",
        "lease",
        "leftover",
        "on_ended",
        "rejection",
        "scope",
        "seed",
        "start",
        "t0",
        "trace",
        "waiting_queued",
        "waiting_since",
        "writer",
    )

    def __init__(
        self,
        conn: ServerConnection,
        writer: _Writer,
        hello: Hello,
        *,
        a: int,
        lease: _Lease | None,
        interval: float,
        trace: ConnectionTrace,
    ) -> None:
        self.conn = conn
        self.writer = writer
        self.trace = trace
        self.fd = socket_fd(writer.stream)
        self.a = a
        self.lease = lease
        self.seed = lease.record.seed if lease is not None else 0
        self.start = hello.next_index
        self.index = hello.next_index  # the next index to write
        self.last = hello.n - 1
        self.interval = interval
        self.checksum: Checksum | None = None
        self.t0 = 0.0
        self.due_tick = 0
        #: While the connection's task streams: the scope ``end`` cancels to wake it.
        self.scope: anyio.CancelScope | None = None
        #: While the wheel paces the stream (no task): called once when it ends.
        self.on_ended: Callable[[_Run], None] | None = None
        self.end_reason = _End.RUNNING
        self.rejection: _Rejected | None = None
        self.leftover = b""
        #: The connection's trace when its number frames are logged (debug), else None.
        self.frames: ConnectionTrace | None = None
        self.waiting_since = -1.0
        self.waiting_queued = -1

    def end(self, reason: _End) -> None:
        """Stop the stream (first reason wins): hand it back to the server if the wheel paced
        it, or wake the connection's task.

        A write in progress is cut (the task's scope cancelled) only when nothing more is to
        be written anyway: the client left, or the write makes no progress. Otherwise the write
        finishes and the next one does not start (``_Writer.halt``), so that the ERROR frame
        saying why the stream ended (SESSION_SUPERSEDED, UNEXPECTED_FRAME) is not lost behind
        a write that a cancellation may have torn (spec §14.2): under load the lease keeper's
        news often arrives while the task is inside a write's first checkpoint.
        """
        if self.end_reason is not _End.RUNNING:
            if reason in _CUTTING and self.scope is not None:
                self.scope.cancel()  # a write left to finish is stuck, or the client left
            return
        self.end_reason = reason
        if self.on_ended is not None:
            on_ended, self.on_ended = self.on_ended, None
            on_ended(self)
        elif self.scope is not None:
            if reason not in _CUTTING:
                self.writer.halt()
            if reason in _CUTTING or self.writer.blocked_since is None:
                self.scope.cancel()

    def value(self, index: int) -> int:
        if self.lease is None:
            return self.a << index
        return stateful_value(self.seed, index)

    def final_frame(self) -> bytes:
        value = self.value(self.last)
        digest = None
        if self.checksum is not None:
            self.checksum.update(value)
            digest = self.checksum.digest()
        if self.frames is not None:
            self.frames.final(self.last, digest)
        return self.conn.send(Number(index=self.last, value=value, final=True, checksum=digest))

    def acknowledged(self, now: float) -> bool | None:
        """Has the peer acknowledged every byte written? None: not yet but still progressing;
        False: no progress for _FINAL_ACK_TIMEOUT (the peer is stalled)."""
        queued = self.writer.buffered()
        if self.fd is not None:
            queued += unacked_bytes(self.fd)
        if queued == 0:
            return True
        if queued != self.waiting_queued:  # progress (or the first look)
            self.waiting_queued = queued
            self.waiting_since = now
        elif now - self.waiting_since > _FINAL_ACK_TIMEOUT:
            return False
        return None

    # --- driven by the timer wheel -------------------------------------------------------------

    def on_due(self, now: float) -> float | None:  # noqa: C901 (the wheel's per-number write: re-anchoring, FINAL's ack wait, frame log and torn writes kept inline, no call per number)
        """Write the number due now (never a burst: a stream an interval behind re-anchors)."""
        if self.end_reason is not _End.RUNNING:
            return None
        interval = self.interval
        index = self.index
        j = index - self.start
        if now - (self.t0 + j * interval) > interval:
            self.t0 = now - j * interval
        try:
            if index == self.last:
                acked = self.acknowledged(now)
                if acked is None:
                    return now  # look again next tick
                if acked is False:
                    self.end(_End.STALLED)
                    return None
                data = self.final_frame()
            else:
                value = self.value(index)
                if self.checksum is not None:
                    self.checksum.update(value)
                data = self.conn.send_data(value)
                if self.frames is not None:
                    self.frames.data(index, value)
            assert self.fd is not None  # the wheel only drives TCP sockets
            written = write_now(self.fd, data)
        except OSError:
            self.end(_End.GONE)
            return None
        self.index = index + 1
        if written < len(data):
            self.leftover = data[written:]
            self.writer.torn = True
            self.end(_End.BLOCKED)
            return None
        if index == self.last:
            self.end(_End.DONE)
            return None
        return self.t0 + (j + 1) * interval


class _GcMonitor:
    """Times every cyclic collection (``gc.callbacks``) into the server's stats."""

    def __init__(self, stats: ServerStats) -> None:
        self._stats = stats
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = (time.perf_counter() - self._started) * 1000
        stats = self._stats
        stats.gc_collections += 1
        stats.gc_pause_total_ms += pause
        stats.gc_pause_max_ms = max(stats.gc_pause_max_ms, pause)

    def __enter__(self) -> _GcMonitor:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self)


class NumberServer:
    """Serves both protocol variants; ``handle`` accepts any ByteStream, so tests can inject one.

    ``serve`` also runs the server-wide services: the timer wheel that paces slow streams, the
    lease keeper (one batched refresh per period for every session held) and the write-stall
    watchdog. A connection handed to ``handle`` without ``serve`` running paces itself.
    """

    def __init__(
        self,
        config: ServerConfig,
        store: SessionStore,
        *,
        random_source: RandomSource | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.stats = ServerStats()
        self._random = random_source or SystemRandomSource()
        self._instance = instance_id or secrets.token_hex(6)
        self._connection_ids = itertools.count(1)
        self._connlog = ConnectionLog(log)
        self._activity: anyio.Event | None = None
        self._wheel = TimerWheel(on_tick=self._hear_clients)
        #: The clients of the streams on the wheel (which have no task), while ``serve`` runs.
        self._watch: ClientWatch[_Run] | None = None
        #: Where ``serve`` runs connections (and finishes those the wheel hands back).
        self._tg: anyio.abc.TaskGroup | None = None
        #: Sessions held by this server's connections, by connection (owner).
        self._leases: dict[str, _Lease] = {}
        #: Streams writing from their own task, for the stall watchdog.
        self._self_paced: set[_Run] = set()

    def _notify_activity(self) -> None:
        if self._activity is not None:
            self._activity.set()
            self._activity = None

    async def wait_active(self, count: int) -> None:
        """Return once exactly ``count`` connections are open: lets tests wait for an event."""
        while self.stats.connections_active != count:
            if self._activity is None:
                self._activity = anyio.Event()
            await self._activity.wait()

    # --- accepting ------------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; reports the bound port through ``task_status``."""
        multi = await anyio.create_tcp_listener(
            local_host=self.config.host, local_port=self.config.port
        )
        try:
            port = int(multi.extra(anyio.abc.SocketAttribute.local_port))
            log.info("listening on %s:%d", self.config.host, port)
            with _GcMonitor(self.stats):
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    if ClientWatch.available:
                        self._watch = ClientWatch()
                        tg.start_soon(self._wheel.run)
                        tg.start_soon(self._finish_handed_over_at_shutdown)
                    tg.start_soon(self._keep_leases)
                    tg.start_soon(self._watch_writes)
                    for listener in multi.listeners:
                        tg.start_soon(self._accept, listener, tg)
                    task_status.started(port)
                    await anyio.sleep_forever()
        finally:
            self._tg = None
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            with anyio.CancelScope(shield=True):
                await multi.aclose()

    async def _accept(
        self, listener: anyio.abc.Listener[anyio.abc.SocketStream], tg: anyio.abc.TaskGroup
    ) -> None:
        assert isinstance(listener, anyio.abc.SocketListener)  # typed loosely by MultiListener
        await accept_forever(
            listener.accept, lambda stream: tg.start_soon(self.handle, stream), log=log
        )

    # --- one connection -------------------------------------------------------------------------

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        """Run one connection to its end; never raises for anything the peer does.

        A stream the timer wheel paces leaves this task once WELCOME and its first number are
        written: the task returns with the connection open, the wheel writes the numbers, the
        client watch listens to the client, and ``_finish`` ends the connection in a task of
        its own. A task per slow stream would cost more memory than everything else it holds.
        """
        conn_id = f"{self._instance}-{next(self._connection_ids)}"
        self.stats.connections_total += 1
        self.stats.connections_active += 1
        self._notify_activity()
        trace = self._connlog.open(conn_id, stream)
        conn = ServerConnection()
        writer = _Writer(stream)
        handed_over = False
        try:
            async with self._answering(writer, conn, trace):
                if self.stats.connections_active > self.config.max_connections:
                    raise _Rejected(ErrorCode.SERVER_BUSY, "connection limit reached; retry later")
                hello = await self._receive_hello(stream, conn)
                if hello is None:
                    trace.no_hello()
                    return
                trace.hello(hello)
                self._check_mode(hello)
                async with self._leased(hello, conn_id) as lease:
                    run, welcome = await self._start_run(writer, conn, hello, lease, trace)
                    handed_over = self._hand_to_wheel(run, welcome)
                    if not handed_over:
                        await self._drive(run, b"" if run.leftover else welcome)
        finally:
            if not handed_over:
                await self._close(stream, trace)

    async def _finish(self, run: _Run) -> None:
        """End a connection the wheel handed back (see ``handle``): finish writing if its
        client fell behind, then complete or release its session, and close it."""
        writer = run.writer
        try:
            async with self._answering(writer, run.conn, run.trace):
                try:
                    # Started as the server stops: cancelled here, so SHUTTING_DOWN is sent.
                    await anyio.lowlevel.checkpoint()
                    await self._drive(run, b"")
                finally:
                    if run.lease is not None:
                        await self._release(run.lease)
        finally:
            await self._close(writer.stream, run.trace)

    @contextlib.asynccontextmanager
    async def _answering(
        self, writer: _Writer, conn: ServerConnection, trace: ConnectionTrace
    ) -> AsyncIterator[None]:
        """Tell the client why its connection ends early: an ERROR frame with its code."""
        try:
            yield
        except (_Rejected, RemoteProtocolError) as refusal:
            code = refusal.code if isinstance(refusal, _Rejected) else refusal.error_code
            trace.refused(code, str(refusal))
            await self._send_error(writer, conn, code, str(refusal))
        except anyio.get_cancelled_exc_class():
            # Only ``serve`` cancels a connection, and only to stop: say so, whatever phase this
            # connection is in (no shared flag: trio may run this before ``serve`` could set it).
            trace.refused(ErrorCode.SHUTTING_DOWN, "server shutting down")
            with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                await self._send_error(
                    writer, conn, ErrorCode.SHUTTING_DOWN, "server shutting down"
                )
            raise
        except Exception:
            log.exception("[%s] internal error", trace.conn_id)
            trace.refused(ErrorCode.INTERNAL_ERROR, "internal error")
            await self._send_error(writer, conn, ErrorCode.INTERNAL_ERROR, "internal error")

    async def _close(self, stream: anyio.abc.ByteStream, trace: ConnectionTrace) -> None:
        trace.close()
        with anyio.CancelScope(shield=True):
            await stream.aclose()  # its own scope: a slow store must not skip it
        _break_transport_cycle(stream)
        self.stats.connections_active -= 1
        self._notify_activity()

    async def _receive_hello(
        self, stream: anyio.abc.ByteStream, conn: ServerConnection
    ) -> Hello | None:
        """The client's HELLO, or None if it left first; HANDSHAKE_TIMEOUT if it dawdles."""
        with anyio.move_on_after(self.config.handshake_timeout):
            while True:
                event = conn.next_event()
                if isinstance(event, Hello):
                    # Bytes in the same read as the HELLO, or read after it but not yet received.
                    if conn.trailing_data or _stop_reading(stream):
                        raise _Rejected(
                            ErrorCode.UNEXPECTED_FRAME, "a client sends nothing after its HELLO"
                        )
                    return event
                if isinstance(event, ConnectionClosed):
                    return None
                assert event is NEED_DATA  # the table lets a server receive nothing else here
                conn.receive_data(await _receive_or_eof(stream))
        raise _Rejected(
            ErrorCode.HANDSHAKE_TIMEOUT,
            f"no HELLO within {self.config.handshake_timeout:g} s",
        )

    def _check_mode(self, hello: Hello) -> None:
        if hello.mode not in self.config.modes:
            raise _Rejected(
                ErrorCode.UNSUPPORTED_MODE, f"this server does not serve {hello.mode.name} mode"
            )

    # --- the session lease ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _leased(self, hello: Hello, owner: str) -> AsyncIterator[_Lease | None]:
        """Hold the HELLO's session for the body: claimed (resume) or opened (new) on entry,
        refreshed by the server's lease keeper meanwhile, released on exit unless completed
        or lost. None for a stateless HELLO. Raises _Rejected when no session can be held."""
        if hello.mode is Mode.STATELESS:
            yield None
            return
        lease = _Lease(hello.client_id, owner, await self._claim_or_open(hello, owner))
        self._leases[owner] = lease
        try:
            if lease.record.n != hello.n:
                raise _Rejected(
                    ErrorCode.SESSION_MISMATCH,
                    f"session {hello.client_id} has n={lease.record.n}, HELLO says n={hello.n}",
                )
            yield lease
        finally:
            if not lease.handed_over:
                await self._release(lease)

    async def _release(self, lease: _Lease) -> None:
        """Let the session's TTL start, unless it was completed or taken over."""
        self._leases.pop(lease.owner, None)
        if lease.held:
            lease.held = False
            with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                try:
                    await self.store.release(lease.client_id, lease.owner, self.config.ttl_ms)
                except StoreError as exc:
                    log.warning("could not release session %s: %s", lease.client_id, exc)

    async def _claim_or_open(self, hello: Hello, owner: str) -> SessionRecord:
        cfg = self.config
        try:
            existing = await self.store.get(hello.client_id)
            if existing is not None and existing.n != hello.n:
                raise _Rejected(  # checked before claiming, so a bad HELLO cannot steal a session
                    ErrorCode.SESSION_MISMATCH,
                    f"session {hello.client_id} has n={existing.n}, HELLO says n={hello.n}",
                )
            if hello.resume:
                record = await self.store.claim(hello.client_id, owner, cfg.lease_ms)
                if record is None:
                    raise _Rejected(
                        ErrorCode.SESSION_UNKNOWN,
                        f"no session for {hello.client_id}: expired, completed or never created",
                    )
                return record
            fresh = SessionRecord(seed=self._random.session_seed(), n=hello.n)
            record, _ = await self.store.open_session(hello.client_id, fresh, owner, cfg.lease_ms)
        except StoreError as exc:
            log.warning("session store unavailable: %s", exc)
            raise _Rejected(ErrorCode.STORE_UNAVAILABLE, "session store unavailable") from exc
        return record

    async def _complete(self, lease: _Lease) -> None:
        """Discard the session: its FINAL frame has been written (spec §16.6)."""
        lease.held = False
        self._leases.pop(lease.owner, None)
        with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
            try:
                await self.store.complete(lease.client_id, lease.owner)
            except StoreError as exc:
                log.warning("could not delete completed session %s: %s", lease.client_id, exc)

    async def _keep_leases(self) -> None:
        """Refresh every lease this server holds in one batch per period (``refresh_many``),
        on a fixed schedule t0 + k·period so each lease is refreshed once per period."""
        cfg = self.config
        next_round = anyio.current_time()
        while True:
            next_round += cfg.lease_refresh
            await anyio.sleep_until(next_round)
            leases = [lease for lease in self._leases.values() if lease.held]
            if not leases:
                continue
            batch = [Lease(lease.client_id, lease.owner) for lease in leases]
            try:
                held = await self.store.refresh_many(batch, cfg.lease_ms)
            except StoreError as exc:
                log.warning("lease refresh of %d sessions failed, will retry: %s", len(leases), exc)
                continue
            for lease, still_held in zip(leases, held, strict=True):
                if not still_held and lease.held:
                    lease.lost()
            now = anyio.current_time()
            if now > next_round + cfg.lease_refresh:
                next_round = now  # the store was slower than a period: do not fire a backlog

    async def _lease_lost(self, lease: _Lease) -> _Rejected:
        """Taken over by a newer connection, or expired while the store was out of reach."""
        try:
            taken_over = await self.store.get(lease.client_id) is not None
        except StoreError:
            taken_over = False
        if taken_over:
            return _Rejected(
                ErrorCode.SESSION_SUPERSEDED, "a newer connection took over this session"
            )
        return _Rejected(  # retryable: the client's resume will learn the session's fate
            ErrorCode.STORE_UNAVAILABLE, "session lease lost while the store was unreachable"
        )

    # --- streaming ------------------------------------------------------------------------------

    async def _start_run(
        self,
        writer: _Writer,
        conn: ServerConnection,
        hello: Hello,
        lease: _Lease | None,
        trace: ConnectionTrace,
    ) -> tuple[_Run, bytes]:
        """The stream's state and its WELCOME frame (not yet written); raises _Rejected if the
        lease was lost meanwhile."""
        cfg = self.config
        if hello.mode is Mode.STATELESS:
            a = hello.a if hello.resume else self._random.stateless_a()
        else:
            a = 0
        # Paced by the announced interval_ms, never by a finer configured value (spec §13.1).
        run = _Run(
            conn, writer, hello, a=a, lease=lease, interval=cfg.interval_ms / 1000, trace=trace
        )
        welcome = Welcome(
            mode=hello.mode,
            n=hello.n,
            next_index=run.start,
            interval_ms=cfg.interval_ms,
            a=a,
            session_ttl_ms=cfg.ttl_ms if lease is not None else 0,
        )
        if lease is not None:
            run.checksum = await _prefix_checksum(lease.record.seed, run.start)
            if not lease.held:
                raise await self._lease_lost(lease)
            lease.run = run
        limit_send_buffer(writer.stream, _SEND_BUFFER)
        run.frames = trace.frames()
        if run.frames is not None:
            run.frames.welcome(welcome)
        data = conn.send(welcome)
        run.t0 = anyio.current_time()
        return run, data

    def _hand_to_wheel(self, run: _Run, welcome: bytes) -> bool:
        """Write WELCOME and the first number (due now) without waiting, and hand the stream to
        the wheel and the client watch: True. False where the stream is to be written from the
        connection's task (fast or not a TCP socket, its FINAL due first, no wheel running),
        or when the kernel did not take it all (``run.leftover`` then holds the rest) or the
        client is gone (``run.end_reason`` says so)."""
        watch = self._watch
        if (
            watch is None
            or run.fd is None
            or not self._wheel.running
            or run.interval < _WHEEL_MIN_INTERVAL
            or run.start >= run.last  # FINAL first: it waits for an ack, better done in the task
            or run.writer.buffered()
        ):
            return False
        try:
            written = write_now(run.fd, welcome)
        except OSError:
            run.end_reason = _End.GONE
            return False
        if written < len(welcome):
            run.leftover = welcome[written:]
            run.writer.torn = True
            run.end_reason = _End.BLOCKED
            return False
        deadline = run.on_due(run.t0)
        if deadline is None:  # the client is gone, or fell behind at once
            return False
        try:
            watch.add(run.fd, run)
        except OSError:
            run.end_reason = _End.GONE
            return False
        if run.lease is not None:
            run.lease.handed_over = True
        run.on_ended = self._ended
        self._wheel.add(run, deadline)
        return True

    def _hear_clients(self) -> None:
        """Once per wheel tick: end the streams whose client sent a byte or left."""
        if self._watch is None:
            return
        for run, sent in self._watch.poll():
            if sent:
                run.rejection = _Rejected(
                    ErrorCode.UNEXPECTED_FRAME, "a client sends nothing after its HELLO"
                )
                run.end(_End.REJECTED)
            else:
                run.end(_End.GONE)

    def _ended(self, run: _Run) -> None:
        """A stream on the wheel has ended: finish its connection in a task of its own."""
        if self._watch is not None and run.fd is not None:
            self._watch.discard(run.fd)
        assert self._tg is not None  # the wheel runs only inside ``serve``
        self._tg.start_soon(self._finish, run)

    async def _finish_handed_over_at_shutdown(self) -> None:
        """When ``serve`` stops, the streams still on the wheel end like every connection:
        their ``_finish`` starts cancelled and says SHUTTING_DOWN."""
        try:
            await anyio.sleep_forever()
        finally:
            if self._watch is not None:
                for run in self._watch.entries():
                    self._ended(run)

    async def _drive(self, run: _Run, first: bytes) -> None:
        """From the connection's task: write the rest of the stream (after ``first``) unless it
        has ended, then complete its session; raises _Rejected for why it ended early."""
        lease = run.lease
        try:
            if run.end_reason in (_End.RUNNING, _End.BLOCKED):
                run.end_reason = _End.RUNNING
                await self._run_in_task(run, first)
            if run.end_reason is _End.DONE:
                if lease is not None:
                    await self._complete(lease)
                self.stats.streams_completed += 1
                run.trace.completed()
            elif run.end_reason is _End.LOST:
                assert lease is not None
                raise await self._lease_lost(lease)
            elif run.end_reason is _End.REJECTED:
                rejection, run.rejection = run.rejection, None  # no traceback cycle via ``run``
                assert rejection is not None
                raise rejection
            elif run.end_reason is _End.STALLED and run.index == run.last:
                self.stats.final_ack_timeouts += 1
        finally:
            run.scope = None
            if lease is not None:
                lease.run = None  # no cycle left for the collector to find

    async def _run_in_task(self, run: _Run, first: bytes) -> None:
        """Write the rest of the stream from this task (fast streams, or a paced stream whose
        client fell behind), while a second task watches the client."""
        self._self_paced.add(run)
        run.scope = scope = anyio.CancelScope()
        try:
            with scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_client, run)
                    try:
                        await self._write_rest(run, first)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        run.end(_End.GONE)
                    except _Halted:
                        pass  # ended while writing: ``run.end_reason`` says why
                    tg.cancel_scope.cancel()
        finally:
            self._self_paced.discard(run)

    async def _write_rest(self, run: _Run, first: bytes) -> None:  # noqa: C901 (the hot write loop: pacing, batching and re-anchoring kept inline on purpose (no call per number))
        """Absolute deadlines t0 + j·interval; whatever is due at once goes in one write."""
        writer = run.writer
        conn = run.conn
        interval = run.interval
        checksum = run.checksum
        frames = run.frames
        if run.leftover:
            await writer.send(run.leftover)
            run.leftover = b""
        pending = [first] if first else []
        pending_bytes = len(first)
        for index in range(run.index, run.last):
            if interval > 0:
                j = index - run.start
                deadline = run.t0 + j * interval
                now = anyio.current_time()
                if deadline > now:
                    if pending:
                        await writer.send(b"".join(pending))
                        pending, pending_bytes = [], 0
                    await anyio.sleep_until(deadline)
                elif now - deadline > interval:
                    run.t0 = now - j * interval  # a whole interval behind: re-anchor, never burst
            value = run.value(index)
            if checksum is not None:
                checksum.update(value)
            frame = conn.send_data(value)
            if frames is not None:
                frames.data(index, value)
            pending.append(frame)
            pending_bytes += len(frame)
            if pending_bytes >= _BATCH_BYTES:
                await writer.send(b"".join(pending))
                pending, pending_bytes = [], 0
            run.index = index + 1
        if interval > 0:
            deadline = run.t0 + (run.last - run.start) * interval
            if pending:
                await writer.send(b"".join(pending))
                pending = []
            await anyio.sleep_until(deadline)
        if pending:
            await writer.send(b"".join(pending))
        if not await self._acknowledged(run):
            run.end(_End.STALLED)
            return
        await writer.send(run.final_frame(), last=True)
        run.index = run.last + 1
        run.end(_End.DONE)
        # FINAL is written (§16.6: its write returned success), so the session is completed
        # even if the client left or the lease was lost while that write was going on.
        run.end_reason = _End.DONE

    async def _acknowledged(self, run: _Run) -> bool:
        """Wait until the peer's TCP has acknowledged every byte written so far (spec §16.6);
        False if its acknowledgements make no progress for _FINAL_ACK_TIMEOUT."""
        if run.fd is None:
            return True
        delay = 0.0  # a first look at once: on a short path the ack is often already in
        while True:
            await anyio.sleep(delay)  # lets a buffering transport hand its bytes to the kernel
            acked = run.acknowledged(anyio.current_time())
            if acked is not None:
                return acked
            delay = min(max(delay * 2, 0.00025), 0.05)

    async def _watch_client(self, run: _Run) -> None:
        """A client sends nothing after HELLO: EOF means it left, any byte is a violation.

        The violation is reported on the first byte, without waiting for a whole frame, because
        no frame from a client is acceptable here whatever it turns out to be. The connection
        object is left alone: the writer owns it.
        """
        if await _receive_or_eof(run.writer.stream):
            run.rejection = _Rejected(
                ErrorCode.UNEXPECTED_FRAME, "a client sends nothing after its HELLO"
            )
            run.end(_End.REJECTED)
        else:
            run.end(_End.GONE)

    async def _watch_writes(self) -> None:
        """The write-stall watchdog: a self-paced stream whose write has made no progress for
        _WRITE_STALL_TIMEOUT is ended, which releases its session."""
        period = _WRITE_STALL_TIMEOUT / 10
        while True:
            await anyio.sleep(period)
            now = anyio.current_time()
            for run in list(self._self_paced):
                since = run.writer.blocked_since
                if since is not None and now - since > _WRITE_STALL_TIMEOUT:
                    run.trace.write_stalled(_WRITE_STALL_TIMEOUT)
                    run.end(_End.STALLED)

    async def _send_error(
        self, writer: _Writer, conn: ServerConnection, code: ErrorCode, message: str
    ) -> None:
        """Best effort: the peer may already be gone, which is fine."""
        if writer.torn:
            return  # bytes behind a half-written frame would corrupt it, not explain anything
        self.stats.errors_sent[code.name] = self.stats.errors_sent.get(code.name, 0) + 1
        stream = writer.stream
        try:
            text = message.encode("utf-8")[:1024].decode("utf-8", errors="ignore")  # bytes cap
            data = conn.send(Error(code=code, message=text))
        except LocalProtocolError:
            return  # already closed or errored: nothing may be sent
        try:
            with anyio.move_on_after(_CLEANUP_TIMEOUT):
                await stream.send(data)
                await stream.send_eof()
            with anyio.move_on_after(_LINGER):
                while await _receive_or_eof(stream):
                    pass
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


class _Writer:
    """Writes whole batches of frames and remembers a write that did not finish.

    A cancelled write may have sent part of its bytes (trio's ``send_all`` can); after that the
    framing is torn, and an ERROR frame written behind it would be read as the rest of the
    broken frame. A torn connection is just closed. ``blocked_since`` is when the write in
    progress started (None between writes): the server's watchdog reads it, so no write needs
    a timer or a cancel scope of its own.
    """

    __slots__ = ("blocked_since", "halted", "stream", "torn")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.torn = False
        self.blocked_since: float | None = None
        self.halted = False

    def halt(self) -> None:
        """The stream has ended: the write in progress (if any) finishes, no other starts."""
        self.halted = True

    async def send(self, data: bytes, *, last: bool = False) -> None:
        """Write ``data`` whole; raises _Halted instead of starting once ``halt`` was called,
        and after finishing if it was called meanwhile (unless ``last``: nothing follows)."""
        self._stop_if_halted()
        self.torn = True
        self.blocked_since = anyio.current_time()
        try:
            await self.stream.send(data)
        except BaseException:
            # asyncio's transport takes a write whole, in one call, and anyio then waits for
            # its buffer to drain: a cancelled send either wrote nothing (cancelled before that
            # call) or left bytes in that buffer. Only the latter is cut short (spec §14.2: a
            # user-space buffer counts as written once handed to the kernel in full); without
            # this, a violation that cancels the write found every asyncio stream torn and
            # closed it without the ERROR UNEXPECTED_FRAME of §5.5 (wirebreak W2). trio's
            # send_all may stop part-way through the kernel write: torn it stays.
            if self._transport_buffer() == 0:
                self.torn = False
            raise
        self.blocked_since = None
        self.torn = False
        if not last:
            self._stop_if_halted()

    def _stop_if_halted(self) -> None:
        if self.halted:
            raise _Halted

    def _transport_buffer(self) -> int | None:
        """Bytes in the asyncio transport's user-space buffer; None without such a transport."""
        transport = getattr(self.stream, "_transport", None)
        size = getattr(transport, "get_write_buffer_size", None)
        return int(size()) if size is not None else None

    def buffered(self) -> int:
        """Bytes the stream accepted but still holds in user space (asyncio's transport).

        anyio does not expose the transport, so this looks for it by name; a stream without
        one (trio, test doubles) buffers nothing in user space.
        """
        return self._transport_buffer() or 0


def _stop_reading(stream: anyio.abc.ByteStream) -> bool:
    """Make sure nothing reads the client's socket until this server asks (a ``receive``, or the
    client watch of a stream on the timer wheel); True if bytes were already read from it that
    no ``receive`` has returned yet.

    anyio's asyncio stream leaves its transport reading when the first bytes were in before the
    first ``receive`` (a HELLO already in the kernel when the connection is accepted: the usual
    case for a fast client). That transport then took whatever the client sent next, so the
    client watch of a wheel stream never saw the violation (spec §5.5) while the bytes piled up
    in memory without bound, and read a reset, upon which it closed the socket under the wheel:
    the wheel's next write went to whichever new connection got the descriptor number
    (wirebreak W1). trio reads only when asked: nothing to do.
    """
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    if transport is None or not hasattr(transport, "pause_reading"):
        return False
    transport.pause_reading()
    return bool(getattr(protocol, "read_queue", None))


def _break_transport_cycle(stream: anyio.abc.ByteStream) -> None:
    """Let a closed asyncio stream be freed by reference counting alone.

    CPython 3.11's selector transport keeps a bound method of itself (``_read_ready_cb``), so
    every closed connection left a cycle of about a dozen objects that only a full collection
    of the whole heap could free: at 10,000 sessions, a pause of a second. After ``aclose`` the
    transport reads nothing more, so the cycle can be cut. Nothing to do for other streams.
    """
    transport = getattr(stream, "_transport", None)
    if transport is not None and hasattr(transport, "_read_ready_cb"):
        transport._read_ready_cb = None


#: Resumes whose checksum prefix is longer than this many values compute it in a worker thread
#: (numpy and hashlib release the GIL), so a burst of late resumes does not hold up every stream.
_PREFIX_IN_THREAD = 4096


async def _prefix_checksum(seed: int, count: int) -> Checksum:
    """The checksum state after the first ``count`` values (spec §7.4), off the event loop
    when it is long."""
    if count <= _PREFIX_IN_THREAD:
        return stateful_prefix_checksum(seed, count)
    return await anyio.to_thread.run_sync(stateful_prefix_checksum, seed, count)


async def _receive_or_eof(stream: anyio.abc.ByteStream) -> bytes:
    """Bytes, or b"" for EOF and resets alike: to the protocol both end the connection."""
    try:
        return await stream.receive(_RECEIVE_SIZE)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        return b""
    except OSError:
        return b""


# --- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = SpecParser(
        prog=program_name("python -m reference.server"),
        description=(
            "Serve the resumable numeric-stream protocol (spec/PROTOCOL.md) on 127.0.0.1. "
            "One port serves both variants; the client's HELLO selects one."
        ),
        epilog="Exit status: 0 after a clean shutdown on SIGINT or SIGTERM, received at any "
        "moment (also while the store is still being opened); 1 if the port or the store "
        "cannot be opened; 2 for bad arguments, or --backend trio without trio installed.",
    )
    parser.add_argument("--port", type=listen_port, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--mode",
        choices=["both", "stateless", "stateful"],
        default="both",
        help="restrict the variants served (default: both)",
    )
    parser.add_argument(
        "--interval",
        type=interval_seconds,
        default=1.0,
        metavar="SECONDS",
        help="time between numbers, 0..86400 in whole ms (default 1.0; 0 streams as fast as "
        "the client reads)",
    )
    parser.add_argument(
        "--session-ttl",
        type=ttl_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long a disconnected stateful session is kept for a resume, 0..86400 "
        "(default 30; below 30 for tests only)",
    )
    parser.add_argument(
        "--store",
        default="memory://",
        metavar="URL",
        help="session store: memory:// (default) or redis://HOST:PORT/DB[?prefix=P] to share "
        "sessions between server instances (key prefix P, default nsp:v1:)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="how long a new connection may take to send its HELLO (default 5)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=1024,
        metavar="N",
        help="concurrent connections served; beyond this, SERVER_BUSY (default 1024)",
    )
    add_common_arguments(parser, log_format=True)
    add_version(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    modes = frozenset(Mode) if args.mode == "both" else frozenset({Mode[args.mode.upper()]})
    return ServerConfig(
        port=args.port,
        interval=args.interval,
        session_ttl=args.session_ttl,
        handshake_timeout=args.handshake_timeout,
        max_connections=args.max_connections,
        modes=modes,
    )


async def _run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the signals are handled from the first moment to the last.

    The signal receiver is open before the store is, so a signal while a frozen Redis keeps
    ``open_store`` waiting cancels the open (clean exit 0), and stays open through the shutdown,
    so a second signal cannot cut short the SHUTTING_DOWN frames and session releases.
    """
    status = 0
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, signals, tg.cancel_scope)
            status = await _open_and_serve(args)
            tg.cancel_scope.cancel()  # the store or the port could not be opened
    return status


async def _stop_on_signal(signals: AsyncIterator[int], scope: anyio.CancelScope) -> None:
    async for signum in signals:
        log.info("%s: shutting down", signal.Signals(signum).name)
        scope.cancel()
        break
    async for signum in signals:  # until the task group is done: shutdown is bounded anyway
        log.info("%s: already shutting down", signal.Signals(signum).name)


#: Open files the server needs besides one per connection (listeners, event loop, epoll set,
#: store connections, log, worker threads...).
_SPARE_DESCRIPTORS = 64


def _fit_descriptor_limit(max_connections: int) -> None:
    """Let the process hold ``max_connections`` connections: raise its soft open-file limit
    as far as the hard limit allows, and warn (saying what to do) when even that is short.

    Without this a shell's usual soft limit of 1,024 made the default --max-connections 1024
    fail accepts (EMFILE) before the server ever said SERVER_BUSY.
    """
    want = max_connections + _SPARE_DESCRIPTORS
    soft = raise_open_file_limit(want)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if soft < want:
        log.warning(
            "--max-connections %d needs about %d open files but this process may open only "
            "%d (ulimit -n, hard limit %s): beyond about %d connections, accepts fail and new "
            "clients wait in the kernel's queue until others end; raise the hard limit "
            "(ulimit -Hn, as root) or lower --max-connections",
            max_connections,
            want,
            soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
            max(soft - _SPARE_DESCRIPTORS, 0),
        )


async def _open_and_serve(args: argparse.Namespace) -> int:
    """Serve until cancelled; 1 if the store or the port cannot be opened."""
    shown = redacted_url(args.store)
    log.info("opening session store %s", shown)
    try:
        store = await open_store(args.store)
    except (StoreError, ValueError) as exc:
        log.error("cannot open session store %s: %s", shown, exc)
        return 1
    server = NumberServer(config_from_args(args), store)
    _fit_descriptor_limit(args.max_connections)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(run_server_gc_policy)
            try:
                await tg.start(server.serve)
            except OSError as exc:
                log.error("cannot listen on 127.0.0.1:%d: %s", args.port, exc.strerror or exc)
                tg.cancel_scope.cancel()
                return 1
            await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
        stats = server.stats
        log.info(
            "gc: %d collections, %.0f ms in total, longest %.1f ms",
            stats.gc_collections,
            stats.gc_pause_total_ms,
            stats.gc_pause_max_ms,
        )
    raise AssertionError("unreachable")  # sleep_forever returns only by cancellation


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, log_format=args.log_format)
    return run_program(
        _run, args, prog="numstream-server", backend=args.backend, on_signal=lambda _: EXIT_OK
    )


if __name__ == "__main__":
    sys.exit(main())
