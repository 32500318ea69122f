"""Scripted servers for the ``client`` role: each connection the client opens is answered by
the next script in a list of steps (send a WELCOME, some numbers, a broken frame, an ERROR, cut
with FIN or RST, stay silent...). The executor keeps the truth (what the client has validly
received) and records what the client did: its HELLOs, any byte after them, when it closed."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketAttribute, SocketStream

from . import wire
from .model import Check

SEED = 0x0123456789ABCDEF


@dataclass
class State:
    """What the scripted servers have established with the client so far."""

    mode: int
    n: int
    a: int = 23
    seed: int = SEED
    interval_ms: int = 20
    ttl_ms: int = 30000
    received: int = 0  # numbers validly delivered in full, over all connections
    welcome_seen: bool = False
    client_id: bytes | None = None
    hello: wire.Hello | None = None
    next_on_conn: int = 0  # index of the next number on this connection
    min_silence: float = 2.0  # the client's floor of the silence timeout (§14.1)
    handshake: float = 5.0  # the client's handshake timeout (§14.1)

    def value(self, index: int) -> int:
        return self.a << index if self.mode == wire.STATELESS else wire.element(self.seed, index)

    def number(self, index: int) -> bytes:
        if self.mode == wire.STATELESS:
            return wire.stateless_number(self.a, self.n, index)
        return wire.stateful_number(self.seed, self.n, index)

    def welcome(self, **override: int) -> bytes:
        fields = {
            "mode": self.mode,
            "n": self.n,
            "next_index": self.hello.next_index if self.hello else 0,
            "interval_ms": self.interval_ms,
            "a": self.a if self.mode == wire.STATELESS else 0,
            "ttl_ms": self.ttl_ms if self.mode == wire.STATEFUL else 0,
            "version": 1,
            "flags": 0,
        }
        fields.update(override)
        return wire.welcome(
            fields["mode"],
            fields["n"],
            fields["next_index"],
            fields["interval_ms"],
            fields["a"],
            fields["ttl_ms"],
            version=fields["version"],
            flags=fields["flags"],
        )

    def truth_sum(self, count: int) -> int:
        return sum(self.a << i for i in range(count))

    def truth_checksum(self) -> bytes:
        return wire.checksum([wire.element(self.seed, i) for i in range(self.n)])


@dataclass
class Conn:
    """One connection the client opened, as the scripted server saw it."""

    index: int
    accepted: float
    hello: wire.Hello | None = None
    hello_raw: bytes = b""
    extra: bytearray = field(default_factory=bytearray)
    client_closed: float | None = None
    server_closed: float | None = None
    progress: bool = False
    notes: list[str] = field(default_factory=list)
    final_sent: float | None = None
    last_frame: float | None = None  # when the last complete valid frame went out
    ended_by_error: bool = False
    welcomed: bool = False
    interval_ms: int | None = None  # announced in this connection's WELCOME

    @property
    def ended(self) -> float:
        times = [t for t in (self.client_closed, self.server_closed) if t is not None]
        return min(times) if times else self.accepted


class Ctx:
    """What a step gets: the connection, the shared state and the case's check."""

    def __init__(self, stream: SocketStream, conn: Conn, state: State, check: Check) -> None:
        self.stream = stream
        self.conn = conn
        self.state = state
        self.check = check
        self.closed = anyio.Event()
        self.buffer = bytearray()
        self.hello_read = False

    async def send(self, data: bytes) -> bool:
        self.check.record(self.conn.index, "sent", data)
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.conn.notes.append("the client had closed")
            return False
        return True

    async def read_hello(self, within: float) -> wire.Hello | None:
        frames = wire.FrameBuffer()
        deadline = time.monotonic() + within
        while True:
            try:
                found = frames.next()
            except wire.OversizedFrameError as exc:
                self.check.must(False, f"the client sent {exc}")
                return None
            if found is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                self.check.must(
                    False, f"no HELLO within {within:g} s on connection {self.conn.index}"
                )
            try:
                with anyio.fail_after(left):
                    chunk = await self.stream.receive()
            except TimeoutError:
                continue
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                self.conn.client_closed = time.monotonic()
                self.closed.set()
                self.check.must(
                    False, f"connection {self.conn.index} closed before a complete HELLO"
                )
                return None
            self.check.record(self.conn.index, "received", chunk)
            frames.feed(chunk)
        self.check.must(found.kind == wire.HELLO, f"first frame is {found.describe()}, not HELLO")
        self.conn.hello_raw = found.raw
        try:
            hello = wire.Hello.parse(found.payload)
        except ValueError as exc:
            self.check.must(False, f"malformed HELLO: {exc}")
            raise
        self.conn.hello = hello
        self.state.hello = hello
        self.state.next_on_conn = hello.next_index
        self.conn.extra += frames.data
        self.hello_read = True
        return hello

    async def watch(self) -> None:
        """After the HELLO: record every further byte (a violation) and the client's close."""
        try:
            while True:
                chunk = await self.stream.receive()
                self.check.record(self.conn.index, "received", chunk)
                self.conn.extra += chunk
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        if self.conn.client_closed is None:
            self.conn.client_closed = time.monotonic()
        self.closed.set()

    async def wait_closed(self, within: float) -> bool:
        with anyio.move_on_after(within):
            await self.closed.wait()
            return True
        return False


# -- steps ------------------------------------------------------------------------------------


def welcome(**override: int) -> Callable[[Ctx], object]:
    """Send a WELCOME for the HELLO just read; with overrides it is a lie (not 'seen')."""

    async def step(ctx: Ctx) -> None:
        ctx.conn.interval_ms = override.get("interval_ms", ctx.state.interval_ms)
        if await ctx.send(ctx.state.welcome(**override)) and not override_breaks(ctx, override):
            ctx.state.welcome_seen = True
            ctx.conn.welcomed = True
            ctx.conn.last_frame = time.monotonic()

    return step


def override_breaks(ctx: Ctx, override: dict[str, int]) -> bool:
    """Overrides that keep the WELCOME valid: interval_ms and ttl_ms within 1.1's bound."""
    harmless = {"interval_ms", "ttl_ms"}
    if set(override) - harmless:
        return True
    return any(v > 86_400_000 for v in override.values())


def numbers(count: int | None = None, *, pace: bool = True) -> Callable[[Ctx], object]:
    """Send the next ``count`` numbers (all the rest when None), honestly and paced."""

    async def step(ctx: Ctx) -> None:
        state = ctx.state
        left = state.n - state.next_on_conn
        todo = left if count is None else min(count, left)
        interval_ms = state.interval_ms if ctx.conn.interval_ms is None else ctx.conn.interval_ms
        for j in range(todo):
            if pace and j and interval_ms:
                await anyio.sleep(interval_ms / 1000)
            index = state.next_on_conn
            if ctx.closed.is_set() or not await ctx.send(state.number(index)):
                return
            if index == state.received:
                state.received += 1
                ctx.conn.progress = True
            state.next_on_conn += 1
            ctx.conn.last_frame = time.monotonic()
            if index == state.n - 1:
                ctx.conn.final_sent = time.monotonic()

    return step


def raw(build: Callable[[State], bytes]) -> Callable[[Ctx], object]:
    async def step(ctx: Ctx) -> None:
        await ctx.send(build(ctx.state))

    return step


def final_with(trailer: bytes) -> Callable[[Ctx], object]:
    """The true FINAL and ``trailer`` in one write (bytes after FINAL, issue 8 point g)."""

    async def step(ctx: Ctx) -> None:
        state = ctx.state
        index = state.n - 1
        assert state.next_on_conn == index
        if await ctx.send(state.number(index) + trailer):
            state.received += 1
            state.next_on_conn += 1
            ctx.conn.progress = True
            ctx.conn.final_sent = ctx.conn.last_frame = time.monotonic()

    return step


def partial_next(size: int) -> Callable[[Ctx], object]:
    """The first ``size`` bytes of the next number frame (it never completes); a negative
    ``size`` leaves that many bytes out."""
    return raw(lambda s: s.number(s.next_on_conn)[:size])


def error(code: int, message: bytes | str = b"") -> Callable[[Ctx], object]:
    async def step(ctx: Ctx) -> None:
        await ctx.send(wire.error(code, message))
        ctx.conn.ended_by_error = True
        await fin(ctx)

    return step


async def fin(ctx: Ctx) -> None:
    """Close our side (FIN) and give the client a moment to close its own."""
    ctx.conn.server_closed = time.monotonic()
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await ctx.stream.send_eof()
    await ctx.wait_closed(2.0)
    await ctx.stream.aclose()


async def reset(ctx: Ctx) -> None:
    """Abort with an RST."""
    ctx.conn.server_closed = time.monotonic()
    raw_socket: socket.socket = ctx.stream.extra(SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):
        raw_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await ctx.stream.aclose()


def sleep(seconds: float) -> Callable[[Ctx], object]:
    async def step(ctx: Ctx) -> None:
        await anyio.sleep(seconds)

    return step


def hold(within: float = 20.0) -> Callable[[Ctx], object]:
    """Say nothing more; wait for the client to close (it must, e.g. on a timer)."""

    async def step(ctx: Ctx) -> None:
        closed = await ctx.wait_closed(within)
        if not closed:
            ctx.conn.notes.append(f"the client did not close within {within:g} s")

    return step


def expect_close(within: float = 2.0, why: str = "") -> Callable[[Ctx], object]:
    """The client MUST close now (it received something it has to reject)."""

    async def step(ctx: Ctx) -> None:
        started = time.monotonic()
        closed = await ctx.wait_closed(within)
        took = time.monotonic() - started
        ctx.conn.notes.append(
            f"client closed {took:.2f} s later" if closed else "client kept the connection"
        )
        ctx.check.must(closed, f"the client did not close within {within:g} s {why}".strip())

    return step


#: Marker step: do not read a HELLO first on this connection (e.g. SERVER_BUSY at accept).
NO_HELLO = "no-hello"


async def run_connection(
    stream: SocketStream,
    conn: Conn,
    state: State,
    check: Check,
    script: Sequence[object],
    hello_within: float,
    on_hello: Callable[[Conn, State], None],
) -> None:
    ctx = Ctx(stream, conn, state, check)
    try:
        async with anyio.create_task_group() as tg:
            steps = list(script)
            if steps and steps[0] == NO_HELLO:
                steps.pop(0)
                tg.start_soon(ctx.watch)
            else:
                hello = await ctx.read_hello(hello_within)
                if hello is not None:
                    on_hello(conn, state)
                tg.start_soon(ctx.watch)
            for step in steps:
                result = step(ctx)  # type: ignore[operator]
                if result is not None:
                    await result
                if conn.server_closed is not None:
                    break
            if conn.server_closed is None:
                # the script is over: wait for the client to close (it got FINAL, or must
                # give up on this connection), then close
                await ctx.wait_closed(3.0)
                conn.server_closed = time.monotonic()
                await stream.aclose()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
