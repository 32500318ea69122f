"""Helpers shared by end-to-end tests: an in-process server, raw frames, a cutting transport."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc

from reference.server import NumberServer, ServerConfig
from reference.store import MemoryStore


class FakeClock:
    """The session store's clock, advanced by hand so TTL tests never sleep."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def advance_ms(self, ms: int) -> None:
        self.now += ms / 1000


@dataclass
class FixedRandom:
    """Deterministic server randomness: known a and seeds make results checkable."""

    a: int = 23
    seeds: list[int] = field(default_factory=lambda: [0x0123456789ABCDEF])
    handed_out: list[int] = field(default_factory=list)

    def stateless_a(self) -> int:
        return self.a

    def session_seed(self) -> int:
        seed = self.seeds[len(self.handed_out) % len(self.seeds)]
        self.handed_out.append(seed)
        return seed


@asynccontextmanager
async def running_server(
    config: ServerConfig | None = None,
    *,
    store: MemoryStore | None = None,
    random_source: FixedRandom | None = None,
) -> AsyncIterator[tuple[NumberServer, int]]:
    server = NumberServer(
        config or ServerConfig(interval=0.0),
        store or MemoryStore(),
        random_source=random_source or FixedRandom(),
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        yield server, port
        tg.cancel_scope.cancel()


# --- raw frames, built from the spec's byte layouts ---------------------------------------------


def frame(frame_type: int, payload: bytes) -> bytes:
    return struct.pack(">BH", frame_type, len(payload)) + payload


def stateless_hello(
    n: int, *, resume: bool = False, next_index: int = 0, a: int = 0, version: int = 1
) -> bytes:
    return frame(0x01, struct.pack(">BBBIII", version, 1, int(resume), n, next_index, a))


def stateful_hello(client_id: str, n: int, *, resume: bool = False, next_index: int = 0) -> bytes:
    payload = struct.pack(">BBBII", 1, 2, int(resume), n, next_index) + client_id.encode()
    return frame(0x01, payload)


@dataclass
class RawFrame:
    type: int
    payload: bytes

    @property
    def error_code(self) -> int:
        assert self.type == 0x05, f"expected ERROR, got type {self.type}"
        return int(struct.unpack_from(">H", self.payload)[0])


class RawReader:
    """Reads whole frames off a stream by the spec's header rule, without the core."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            try:
                self.buffer += await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return False
        return True

    async def next(self) -> RawFrame | None:
        """The next frame, or None at EOF."""
        if not await self._fill(3):
            return None
        frame_type, length = struct.unpack_from(">BH", self.buffer)
        if not await self._fill(3 + length):
            return None
        payload = bytes(self.buffer[3 : 3 + length])
        del self.buffer[: 3 + length]
        return RawFrame(frame_type, payload)


class PassThroughStream(anyio.abc.ByteStream):
    """Wraps a real stream; subclasses change only what they must (usually ``receive``)."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class CuttingStream(PassThroughStream):
    """Delivers exactly ``limit`` bytes from the server, then cuts the connection.

    Stands between the client and a real TCP stream; the cut closes the TCP connection, so the
    server sees the drop too.
    """

    def __init__(self, inner: anyio.abc.ByteStream, limit: int) -> None:
        super().__init__(inner)
        self.remaining = limit

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.remaining <= 0:
            await self.inner.aclose()
            raise anyio.EndOfStream
        data = await self.inner.receive(min(max_bytes, self.remaining))
        self.remaining -= len(data)
        return data


def cutting_connector(
    cuts: list[int],
) -> Callable[[str, int], Awaitable[anyio.abc.ByteStream]]:
    """Connection i is cut after ``cuts[i]`` downstream bytes; later ones are left alone."""
    attempts = iter(cuts)

    async def connect(host: str, port: int) -> anyio.abc.ByteStream:
        stream = await anyio.connect_tcp(host, port)
        limit = next(attempts, None)
        return stream if limit is None else CuttingStream(stream, limit)

    return connect


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float) -> None:
    """Wait (bounded) for a condition of another process, such as Redis, that sends no event."""
    with anyio.fail_after(within):
        while not await check():  # noqa: ASYNC110 - polling is the only way to observe it
            await anyio.sleep(0.05)


async def wait_until_listening(port: int, *, within: float = 15.0) -> None:
    """Wait for the event 'the port accepts a connection' on 127.0.0.1 (at most ``within`` s)."""
    with anyio.fail_after(within):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return


@contextmanager
def listening_process(argv: list[str], port: int) -> Iterator[subprocess.Popen[str]]:
    """Start ``argv`` (stdout and stderr as text pipes), wait until it listens on ``port``.

    Killed at the end if still running; its output is then read so no pipe is left open.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        anyio.run(wait_until_listening, port)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
