"""Three server processes share one Redis behind the round-robin proxy; one is SIGKILLed mid-run.

Every reconnect lands on the next server, so a session is created on one process and resumed on
others; the kill takes streams down mid-flight. Every client must still verify its checksum and
accept exactly the sequence its seed defines, and an expired session must be refused everywhere.
"""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from proxy import ChaosProxy, FaultConfig
from reference.client import Backoff, ClientConfig, ClientResult, run_client
from reference.protocol import Mode
from reference.store import SessionStore, open_store

from .oracle import session_checksum, session_values
from .redis_fixture import free_port, redis_server_or_skip
from .support import (
    PassThroughStream,
    RawReader,
    eventually,
    stateful_hello,
    wait_until_listening,
)
from .test_e2e import Recorder

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

TTL = 2.0
INTERVAL = 0.01
CLIENTS = 6
N = 80


class ServerProcess:
    """A ``python -m reference.server`` subprocess on a fixed port, restartable after a kill."""

    def __init__(self, port: int, store_url: str) -> None:
        self.port = port
        self.command = [
            sys.executable,
            "-m",
            "reference.server",
            "--port",
            str(port),
            "--interval",
            str(INTERVAL),
            "--session-ttl",
            str(TTL),
            "--store",
            store_url,
            "--log-level",
            "warning",
        ]
        self.process: anyio.abc.Process | None = None

    async def start(self) -> None:
        self.process = await anyio.open_process(self.command, stdout=None, stderr=None)
        await wait_until_listening(self.port)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with anyio.move_on_after(5, shield=True):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


@asynccontextmanager
async def server_farm(count: int, store_url: str) -> AsyncIterator[list[ServerProcess]]:
    servers = [ServerProcess(free_port(), store_url) for _ in range(count)]
    try:
        for server in servers:
            await server.start()
        yield servers
    finally:
        for server in servers:
            await server.stop()


class SeedReadingStream(PassThroughStream):
    """Reads the session's seed from Redis after each receive until it is known.

    The seed is the test's independent truth; a session is only readable between its WELCOME
    and its FINAL, so it is read while the stream runs.
    """

    def __init__(
        self, inner: anyio.abc.ByteStream, store: SessionStore, client_id: str, seeds: set[int]
    ) -> None:
        super().__init__(inner)
        self.store, self.client_id, self.seeds = store, client_id, seeds

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.inner.receive(max_bytes)
        if not self.seeds:
            record = await self.store.get(self.client_id)
            if record is not None:
                self.seeds.add(record.seed)
        return data


def seed_watching_connector(
    store: SessionStore, client_id: str, seeds: set[int]
) -> Callable[[str, int], Awaitable[anyio.abc.ByteStream]]:
    """Before each connect, and while streaming, read the session's seed from Redis."""

    async def connect(host: str, port: int) -> anyio.abc.ByteStream:
        record = await store.get(client_id)
        if record is not None:
            seeds.add(record.seed)
        stream = await anyio.connect_tcp(host, port)
        return SeedReadingStream(stream, store, client_id, seeds)

    return connect


async def resume_answer(port: int, client_id: str, n: int, next_index: int) -> int:
    """The first frame type a server answers a RESUME with (2 WELCOME, 5 ERROR) and its code."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(stateful_hello(client_id, n, resume=True, next_index=next_index))
        frame = await RawReader(stream).next()
        assert frame is not None
        return frame.error_code if frame.type == 0x05 else 0


async def test_sessions_survive_cuts_and_a_sigkill_across_three_servers() -> None:
    with redis_server_or_skip() as url:
        store = await open_store(url)
        try:
            await _run_farm(url, store)
        finally:
            await store.aclose()


async def _run_farm(url: str, store: SessionStore) -> None:
    async with server_farm(3, url) as servers, anyio.create_task_group() as tg:
        proxy = ChaosProxy(
            [("127.0.0.1", server.port) for server in servers],
            config=FaultConfig(drop_rate=0.5, reset_rate=0.1, fault_window=600),
            seed=11,
        )
        proxy_port = await tg.start(proxy.serve)
        progress = anyio.Event()
        recorders = [Recorder() for _ in range(CLIENTS)]
        seeds: list[set[int]] = [set() for _ in range(CLIENTS)]
        results: list[ClientResult | None] = [None] * CLIENTS

        class Progress(Recorder):
            def number(self, index: int, value: int) -> None:
                super().number(index, value)
                if sum(len(r.numbers) for r in recorders) >= CLIENTS * N // 3:
                    progress.set()

        async def client(slot: int) -> None:
            client_id = str(uuid.UUID(int=random.Random(slot).getrandbits(128), version=4))
            recorder = Progress()
            recorders[slot] = recorder
            config = ClientConfig(
                port=proxy_port,
                mode=Mode.STATEFUL,
                n=N,
                client_id=client_id,
                # Every cut here (drop, reset, SIGKILL) reaches the client as EOF or RST; no
                # silence is injected. A 0.5 s timer in this process, which also runs the proxy,
                # fired on a loaded machine while frames waited in the proxy: cuts of its own.
                silence_timeout=5.0,
                backoff=Backoff(initial=0.02, maximum=0.2, max_retries=60),
            )
            connect = seed_watching_connector(store, client_id, seeds[slot])
            results[slot] = await run_client(
                config, observer=recorder, rng=random.Random(slot), connect=connect
            )

        killed_at: list[int] = []

        async def killer() -> None:
            await progress.wait()
            await servers[0].kill()  # SIGKILL mid-stream: no release, no goodbye
            killed_at.append(sum(len(r.numbers) for r in recorders))
            await servers[0].start()

        with anyio.fail_after(90):
            async with anyio.create_task_group() as clients:
                clients.start_soon(killer)
                for slot in range(CLIENTS):
                    clients.start_soon(client, slot)
        assert killed_at[0] < CLIENTS * N  # the kill came while streams were running
        assert proxy.counters.connections_total > CLIENTS  # clients really reconnected
        for slot, result in enumerate(results):
            assert result is not None
            assert len(seeds[slot]) == 1, "one seed for the whole session, on every server"
            (seed,) = seeds[slot]
            _check_result(result, seed, [value for _, value in recorders[slot].numbers])

        async def no_sessions() -> bool:
            return await store.count() == 0

        await eventually(no_sessions, within=10)  # each is deleted right after its FINAL

        # An expired session is refused by every server, including the restarted one.
        client_id = str(uuid.uuid4())
        async with await anyio.connect_tcp("127.0.0.1", servers[1].port) as stream:
            await stream.send(stateful_hello(client_id, 50))
            reader = RawReader(stream)
            assert (await reader.next()) is not None  # WELCOME
            assert (await reader.next()) is not None  # number 0
        assert await store.get(client_id) is not None  # the TTL has only just started

        async def expired() -> bool:
            return await store.get(client_id) is None

        await eventually(expired, within=TTL + 10)
        for server in servers:
            assert await resume_answer(server.port, client_id, 50, 1) == 20  # SESSION_UNKNOWN
        tg.cancel_scope.cancel()


def _check_result(result: ClientResult, seed: int, values: list[int]) -> None:
    """Verified with the seed's sequence, or lost FINAL alone (spec §16.6): a drop or reset
    that struck FINAL itself, after the server had written it and deleted the session.
    Everything before FINAL was forwarded whole then, so exactly n - 1 numbers arrived."""
    if not result.ok:
        assert result.error == "SESSION_UNKNOWN", result
        assert result.final_frame_lost, result
        assert values == session_values(seed, N)[: N - 1], result
        return
    assert result.checksum_expected == session_checksum(seed, N)
    assert values == session_values(seed, N)
