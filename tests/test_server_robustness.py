"""Server robustness found in review: descriptor exhaustion, torn writes, slow stores, fairness."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence

import anyio
import anyio.abc
import pytest

from reference.client import Backoff, ClientConfig, run_client
from reference.protocol import Mode, stateful_prefix_checksum
from reference.server import NumberServer, ServerConfig, _Writer
from reference.store import DelegatingStore, Lease, MemoryStore

from .oracle import session_checksum
from .redis_fixture import free_port
from .support import (
    PassThroughStream,
    RawReader,
    running_server,
    stateful_hello,
    stateless_hello,
    wait_until_listening,
)

pytestmark = pytest.mark.anyio


#: Runs the server with only 40 file descriptors: accept() then fails with EMFILE.
_WITH_FEW_DESCRIPTORS = (
    "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40)); "
    "sys.argv = ['reference.server', *sys.argv[1:]]; "
    "runpy.run_module('reference.server', run_name='__main__')"
)


async def test_accept_loop_survives_running_out_of_descriptors(anyio_backend: str) -> None:
    """60 clients against 40 descriptors: accept() fails with EMFILE; the server must live,
    and its log must say what to do (at start, as --max-connections does not fit the limit, and
    when accepts fail).

    The server runs on the test's own backend: trio reports EMFILE differently from asyncio.
    """
    port = free_port()
    argv = [sys.executable, "-c", _WITH_FEW_DESCRIPTORS, "--port", str(port), "--interval", "1"]
    argv += ["--backend", anyio_backend, "--log-level", "warning"]
    process = await anyio.open_process(argv, stdout=subprocess.DEVNULL)
    try:
        await wait_until_listening(port)
        crowd = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(60)]
        with anyio.move_on_after(0.5):  # keep them open while the server runs into the limit
            await anyio.sleep_forever()
        for stream in crowd:
            await stream.aclose()
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(stateless_hello(3))
                welcome = await RawReader(stream).next()
        assert welcome is not None
        assert welcome.type == 0x02
        assert process.returncode is None, "the server died"
    finally:
        process.kill()
        await process.wait()
        assert process.stderr is not None
        stderr = b"".join([chunk async for chunk in process.stderr])
        await process.aclose()
    assert b"Traceback" not in stderr
    text = " ".join(stderr.decode().split())  # the console handler wraps long lines
    assert "--max-connections 1024 needs about 1088 open files" in text
    assert "may open only 40" in text
    assert "accept failed (Too many open files" in text
    assert "raise that limit" in text


async def test_the_server_raises_its_open_file_limit_to_fit_max_connections() -> None:
    """A soft limit below what --max-connections needs is raised up to the hard limit."""
    port = free_port()
    hard_limit = "resource.getrlimit(resource.RLIMIT_NOFILE)[1]"
    code = _WITH_FEW_DESCRIPTORS.replace("(40, 40)", f"(40, {hard_limit})")
    argv = [sys.executable, "-c", code, "--port", str(port), "--max-connections", "200"]
    process = await anyio.open_process(argv, stdout=subprocess.DEVNULL)
    try:
        await wait_until_listening(port)
        limits = await anyio.Path(f"/proc/{process.pid}/limits").read_text()
    finally:
        process.kill()
        await process.wait()
        await process.aclose()
    row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft = row.split()[3]
    assert soft == "264"  # 200 connections + the server's 64 spare descriptors


async def test_a_hello_waiting_when_a_late_server_reaches_its_deadline_is_served() -> None:
    """A server that is late must not blame the client: HANDSHAKE_TIMEOUT only for a HELLO the
    client did not send in time.

    The client's HELLO reaches the kernel well within the handshake timeout, while the server's
    event loop is held up (a busy machine) until past the deadline: the deadline and the HELLO
    then become due in the same turn of the loop. The server answers WELCOME, not ERROR 10.
    """
    config = ServerConfig(interval=1.0, handshake_timeout=0.05)
    async with running_server(config) as (server, port):
        with socket.create_connection(("127.0.0.1", port)) as client:
            await server.wait_active(1)
            await anyio.wait_all_tasks_blocked()  # the connection's task waits for its HELLO
            client.sendall(stateless_hello(3))  # on loopback: in the server's queue on return
            time.sleep(0.2)  # noqa: ASYNC251 (holds the server's loop up past its deadline)
            first = await anyio.to_thread.run_sync(client.recv, 1, socket.MSG_WAITALL)
    assert first == b"\x02", "the server answered its own lateness with ERROR, not WELCOME"


async def test_a_client_silent_past_the_deadline_still_gets_handshake_timeout() -> None:
    """The other side of the rule above: a partial HELLO, then silence, is the client's fault
    even when the server was late (what arrived is read, then HANDSHAKE_TIMEOUT)."""
    config = ServerConfig(interval=1.0, handshake_timeout=0.05)
    async with running_server(config) as (server, port):
        with socket.create_connection(("127.0.0.1", port)) as client:
            await server.wait_active(1)
            await anyio.wait_all_tasks_blocked()
            client.sendall(stateless_hello(3)[:5])
            time.sleep(0.2)  # noqa: ASYNC251 (holds the server's loop up past its deadline)
            answer = await anyio.to_thread.run_sync(client.recv, 5, socket.MSG_WAITALL)
    assert answer[:1] == b"\x05"
    assert answer[3:5] == (10).to_bytes(2, "big")  # HANDSHAKE_TIMEOUT (spec §12.1)


class _StuckStream(PassThroughStream):
    """Accepts one byte of a write, then blocks forever: a write cut in the middle."""

    def __init__(self) -> None:
        self.sent = bytearray()

    async def send(self, item: bytes) -> None:
        self.sent += item[:1]
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        pass


async def test_no_error_frame_is_written_behind_a_torn_frame() -> None:
    stream = _StuckStream()
    writer = _Writer(stream)
    with anyio.move_on_after(0.05):
        await writer.send(b"\x03\x00\x08" + bytes(8))
    assert writer.torn
    server = NumberServer(ServerConfig(), MemoryStore())
    from reference.protocol import ErrorCode, ServerConnection

    await server._send_error(writer, ServerConnection(), ErrorCode.SHUTTING_DOWN, "bye")
    assert bytes(stream.sent) == b"\x03"  # nothing followed the first byte of the torn frame


class _GatedStream(PassThroughStream):
    """Once ``armed``, holds the server's next write inside ``send`` (where a real write yields
    before its bytes go out) until the test sets ``release``."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        super().__init__(inner)
        self.armed = False
        self.entered = anyio.Event()
        self.release = anyio.Event()

    async def send(self, item: bytes) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            await self.release.wait()
        await self.inner.send(item)


class _LossWatchingStore(MemoryStore):
    """Sets ``lost`` once a lease refresh reports a lease lost (the server acts on it before
    its lease keeper next waits, so before the test runs again)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = anyio.Event()

    async def refresh_many(self, leases: Sequence[Lease], lease_ms: int) -> list[bool]:
        held = await super().refresh_many(leases, lease_ms)
        if not all(held):
            self.lost.set()
        return held


async def test_a_superseded_stream_is_told_so_when_the_news_comes_mid_write() -> None:
    """Spec §16.5: the earlier connection receives ERROR SESSION_SUPERSEDED, then the close.

    Under load the lease keeper's news often arrived while the streaming task was inside a
    write (at its first checkpoint); cancelling that write left it counted as torn (§14.2), so
    the ERROR frame was skipped and the client saw a bare EOF (conformance 16.5/latest-wins).
    """
    store = _LossWatchingStore()
    config = ServerConfig(interval=0.01, session_ttl=5.0, lease_refresh=0.05)
    cid = str(uuid.uuid4())
    gates: list[_GatedStream] = []
    async with running_server(config, store=store) as (server, port):

        async def handle(stream: anyio.abc.SocketStream) -> None:
            gates.append(gate := _GatedStream(stream))
            await server.handle(gate)

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        gated_port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            async with await anyio.connect_tcp("127.0.0.1", gated_port) as old:
                await old.send(stateful_hello(cid, 1000))
                reader = RawReader(old)
                for expected in (0x02, 0x03):  # WELCOME, a number
                    item = await reader.next()
                    assert item is not None
                    assert item.type == expected
                [gate] = gates
                gate.armed = True
                await gate.entered.wait()  # the old connection's task is inside a write
                async with await anyio.connect_tcp("127.0.0.1", port) as new:
                    await new.send(stateful_hello(cid, 1000, resume=True, next_index=1))
                    welcome = await RawReader(new).next()
                    assert welcome is not None
                    assert welcome.type == 0x02  # the newer connection took the session over
                    await store.lost.wait()  # and the old one learnt it while writing
                    gate.release.set()
                    kinds = []
                    last = None
                    while (item := await reader.next()) is not None:
                        kinds.append(item.type)
                        last = item
            tg.cancel_scope.cancel()
    assert last is not None
    assert set(kinds[:-1]) <= {0x03}, kinds
    assert last.type == 0x05, kinds
    assert last.error_code == 22  # SESSION_SUPERSEDED


class _SlowRelease(DelegatingStore):
    async def release(self, client_id: str, owner: str, ttl_ms: int) -> bool:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class _ClosingRecorder(PassThroughStream):
    closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


async def test_a_slow_store_does_not_keep_the_connection_open() -> None:
    server = NumberServer(ServerConfig(interval=1.0), _SlowRelease(MemoryStore()))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener:
        client = await anyio.connect_tcp("127.0.0.1", port)
        accepted = _ClosingRecorder(await listener.listeners[0].accept())  # type: ignore[attr-defined]
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.handle, accepted)
            await client.send(stateful_hello(str(uuid.uuid4()), 10))
            assert (await RawReader(client).next()) is not None  # WELCOME
            await client.aclose()  # the drop: release() now hangs
            with anyio.fail_after(10):
                await server.wait_active(0)
    assert accepted.closed


async def test_refused_connect_after_shutdown_error_is_not_a_lost_final_frame() -> None:
    """WELCOME then SHUTTING_DOWN; the next connect is refused; then SESSION_UNKNOWN."""
    import struct

    from .support import frame

    welcome = frame(0x02, struct.pack(">BBBIIIII", 1, 2, 0, 10, 0, 0, 0, 30000))
    answers = iter(
        [
            welcome + frame(0x05, struct.pack(">H", 32)),
            frame(0x05, struct.pack(">H", 20)),
        ]
    )

    async def scripted(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(next(answers))

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    dials = 0

    async def connect(host: str, port: int) -> anyio.abc.ByteStream:
        nonlocal dials
        dials += 1
        if dials == 2:
            raise ConnectionRefusedError(111, "Connection refused")
        return await anyio.connect_tcp(host, port)

    config = ClientConfig(
        port=port,
        mode=Mode.STATEFUL,
        n=10,
        client_id=str(uuid.uuid4()),
        backoff=Backoff(initial=0.01, max_retries=5),
    )
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, scripted)
        result = await run_client(config, connect=connect, rng=random.Random(0))
        tg.cancel_scope.cancel()
    assert dials == 3
    assert result.error == "SESSION_UNKNOWN"
    assert not result.final_frame_lost


def test_oracle_agrees_with_sliced_checksum() -> None:
    checksum = stateful_prefix_checksum(7, 5000)
    assert checksum.digest() == session_checksum(7, 5000)


async def test_a_lease_that_expired_is_not_reported_as_a_takeover() -> None:
    """The store lost the lease (an outage longer than TTL + refresh), nobody took over."""
    from .support import FakeClock

    clock = FakeClock()
    store = MemoryStore(clock=clock)
    config = ServerConfig(interval=0.05, session_ttl=5.0, lease_refresh=0.05)
    async with (
        running_server(config, store=store) as (_, port),
        await anyio.connect_tcp("127.0.0.1", port) as stream,
    ):
        await stream.send(stateful_hello(str(uuid.uuid4()), 1000))
        reader = RawReader(stream)
        assert (await reader.next()) is not None  # WELCOME
        clock.advance(60)  # far past the lease: the session is gone from the store
        last = None
        with anyio.fail_after(10):
            while (item := await reader.next()) is not None:
                last = item
    assert last is not None
    assert last.error_code == 30  # STORE_UNAVAILABLE (retryable), not SESSION_SUPERSEDED
