"""A Redis outage: stateless keeps flowing, stateful gets a retryable error, nothing is lost.

The outage is a paused redis-server (SIGSTOP): it stops answering but keeps its data, like a
partition, so "nothing is lost once Redis is back" can be checked on a session made before it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from reference.client import Backoff, ClientConfig, ClientResult, run_client
from reference.protocol import Mode
from reference.server import NumberServer, ServerConfig
from reference.store.redis import RedisStore

from .oracle import doubling_sum, session_checksum
from .redis_fixture import redis_process, skip_without_redis
from .support import FixedRandom, RawReader, eventually, stateful_hello
from .test_e2e import Recorder

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SEED = 0x5EED5EED5EED5EED
OTHER_SEED = 7  # handed out only if a session were (wrongly) created again


@contextmanager
def paused(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


async def first_frame(port: int, hello: bytes) -> tuple[int, int]:
    """(frame type, error code or 0) of the server's answer to ``hello``."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(hello)
        frame = await RawReader(stream).next()
        assert frame is not None
        return frame.type, frame.error_code if frame.type == 0x05 else 0


async def test_outage_degrades_stateful_only_and_loses_nothing() -> None:
    skip_without_redis()
    with redis_process() as (url, proc):
        store = await RedisStore.connect(url, op_timeout=0.3)
        server = NumberServer(
            ServerConfig(interval=0.1, session_ttl=30.0),  # slow enough that a drop beats FINAL
            store,
            random_source=FixedRandom(a=9, seeds=[SEED, OTHER_SEED]),
        )
        n = 10
        client_id = str(uuid.uuid4())
        try:
            async with anyio.create_task_group() as tg:
                port = await tg.start(server.serve)
                # A session made before the outage: WELCOME and nothing else, then a drop.
                kind, _ = await first_frame(port, stateful_hello(client_id, n))
                assert kind == 0x02
                await server.wait_active(0)

                recorder = Recorder()
                config = ClientConfig(
                    port=port,
                    mode=Mode.STATEFUL,
                    n=n,
                    client_id=client_id,
                    backoff=Backoff(initial=0.05, maximum=0.2, max_retries=100),
                )
                with paused(proc):
                    assert await first_frame(port, stateful_hello(str(uuid.uuid4()), 5)) == (
                        0x05,
                        30,  # STORE_UNAVAILABLE, retryable
                    )
                    stateless = await run_client(ClientConfig(port=port, mode=Mode.STATELESS, n=50))
                    assert stateless.ok
                    assert stateless.total == doubling_sum(9, 50)

                    resume = stateful_hello(client_id, n, resume=True, next_index=0)
                    assert await first_frame(port, resume) == (0x05, 30)

                    # A client started during the outage retries and never gives up.
                    outcome: list[ClientResult] = []

                    async def stateful_client() -> None:
                        rng = random.Random(1)
                        outcome.append(await run_client(config, observer=recorder, rng=rng))

                    tg.start_soon(stateful_client)

                    async def tried_three_times() -> bool:
                        return len(recorder.attempts) >= 3

                    await eventually(tried_three_times, within=20)
                    assert not recorder.numbers

                async def finished() -> bool:
                    return bool(outcome)

                await eventually(finished, within=20)
                (result,) = outcome
                assert result.ok, result
                # The session made before the outage, not a new one (which would use OTHER_SEED).
                assert result.checksum_expected == session_checksum(SEED, n)
                tg.cancel_scope.cancel()
        finally:
            await store.aclose()
