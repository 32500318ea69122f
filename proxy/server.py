"""The proxy itself: accepts clients, relays bytes to round-robin upstreams, injects faults.

It knows nothing of the protocol it carries; faults are placed by byte offsets alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import math
import os
import random
import select
import socket
import struct
import termios
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from proxy.faults import (
    DEFAULT_SLICE_SIZE,
    SIZER_MAX_PREFIX,
    TERMINAL_KINDS,
    ConnectionKey,
    ConnectionPlan,
    Direction,
    FaultConfig,
    FaultEvent,
    FaultKind,
    FramePosition,
    ScheduledFault,
    Sizer,
    StreamShape,
    Trigger,
    plan_connection,
    point_offset,
)
from reference.accept import accept_forever

log = logging.getLogger(__name__)

NO_FAULTS = FaultConfig()
#: Bounded buffering, so that bytes the proxy has taken from the server are close to delivered
#: (what a server that waits for its peer's TCP acknowledgements before FINAL relies on, spec
#: §16.6). Per connection and direction, bytes the proxy's kernel has acknowledged to the
#: sender and the proxy has not yet handed to the receiver's connection are at most: what its
#: receive socket buffer holds (SO_RCVBUF asked as RECEIVE_BUFFER; Linux doubles the figure for
#: its bookkeeping and advertises about RECEIVE_BUFFER of payload), what the last kernel read
#: took beyond the chunk being forwarded (at most that much again), and the one chunk of at
#: most CHUNK bytes being written: about 6 KiB in all (measured: harness/README.md). A chunk
#: is read only once the previous one is in the next hop's kernel: every send waits until the
#: kernel has taken all its bytes. With --latency or --jitter a direction also queues up to
#: READ_AHEAD chunks, the bytes in flight on a slow path. The send socket buffer (SO_SNDBUF,
#: SEND_BUFFER, doubled likewise) holds bytes already handed on: a drop still delivers them.
#: Both are set before the handshake (on the listener, inherited by accepted sockets, and on
#: the upstream socket before it connects): a window already advertised is never taken back.
RECEIVE_BUFFER = 2 * 1024
SEND_BUFFER = 8 * 1024
CHUNK = 2 * 1024
READ_AHEAD = 4  # with latency: chunks a direction may read ahead of its writer, so it is paced
BANDWIDTH_QUANTUM = 0.1  # seconds of traffic per paced piece, so a big chunk is not one long burst
CONNECT_TIMEOUT = 5.0
RESET_FLUSH_TIMEOUT = 1.0  # how long a RESET waits for forwarded bytes to leave the kernel
RESET_FLUSH_POLL = 0.005
#: A partitioned connection is held, unread, until the client has hung up and then for this
#: long after the partition began (beyond the reference server's 10 s write-stall bound), or
#: until the proxy stops; only then are both sockets closed.
PARTITION_HOLD = 12.0
PARTITION_POLL = 0.05
RECENT_EVENTS = 1000
#: Downstream bytes each ConnectionRecord keeps of what it handed on last (``tail``): enough for
#: the last frame of a stream, so that the harness can check what a client says it was sent.
TAIL_BYTES = 64

# A peer went away: the connection is over, not the proxy.
_BROKEN = (anyio.BrokenResourceError, OSError)
#: Kinds that strike a connection (kept as its ``ConnectionRecord.fault``); not shaping.
_STRIKING = TERMINAL_KINDS | {FaultKind.CORRUPT, FaultKind.REFUSE}
_HUNG_UP = select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


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
class ConnectionRecord:
    """One accepted connection as the proxy saw it; the harness computes its rates from these.

    ``label`` and ``size`` come from the sizer (None without one, before it answered, or when
    it only observes, ``sized_faults=False``): ``size`` 0 means the connection carried no stream
    data. ``shape``: the sizer's answer itself (what the connection's first downstream bytes
    announced), whether or not faults are placed by it. ``drawn``: the kind the seeded draw
    chose (None if none); ``fault``: the first fault that struck it (terminal, corrupt or
    refuse), if any. ``forwarded``: downstream bytes handed on to the client so far (an upper
    bound on what it can have received; updated as they go, in the step that sends them).
    ``tail``: the last (at most TAIL_BYTES) of those bytes, as the upstream sent them (a byte a
    corrupt fault changed is kept unchanged), ending at offset ``forwarded``. ``received``:
    downstream bytes the upstream (the server) sent, handed on or not: those the proxy read,
    plus, once a terminal fault struck, those still waiting unread in its upstream socket (a
    lower bound on what the server wrote; without latency, exact up to the fault).
    """

    key: ConnectionKey
    upstream: str | None = None
    refused: bool = False
    label: str | None = None
    size: int | None = None
    drawn: FaultKind | None = None
    fault: FaultEvent | None = None
    point: float = 0.0
    forwarded: int = 0  # downstream bytes that got through
    shape: StreamShape | None = None
    tail: bytes = b""
    received: int = 0  # downstream bytes the upstream sent, handed on or not

    @property
    def carried_stream(self) -> bool:
        return bool(self.size)

    @property
    def reached_point(self) -> bool:
        """Whether the connection got as far as its drawn point (where a drawn fault strikes,
        had one been drawn). One that ended earlier, by the client giving up or the server
        going away, was never at risk of a drawn fault: rates are measured over the others."""
        if not self.size:
            return False
        if self.fault is not None and self.fault.kind is self.drawn:
            return True
        return self.forwarded >= point_offset(self.point, self.size)


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
    key: ConnectionKey
    upstream_name: str
    client: SocketStream
    upstream: SocketStream
    ways: dict[Direction, _Way]
    plan: ConnectionPlan
    record: ConnectionRecord
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    fault: FaultKind | None = None  # the terminal fault that ended the relay, if any
    shape: StreamShape | None = None
    started: float = 0.0


class ChaosProxy:
    """A TCP proxy whose faults are reproducible from a seed and exact to the byte.

    ``sizer``: reads each connection's first downstream bytes to learn what it will carry, so
    drawn faults strike uniformly within it (see ``proxy.faults``); without one they strike
    below ``config.fault_window``; with ``sized_faults=False`` the sizer only observes (each
    ``ConnectionRecord.shape``) and faults keep the window. ``serve(client=k)`` opens a
    listener whose connections are client k's: numbered 1, 2, ... per client, with their own
    seeded decisions and refuse periods, and spread over the upstreams by that number
    (consecutive connections of one client go to consecutive upstreams).
    """

    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        *,
        config: FaultConfig = NO_FAULTS,
        schedule: Sequence[ScheduledFault] = (),
        seed: int = 0,
        event_log: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        sizer: Sizer | None = None,
        sized_faults: bool = True,
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.counters = ProxyCounters()
        self.connections: list[ConnectionRecord] = []
        self._upstreams = tuple(upstreams)
        self._config = config
        self._schedule = tuple(schedule)
        self._seed = seed
        self._event_log = event_log
        #: Why the event log stopped being written (a full disk, say), or None while it works.
        self.event_log_error: str | None = None
        self._clock = clock
        self._sizer = sizer
        self._sized_faults = sized_faults and sizer is not None
        self._t0 = clock()
        self._refuse_until: dict[int | None, float] = {}
        self._numbers: dict[int | None, int] = {}
        self._listener_upstreams: dict[int | None, tuple[tuple[str, int], ...]] = {}
        self._events: deque[FaultEvent] = deque(maxlen=RECENT_EVENTS)

    def recent_events(self, limit: int = 20) -> list[FaultEvent]:
        return list(self._events)[-limit:] if limit > 0 else []

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client: int | None = None,
        upstreams: Sequence[tuple[str, int]] | None = None,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; reports the bound port so callers can bind port 0.

        ``client``: this listener is that client's own (see the class docstring).
        ``upstreams``: relay this listener's connections there instead of to the proxy's.
        """
        if upstreams is not None:
            if not upstreams:
                raise ValueError("at least one upstream is needed")
            self._listener_upstreams[client] = tuple(upstreams)
        if not self.connections and not self._numbers:
            self._t0 = self._clock()
        listeners = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listeners, anyio.create_task_group() as tg:
            for listener in listeners.listeners:
                assert isinstance(listener, SocketListener)  # typed loosely by MultiListener
                # Inherited by accepted sockets: the upstream direction is buffered little too.
                _set_buffer(listener.extra(SocketAttribute.raw_socket), socket.SO_RCVBUF)
                _set_buffer(listener.extra(SocketAttribute.raw_socket), socket.SO_SNDBUF)
                tg.start_soon(self._accept_loop, listener, tg, client)
            task_status.started(listeners.extra(SocketAttribute.local_port))

    async def _accept_loop(
        self, listener: SocketListener, tg: TaskGroup, client: int | None
    ) -> None:
        await accept_forever(
            listener.accept, lambda accepted: self._accepted(accepted, tg, client), log=log
        )

    def _accepted(self, accepted: SocketStream, tg: TaskGroup, client: int | None) -> None:
        index = self.counters.connections_total
        self.counters.connections_total += 1
        number = self._numbers.get(client, 0) + 1
        self._numbers[client] = number
        key = ConnectionKey(index=index, client=client, number=number)
        plan = plan_connection(key, config=self._config, schedule=self._schedule, seed=self._seed)
        # Decided here, in accept order, so a refuse period covers the connections after it
        # (on a client's own listener: that client's later connections).
        now = self._clock()
        refused = (
            plan.refused or plan.starts_refuse or now < self._refuse_until.get(client, -math.inf)
        )
        if plan.starts_refuse:
            self._refuse_until[client] = max(
                self._refuse_until.get(client, -math.inf), now + self._config.refuse_duration
            )
        record = ConnectionRecord(
            key=key,
            refused=refused,
            drawn=plan.drawn.kind if plan.drawn else None,
            point=plan.point,
        )
        self.connections.append(record)
        tg.start_soon(self._handle, accepted, plan, record, name=f"connection {index}")

    async def _handle(
        self, client: SocketStream, plan: ConnectionPlan, record: ConnectionRecord
    ) -> None:
        self.counters.connections_active += 1
        try:
            if record.refused:
                self._record(record, FaultKind.REFUSE, None, 0, 0)
                return
            connected = await self._connect(record.key)
            if connected is None:
                return
            upstream, name = connected
            record.upstream = name
            conn = self._connection(record, plan, name, client, upstream)
            try:
                await self._relay(conn)
            finally:
                record.forwarded = conn.ways[Direction.DOWNSTREAM].forwarded
                await _aclose(upstream)
        finally:
            await _aclose(client)
            self.counters.connections_active -= 1

    async def _connect(self, key: ConnectionKey) -> tuple[SocketStream, str] | None:
        """Round-robin by connection, so each reconnect can land on another server.

        On a client's own listener by (client + number), so one client's consecutive
        connections alternate between upstreams whatever the others do.
        """
        upstreams = self._listener_upstreams.get(key.client, self._upstreams)
        count = len(upstreams)
        first = key.index if key.client is None else key.client + key.number - 2
        for attempt in range(count):
            host, port = upstreams[(first + attempt) % count]
            try:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    stream = await _connect_bounded(host, port)
            except OSError as exc:  # TimeoutError included
                self.counters.upstream_failures += 1
                log.warning(
                    "connection %d: upstream %s:%d failed: %s",
                    key.index,
                    host,
                    port,
                    str(exc.__cause__ or exc) or f"no answer within {CONNECT_TIMEOUT:g} s",
                )
                continue
            log.debug("connection %d: relaying to %s:%d", key.index, host, port)
            return stream, f"{host}:{port}"
        log.error("connection %d: no upstream accepted it; closing the client", key.index)
        return None

    def _connection(
        self,
        record: ConnectionRecord,
        plan: ConnectionPlan,
        name: str,
        client: SocketStream,
        upstream: SocketStream,
    ) -> _Connection:
        key = record.key
        ways = {
            direction: _Way(
                direction=direction,
                triggers=deque(t for t in plan.triggers if t.direction is direction),
                jitter=random.Random(f"{key.seed_key(self._seed)}:{direction}"),
                slice_size=self._config.slice_size if direction is Direction.DOWNSTREAM else None,
            )
            for direction in Direction
        }
        conn = _Connection(key, name, client, upstream, ways, plan, record)
        conn.started = self._clock()
        if not self._sized_faults and plan.drawn is not None:
            _arm(ways[Direction.DOWNSTREAM], plan.drawn.trigger(self._config.fault_window))
        return conn

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
        if conn.fault in TERMINAL_KINDS:
            # What the server had written by the time the fault struck, read or not: a FINAL
            # in there was written, so its session was completed (spec §16.6).
            conn.record.received += _unread_bytes(conn.upstream)
        match conn.fault:
            case FaultKind.DROP | FaultKind.LIMIT_DATA:
                for stream in (conn.client, conn.upstream):
                    with contextlib.suppress(*_BROKEN):
                        await stream.send_eof()
            case FaultKind.RESET:
                # Both sides at once, as one RST on a path would be: the server's side first
                # (it must not stream on while the client's side drains), then the client's
                # once what was forwarded to it has left the kernel (an RST discards it).
                await _flush(conn.upstream)  # the HELLO: long acknowledged, in practice
                _abort(conn.upstream)
                await _aclose(conn.upstream)
                await _flush(conn.client)
                _abort(conn.client)
            case FaultKind.BLACKHOLE:
                # The server's FIN is swallowed too, so only the client giving up (its silence
                # detection) ends the connection; what the server writes is read and discarded.
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_discard_until_closed, conn.upstream, None)
                    tg.start_soon(_discard_until_closed, conn.client, tg.cancel_scope)
            case FaultKind.PARTITION:
                # Nothing is read any more either way: the server's writes back up into full
                # buffers (until its write-stall bound), the client hears nothing (until its
                # silence timeout).
                await _hold_partitioned(conn.client, conn.upstream, conn.started)

    async def _pump(
        self, conn: _Connection, direction: Direction, source: SocketStream, sink: SocketStream
    ) -> None:
        """Forward one direction. Without latency to add, one task reads a chunk only once the
        previous one is forwarded; with latency, a reader stamps chunks with their arrival
        time and queues up to READ_AHEAD of them for the writer, so delays overlap."""
        way = conn.ways[direction]
        if not (self._config.latency or self._config.jitter):
            async with contextlib.aclosing(_arrivals(source)) as arrivals:
                await self._write(conn, way, arrivals, sink)
            return
        chunks, pending = anyio.create_memory_object_stream[tuple[float, bytes]](READ_AHEAD)
        with chunks, pending:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read, conn, source, chunks)
                await self._write(conn, way, pending, sink)

    async def _write(
        self,
        conn: _Connection,
        way: _Way,
        pending: AsyncIterator[tuple[float, bytes]],
        sink: SocketStream,
    ) -> None:
        try:
            sizing = self._sizer is not None and way.direction is Direction.DOWNSTREAM
            # Sizing, downstream faults wait for the first bytes (``_forward`` fires them), so
            # that when they strike does not depend on how fast the server answers.
            if not sizing and not self._fire_due(conn, way):
                return
            held = bytearray()
            downstream = way.direction is Direction.DOWNSTREAM
            async for arrived, data in pending:
                if downstream:
                    conn.record.received += len(data)
                if sizing:
                    held += data
                    if not self._sized(conn, way, bytes(held)):
                        continue
                    data, held, sizing = bytes(held), bytearray(), False
                if self._config.latency or self._config.jitter:
                    await anyio.sleep_until(arrived + self._delay(way))
                if not await self._forward(conn, way, data, sink):
                    return
            if held and not await self._forward(conn, way, bytes(held), sink):
                return  # EOF before the sizer could tell: no stream data, no drawn fault
            await sink.send_eof()
        except _BROKEN:
            conn.scope.cancel()

    def _sized(self, conn: _Connection, way: _Way, prefix: bytes) -> bool:
        """Ask the sizer about the downstream prefix held back so far; True once it answered
        (the drawn fault, if any, is then armed at its point of what the connection carries)."""
        assert self._sizer is not None
        shape = self._sizer(prefix)
        if shape is None and len(prefix) < SIZER_MAX_PREFIX:
            return False
        conn.shape = conn.record.shape = shape
        if not self._sized_faults:
            return True
        conn.record.size = shape.size if shape is not None else 0
        conn.record.label = shape.label if shape is not None else None
        drawn = conn.plan.drawn
        if shape is not None and shape.size > 0 and drawn is not None:
            _arm(way, drawn.trigger(shape.size))
        return True

    def _delay(self, way: _Way) -> float:
        config = self._config
        return max(0.0, config.latency + way.jitter.uniform(-config.jitter, config.jitter))

    async def _forward(self, conn: _Connection, way: _Way, data: bytes, sink: SocketStream) -> bool:  # noqa: C901 (one branch per fault kind at an offset; splitting it would hide the byte accounting)
        """Send `data` in pieces cut at fault offsets; False once a terminal fault has fired.

        A CORRUPT trigger sends the byte at its offset XORed with its mask, as a piece alone.
        """
        bandwidth = self._config.bandwidth
        view = memoryview(data)
        while view:
            if not self._fire_due(conn, way):
                return False
            trigger = way.triggers[0] if way.triggers else None
            if (
                trigger is not None
                and trigger.kind is FaultKind.CORRUPT
                and trigger.offset == way.forwarded
            ):
                way.triggers.popleft()
                piece = bytes([view[0] ^ trigger.xor])
                self._fault(conn, FaultKind.CORRUPT, way.direction, xor=trigger.xor)
            else:
                size = len(view)
                if trigger is not None:
                    size = min(size, trigger.offset - way.forwarded)
                if way.slice_size is not None:
                    size = min(size, way.slice_size)
                if bandwidth is not None:
                    size = min(size, max(1, int(bandwidth * BANDWIDTH_QUANTUM)))
                piece = bytes(view[:size])
            if bandwidth is not None:
                start = max(anyio.current_time(), way.next_send)
                way.next_send = start + len(piece) / bandwidth
                await anyio.sleep_until(start)
            await sink.send(piece)
            sent, view = view[: len(piece)], view[len(piece) :]
            way.forwarded += len(piece)
            if way.direction is Direction.UPSTREAM:
                self.counters.bytes_upstream += len(piece)
            else:
                self.counters.bytes_downstream += len(piece)
                conn.record.forwarded = way.forwarded
                record = conn.record
                if len(sent) >= TAIL_BYTES:
                    record.tail = bytes(sent[-TAIL_BYTES:])
                else:
                    record.tail = (record.tail + sent)[-TAIL_BYTES:]
            if not self._fire_due(conn, way):
                return False
            if view and way.slice_size is not None and self._config.slice_delay:
                await anyio.sleep(self._config.slice_delay)
        return True

    def _fire_due(self, conn: _Connection, way: _Way) -> bool:
        """Fire the triggers this offset has reached; False if the connection is to end.

        A CORRUPT trigger waits for its byte to be sent (``_forward``).
        """
        while (
            conn.fault is None
            and way.triggers
            and way.triggers[0].offset <= way.forwarded
            and way.triggers[0].kind is not FaultKind.CORRUPT
        ):
            kind = way.triggers.popleft().kind
            self._fault(conn, kind, way.direction)
            if kind is FaultKind.SLICE:
                way.slice_size = way.slice_size or self._config.slice_size or DEFAULT_SLICE_SIZE
            else:
                conn.fault = kind
                conn.scope.cancel()
        return conn.fault is None

    def _fault(
        self,
        conn: _Connection,
        kind: FaultKind,
        direction: Direction | None,
        *,
        xor: int | None = None,
    ) -> None:
        downstream = conn.ways[Direction.DOWNSTREAM].forwarded
        position = None
        striking = kind in TERMINAL_KINDS or kind is FaultKind.CORRUPT
        if striking and conn.shape is not None and downstream < conn.shape.size:
            position = conn.shape.locate(downstream)
        self._record(
            conn.record,
            kind,
            direction,
            downstream,
            conn.ways[Direction.UPSTREAM].forwarded,
            position=position,
            xor=xor,
        )

    def _record(
        self,
        record: ConnectionRecord,
        kind: FaultKind,
        direction: Direction | None,
        offset_downstream: int,
        offset_upstream: int,
        *,
        position: FramePosition | None = None,
        xor: int | None = None,
    ) -> None:
        key = record.key
        event = FaultEvent(
            t=self._clock() - self._t0,
            connection=key.index,
            kind=kind,
            direction=direction,
            offset_downstream=offset_downstream,
            offset_upstream=offset_upstream,
            upstream=record.upstream,
            client=key.client,
            client_connection=key.number if key.client is not None else None,
            frame_index=position.frame_index if position is not None else None,
            frame=position.frame if position is not None else None,
            xor=xor,
        )
        if record.fault is None and kind in _STRIKING:
            record.fault = event
        self._events.append(event)
        self.counters.faults[kind.value] = self.counters.faults.get(kind.value, 0) + 1
        who = f"client {key.client} connection {key.number}" if key.client is not None else ""
        log.info(
            "connection %d%s: %s at %d bytes down, %d up%s",
            key.index,
            f" ({who})" if who else "",
            kind,
            offset_downstream,
            offset_upstream,
            f", frame {position.frame_index} ({position.frame})" if position is not None else "",
        )
        if self._event_log is not None:
            try:
                self._event_log.write(event.to_json() + "\n")
                self._event_log.flush()  # a killed proxy still leaves every fault it injected
            except OSError as exc:  # the proxy goes on relaying; the log says where it stopped
                self.event_log_error = exc.strerror or str(exc)
                self._event_log = None
                log.error(
                    "cannot write the event log (%s): faults from now on are not in it",
                    self.event_log_error,
                )


def _arm(way: _Way, trigger: Trigger) -> None:
    """Add a trigger, keeping the queue ordered by offset (earlier-armed first at a tie)."""
    triggers = sorted([*way.triggers, trigger], key=lambda t: t.offset)
    way.triggers.clear()
    way.triggers.extend(triggers)


def _abort(stream: SocketStream) -> None:
    """Make closing ``stream`` send an RST (SO_LINGER 0) instead of a FIN."""
    with contextlib.suppress(OSError):
        _raw_socket(stream).setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _connect_bounded(host: str, port: int) -> SocketStream:
    """A TCP connection whose buffers are bounded from its first byte.

    The receive buffer must be set before the handshake: the window the SYN advertises (and
    its scale) follows it, and an advertised window is never taken back, so a buffer bounded
    after connecting would still let the server send some 64 KiB ahead.
    """
    (family, kind, proto, _, address), *_ = await anyio.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )
    sock = socket.socket(family, kind, proto)
    try:
        _set_buffer(sock, socket.SO_RCVBUF)
        _set_buffer(sock, socket.SO_SNDBUF)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            sock.connect(address)
        except BlockingIOError:
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, os.strerror(error)) from None
        return await SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


def _set_buffer(sock: socket.socket, option: int) -> None:
    """Bound a socket buffer (``RECEIVE_BUFFER``, ``SEND_BUFFER``); best effort, as the kernel
    may round it."""
    size = RECEIVE_BUFFER if option == socket.SO_RCVBUF else SEND_BUFFER
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, option, size)


async def _hold_partitioned(client: SocketStream, upstream: SocketStream, since: float) -> None:
    """Read nothing either way; return once the client has hung up and ``PARTITION_HOLD``
    seconds have passed since the connection began, or both peers have hung up.

    Hang-ups are polled (POLLRDHUP, which reports a peer's FIN without reading its data).
    """
    poller = select.poll()
    fds = {}
    for stream in (client, upstream):
        with contextlib.suppress(OSError, ValueError):
            fd = _raw_socket(stream).fileno()
            poller.register(fd, _HUNG_UP)
            fds[fd] = stream
    gone: set[int] = set()
    client_fd = next((fd for fd, stream in fds.items() if stream is client), None)
    while True:
        gone |= {fd for fd, events in poller.poll(0) if events & _HUNG_UP}
        client_gone = client_fd is None or client_fd in gone
        if client_gone and (len(gone) == len(fds) or time.monotonic() - since >= PARTITION_HOLD):
            return
        await anyio.sleep(PARTITION_POLL)


async def _read(
    conn: _Connection, source: SocketStream, chunks: MemoryObjectSendStream[tuple[float, bytes]]
) -> None:
    """Stamp chunks with their arrival time; closing `chunks` tells the writer about EOF."""
    with chunks:
        try:
            while True:
                try:
                    data = await source.receive(CHUNK)
                except anyio.EndOfStream:
                    return
                await chunks.send((anyio.current_time(), data))
        except _BROKEN:
            conn.scope.cancel()


async def _arrivals(source: SocketStream) -> AsyncGenerator[tuple[float, bytes], None]:
    """Chunks stamped with their arrival time, read one at a time as the caller asks; ends at
    EOF. A broken source raises (the writer then ends the connection)."""
    while True:
        try:
            data = await source.receive(CHUNK)
        except anyio.EndOfStream:
            return
        yield anyio.current_time(), data


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
    except (OSError, ValueError):  # not Linux, or the socket is already gone (a closed
        return 0  # transport reports descriptor -1, which ioctl refuses with ValueError)
    return int(struct.unpack("i", queued)[0])


def _unread_bytes(stream: SocketStream) -> int:
    """Bytes waiting in ``stream``'s kernel receive queue (0 where that cannot be asked)."""
    try:
        waiting = fcntl.ioctl(_raw_socket(stream).fileno(), termios.FIONREAD, bytes(4))
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", waiting)[0])


def _raw_socket(stream: SocketStream) -> socket.socket:
    return stream.extra(SocketAttribute.raw_socket)


async def _aclose(stream: SocketStream) -> None:
    with anyio.CancelScope(shield=True):
        await stream.aclose()
