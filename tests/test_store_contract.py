"""One contract suite for every SessionStore backend (reference/store/base.py).

Every test in ``TestContract`` runs on the memory store and on Redis, under asyncio and trio. Time
is handled per backend by :class:`Backend`: the memory store runs on a fake clock that the test
moves; Redis uses short real TTLs, and "the TTL has passed" is *observed*, never slept for: a
sentinel session released with the same TTL after the one under test is polled until Redis drops
it, which proves (on Redis's own clock) that the earlier TTL has run out too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import coredis
import pytest

from reference.store import (
    Lease,
    MemoryStore,
    SessionRecord,
    SessionStore,
    StoreError,
    open_store,
)
from reference.store.base import SEED_MAX
from reference.store.redis import DEFAULT_PREFIX, SCRIPTS, RedisStore
from tests.redis_fixture import free_port, redis_server_or_skip
from tests.support import FakeClock

SPEC = Path(__file__).resolve().parent.parent / "spec" / "STORE-REDIS.md"
LONG_MS = 60_000  # a lease no test outlives
REDIS_TTL_MS = 500  # far above one round trip even on a loaded machine, short enough to wait for
MEMORY_TTL_MS = 30_000  # fake time: any value works, a large one shows no ms rounding matters
EXPIRY_DEADLINE_S = 15.0  # bound on waiting for Redis to drop a key; hit only if Redis is broken


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server_or_skip() as url:
        yield url


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Backend:
    """A store under test plus the means to let its time pass."""

    kind: str
    store: SessionStore
    ttl_ms: int
    clock: FakeClock | None = None

    async def before_expiry(self) -> None:
        """Reach a moment safely before a ``ttl_ms`` TTL or lease armed just now runs out.

        Memory: 1 ms before it. Redis: now already is (one round trip is far below ``ttl_ms``).
        """
        if self.clock is not None:
            self.clock.advance_ms(self.ttl_ms - 1)

    async def after_expiry(self) -> None:
        """Return once every ``ttl_ms`` TTL or lease armed before this call has run out."""
        if self.clock is not None:
            self.clock.advance_ms(self.ttl_ms + 1)
            return
        sentinel = f"sentinel-{new_id()}"
        await self.store.open_session(sentinel, SessionRecord(seed=1, n=1), "sentinel", LONG_MS)
        assert await self.store.release(sentinel, "sentinel", self.ttl_ms)
        with anyio.fail_after(EXPIRY_DEADLINE_S):
            while True:  # Redis cannot notify us (without keyspace events), so we poll
                if await self.store.get(sentinel) is None:
                    return
                await anyio.sleep(0.01)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
async def backend(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()
        memory = MemoryStore(clock=clock)
        try:
            yield Backend("memory", memory, MEMORY_TTL_MS, clock)
        finally:
            await memory.aclose()
        return
    if request.param == "cluster":  # a Redis Cluster of three masters, any node as the entry
        nodes: list[tuple[str, int]] = request.getfixturevalue("redis_cluster_nodes")
        host, port = nodes[hash(request.node.name) % len(nodes)]
        url = f"redis+cluster://{host}:{port}"
    else:
        url = request.getfixturevalue("redis_url")
    # A prefix of its own per test: the server is shared, the key spaces are not.
    redis = await RedisStore.connect(url, prefix=f"nsptest:{uuid.uuid4().hex}:")
    try:
        yield Backend("redis", redis, REDIS_TTL_MS)
    finally:
        await redis.aclose()


R1 = SessionRecord(seed=0x0123_4567_89AB_CDEF, n=10)
R2 = SessionRecord(seed=42, n=7)


@pytest.mark.anyio
class TestContract:
    async def test_is_a_session_store(self, backend: Backend) -> None:
        assert isinstance(backend.store, SessionStore)

    async def test_open_creates_then_resumes_the_original(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        assert await store.get(cid) is None
        assert await store.open_session(cid, R1, "a", LONG_MS) == (R1, True)
        # A second open (a resume whose client sent the session's parameters again) keeps the
        # stored record: ``fresh`` is ignored once the session exists.
        assert await store.open_session(cid, R2, "b", LONG_MS) == (R1, False)
        assert await store.get(cid) == R1
        assert await store.refresh(cid, "a", LONG_MS) is False  # b took it over
        assert await store.refresh(cid, "b", LONG_MS) is True

    async def test_claim_of_absent_is_none(self, backend: Backend) -> None:
        assert await backend.store.claim(new_id(), "a", LONG_MS) is None

    async def test_latest_claim_wins(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.claim(cid, "b", LONG_MS) == R1
        assert await store.refresh(cid, "a", LONG_MS) is False
        assert await store.release(cid, "a", backend.ttl_ms) is False
        assert await store.complete(cid, "a") is False
        assert await store.get(cid) == R1
        assert await store.claim(cid, "c", LONG_MS) == R1
        for stale in ("a", "b"):
            assert await store.refresh(cid, stale, LONG_MS) is False
            assert await store.release(cid, stale, backend.ttl_ms) is False
            assert await store.complete(cid, stale) is False
        assert await store.refresh(cid, "c", LONG_MS) is True
        assert await store.complete(cid, "c") is True

    async def test_stale_release_does_not_arm_the_ttl(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.claim(cid, "b", LONG_MS) == R1
        assert await store.release(cid, "a", backend.ttl_ms) is False
        await backend.after_expiry()
        assert await store.get(cid) == R1  # b's lease still holds it
        assert await store.refresh(cid, "b", LONG_MS) is True

    async def test_release_arms_the_ttl(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.release(cid, "a", backend.ttl_ms) is True
        await backend.before_expiry()
        assert await store.get(cid) == R1
        await backend.after_expiry()
        assert await store.get(cid) is None
        assert await store.claim(cid, "b", LONG_MS) is None

    async def test_released_owner_holds_nothing(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.release(cid, "a", LONG_MS) is True
        assert await store.refresh(cid, "a", LONG_MS) is False
        assert await store.release(cid, "a", LONG_MS) is False
        assert await store.complete(cid, "a") is False
        assert await store.get(cid) == R1

    async def test_claim_after_release_replaces_the_ttl_with_a_lease(
        self, backend: Backend
    ) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.release(cid, "a", backend.ttl_ms) is True
        assert await store.claim(cid, "b", LONG_MS) == R1
        await backend.after_expiry()
        assert await store.get(cid) == R1

    async def test_ttl_is_rearmed_on_every_disconnection(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.release(cid, "a", backend.ttl_ms) is True
        assert await store.claim(cid, "b", LONG_MS) == R1
        assert await store.release(cid, "b", backend.ttl_ms) is True
        await backend.before_expiry()
        assert await store.get(cid) == R1
        await backend.after_expiry()
        assert await store.get(cid) is None
        assert await store.claim(cid, "c", LONG_MS) is None

    async def test_refresh_extends_the_lease(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", backend.ttl_ms)
        assert await store.refresh(cid, "a", LONG_MS) is True
        await backend.after_expiry()
        assert await store.get(cid) == R1
        assert await store.refresh(cid, "a", LONG_MS) is True

    async def test_refresh_many_reports_each_lease(self, backend: Backend) -> None:
        """Held leases are extended; superseded, released and absent ones are reported lost."""
        store, ttl = backend.store, backend.ttl_ms
        held, taken, released, absent = (new_id() for _ in range(4))
        await store.open_session(held, R1, "a", LONG_MS)
        await store.open_session(taken, R1, "old", LONG_MS)
        await store.open_session(released, R2, "r", LONG_MS)
        # Short leases last, just before the batch (one round trip each, far below ``ttl``).
        assert await store.refresh(held, "a", ttl) is True
        assert await store.claim(taken, "new", ttl) == R1
        assert await store.release(released, "r", ttl) is True
        leases = [
            Lease(held, "a"),
            Lease(taken, "old"),  # a half-open connection on the same server as its successor
            Lease(taken, "new"),
            Lease(released, "r"),
            Lease(absent, "z"),
            Lease(held, "intruder"),
        ]
        assert await store.refresh_many(leases, LONG_MS) == [True, False, True, False, False, False]
        await backend.after_expiry()
        assert await store.get(held) == R1
        assert await store.get(taken) == R1
        assert await store.get(released) is None  # a lost lease's session is not extended
        assert await store.get(absent) is None  # nor created
        assert await store.refresh(held, "a", LONG_MS) is True

    async def test_refresh_many_is_fenced_per_session(self, backend: Backend) -> None:
        """A stale owner's entry in a batch does not extend its successor's lease."""
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "old", LONG_MS)
        assert await store.claim(cid, "new", backend.ttl_ms) == R1
        assert await store.refresh_many([Lease(cid, "old")], LONG_MS) == [False]
        await backend.after_expiry()
        assert await store.get(cid) is None
        assert await store.refresh_many([Lease(cid, "new")], LONG_MS) == [False]

    async def test_refresh_many_of_many_sessions(self, backend: Backend) -> None:
        """100 leases in a batch: the held ones shortened then extended, the stale ones fenced."""
        store = backend.store
        ids = [new_id() for _ in range(100)]
        records = [SessionRecord(seed=i, n=i + 1) for i in range(100)]
        for i, cid in enumerate(ids):
            await store.open_session(cid, records[i], str(i), LONG_MS)
        lost = {0, 3, 50, 99}
        for i in lost:
            assert await store.claim(ids[i], "successor", LONG_MS) == records[i]
        leases = [Lease(cid, str(i)) for i, cid in enumerate(ids)]
        expected = [i not in lost for i in range(100)]
        assert await store.refresh_many(leases, backend.ttl_ms) == expected  # all short now
        assert await store.refresh_many(leases, LONG_MS) == expected  # all long again
        await backend.after_expiry()
        for i, cid in enumerate(ids):
            assert await store.get(cid) == records[i]
        for i in lost:  # the stale short refresh did not cut the successor's lease
            assert await store.refresh(ids[i], "successor", LONG_MS) is True

    async def test_refresh_many_of_nothing(self, backend: Backend) -> None:
        assert await backend.store.refresh_many([], LONG_MS) == []

    async def test_refresh_many_refuses_bad_arguments_before_anything(
        self, backend: Backend
    ) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", backend.ttl_ms)
        with pytest.raises(ValueError, match="owner"):
            await store.refresh_many([Lease(cid, "a"), Lease(new_id(), "")], LONG_MS)
        for bad in (-1, 10**12, 1.5, True):
            with pytest.raises(ValueError, match="duration"):
                await store.refresh_many([Lease(cid, "a")], bad)  # type: ignore[arg-type]
        await backend.after_expiry()
        assert await store.get(cid) is None  # nothing of the refused batches was applied

    async def test_unrefreshed_lease_runs_out(self, backend: Backend) -> None:
        """The crash case: the owner vanishes without releasing, its lease still ends."""
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", backend.ttl_ms)
        await backend.before_expiry()
        assert await store.get(cid) == R1
        await backend.after_expiry()
        assert await store.get(cid) is None
        assert await store.refresh(cid, "a", LONG_MS) is False
        assert await store.claim(cid, "b", LONG_MS) is None

    async def test_claimed_lease_runs_out_too(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.release(cid, "a", LONG_MS) is True
        assert await store.claim(cid, "b", backend.ttl_ms) == R1
        await backend.after_expiry()
        assert await store.get(cid) is None

    async def test_open_after_expiry_creates_anew(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.release(cid, "a", backend.ttl_ms) is True
        await backend.after_expiry()
        assert await store.open_session(cid, R2, "b", LONG_MS) == (R2, True)
        assert await store.get(cid) == R2

    async def test_complete_deletes_at_once_and_only_for_the_owner(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.complete(cid, "intruder") is False
        assert await store.get(cid) == R1
        assert await store.complete(cid, "a") is True
        assert await store.get(cid) is None
        assert await store.claim(cid, "b", LONG_MS) is None
        assert await store.complete(cid, "a") is False
        assert await store.open_session(cid, R2, "c", LONG_MS) == (R2, True)

    async def test_ops_on_absent_sessions_are_false(self, backend: Backend) -> None:
        store, cid = backend.store, new_id()
        assert await store.refresh(cid, "a", LONG_MS) is False
        assert await store.release(cid, "a", LONG_MS) is False
        assert await store.complete(cid, "a") is False
        assert await store.get(cid) is None

    async def test_count(self, backend: Backend) -> None:
        store = backend.store
        assert await store.count() == 0
        ids = [new_id() for _ in range(4)]
        for cid in ids:
            await store.open_session(cid, R1, "a", LONG_MS)
        assert await store.count() == 4
        assert await store.complete(ids[0], "a") is True
        assert await store.count() == 3
        assert await store.release(ids[1], "a", backend.ttl_ms) is True
        assert await store.release(ids[2], "a", LONG_MS) is True
        assert await store.count() == 3  # released sessions are live until their TTL
        await backend.after_expiry()
        assert await store.count() == 2

    @pytest.mark.parametrize("seed", [0, 1, 2**53 + 1, 2**63, SEED_MAX])
    @pytest.mark.parametrize("n", [1, 65535])
    async def test_records_round_trip(self, backend: Backend, seed: int, n: int) -> None:
        store, cid, record = backend.store, new_id(), SessionRecord(seed=seed, n=n)
        assert await store.open_session(cid, record, "a", LONG_MS) == (record, True)
        assert await store.get(cid) == record
        assert await store.open_session(cid, R2, "b", LONG_MS) == (record, False)
        assert await store.claim(cid, "c", LONG_MS) == record


# -- Redis only ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.redis
class TestRedis:
    async def test_unreachable_redis_raises_store_error(self) -> None:
        with pytest.raises(StoreError, match="redis connect"):
            await RedisStore.connect(f"redis://127.0.0.1:{free_port()}/0", op_timeout=1.0)

    async def test_open_store_picks_redis(self, redis_url: str) -> None:
        store = await open_store(redis_url)
        try:
            assert isinstance(store, RedisStore)
            assert await store.get(new_id()) is None
        finally:
            await store.aclose()

    async def test_closed_store_raises_store_error(self, redis_url: str) -> None:
        store = await RedisStore.connect(redis_url)
        await store.aclose()
        await store.aclose()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            await store.get(new_id())

    async def test_redis_going_away_raises_store_error(self) -> None:
        store: RedisStore | None = None
        try:
            with redis_server_or_skip() as url:
                store = await RedisStore.connect(url, op_timeout=1.0)
                await store.open_session(new_id(), R1, "a", LONG_MS)
            # That server has stopped; the store is still open.
            with pytest.raises(StoreError):
                await store.claim(new_id(), "a", LONG_MS)
            with pytest.raises(StoreError):
                await store.count()
            with pytest.raises(StoreError):
                await store.refresh_many([Lease(new_id(), "a")], LONG_MS)
        finally:
            if store is not None:
                await store.aclose()

    async def test_silent_redis_times_out(self) -> None:
        """A peer that accepts TCP but never answers must not hang the caller."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()  # the kernel completes handshakes; nobody ever reads or replies
            port = listener.getsockname()[1]
            started = time.monotonic()
            with pytest.raises(StoreError):
                await RedisStore.connect(f"redis://127.0.0.1:{port}/0", op_timeout=0.3)
            assert time.monotonic() - started < 10  # bounded, not a timing test

    async def test_empty_owner_is_rejected(self, redis_url: str) -> None:
        async with await RedisStore.connect(redis_url, prefix=f"t{new_id()}:") as store:
            with pytest.raises(ValueError, match="owner"):
                await store.open_session(new_id(), R1, "", LONG_MS)
            with pytest.raises(ValueError, match="owner"):
                await store.release(new_id(), "", LONG_MS)

    async def test_key_layout_matches_the_spec(self, redis_url: str) -> None:
        """spec/STORE-REDIS.md: hash nsp:v1:session:{id} with seed, n, owner; PEXPIRE'd."""
        cid = new_id()
        key = f"{DEFAULT_PREFIX}session:{cid}"
        record = SessionRecord(seed=SEED_MAX, n=65535)
        raw = coredis.Redis.from_url(redis_url, decode_responses=True)
        async with raw, await RedisStore.connect(redis_url) as store:
            try:
                await store.open_session(cid, record, "owner-1", LONG_MS)
                assert await raw.type(key) == "hash"
                assert await raw.hgetall(key) == {
                    "seed": "18446744073709551615",
                    "n": "65535",
                    "owner": "owner-1",
                }
                assert 0 < await raw.pttl(key) <= LONG_MS
                assert await store.release(cid, "owner-1", 7_000)
                assert (await raw.hgetall(key))["owner"] == ""
                assert 0 < await raw.pttl(key) <= 7_000
                assert await store.complete(cid, "owner-1") is False
                assert await raw.exists([key]) == 1
            finally:
                await raw.delete([key])

    async def test_scripts_refuse_bad_arguments_before_writing(self, redis_url: str) -> None:
        """A script that failed half-way would leave a session key without an expiry."""
        key = f"t{new_id()}:session:{new_id()}"
        raw = coredis.Redis.from_url(redis_url, decode_responses=True)
        async with raw:
            for args in (["1", "1", "", "1000"], ["1", "1", "o", "-5"], ["1", "1", "o", "1e3"]):
                with pytest.raises(coredis.exceptions.ResponseError, match="open_session"):
                    await raw.eval(SCRIPTS["open_session"], [key], args)
            with pytest.raises(coredis.exceptions.ResponseError, match="open_session"):
                await raw.eval(SCRIPTS["open_session"], [key], ["1", "1", "o", "9" * 13])
            assert await raw.exists([key]) == 0
        async with await RedisStore.connect(redis_url, prefix=f"t{new_id()}:") as store:
            for bad in (-1, 10**12, 1.5, True):
                with pytest.raises(ValueError, match="duration"):
                    await store.claim(new_id(), "a", bad)  # type: ignore[arg-type]

    async def test_refresh_many_keeps_order_across_chunks(self, redis_url: str) -> None:
        """2,500 leases take three REFRESH_MANY calls; each result lands at its own lease."""
        async with await RedisStore.connect(redis_url, prefix=f"t{new_id()}:") as store:
            leases = [Lease(new_id(), f"o{i}") for i in range(2500)]
            held = {0, 999, 1000, 1001, 1999, 2000, 2499}
            for i in held:
                await store.open_session(leases[i].client_id, R1, leases[i].owner, LONG_MS)
            got = await store.refresh_many(leases, LONG_MS)
            assert [i for i, ok in enumerate(got) if ok] == sorted(held)

    async def test_refresh_many_script_refuses_bad_arguments(self, redis_url: str) -> None:
        key = f"t{new_id()}:session:{new_id()}"
        raw = coredis.Redis.from_url(redis_url, decode_responses=True)
        async with raw:
            await raw.hset(key, {"seed": "1", "n": "1", "owner": "o"})
            for args in (["1000"], ["1000", "o", "o"], ["-5", "o"], ["9" * 13, "o"]):
                with pytest.raises(coredis.exceptions.ResponseError, match="refresh_many"):
                    await raw.eval(SCRIPTS["refresh_many"], [key], args)
            assert await raw.ttl(key) == -1  # nothing written: still no expiry
            assert await raw.eval(SCRIPTS["refresh_many"], [key], ["1000", "o"]) == [1]
            assert 0 < await raw.pttl(key) <= 1000
            await raw.delete([key])

    async def test_script_cache_flush_is_survived(
        self, redis_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        raw = coredis.Redis.from_url(redis_url, decode_responses=True)
        async with raw, await RedisStore.connect(redis_url, prefix=f"t{new_id()}:") as store:
            await raw.script_flush()
            cid = new_id()
            with caplog.at_level(logging.INFO):
                assert await store.open_session(cid, R1, "a", LONG_MS) == (R1, True)
            # The reload is STORE-REDIS §4's normal path: nothing at info about it.
            assert not [r for r in caplog.records if r.levelno >= logging.INFO], caplog.text
            await raw.script_flush()
            with caplog.at_level(logging.DEBUG):
                assert await store.complete(cid, "a") is True
            assert "NOSCRIPT" in caplog.text

    async def test_cancelled_calls_leave_replies_in_step(self, redis_url: str) -> None:
        """Calls cancelled mid-flight must not hand their late replies to later calls."""
        records = {new_id(): SessionRecord(seed=i * 2**40 + i, n=i + 1) for i in range(20)}
        async with await RedisStore.connect(redis_url, prefix=f"t{new_id()}:") as store:
            for cid, record in records.items():
                await store.open_session(cid, record, "a", LONG_MS)
            ids = list(records)
            for step in range(300):
                cid = ids[step % len(ids)]
                with anyio.move_on_after((0, 0.0001, 0.0005, 0.002, 1.0)[step % 5]):
                    assert await store.get(cid) == records[cid]
            for cid, record in records.items():
                assert await store.claim(cid, "b", LONG_MS) == record
            assert await store.count() == len(records)

    async def test_lifecycle_is_not_tied_to_the_opening_scope(self, redis_url: str) -> None:
        """connect() inside a fail_after, aclose() from another task: both must work."""
        with anyio.fail_after(10):
            store = await RedisStore.connect(redis_url, prefix=f"t{new_id()}:")
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.open_session, new_id(), R1, "a", LONG_MS)
        assert await store.count() == 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.aclose)
        with pytest.raises(StoreError):
            await store.count()


@pytest.mark.redis
def test_redis_server_context_manager_stops_its_server() -> None:
    with redis_server_or_skip() as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16) == b"+PONG\r\n"
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=2),
    ):
        pass


def test_spec_lists_the_scripts_the_code_runs() -> None:
    """spec/STORE-REDIS.md must carry every script verbatim, with its SHA-1, in order."""
    text = SPEC.read_text(encoding="utf-8")
    blocks = re.findall(r"```lua\n(.*?)```", text, flags=re.DOTALL)
    assert blocks == list(SCRIPTS.values())
    for name, script in SCRIPTS.items():
        sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 -- Redis names scripts so
        assert f"### {name.upper()} " in text
        assert f"SHA-1 `{sha}`" in text, name
