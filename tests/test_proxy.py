"""The chaos proxy: exact faults, shaping, upstream choice, reproducibility and the CLI."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import ChaosProxy, Direction, FaultConfig, FaultKind, FramePosition, ScheduledFault
from proxy.cli import main
from proxy.faults import plan_connection, stratified_draw

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = bytes(range(256)) * 8  # 2048 bytes, every offset distinguishable modulo 256


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@dataclass(eq=False)
class EchoServer:
    """Upstream that echoes until EOF, recording per connection what arrived and when it ended."""

    received: list[bytearray] = field(default_factory=list)
    closed: list[anyio.Event] = field(default_factory=list)

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            task_status.started(listener.extra(SocketAttribute.local_port))
            await listener.serve(self._echo)

    async def _echo(self, stream: SocketStream) -> None:
        received, closed = bytearray(), anyio.Event()
        self.received.append(received)
        self.closed.append(closed)
        try:
            async with stream:
                with contextlib.suppress(anyio.BrokenResourceError):
                    async for data in stream:
                        received += data
                        await stream.send(data)
        finally:
            closed.set()


@dataclass(frozen=True)
class Setup:
    proxy: ChaosProxy
    port: int
    echoes: list[EchoServer]


@contextlib.contextmanager
def dead_ports(count: int) -> Iterator[list[int]]:
    """Ports bound but not listening, held for the test so nothing else can take them."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        yield [sock.getsockname()[1] for sock in socks]


@asynccontextmanager
async def proxied(*, echoes: int = 1, dead: int = 0, **options: Any) -> AsyncIterator[Setup]:
    """A proxy in front of `dead` refusing upstreams followed by `echoes` echo servers."""
    servers = [EchoServer() for _ in range(echoes)]
    with dead_ports(dead) as refusing:
        async with anyio.create_task_group() as tg:
            ports = refusing + [await tg.start(server.serve) for server in servers]
            proxy = ChaosProxy([("127.0.0.1", port) for port in ports], **options)
            port = await tg.start(proxy.serve)
            with anyio.fail_after(10):  # a hang is a failure, not a stuck suite
                yield Setup(proxy, port, servers)
            tg.cancel_scope.cancel()


async def exchange(port: int, payload: bytes) -> tuple[bytes, type[BaseException] | None]:
    """Send `payload`, half-close, read until the end; what arrived and how the stream ended."""
    received = bytearray()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        # The proxy may already have cut us off; only what we read back matters.
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await stream.send(payload)
            await stream.send_eof()
        try:
            async for data in stream:
                received += data
        except anyio.BrokenResourceError as exc:
            return bytes(received), type(exc)
    return bytes(received), None


def fault_tuples(events: str) -> list[tuple[int, str, int]]:
    lines = [json.loads(line) for line in events.splitlines()]
    return [(e["connection"], e["kind"], e["offset_downstream"]) for e in lines]


async def test_forwards_both_ways_byte_exact() -> None:
    async with proxied() as setup:
        assert await exchange(setup.port, PAYLOAD) == (PAYLOAD, None)
        assert setup.echoes[0].received == [bytearray(PAYLOAD)]
        assert setup.proxy.recent_events() == []


@pytest.mark.parametrize("after", [0, 1, 100, 1000])
async def test_scheduled_drop_cuts_after_exactly_b_bytes(after: int) -> None:
    schedule = [ScheduledFault(connection=0, after_bytes=after, kind=FaultKind.DROP)]
    async with proxied(schedule=schedule) as setup:
        assert await exchange(setup.port, PAYLOAD) == (PAYLOAD[:after], None)
        [event] = setup.proxy.recent_events()
        assert (event.kind, event.direction, event.offset_downstream) == (
            FaultKind.DROP,
            Direction.DOWNSTREAM,
            after,
        )


@pytest.mark.parametrize("after", [0, 100, 1000])
async def test_scheduled_reset_aborts_after_exactly_b_bytes(after: int) -> None:
    schedule = [ScheduledFault(connection=0, after_bytes=after, kind=FaultKind.RESET)]
    async with proxied(schedule=schedule) as setup:
        received, error = await exchange(setup.port, PAYLOAD)
        assert (received, error) == (PAYLOAD[:after], anyio.BrokenResourceError)


@settings(max_examples=15, deadline=None)
@given(
    size=st.integers(0, len(PAYLOAD)),
    after=st.integers(0, len(PAYLOAD) + 10),
    kind=st.sampled_from([FaultKind.DROP, FaultKind.RESET]),
)
async def test_terminal_fault_fires_iff_its_offset_is_reached(
    size: int, after: int, kind: FaultKind
) -> None:
    schedule = [ScheduledFault(connection=0, after_bytes=after, kind=kind)]
    async with proxied(schedule=schedule) as setup:
        received, error = await exchange(setup.port, PAYLOAD[:size])
    fired = after <= size
    assert received == PAYLOAD[: min(after, size)]
    assert error is (anyio.BrokenResourceError if fired and kind is FaultKind.RESET else None)


async def test_upstream_direction_fault_counts_upstream_bytes() -> None:
    schedule = [
        ScheduledFault(
            connection=0, after_bytes=5, kind=FaultKind.DROP, direction=Direction.UPSTREAM
        )
    ]
    async with proxied(schedule=schedule) as setup:
        await exchange(setup.port, PAYLOAD)
        await setup.echoes[0].closed[0].wait()
        assert setup.echoes[0].received == [bytearray(PAYLOAD[:5])]
        [event] = setup.proxy.recent_events()
        assert (event.direction, event.offset_upstream) == (Direction.UPSTREAM, 5)


async def test_blackhole_stalls_both_ways_until_a_peer_closes() -> None:
    schedule = [ScheduledFault(connection=0, after_bytes=100, kind=FaultKind.BLACKHOLE)]
    async with proxied(schedule=schedule) as setup:
        stream = await anyio.connect_tcp("127.0.0.1", setup.port)
        async with stream:
            await stream.send(PAYLOAD)
            received = bytearray()
            while len(received) < 100:
                received += await stream.receive()
            assert received == PAYLOAD[:100]
            with anyio.move_on_after(0.2) as quiet:
                await stream.receive()
            assert quiet.cancelled_caught
            assert not setup.echoes[0].closed[0].is_set()
            assert setup.proxy.counters.connections_active == 1
        await setup.echoes[0].closed[0].wait()  # the client closed, so the proxy closed upstream
        [event] = setup.proxy.recent_events()
        assert (event.kind, event.offset_downstream) == (FaultKind.BLACKHOLE, 100)


class EventLog(io.StringIO):
    """An event log a test can wait on instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote = anyio.Event()

    def write(self, text: str) -> int:
        self.wrote.set()
        return super().write(text)


async def test_cancelling_the_proxy_ends_a_blackhole() -> None:
    echo, events = EchoServer(), EventLog()
    schedule = [ScheduledFault(connection=0, after_bytes=0, kind=FaultKind.BLACKHOLE)]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            upstream = await tg.start(echo.serve)
            proxy = ChaosProxy([("127.0.0.1", upstream)], schedule=schedule, event_log=events)
            async with anyio.create_task_group() as proxy_tg:
                port = await proxy_tg.start(proxy.serve)
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    await events.wrote.wait()
                    proxy_tg.cancel_scope.cancel()
                    with pytest.raises(anyio.EndOfStream):
                        await stream.receive()
            await echo.closed[0].wait()
            tg.cancel_scope.cancel()


async def test_refuse_accepts_then_closes_without_a_byte() -> None:
    async with proxied(config=FaultConfig(refuse_rate=1.0, refuse_duration=0.0)) as setup:
        assert await exchange(setup.port, b"") == (b"", None)
        assert setup.echoes[0].received == []
        assert setup.proxy.counters.faults == {"refuse": 1}


async def test_refuse_period_covers_later_connections_until_it_expires() -> None:
    config = FaultConfig(refuse_rate=0.5, refuse_duration=10.0)
    seed = next(
        seed
        for seed in range(1000)
        if [
            plan_connection(i, config=config, schedule=(), seed=seed).starts_refuse
            for i in (0, 1, 2)
        ]
        == [True, False, False]
    )
    now = 0.0
    async with proxied(config=config, seed=seed, clock=lambda: now) as setup:
        assert await exchange(setup.port, b"") == (b"", None)
        assert await exchange(setup.port, b"") == (b"", None)  # inside the period
        now = 10.5
        assert await exchange(setup.port, b"hi") == (b"hi", None)
        kinds = [(e.connection, e.kind) for e in setup.proxy.recent_events()]
        assert kinds == [(0, FaultKind.REFUSE), (1, FaultKind.REFUSE)]


async def test_limit_data_cuts_every_connection() -> None:
    async with proxied(config=FaultConfig(limit_data=300)) as setup:
        for _ in range(2):
            assert await exchange(setup.port, PAYLOAD) == (PAYLOAD[:300], None)
        assert setup.proxy.counters.faults == {"limit_data": 2}


@pytest.mark.parametrize(
    ("config", "schedule"),
    [
        pytest.param(FaultConfig(slice_size=3), (), id="slice"),
        pytest.param(FaultConfig(slice_size=700, slice_delay=0.001), (), id="slice-delay"),
        pytest.param(
            FaultConfig(),
            (ScheduledFault(connection=0, after_bytes=10, kind=FaultKind.SLICE),),
            id="scheduled-slice",
        ),
        pytest.param(FaultConfig(latency=0.002, jitter=0.002), (), id="latency"),
        pytest.param(FaultConfig(bandwidth=100_000), (), id="bandwidth"),
    ],
)
async def test_shaping_delivers_identical_bytes(
    config: FaultConfig, schedule: Sequence[ScheduledFault]
) -> None:
    async with proxied(config=config, schedule=schedule) as setup:
        assert await exchange(setup.port, PAYLOAD * 4) == (PAYLOAD * 4, None)
        assert sum(setup.proxy.counters.faults.values()) == 1


async def test_round_robin_spreads_connections_over_upstreams() -> None:
    async with proxied(echoes=2) as setup:
        for i in range(4):
            assert await exchange(setup.port, b"%d" % i) == (b"%d" % i, None)
        assert [[bytes(r) for r in echo.received] for echo in setup.echoes] == [
            [b"0", b"2"],
            [b"1", b"3"],
        ]


async def test_failover_to_the_next_upstream() -> None:
    async with proxied(dead=1, echoes=1) as setup:
        for i in range(2):
            assert await exchange(setup.port, b"%d" % i) == (b"%d" % i, None)
        assert setup.proxy.counters.upstream_failures == 1


async def test_client_closed_when_every_upstream_is_down() -> None:
    async with proxied(dead=2, echoes=0) as setup:
        assert await exchange(setup.port, b"") == (b"", None)
        assert setup.proxy.counters.upstream_failures == 2


async def test_seeded_faults_are_reproducible() -> None:
    config = FaultConfig(drop_rate=0.3, reset_rate=0.3, fault_window=200)

    async def run(seed: int) -> list[tuple[int, str, int]]:
        events = io.StringIO()
        async with proxied(config=config, seed=seed, event_log=events) as setup:
            for _ in range(12):
                await exchange(setup.port, PAYLOAD[:300])
        return fault_tuples(events.getvalue())

    first = await run(1)
    assert {kind for _, kind, _ in first} == {"drop", "reset"}
    assert await run(1) == first
    assert await run(2) != first


async def test_counters_add_up() -> None:
    schedule = [
        ScheduledFault(
            connection=2, after_bytes=0, kind=FaultKind.DROP, direction=Direction.UPSTREAM
        )
    ]
    events = io.StringIO()
    async with proxied(schedule=schedule, event_log=events) as setup:
        assert await exchange(setup.port, PAYLOAD) == (PAYLOAD, None)
        assert await exchange(setup.port, PAYLOAD[:500]) == (PAYLOAD[:500], None)
        assert await exchange(setup.port, PAYLOAD) == (b"", None)
        await anyio.wait_all_tasks_blocked()  # let the proxy finish closing its side
        snapshot = setup.proxy.counters.snapshot()
    assert json.loads(json.dumps(snapshot)) == {
        "connections_total": 3,
        "connections_active": 0,
        "bytes_upstream": 2548,
        "bytes_downstream": 2548,
        "upstream_failures": 0,
        "faults": {"drop": 1},
    }
    assert fault_tuples(events.getvalue()) == [(2, "drop", 0)]


def test_config_rejects_rates_summing_above_one() -> None:
    with pytest.raises(ValueError, match="must not exceed 1"):
        FaultConfig(drop_rate=0.6, reset_rate=0.5)


def test_cli_help_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--blackhole-rate" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--listen", "0", "--upstream", "nohost"],
        ["--listen", "0", "--upstream", "host:http"],
        ["--listen", "0", "--upstream", "host:70000"],
        ["--listen", "0", "--upstream", ":80"],
        ["--listen", "0", "--upstream", "h:1", "--drop-rate", "0.7", "--reset-rate", "0.7"],
        ["--upstream", "h:1"],
    ],
)
def test_cli_bad_arguments_exit_two(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_cli_port_in_use_is_one_line_and_exit_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "proxy", "--listen", str(port), "--upstream", "127.0.0.1:1"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_exits_cleanly_on_signal(signum: signal.Signals) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "proxy", "--listen", "0", "--upstream", "127.0.0.1:1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("listening on 127.0.0.1:")
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=10)
    assert (proc.returncode, stdout, stderr) == (0, "", "")


# --- corrupt, partition, per-client listeners, sizing -------------------------------------------


@pytest.mark.parametrize(("after", "xor"), [(0, 0xFF), (1, 0x01), (1000, 0x5A), (2047, 0x80)])
async def test_corrupt_alters_exactly_one_byte_and_the_connection_goes_on(
    after: int, xor: int
) -> None:
    schedule = [ScheduledFault(connection=0, after_bytes=after, kind=FaultKind.CORRUPT, xor=xor)]
    async with proxied(schedule=schedule) as setup:
        received, error = await exchange(setup.port, PAYLOAD)
    expected = bytearray(PAYLOAD)
    expected[after] ^= xor
    assert (received, error) == (bytes(expected), None)
    assert setup.echoes[0].received == [bytearray(PAYLOAD)]  # upstream untouched
    [event] = setup.proxy.recent_events()
    assert (event.kind, event.offset_downstream, event.xor) == (FaultKind.CORRUPT, after, xor)


@dataclass(eq=False)
class Firehose:
    """Upstream that writes as fast as it may until blocked, counting what its sends accepted."""

    written: int = 0

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            task_status.started(listener.extra(SocketAttribute.local_port))
            await listener.serve(self._pour)

    async def _pour(self, stream: SocketStream) -> None:
        chunk = PAYLOAD * 8
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            async with stream:
                while True:
                    await stream.send(chunk)
                    self.written += len(chunk)


async def test_partition_stops_reading_and_forwarding_both_ways() -> None:
    """Unlike a blackhole, nothing is read after a partition: the server's writes stall."""
    after = 3000
    schedule = [ScheduledFault(connection=0, after_bytes=after, kind=FaultKind.PARTITION)]
    firehose = Firehose()
    received = bytearray()
    async with anyio.create_task_group() as tg:
        upstream = await tg.start(firehose.serve)
        proxy = ChaosProxy([("127.0.0.1", upstream)], schedule=schedule)
        port = await tg.start(proxy.serve)
        client = await anyio.connect_tcp("127.0.0.1", port)

        async def read() -> None:
            with contextlib.suppress(
                anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError
            ):
                while True:
                    received.extend(await client.receive())

        tg.start_soon(read)
        with anyio.fail_after(10):
            while not proxy.recent_events():
                await anyio.wait_all_tasks_blocked()
                await anyio.lowlevel.checkpoint()
            # Every task blocked: the firehose on a send nobody reads, the client on a
            # receive that nothing answers (no EOF: the partition holds the sockets open).
            await anyio.wait_all_tasks_blocked()
        assert bytes(received) == (PAYLOAD * 8 * 2)[:after]
        written = firehose.written
        await anyio.wait_all_tasks_blocked()
        assert firehose.written == written  # stalled, not drained as a blackhole would
        [event] = proxy.recent_events()
        assert (event.kind, event.offset_downstream) == (FaultKind.PARTITION, after)
        await client.aclose()
        tg.cancel_scope.cancel()


async def test_client_listeners_number_connections_and_alternate_upstreams() -> None:
    servers = [EchoServer(), EchoServer()]
    async with anyio.create_task_group() as tg:
        ports = [await tg.start(server.serve) for server in servers]
        proxy = ChaosProxy([("127.0.0.1", port) for port in ports])
        seven = await tg.start(functools.partial(proxy.serve, client=7))
        eight = await tg.start(functools.partial(proxy.serve, client=8))
        for port in (seven, eight, seven, seven, eight):
            assert await exchange(port, b"x") == (b"x", None)
        tg.cancel_scope.cancel()
    keys = [(r.key.client, r.key.number, r.upstream) for r in proxy.connections]
    up = [f"127.0.0.1:{port}" for port in ports]
    # Client c's connection k goes to upstream (c + k - 2) mod 2: one client alternates.
    assert keys == [
        (7, 1, up[0]),
        (8, 1, up[1]),
        (7, 2, up[1]),
        (7, 3, up[0]),
        (8, 2, up[0]),
    ]


@dataclass(frozen=True)
class FixedShape:
    size: int
    label: str = "fixed"

    def locate(self, offset: int) -> FramePosition:
        return FramePosition(frame_index=offset // 100, frame="data")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(1, len(PAYLOAD)))
async def test_sized_faults_strike_before_the_last_byte(seed: int, size: int) -> None:
    """With a sizer, a drawn fault strikes a byte of what the connection carries, never later."""
    config = FaultConfig(drop_rate=1.0)
    async with proxied(config=config, seed=seed, sizer=lambda _: FixedShape(size)) as setup:
        received, error = await exchange(setup.port, PAYLOAD[:size])
    [record] = setup.proxy.connections
    assert error is None
    assert len(received) < size
    assert received == PAYLOAD[: len(received)]
    assert record.fault is not None
    assert record.fault.offset_downstream == len(received)
    assert record.fault.frame_index == len(received) // 100
    assert (record.size, record.label, record.reached_point) == (size, "fixed", True)


async def test_sizer_sees_a_connection_without_stream_data() -> None:
    async with proxied(config=FaultConfig(drop_rate=1.0), sizer=lambda _: FixedShape(0)) as setup:
        assert await exchange(setup.port, PAYLOAD[:50]) == (PAYLOAD[:50], None)
    [record] = setup.proxy.connections
    assert record.fault is None
    assert not record.carried_stream


def test_stratified_draws_are_uniform_and_evenly_spread() -> None:
    draws = [stratified_draw(7, client, 1) for client in range(1, 1001)]
    assert all(0 <= draw < 1 for draw in draws)
    # Every tenth of [0, 1) holds 100 +- 2 of 1000 clients' first draws (binomial: +- 9.5).
    counts = [sum(k / 10 <= draw < (k + 1) / 10 for draw in draws) for k in range(10)]
    assert all(abs(count - 100) <= 2 for count in counts), counts
    # Among the clients whose first draw is below 0.3, second draws are still spread out.
    second = [stratified_draw(7, c, 2) for c in range(1, 1001) if draws[c - 1] < 0.3]
    assert abs(sum(draw < 0.5 for draw in second) / len(second) - 0.5) < 0.05
