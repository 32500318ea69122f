"""Benchmarks: ``nox -s bench`` (or ``python -m tests.bench``). Reports figures, asserts nothing.

* end-to-end throughput at interval 0 for n = 65535, both variants, both anyio backends;
* resume latency (TCP connect to the first resumed number), p50 and p99, memory vs Redis store;
* resume latency by resume index (0 .. 65534), as a ratio to resuming at index 0 in the same run;
* how a burst of resumes near the ends of long sessions delays other streams (lateness);
* session-store operations per message sent;
* the memory store's footprint (heap items, bytes) against sessions and TTL, on a fake clock;
* refreshing many leases on Redis and on a 3-master Redis Cluster: one call per lease (all at
  once) against one ``refresh_many`` batch.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import struct
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio
from rich.console import Console
from rich.table import Table

from reference.client import ClientConfig, run_client
from reference.protocol import Mode
from reference.server import NumberServer, ServerConfig
from reference.store import (
    DelegatingStore,
    Lease,
    MemoryStore,
    SessionRecord,
    SessionStore,
    StoreError,
    open_store,
)
from reference.store.redis import RedisStore

from .redis_fixture import RedisServerMissingError, redis_cluster, redis_server
from .support import FakeClock, RawReader, stateful_hello, stateless_hello

MAX_N = 0xFFFF


async def _with_server(
    config: ServerConfig, store: SessionStore, body: Callable[[int], Awaitable[float]]
) -> float:
    server = NumberServer(config, store)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        result = await body(port)
        tg.cancel_scope.cancel()
    return result


async def throughput(mode: Mode) -> float:
    """Seconds for one client to receive and verify n = 65535 numbers at interval 0."""

    async def body(port: int) -> float:
        client_id = str(uuid.uuid4()) if mode is Mode.STATEFUL else ""
        config = ClientConfig(port=port, mode=mode, n=MAX_N, client_id=client_id)
        started = time.perf_counter()
        result = await run_client(config)
        elapsed = time.perf_counter() - started
        if not result.ok:
            raise RuntimeError(f"benchmark run failed: {result}")
        return elapsed

    return await _with_server(ServerConfig(interval=0.0), MemoryStore(), body)


async def resume_latencies(store: SessionStore, resumes: int) -> list[float]:
    """Connect-to-first-number times of ``resumes`` RESUMEs of one session."""
    latencies: list[float] = []
    client_id = str(uuid.uuid4())
    n = MAX_N

    async def body(port: int) -> float:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(stateful_hello(client_id, n))
            welcome = await RawReader(stream).next()
            assert welcome is not None
            assert welcome.type == 0x02
        for k in range(resumes):
            started = time.perf_counter()
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(stateful_hello(client_id, n, resume=True, next_index=k))
                reader = RawReader(stream)
                welcome = await reader.next()
                first = await reader.next()
                latencies.append(time.perf_counter() - started)
                assert welcome is not None
                assert first is not None
                assert first.type == 0x03, first
                assert struct.unpack_from(">I", first.payload)[0] == k
        return 0.0

    await _with_server(ServerConfig(interval=1.0), store, body)
    return latencies


#: Resume points for the per-index table: index 0 is the floor (no prefix to hash).
RESUME_INDICES = (0, 1_000, 16_384, 32_768, 60_000, MAX_N - 1)


async def _open_session(port: int) -> str:
    """A new stateful session of n = 65535, left disconnected (released) for resumes."""
    client_id = str(uuid.uuid4())
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(stateful_hello(client_id, MAX_N))
        welcome = await RawReader(stream).next()
        assert welcome is not None
        assert welcome.type == 0x02, welcome
    return client_id


async def _timed_resume(port: int, client_id: str, index: int) -> float:
    """Seconds from TCP connect to the first resumed number (DATA, or FINAL at the last index)."""
    started = time.perf_counter()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(stateful_hello(client_id, MAX_N, resume=True, next_index=index))
        reader = RawReader(stream)
        welcome = await reader.next()
        first = await reader.next()
        elapsed = time.perf_counter() - started
    assert welcome is not None
    assert welcome.type == 0x02, welcome
    assert first is not None
    assert first.type in (0x03, 0x04), first
    assert struct.unpack_from(">I", first.payload)[0] == index
    return elapsed


async def resume_latencies_by_index(resumes: int) -> dict[int, list[float]]:
    """``resumes`` timed resumes at each of RESUME_INDICES, interleaved so noise hits all alike.

    A resume at the last index gets FINAL and completes (deletes) its session, so that index
    uses a session of its own for each resume, all opened before the timed loop.
    """
    latencies: dict[int, list[float]] = {index: [] for index in RESUME_INDICES}

    async def body(port: int) -> float:
        sessions = {index: await _open_session(port) for index in RESUME_INDICES}
        last = [await _open_session(port) for _ in range(resumes)]
        for resume in range(resumes):
            sessions[MAX_N - 1] = last[resume]
            for index in RESUME_INDICES:
                latencies[index].append(await _timed_resume(port, sessions[index], index))
        return 0.0

    await _with_server(ServerConfig(interval=1.0), MemoryStore(), body)
    return latencies


async def burst_lateness(
    streams: int, interval: float, burst: int, seconds: float
) -> dict[str, list[float]]:
    """Lateness of ``streams`` stateless streams at ``interval``, without then with a burst.

    Each stream's lateness is its frames' arrival time minus its own schedule (first arrival +
    j * interval), taken on the client side. The burst is ``burst`` resumes (index 65,000 of
    n = 65535 sessions) per second, run during the second half of the window only.
    """
    results: dict[str, list[float]] = {"quiet": [], "burst": []}
    count = int(seconds / interval)
    half = count // 2

    async def one_stream(port: int) -> None:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(stateless_hello(count))
            reader = RawReader(stream)
            welcome = await reader.next()
            assert welcome is not None
            t0: float | None = None
            for j in range(count):
                frame = await reader.next()
                assert frame is not None
                assert frame.type in (0x03, 0x04), frame
                now = time.perf_counter()
                if t0 is None:
                    t0 = now
                results["quiet" if j < half else "burst"].append(now - (t0 + j * interval))

    async def resumer(port: int) -> None:
        await anyio.sleep(half * interval)
        sessions = [await _open_session(port) for _ in range(burst)]
        end = time.perf_counter() + (count - half) * interval
        while time.perf_counter() < end:
            tick = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for client_id in sessions:
                    tg.start_soon(_timed_resume, port, client_id, 65_000)
            await anyio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))

    async def body(port: int) -> float:
        async with anyio.create_task_group() as tg:
            for _ in range(streams):
                tg.start_soon(one_stream, port)
            if burst:
                tg.start_soon(resumer, port)
        return 0.0

    await _with_server(ServerConfig(interval=interval), MemoryStore(), body)
    return results


async def memory_store_footprint(
    sessions: int, ttl_s: int, seconds: int, store_class: type[MemoryStore] = MemoryStore
) -> tuple[int, int]:
    """Heap items and traced bytes of a memory store after ``seconds`` of 1 Hz batch refreshes.

    The bytes are what tracemalloc sees allocated between just before the sessions are opened
    and the end (records, entries, dict, heap), minus the caller's own list of leases.
    """
    clock = FakeClock()
    leases = [Lease(str(uuid.uuid4()), f"srv-1:{i:06d}") for i in range(sessions)]
    record = SessionRecord(seed=2**63 + 12345, n=MAX_N)
    lease_ms = ttl_s * 1000 + 1000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = store_class(clock=clock)
        for client_id, owner in leases:
            await store.open_session(client_id, record, owner, lease_ms)
        for _ in range(seconds):
            clock.now += 1.0
            await store.refresh_many(leases, lease_ms)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return len(store._deadlines), used


async def refresh_times(url: str, sessions: int, rounds: int) -> dict[str, list[tuple[float, int]]]:
    """Per round: seconds to refresh ``sessions`` leases, and how many calls failed.

    Two ways: ``refresh`` per lease, all started at once (what one task per connection does in
    the worst case), and one ``refresh_many`` batch; the store's default 2 s op_timeout applies.
    """
    times: dict[str, list[tuple[float, int]]] = {"refresh x N": [], "refresh_many": []}
    prefix = f"nspbench:{uuid.uuid4().hex}:"
    async with await RedisStore.connect(url, prefix=prefix) as store:
        leases = [Lease(str(uuid.uuid4()), f"srv:{i}") for i in range(sessions)]
        record = SessionRecord(seed=1, n=MAX_N)
        for client_id, owner in leases:
            await store.open_session(client_id, record, owner, 600_000)
        for _ in range(rounds):  # batches first: the single calls leave replies in flight
            started = time.perf_counter()
            try:
                held = await store.refresh_many(leases, 600_000)
                assert all(held)
                failed = 0
            except StoreError:
                failed = sessions
            times["refresh_many"].append((time.perf_counter() - started, failed))
        failed = 0

        async def one(client_id: str, owner: str) -> None:
            nonlocal failed
            try:
                await store.refresh(client_id, owner, 600_000)
            except StoreError:
                failed += 1

        started = time.perf_counter()  # one round only: it takes op_timeout-bound seconds
        async with anyio.create_task_group() as tg:
            for client_id, owner in leases:
                tg.start_soon(one, client_id, owner)
        times["refresh x N"].append((time.perf_counter() - started, failed))
        for client_id, owner in leases:
            await store.complete(client_id, owner)
    return times


def _refresh_table(console: Console, sessions: int = 5000, rounds: int = 5) -> None:
    table = Table(
        title=f"Refreshing {sessions:,} leases: {rounds} batches, then every lease at once"
        " (op_timeout 2 s, one process)"
    )
    for column in ("store", "how", "best (ms)", "median (ms)", "worst (ms)", "failed calls"):
        table.add_column(column, justify="right")
    try:
        with contextlib.ExitStack() as stack:
            host, port = stack.enter_context(redis_cluster(3))[0]
            urls = {
                "redis": stack.enter_context(redis_server()),
                "cluster (3 masters)": f"redis+cluster://{host}:{port}",
            }
            for name, url in urls.items():
                for how, runs in anyio.run(refresh_times, url, sessions, rounds).items():
                    seconds = [elapsed for elapsed, _ in runs]
                    table.add_row(
                        name,
                        how,
                        f"{min(seconds) * 1000:.1f}",
                        f"{statistics.median(seconds) * 1000:.1f}",
                        f"{max(seconds) * 1000:.1f}",
                        f"{sum(failed for _, failed in runs):,} of {sessions * len(runs):,}",
                    )
    except RedisServerMissingError:
        table.add_row("redis", "redis-server not installed", "", "", "", "")
    console.print(table)


class CountingStore(DelegatingStore):
    """Delegates to a real store and counts each operation: the per-message cost."""

    def __init__(self, inner: SessionStore) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()

    def _observe(self, operation: str) -> None:
        self.calls[operation] += 1


async def store_ops_per_message(n: int, interval: float) -> tuple[float, Counter[str]]:
    counting = CountingStore(MemoryStore())

    async def body(port: int) -> float:
        config = ClientConfig(port=port, mode=Mode.STATEFUL, n=n, client_id=str(uuid.uuid4()))
        result = await run_client(config)
        assert result.ok
        return 0.0

    await _with_server(ServerConfig(interval=interval), counting, body)
    return sum(counting.calls.values()) / n, counting.calls


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _redis_latencies(resumes: int) -> list[float] | str:
    try:
        with redis_server() as url:
            store = await open_store(url)
            try:
                return await resume_latencies(store, resumes)
            finally:
                await store.aclose()
    except RedisServerMissingError:
        return "redis-server not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--resumes", type=int, default=1000, help="resumes per store (1000)")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs, best kept (3)")
    parser.add_argument(
        "--only",
        choices=["all", "resume", "memory", "refresh"],
        default="all",
        help="'resume': only the per-index resume latency and the burst tables; 'memory': only"
        " the memory store's footprint; 'refresh': only lease refreshes on Redis",
    )
    args = parser.parse_args(argv)
    console = Console()
    if args.only in ("all", "refresh"):
        _refresh_table(console)
    if args.only in ("all", "memory"):
        _memory_table(console)
    if args.only in ("all", "resume"):
        _resume_tables(console, args.resumes)
    if args.only != "all":
        return 0

    table = Table(title="End to end, n = 65535, interval 0 (server and client in one process)")
    table.add_column("variant")
    table.add_column("backend")
    table.add_column("best of runs (s)", justify="right")
    table.add_column("target (s)", justify="right")
    for mode, target in ((Mode.STATELESS, 3.0), (Mode.STATEFUL, 2.0)):
        for backend in ("asyncio", "trio"):
            best = min(anyio.run(throughput, mode, backend=backend) for _ in range(args.repeat))
            table.add_row(mode.name.lower(), backend, f"{best:.2f}", f"{target:.1f}")
    console.print(table)

    latency = Table(
        title=f"Resume latency: connect to first resumed number ({args.resumes} resumes)"
    )
    latency.add_column("store")
    latency.add_column("p50 (ms)", justify="right")
    latency.add_column("p99 (ms)", justify="right")
    latency.add_column("mean (ms)", justify="right")
    measured: dict[str, list[float] | str] = {
        "memory": anyio.run(resume_latencies, MemoryStore(), args.resumes),
        "redis": anyio.run(_redis_latencies, args.resumes),
    }
    for name, values in measured.items():
        if isinstance(values, str):
            latency.add_row(name, values, "", "")
            continue
        latency.add_row(
            name,
            f"{_percentile(values, 0.5) * 1000:.2f}",
            f"{_percentile(values, 0.99) * 1000:.2f}",
            f"{statistics.fmean(values) * 1000:.2f}",
        )
    console.print(latency)

    ops = Table(title="Session-store operations per message (stateful, one client)")
    ops.add_column("n")
    ops.add_column("interval (s)")
    ops.add_column("ops / message", justify="right")
    ops.add_column("calls")
    for n, interval in ((1000, 0.0), (200, 0.01)):
        per_message, calls = anyio.run(store_ops_per_message, n, interval)
        ops.add_row(str(n), f"{interval:g}", f"{per_message:.4f}", _calls(calls))
    console.print(ops)
    return 0


def _memory_table(console: Console, seconds: int = 60) -> None:
    table = Table(
        title=f"Memory store after {seconds} s of 1 Hz lease refreshes (fake clock);"
        " lease = TTL + 1 s"
    )
    for column in ("sessions", "TTL (s)", "heap items", "items / session", "bytes / session"):
        table.add_column(column, justify="right")
    for sessions in (1_000, 10_000):
        for ttl_s in (30, 3600, 86_400):
            items, used = anyio.run(memory_store_footprint, sessions, ttl_s, seconds)
            table.add_row(
                f"{sessions:,}",
                f"{ttl_s:,}",
                f"{items:,}",
                f"{items / sessions:.2f}",
                f"{used / sessions:.0f}",
            )
    console.print(table)


def _resume_tables(console: Console, resumes: int) -> None:
    by_index = anyio.run(resume_latencies_by_index, max(1, resumes // 5))
    floor = by_index[0]
    table = Table(
        title=f"Resume latency by index (memory store, {len(floor)} resumes each, interleaved;"
        " floor = resume at index 0, same run)"
    )
    for column in ("index", "p50 (ms)", "p99 (ms)", "max (ms)", "p50 / floor", "p99 / floor"):
        table.add_column(column, justify="right")
    for index, values in by_index.items():
        table.add_row(
            str(index),
            f"{_percentile(values, 0.5) * 1000:.2f}",
            f"{_percentile(values, 0.99) * 1000:.2f}",
            f"{max(values) * 1000:.2f}",
            f"{_percentile(values, 0.5) / _percentile(floor, 0.5):.2f}",
            f"{_percentile(values, 0.99) / _percentile(floor, 0.99):.2f}",
        )
    console.print(table)

    streams, interval, burst, seconds = 20, 0.02, 20, 6.0
    lateness = Table(
        title=f"Lateness of {streams} streams at {interval * 1000:g} ms interval: first half of"
        f" a {seconds:g} s window quiet, second half with {burst} resumes/s at index 65,000"
    )
    for column in ("phase", "frames", "p50 (ms)", "p99 (ms)", "max (ms)"):
        lateness.add_column(column, justify="right")
    for phase, values in anyio.run(burst_lateness, streams, interval, burst, seconds).items():
        lateness.add_row(
            phase,
            str(len(values)),
            f"{_percentile(values, 0.5) * 1000:.2f}",
            f"{_percentile(values, 0.99) * 1000:.2f}",
            f"{max(values) * 1000:.2f}",
        )
    console.print(lateness)


def _calls(calls: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))


if __name__ == "__main__":
    raise SystemExit(main())
