"""Benchmarks: ``nox -s bench`` (or ``python -m tests.bench``). Reports figures, asserts nothing.

* end-to-end throughput at interval 0 for n = 65535, both variants, both anyio backends;
* resume latency (TCP connect to the first resumed number), p50 and p99, memory vs Redis store;
* session-store operations per message sent.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio
from rich.console import Console
from rich.table import Table

from reference.client import ClientConfig, run_client
from reference.protocol import Mode
from reference.server import NumberServer, ServerConfig
from reference.store import DelegatingStore, MemoryStore, SessionStore, open_store

from .redis_fixture import RedisServerMissingError, redis_server
from .support import RawReader, stateful_hello

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
    args = parser.parse_args(argv)
    console = Console()

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


def _calls(calls: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))


if __name__ == "__main__":
    raise SystemExit(main())
