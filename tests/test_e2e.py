"""End to end over real loopback TCP: server on port 0, interval 0, both anyio backends."""

from __future__ import annotations

import contextlib
import itertools
import random
import struct
import uuid
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest

from reference.client import (
    EXIT_OK,
    EXIT_REJECTED,
    Backoff,
    ClientConfig,
    Phase,
    run_client,
)
from reference.protocol import Mode
from reference.server import ServerConfig
from reference.store import MemoryStore

from .oracle import doubling_sum, session_checksum, session_values
from .support import (
    FakeClock,
    FixedRandom,
    PassThroughStream,
    RawReader,
    cutting_connector,
    frame,
    running_server,
)

pytestmark = pytest.mark.anyio

WELCOME_BYTES = 3 + 23
STATEFUL_DATA_BYTES = 3 + 8
FAST = Backoff(initial=0.01, maximum=0.05, max_retries=20)


@dataclass
class Recorder:
    """Observer that keeps what the client accepted, for comparison with the uncut sequence."""

    numbers: list[tuple[int, int]] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)

    def phase(self, phase: Phase, detail: str) -> None:
        self.phases.append(phase)

    def attempt(self, number: int, at: float) -> None:
        self.attempts.append(at)

    def number(self, index: int, value: int) -> None:
        self.numbers.append((index, value))


def stateless_config(port: int, n: int) -> ClientConfig:
    return ClientConfig(port=port, mode=Mode.STATELESS, n=n, backoff=FAST)


def stateful_config(port: int, n: int, client_id: str | None = None) -> ClientConfig:
    return ClientConfig(
        port=port,
        mode=Mode.STATEFUL,
        n=n,
        client_id=client_id or str(uuid.uuid4()),
        backoff=FAST,
    )


def stateless_frame_end(a: int, k: int) -> int:
    """Downstream byte offset just after the DATA frame at index k (WELCOME first)."""
    total = WELCOME_BYTES
    for i in range(k + 1):
        total += 3 + 4 + ((a << i).bit_length() + 7) // 8
    return total


@pytest.mark.parametrize("n", [1, 2, 100, 0xFFFF])
async def test_stateless_sum_is_closed_form(n: int) -> None:
    async with running_server(random_source=FixedRandom(a=201)) as (_, port):
        result = await run_client(stateless_config(port, n))
    assert result.exit_code == EXIT_OK
    assert result.ok
    assert result.first == 201
    assert result.total == doubling_sum(201, n)
    assert result.reconnects == 0


@pytest.mark.parametrize("n", [1, 3, 1000])
async def test_stateful_checksum_matches_recomputation_from_seed(n: int) -> None:
    seed = 0xFEEDFACECAFEBEEF
    recorder = Recorder()
    async with running_server(random_source=FixedRandom(seeds=[seed])) as (_, port):
        result = await run_client(stateful_config(port, n), observer=recorder)
    expected = session_checksum(seed, n)
    assert result.ok
    assert result.checksum_expected == expected
    assert result.checksum_computed == expected
    assert [value for _, value in recorder.numbers] == session_values(seed, n)


async def test_two_sessions_get_different_seeds_from_the_system_source() -> None:
    from reference.server import NumberServer

    store = MemoryStore()
    server = NumberServer(ServerConfig(interval=0.0), store)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        first = await run_client(stateful_config(port, 50))
        second = await run_client(stateful_config(port, 50))
        tg.cancel_scope.cancel()
    assert first.ok
    assert second.ok
    assert first.checksum_computed != second.checksum_computed


@pytest.mark.parametrize("k", [0, 1, 7, 18, 19])
async def test_stateless_resume_after_cut_at_frame_k(k: int) -> None:
    """Cut just before frame k, and in the middle of frame k; the sum is unchanged."""
    n, a = 20, 77
    start = stateless_frame_end(a, k - 1) if k else WELCOME_BYTES
    cuts = [start, WELCOME_BYTES + 5]  # then mid-frame k on the resumed connection
    recorder = Recorder()
    async with running_server(random_source=FixedRandom(a=a)) as (_, port):
        result = await run_client(
            stateless_config(port, n), observer=recorder, connect=cutting_connector(cuts)
        )
    assert result.ok
    assert result.total == doubling_sum(a, n)
    assert recorder.numbers == [(i, a << i) for i in range(n)]
    assert result.reconnects == 2


@pytest.mark.parametrize("k", [0, 1, 5, 28, 29])
async def test_stateful_resume_after_cut_at_frame_k(k: int) -> None:
    """A small interval keeps the server behind the cut, except possibly at the last frame.

    At interval 0 the server would have written FINAL (and deleted the session) before the
    client read the cut bytes: the spec's final-frame-lost case, tested separately.
    """
    n, seed = 30, 987654321
    start = WELCOME_BYTES + k * STATEFUL_DATA_BYTES
    cuts = [start, WELCOME_BYTES + 4, 2]  # then mid-frame k, then inside a WELCOME header
    recorder = Recorder()
    store = MemoryStore()
    config = ServerConfig(interval=0.005)
    async with running_server(config, store=store, random_source=FixedRandom(seeds=[seed])) as (
        server,
        port,
    ):
        client = stateful_config(port, n)
        result = await run_client(client, observer=recorder, connect=cutting_connector(cuts))
        await server.wait_active(0)
        assert await store.get(client.client_id) is None  # deleted after FINAL
    accepted = [value for _, value in recorder.numbers]
    assert [index for index, _ in recorder.numbers] == list(range(len(accepted)))
    assert accepted == session_values(seed, n)[: len(accepted)]
    if not result.ok:  # allowed only if FINAL was already written when the cut came
        assert k >= n - 5  # the server runs at most a few frames ahead of the client
        assert result.final_frame_lost
        assert result.error == "SESSION_UNKNOWN"
        assert server.stats.streams_completed == 1
        return
    assert result.checksum_expected == session_checksum(seed, n)
    assert len(accepted) == n


async def test_cut_before_welcome_starts_a_fresh_stateless_stream() -> None:
    async with running_server(random_source=FixedRandom(a=5)) as (_, port):
        result = await run_client(stateless_config(port, 10), connect=cutting_connector([0, 10]))
    assert result.ok
    assert result.total == doubling_sum(5, 10)


# --- session lifecycle -------------------------------------------------------------------------


async def _open_raw(port: int) -> tuple[anyio.abc.SocketStream, RawReader]:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    return stream, RawReader(stream)


async def _take(reader: RawReader, count: int) -> list[int]:
    """Read WELCOME (if first) and ``count`` numbers; return the frame types seen."""
    types = []
    for _ in range(count):
        item = await reader.next()
        assert item is not None
        types.append(item.type)
    return types


async def _stateful_drop_after(port: int, client_id: str, n: int, frames: int, **kw: int) -> None:
    from .support import stateful_hello

    stream, reader = await _open_raw(port)
    async with stream:
        await stream.send(stateful_hello(client_id, n, **kw))  # type: ignore[arg-type]
        types = await _take(reader, frames)
        assert types[0] == 0x02


async def _resume_error(port: int, client_id: str, n: int, next_index: int) -> int | None:
    """Resume and return the ERROR code, or None if the server WELCOMEs the resume."""
    from .support import stateful_hello

    stream, reader = await _open_raw(port)
    async with stream:
        await stream.send(stateful_hello(client_id, n, resume=True, next_index=next_index))
        first = await reader.next()
        assert first is not None
        return None if first.type == 0x02 else first.error_code


def _lifecycle_server(clock: FakeClock, **kw: float) -> tuple[ServerConfig, MemoryStore]:
    config = ServerConfig(interval=0.05, session_ttl=5.0, **kw)  # type: ignore[arg-type]
    return config, MemoryStore(clock=clock)


async def test_resume_before_ttl_works_and_after_ttl_is_rejected() -> None:
    clock = FakeClock()
    config, store = _lifecycle_server(clock)
    cid = str(uuid.uuid4())
    async with running_server(config, store=store) as (server, port):
        await _stateful_drop_after(port, cid, 100, 3)
        await server.wait_active(0)
        clock.advance(4.9)
        assert await _resume_error(port, cid, 100, 2) is None  # within the TTL
        await server.wait_active(0)
        clock.advance(5.1)
        assert await _resume_error(port, cid, 100, 2) == 20  # SESSION_UNKNOWN


async def test_session_that_resumed_and_dropped_again_still_expires() -> None:
    clock = FakeClock()
    config, store = _lifecycle_server(clock)
    cid = str(uuid.uuid4())
    async with running_server(config, store=store) as (server, port):
        await _stateful_drop_after(port, cid, 100, 2)
        await server.wait_active(0)
        clock.advance(3)
        await _stateful_drop_after(port, cid, 100, 2, resume=True, next_index=1)
        await server.wait_active(0)
        clock.advance(4)  # 7 s after the first drop, 4 s after the second: still alive
        assert await store.get(cid) is not None
        clock.advance(1.1)  # 5.1 s after the second drop: gone
        assert await store.get(cid) is None
        assert await _resume_error(port, cid, 100, 2) == 20


async def test_session_is_deleted_right_after_final_frame() -> None:
    """The fake clock never moves: the session can only be gone because it was deleted."""
    from .support import stateful_hello

    clock = FakeClock()
    config, store = _lifecycle_server(clock)
    config = ServerConfig(interval=0.0, session_ttl=5.0)
    cid = str(uuid.uuid4())
    async with running_server(config, store=store) as (server, port):
        stream, reader = await _open_raw(port)
        async with stream:
            await stream.send(stateful_hello(cid, 3))
            types = await _take(reader, 4)
            assert types == [0x02, 0x03, 0x03, 0x04]
            await server.wait_active(0)
        assert await store.get(cid) is None
        # The final frame counts as lost if a client now resumes: the spec's SESSION_UNKNOWN.
        assert await _resume_error(port, cid, 3, 2) == 20


async def test_second_connection_for_same_client_id_takes_over() -> None:
    """Latest wins: the older connection gets SESSION_SUPERSEDED, the newer one completes."""
    from .support import stateful_hello

    seed = 42
    config = ServerConfig(interval=0.02, session_ttl=5.0, lease_refresh=0.05)
    cid = str(uuid.uuid4())
    n = 40
    async with running_server(config, random_source=FixedRandom(seeds=[seed])) as (_, port):
        old, old_reader = await _open_raw(port)
        async with old:
            await old.send(stateful_hello(cid, n))
            await _take(old_reader, 3)  # WELCOME and two numbers
            recorder = Recorder()
            takeover = ClientConfig(port=port, mode=Mode.STATEFUL, n=n, client_id=cid, backoff=FAST)
            result = await run_client(takeover, observer=recorder)
            codes = []
            while (item := await old_reader.next()) is not None:
                codes.append(item.type)
                last = item
            assert codes[-1] == 0x05
            assert last.error_code == 22  # SESSION_SUPERSEDED
    assert result.ok
    assert result.checksum_computed == session_checksum(seed, n)


async def test_fresh_hello_with_other_n_is_a_mismatch_and_leaves_session_alone() -> None:
    from .support import stateful_hello

    clock = FakeClock()
    config, store = _lifecycle_server(clock)
    cid = str(uuid.uuid4())
    async with running_server(config, store=store) as (server, port):
        await _stateful_drop_after(port, cid, 100, 2)
        await server.wait_active(0)
        stream, reader = await _open_raw(port)
        async with stream:
            await stream.send(stateful_hello(cid, 99))
            item = await reader.next()
            assert item is not None
            assert item.error_code == 21  # SESSION_MISMATCH
        assert await _resume_error(port, cid, 100, 1) is None


# --- backoff -------------------------------------------------------------------------------------


async def _attempt_times(port: int, backoff: Backoff) -> tuple[list[float], int]:
    recorder = Recorder()
    config = ClientConfig(port=port, mode=Mode.STATELESS, n=5, backoff=backoff, connect_timeout=1.0)
    result = await run_client(config, observer=recorder, rng=random.Random(7))
    return recorder.attempts, result.exit_code


def _assert_schedule(times: list[float], backoff: Backoff) -> None:
    """Attempt i+1 waits at least the jitter floor of delay(k = i + 1): no busy loop."""
    assert len(times) == backoff.max_retries
    for failed, (earlier, later) in enumerate(itertools.pairwise(times), start=1):
        floor = min(backoff.initial * backoff.multiplier**failed, backoff.maximum)
        assert later - earlier >= floor * (1 - backoff.jitter) * 0.99, (failed, later - earlier)


BACKOFF = Backoff(initial=0.02, multiplier=2.0, jitter=0.2, maximum=0.1, max_retries=5)


async def test_backoff_when_nothing_listens() -> None:
    with anyio.CancelScope():
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.aclose()  # the port is now closed: every connect is refused
    times, code = await _attempt_times(port, BACKOFF)
    assert code == 4
    _assert_schedule(times, BACKOFF)


@pytest.mark.parametrize("reset", [False, True])
async def test_backoff_when_listener_accepts_then_closes(reset: bool) -> None:
    import socket

    async def slam(stream: anyio.abc.SocketStream) -> None:
        if reset:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, slam)
        times, code = await _attempt_times(port, BACKOFF)
        tg.cancel_scope.cancel()
    assert code == 4
    _assert_schedule(times, BACKOFF)


# --- bad input from a raw socket ---------------------------------------------------------------


BAD_INPUTS = {
    "garbage": (b"GET / HTTP/1.1\r\n\r\n", 1),
    "too_long_frame": (struct.pack(">BH", 0x01, 0xFFFF), 2),
    "n_zero": (None, 6),
    "n_too_big": (None, 6),
    "resume_a_zero": (None, 7),
    "resume_a_256": (None, 7),
    "invalid_uuid": (None, 9),
    "unknown_version": (None, 4),
    "welcome_from_client": (None, 3),
    "byte_after_hello_same_write": (None, 3),
    "second_hello_same_write": (None, 3),
}


def _bad_bytes(name: str) -> bytes:
    from .support import frame, stateful_hello, stateless_hello

    if name == "n_zero":
        return stateless_hello(0)
    if name == "n_too_big":
        return stateless_hello(0x10000)
    if name == "resume_a_zero":
        return stateless_hello(10, resume=True, next_index=1, a=0)
    if name == "resume_a_256":
        return stateless_hello(10, resume=True, next_index=1, a=256)
    if name == "invalid_uuid":
        return stateful_hello("not-a-uuid-at-all-but-36-characters!", 10)
    if name == "unknown_version":
        return frame(0x01, bytes([2]) + b"\x00" * 30)
    if name == "welcome_from_client":
        return frame(0x02, b"\x00" * 23)
    if name == "byte_after_hello_same_write":
        return stateless_hello(10) + b"\x00"
    if name == "second_hello_same_write":
        return stateless_hello(10) + stateless_hello(10)
    data = BAD_INPUTS[name][0]
    assert data is not None
    return data


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
async def test_bad_input_gets_error_frame_and_others_are_unaffected(name: str) -> None:
    expected_code = BAD_INPUTS[name][1]
    config = ServerConfig(interval=0.001, handshake_timeout=5.0)
    outcome: dict[str, object] = {}
    async with (
        running_server(config, random_source=FixedRandom(a=3)) as (_, port),
        anyio.create_task_group() as tg,
    ):

        async def good_client() -> None:
            outcome["result"] = await run_client(stateless_config(port, 200))

        tg.start_soon(good_client)
        stream, reader = await _open_raw(port)
        async with stream:
            await stream.send(_bad_bytes(name))
            item = await reader.next()
            assert item is not None
            assert item.error_code == expected_code
            assert await reader.next() is None  # and the server closed
    result = outcome["result"]
    assert getattr(result, "ok", False)
    assert getattr(result, "total", None) == doubling_sum(3, 200)


async def test_silent_client_gets_handshake_timeout() -> None:
    config = ServerConfig(interval=0.0, handshake_timeout=0.2)
    async with running_server(config) as (_, port):
        stream, reader = await _open_raw(port)
        async with stream:
            item = await reader.next()
            assert item is not None
            assert item.error_code == 10
            assert await reader.next() is None


async def test_bytes_after_hello_are_rejected() -> None:
    from .support import stateless_hello

    config = ServerConfig(interval=0.5)
    async with running_server(config) as (_, port):
        stream, reader = await _open_raw(port)
        async with stream:
            await stream.send(stateless_hello(100))
            await _take(reader, 2)
            await stream.send(b"\x01")
            last = None
            while (item := await reader.next()) is not None:
                last = item
            assert last is not None
            assert last.error_code == 3


async def test_server_restricted_to_one_mode_rejects_the_other() -> None:
    from .support import stateful_hello

    config = ServerConfig(interval=0.0, modes=frozenset({Mode.STATELESS}))
    async with running_server(config) as (_, port):
        stream, reader = await _open_raw(port)
        async with stream:
            await stream.send(stateful_hello(str(uuid.uuid4()), 5))
            item = await reader.next()
            assert item is not None
            assert item.error_code == 5
        result = await run_client(stateful_config(port, 5))
    assert result.exit_code == EXIT_REJECTED
    assert result.error == "UNSUPPORTED_MODE"


async def test_connection_limit_answers_server_busy() -> None:
    config = ServerConfig(interval=1.0, max_connections=1)
    async with running_server(config) as (_, port):
        from .support import stateless_hello

        first, first_reader = await _open_raw(port)
        async with first:
            await first.send(stateless_hello(5))
            await _take(first_reader, 1)
            second, second_reader = await _open_raw(port)
            async with second:
                item = await second_reader.next()
                assert item is not None
                assert item.error_code == 31


class _SwallowingStream(PassThroughStream):
    """Passes ``limit`` bytes, then reads the rest to the server's EOF and drops it: a FINAL
    acknowledged by the client's host but lost before the client read it."""

    def __init__(self, inner: anyio.abc.ByteStream, limit: int) -> None:
        super().__init__(inner)
        self.remaining = limit

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.remaining <= 0:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while await self.inner.receive():
                    pass
            await self.inner.aclose()
            raise anyio.EndOfStream
        data = await self.inner.receive(min(max_bytes, self.remaining))
        self.remaining -= len(data)
        return data


async def test_client_reports_final_frame_lost_when_session_completed_in_flight() -> None:
    """The FINAL frame is written (every earlier byte acknowledged), the session deleted, and
    the frame lost on its way to the client."""
    async with running_server(ServerConfig(interval=0.0, session_ttl=30.0)) as (server, port):
        config = stateful_config(port, 5)
        first = True

        async def connect(host: str, port: int) -> anyio.abc.ByteStream:
            nonlocal first
            stream = await anyio.connect_tcp(host, port)
            if not first:
                return stream
            first = False
            return _SwallowingStream(stream, WELCOME_BYTES + 4 * STATEFUL_DATA_BYTES)

        result = await run_client(config, connect=connect)
    assert not result.ok
    assert result.exit_code == EXIT_REJECTED
    assert result.error == "SESSION_UNKNOWN"
    assert result.final_frame_lost
    assert server.stats.streams_completed == 1


async def test_client_reports_expiry_not_final_loss_after_the_ttl() -> None:
    """The client waits longer than the announced TTL before resuming: an expiry, not a loss."""
    config = ServerConfig(interval=0.05, session_ttl=0.2)
    async with running_server(config) as (server, port):
        client = ClientConfig(
            port=port,
            mode=Mode.STATEFUL,
            n=50,
            client_id=str(uuid.uuid4()),
            backoff=Backoff(initial=0.6, jitter=0.0, max_retries=3),
        )
        cut = WELCOME_BYTES + 2 * STATEFUL_DATA_BYTES
        result = await run_client(client, connect=cutting_connector([cut]))
    assert result.exit_code == EXIT_REJECTED
    assert result.error == "SESSION_UNKNOWN"
    assert not result.final_frame_lost
    assert server.stats.streams_completed == 0


async def test_session_unknown_after_a_server_error_is_not_a_lost_final_frame() -> None:
    """WELCOME, then SHUTTING_DOWN; the resume is refused: the server said it stopped short."""
    welcome = frame(0x02, struct.pack(">BBBIIIII", 1, 2, 0, 10, 0, 0, 0, 30000))
    shutting_down = frame(0x05, struct.pack(">H", 32) + b"bye")
    unknown = frame(0x05, struct.pack(">H", 20) + b"no session")
    answers = iter([welcome + shutting_down, unknown])

    async def scripted(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()  # the HELLO
            await stream.send(next(answers))

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, scripted)
        result = await run_client(stateful_config(port, 10))
        tg.cancel_scope.cancel()
    assert result.exit_code == EXIT_REJECTED
    assert result.error == "SESSION_UNKNOWN"
    assert not result.final_frame_lost


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (b"\xff", 1),  # no frame type: MALFORMED_FRAME on that byte (spec 1.1 §3 rule 1)
        (b"GE", 1),  # the start of an HTTP request, then silence
        (b"\x00", 1),
        (b"\x01", 10),  # a known type, then silence: the handshake timeout decides
        (b"\x02\x00", 10),
    ],
)
async def test_one_or_two_bytes_then_silence(sent: bytes, code: int) -> None:
    """Spec 1.1 §3, §5.2: garbage is refused at once, a known type waits for the timeout.

    The handshake timeout is 1 s here: a MALFORMED_FRAME (code 1) can only come from the
    first-byte rule, a HANDSHAKE_TIMEOUT (code 10) only from the timer.
    """
    async with running_server(ServerConfig(handshake_timeout=1.0)) as (_, port):
        stream, reader = await _open_raw(port)
        async with stream:
            await stream.send(sent)
            with anyio.fail_after(10):
                answer = await reader.next()
    assert answer is not None
    assert answer.error_code == code


async def test_silence_longer_than_the_ttl_is_an_expiry_not_a_lost_final_frame() -> None:
    """Spec 1.1 §12.2 condition 2: "less than the TTL" runs from the last complete frame.

    TTL 300 ms; the connection goes silent after DATA 0 and the client notices only after its
    0.6 s silence timeout. The SESSION_UNKNOWN arrives within the TTL of that detection but
    more than the TTL after the last frame: the session may have expired, so it is not a lost
    FINAL (1.0 measured from the detection and said it was).
    """
    welcome = frame(0x02, struct.pack(">BBBIIIII", 1, 2, 0, 10, 0, 1000, 0, 300))
    data0 = frame(0x03, struct.pack(">II", 0, 7))
    unknown = frame(0x05, struct.pack(">H", 20) + b"no session")
    answers = iter([welcome + data0, unknown])

    async def scripted(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()  # the HELLO
            answer = next(answers)
            await stream.send(answer)
            if answer is not unknown:
                await anyio.sleep_forever()  # silence: the client's timer ends it

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    config = ClientConfig(
        port=port,
        mode=Mode.STATEFUL,
        n=10,
        client_id=str(uuid.uuid4()),
        silence_timeout=0.6,
        backoff=FAST,
    )
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, scripted)
        result = await run_client(config)
        tg.cancel_scope.cancel()
    assert result.exit_code == EXIT_REJECTED
    assert result.error == "SESSION_UNKNOWN"
    assert result.received == 1
    assert not result.final_frame_lost


async def test_a_trickle_that_never_completes_a_frame_counts_as_silence() -> None:
    """Bytes keep coming but no frame completes: the silence timer must still fire (§14.1)."""
    welcome = frame(0x02, struct.pack(">BBBIIIII", 1, 1, 0, 5, 0, 0, 3, 0))

    async def trickle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()  # the HELLO
            await stream.send(welcome + struct.pack(">BHI", 0x03, 16000, 0))
            while True:  # one more payload byte every 20 ms, never the whole frame
                await stream.send(b"\x01")
                await anyio.sleep(0.02)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    config = ClientConfig(
        port=port,
        mode=Mode.STATELESS,
        n=5,
        silence_timeout=0.3,
        backoff=Backoff(initial=0.01, max_retries=1),
    )
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, trickle)
        with anyio.fail_after(10):  # a timer reset by every byte would never fire
            result = await run_client(config)
        tg.cancel_scope.cancel()
    assert result.exit_code == 4
    assert result.received == 0
