"""The proxy itself: accepts clients, relays bytes to round-robin upstreams, injects faults.

It knows nothing of the protocol it carries; faults are placed by byte offsets alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import math
import random
import socket
import struct
import termios
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from proxy.faults import (
    DEFAULT_SLICE_SIZE,
    ConnectionPlan,
    Direction,
    FaultConfig,
    FaultEvent,
    FaultKind,
    ScheduledFault,
    Trigger,
    plan_connection,
)

log = logging.getLogger(__name__)

NO_FAULTS = FaultConfig()
READ_AHEAD = (
    16  # chunks a direction may read ahead of its writer: hides latency, keeps backpressure
)
BANDWIDTH_QUANTUM = 0.1  # seconds of traffic per paced piece, so a big chunk is not one long burst
CONNECT_TIMEOUT = 5.0
ACCEPT_BACKOFF = 0.1
RESET_FLUSH_TIMEOUT = 1.0  # how long a RESET waits for forwarded bytes to leave the kernel
RESET_FLUSH_POLL = 0.005
RECENT_EVENTS = 1000

# Out of descriptors or buffers: accepting again at once would spin, so back off (as trio does).
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# The client gave up between SYN and accept: nothing to do but accept the next one.
_ABORTED_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO})
# A peer went away: the connection is over, not the proxy.
_BROKEN = (anyio.BrokenResourceError, OSError)


@dataclass(slots=True)
class ProxyCounters:
    """Live totals; `faults` counts fault events by kind (shaping faults once per connection)."""

    connections_total: int = 0
    connections_active: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0
    upstream_failures: int = 0
    faults: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable copy, safe to keep while the proxy keeps counting."""
        return dataclasses.asdict(self)


@dataclass(slots=True, eq=False)
class _Way:
    """One direction of one connection: how far it got and how it is shaped."""

    direction: Direction
    triggers: deque[Trigger]
    jitter: random.Random
    slice_size: int | None
    forwarded: int = 0
    next_send: float = -math.inf  # bandwidth pacing: when the next piece may go


@dataclass(slots=True, eq=False)
class _Connection:
    index: int
    upstream_name: str
    client: SocketStream
    upstream: SocketStream
    ways: dict[Direction, _Way]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    fault: FaultKind | None = None  # the terminal fault that ended the relay, if any


class ChaosProxy:
    """A TCP proxy whose faults are reproducible from a seed and exact to the byte."""

    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        *,
        config: FaultConfig = NO_FAULTS,
        schedule: Sequence[ScheduledFault] = (),
        seed: int = 0,
        event_log: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.counters = ProxyCounters()
        self._upstreams = tuple(upstreams)
        self._config = config
        self._schedule = tuple(schedule)
        self._seed = seed
        self._event_log = event_log
        self._clock = clock
        self._t0 = clock()
        self._refuse_until = -math.inf
        self._events: deque[FaultEvent] = deque(maxlen=RECENT_EVENTS)

    def recent_events(self, limit: int = 20) -> list[FaultEvent]:
        return list(self._events)[-limit:] if limit > 0 else []

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; reports the bound port so callers can bind port 0."""
        self._t0 = self._clock()
        listeners = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listeners, anyio.create_task_group() as tg:
            for listener in listeners.listeners:
                assert isinstance(listener, SocketListener)  # typed loosely by MultiListener
                tg.start_soon(self._accept_loop, listener, tg)
            task_status.started(listeners.extra(SocketAttribute.local_port))

    async def _accept_loop(self, listener: SocketListener, tg: TaskGroup) -> None:
        while True:
            try:
                client = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                code = (
                    exc.errno if isinstance(exc, OSError) else getattr(exc.__cause__, "errno", None)
                )
                if code in _ABORTED_ERRNOS:
                    continue
                if code not in _RESOURCE_ERRNOS:
                    raise
                log.warning("accept failed (%s); retrying in %.1fs", exc, ACCEPT_BACKOFF)
                await anyio.sleep(ACCEPT_BACKOFF)
                continue
            index = self.counters.connections_total
            self.counters.connections_total += 1
            plan = plan_connection(
                index, config=self._config, schedule=self._schedule, seed=self._seed
            )
            # Decided here, in accept order, so a refuse period covers the connections after it.
            now = self._clock()
            refused = plan.starts_refuse or now < self._refuse_until
            if plan.starts_refuse:
                self._refuse_until = max(self._refuse_until, now + self._config.refuse_duration)
            tg.start_soon(self._handle, client, index, plan, refused, name=f"connection {index}")

    async def _handle(
        self, client: SocketStream, index: int, plan: ConnectionPlan, refused: bool
    ) -> None:
        self.counters.connections_active += 1
        try:
            if refused:
                self._record(index, FaultKind.REFUSE, None, 0, 0, None)
                return
            connected = await self._connect(index)
            if connected is None:
                return
            upstream, name = connected
            try:
                await self._relay(self._connection(index, plan, name, client, upstream))
            finally:
                await _aclose(upstream)
        finally:
            await _aclose(client)
            self.counters.connections_active -= 1

    async def _connect(self, index: int) -> tuple[SocketStream, str] | None:
        """Round-robin by connection index, so each reconnect can land on another server."""
        count = len(self._upstreams)
        for attempt in range(count):
            host, port = self._upstreams[(index + attempt) % count]
            try:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    stream = await anyio.connect_tcp(host, port)
            except OSError as exc:
                self.counters.upstream_failures += 1
                log.warning(
                    "connection %d: upstream %s:%d failed: %s",
                    index,
                    host,
                    port,
                    exc.__cause__ or exc,
                )
                continue
            log.debug("connection %d: relaying to %s:%d", index, host, port)
            return stream, f"{host}:{port}"
        log.error("connection %d: no upstream accepted it; closing the client", index)
        return None

    def _connection(
        self,
        index: int,
        plan: ConnectionPlan,
        name: str,
        client: SocketStream,
        upstream: SocketStream,
    ) -> _Connection:
        ways = {
            direction: _Way(
                direction=direction,
                triggers=deque(t for t in plan.triggers if t.direction is direction),
                jitter=random.Random(f"{self._seed}:{index}:{direction}"),
                slice_size=self._config.slice_size if direction is Direction.DOWNSTREAM else None,
            )
            for direction in Direction
        }
        return _Connection(index, name, client, upstream, ways)

    async def _relay(self, conn: _Connection) -> None:
        config = self._config
        if config.latency or config.jitter:
            self._fault(conn, FaultKind.LATENCY, None)
        if config.bandwidth is not None:
            self._fault(conn, FaultKind.BANDWIDTH, None)
        if config.slice_size is not None:
            self._fault(conn, FaultKind.SLICE, Direction.DOWNSTREAM)
        with conn.scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, conn, Direction.UPSTREAM, conn.client, conn.upstream)
                tg.start_soon(self._pump, conn, Direction.DOWNSTREAM, conn.upstream, conn.client)
        match conn.fault:
            case FaultKind.DROP | FaultKind.LIMIT_DATA:
                for stream in (conn.client, conn.upstream):
                    with contextlib.suppress(*_BROKEN):
                        await stream.send_eof()
            case FaultKind.RESET:
                await _flush(conn.client, conn.upstream)
                for stream in (conn.client, conn.upstream):
                    with contextlib.suppress(OSError):
                        _raw_socket(stream).setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
            case FaultKind.BLACKHOLE:
                # Like a partition: the server's FIN is swallowed too, so only the client giving
                # up (its silence detection) ends the connection.
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_discard_until_closed, conn.upstream, None)
                    tg.start_soon(_discard_until_closed, conn.client, tg.cancel_scope)

    async def _pump(
        self, conn: _Connection, direction: Direction, source: SocketStream, sink: SocketStream
    ) -> None:
        """A reader and a writer per direction, so latency is added from each chunk's arrival."""
        chunks, pending = anyio.create_memory_object_stream[tuple[float, bytes]](READ_AHEAD)
        with chunks, pending:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read, conn, source, chunks)
                await self._write(conn, conn.ways[direction], pending, sink)

    async def _write(
        self,
        conn: _Connection,
        way: _Way,
        pending: MemoryObjectReceiveStream[tuple[float, bytes]],
        sink: SocketStream,
    ) -> None:
        try:
            if not self._fire_due(conn, way):
                return
            async for arrived, data in pending:
                if self._config.latency or self._config.jitter:
                    await anyio.sleep_until(arrived + self._delay(way))
                if not await self._forward(conn, way, data, sink):
                    return
            await sink.send_eof()
        except _BROKEN:
            conn.scope.cancel()

    def _delay(self, way: _Way) -> float:
        config = self._config
        return max(0.0, config.latency + way.jitter.uniform(-config.jitter, config.jitter))

    async def _forward(self, conn: _Connection, way: _Way, data: bytes, sink: SocketStream) -> bool:
        """Send `data` in pieces cut at fault offsets; False once a terminal fault has fired."""
        bandwidth = self._config.bandwidth
        view = memoryview(data)
        while view:
            size = len(view)
            if way.triggers:
                size = min(size, way.triggers[0].offset - way.forwarded)
            if way.slice_size is not None:
                size = min(size, way.slice_size)
            if bandwidth is not None:
                size = min(size, max(1, int(bandwidth * BANDWIDTH_QUANTUM)))
                start = max(anyio.current_time(), way.next_send)
                way.next_send = start + size / bandwidth
                await anyio.sleep_until(start)
            await sink.send(bytes(view[:size]))
            view = view[size:]
            way.forwarded += size
            if way.direction is Direction.UPSTREAM:
                self.counters.bytes_upstream += size
            else:
                self.counters.bytes_downstream += size
            if not self._fire_due(conn, way):
                return False
            if view and way.slice_size is not None and self._config.slice_delay:
                await anyio.sleep(self._config.slice_delay)
        return True

    def _fire_due(self, conn: _Connection, way: _Way) -> bool:
        """Fire the triggers this offset has reached; False if the connection is to end."""
        while conn.fault is None and way.triggers and way.triggers[0].offset <= way.forwarded:
            kind = way.triggers.popleft().kind
            self._fault(conn, kind, way.direction)
            if kind is FaultKind.SLICE:
                way.slice_size = way.slice_size or self._config.slice_size or DEFAULT_SLICE_SIZE
            else:
                conn.fault = kind
                conn.scope.cancel()
        return conn.fault is None

    def _fault(self, conn: _Connection, kind: FaultKind, direction: Direction | None) -> None:
        self._record(
            conn.index,
            kind,
            direction,
            conn.ways[Direction.DOWNSTREAM].forwarded,
            conn.ways[Direction.UPSTREAM].forwarded,
            conn.upstream_name,
        )

    def _record(
        self,
        index: int,
        kind: FaultKind,
        direction: Direction | None,
        offset_downstream: int,
        offset_upstream: int,
        upstream: str | None,
    ) -> None:
        event = FaultEvent(
            t=self._clock() - self._t0,
            connection=index,
            kind=kind,
            direction=direction,
            offset_downstream=offset_downstream,
            offset_upstream=offset_upstream,
            upstream=upstream,
        )
        self._events.append(event)
        self.counters.faults[kind.value] = self.counters.faults.get(kind.value, 0) + 1
        log.info(
            "connection %d: %s at %d bytes down, %d up",
            index,
            kind,
            offset_downstream,
            offset_upstream,
        )
        if self._event_log is not None:
            self._event_log.write(event.to_json() + "\n")
            self._event_log.flush()  # a killed proxy still leaves every fault it injected


async def _read(
    conn: _Connection, source: SocketStream, chunks: MemoryObjectSendStream[tuple[float, bytes]]
) -> None:
    """Stamp chunks with their arrival time; closing `chunks` tells the writer about EOF."""
    with chunks:
        try:
            async for data in source:
                await chunks.send((anyio.current_time(), data))
        except _BROKEN:
            conn.scope.cancel()


async def _discard_until_closed(stream: SocketStream, scope: anyio.CancelScope | None) -> None:
    """Blackhole: read only to notice the peer closing; ``scope`` set: that ends the connection."""
    with contextlib.suppress(*_BROKEN):
        async for _ in stream:
            pass
    if scope is not None:
        scope.cancel()


async def _flush(*streams: SocketStream) -> None:
    """Wait (bounded) until forwarded bytes have left the kernel, as an RST would discard them."""
    with anyio.move_on_after(RESET_FLUSH_TIMEOUT):
        # The kernel offers no event for "send queue empty", so poll.
        while any(_unsent_bytes(stream) for stream in streams):  # noqa: ASYNC110
            await anyio.sleep(RESET_FLUSH_POLL)


def _unsent_bytes(stream: SocketStream) -> int:
    try:
        queued = fcntl.ioctl(_raw_socket(stream).fileno(), termios.TIOCOUTQ, bytes(4))
    except OSError:  # not Linux, or the socket is already gone: nothing we can wait for
        return 0
    return int(struct.unpack("i", queued)[0])


def _raw_socket(stream: SocketStream) -> socket.socket:
    return stream.extra(SocketAttribute.raw_socket)


async def _aclose(stream: SocketStream) -> None:
    with anyio.CancelScope(shield=True):
        await stream.aclose()
