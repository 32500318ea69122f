"""The harness hears every session a shared Redis deletes (issue 12 point 3).

Only COMPLETE deletes a session key (spec/STORE-REDIS.md §4, §5), so with server subprocesses on
a shared Redis a "final frame lost" claim is confirmed by a DEL heard on Redis's keyevent
channel, and refuted when none was heard while the subscription was up. Polling the store every
50 ms could not see a session that opened and completed between two reads; these tests make the
poll useless on purpose (or never poll) and expect the answer anyway.

The sessions are written by the reference's ``RedisStore`` (the scripts of STORE-REDIS.md), and
checked through the harness's independent RESP client, never through the code under test.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest

import harness.chaos
import harness.servers
from harness.chaos import run_chaos
from harness.conformance.resp import Resp
from harness.keyevents import SessionDeletions, publishes_deletions
from harness.model import ChaosOptions, ClientPhase, StoreOption
from harness.redis_server import managed_redis
from harness.verify import WireEvidence
from proxy import FaultKind, ScheduledFault
from reference.store import SessionRecord
from reference.store.redis import RedisStore

from .redis_fixture import skip_without_redis

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

#: A stateful stream of N numbers: a WELCOME, then N - 1 DATA frames, then FINAL (spec §4).
N = 2000
WELCOME_BYTES = 3 + 23
DATA_BYTES = 3 + 8
BEFORE_FINAL = WELCOME_BYTES + (N - 1) * DATA_BYTES


@pytest.mark.parametrize(
    ("flags", "publishes"),
    [
        ("", False),
        ("Eghx", True),
        ("Egx", False),
        ("Ehx", False),
        ("KEA", True),
        ("Kgh", False),
        ("EA", True),
    ],
)
def test_which_settings_publish_deletions(flags: str, publishes: bool) -> None:
    # Redis's documented flags: E keyevent channels, g generic commands (DEL, PEXPIRE), h hash
    # commands (HSET), A an alias for g$lshzxetd.
    assert publishes_deletions(flags) is publishes


async def test_a_session_completed_at_once_is_heard_and_one_left_open_is_refuted() -> None:
    skip_without_redis()
    async with managed_redis() as redis, await RedisStore.connect(redis.url) as store:
        deletions = SessionDeletions(redis.url)
        async with anyio.create_task_group() as tg:
            assert await tg.start(deletions.run) is True
            started = anyio.current_time()
            # Opened and completed back to back: no poll could ever see this session.
            await store.open_session("quick", SessionRecord(seed=3, n=5), "owner-1", 31000)
            assert await store.complete("quick", "owner-1")
            # Opened and released (disconnected, TTL armed): still held, never completed.
            await store.open_session("open", SessionRecord(seed=4, n=5), "owner-2", 31000)
            assert await store.release("open", "owner-2", 30000)
            # A stale owner's COMPLETE deletes nothing (STORE-REDIS §3).
            await store.open_session("fenced", SessionRecord(seed=5, n=5), "owner-3", 31000)
            assert not await store.complete("fenced", "someone-else")
            # Deleted under another prefix: another deployment's session, not ours.
            async with await Resp.connect(redis.url) as resp:
                await resp.call("HSET", "other:session:stranger", "seed", "1", "n", "1")
                await resp.call("DEL", "other:session:stranger")
                await resp.call("SET", "nsp:v1:unrelated", "x")
                await resp.call("DEL", "nsp:v1:unrelated")

            assert await deletions.completed("quick", started_at=started) is True
            assert await deletions.completed("open", started_at=started) is False
            assert await deletions.completed("fenced", started_at=started) is False
            assert await deletions.completed("stranger", started_at=started) is False
            assert await deletions.completed("never-seen", started_at=started) is False
            # A client that started before the subscription: its absence proves nothing.
            before = (deletions.up_since or 0.0) - 1.0
            assert await deletions.completed("open", started_at=before) is None
            assert await deletions.completed("quick", started_at=before) is True
            tg.cancel_scope.cancel()


async def test_an_expired_session_is_not_a_completed_one() -> None:
    skip_without_redis()
    async with managed_redis() as redis, await RedisStore.connect(redis.url) as store:
        deletions = SessionDeletions(redis.url)
        async with anyio.create_task_group() as tg:
            assert await tg.start(deletions.run)
            started = anyio.current_time()
            await store.open_session("short", SessionRecord(seed=7, n=5), "owner", 31000)
            assert await store.release("short", "owner", 0)  # a TTL of 0 ms: expired at once
            async with await Resp.connect(redis.url) as resp:
                assert not await resp.exists("nsp:v1:session:short")  # access reaps it
            assert await deletions.completed("short", started_at=started) is False
            tg.cancel_scope.cancel()


async def test_a_prefix_in_the_url_names_the_keys() -> None:
    skip_without_redis()
    async with managed_redis() as redis:
        url = f"{redis.url}?prefix=zz%3A"
        deletions = SessionDeletions(url)
        async with (
            await RedisStore.connect(redis.url, prefix="zz:") as store,
            anyio.create_task_group() as tg,
        ):
            assert await tg.start(deletions.run)
            started = anyio.current_time()
            await store.open_session("c", SessionRecord(seed=1, n=2), "o", 31000)
            assert await store.complete("c", "o")
            assert await deletions.completed("c", started_at=started) is True
            tg.cancel_scope.cancel()


async def test_a_redis_that_publishes_no_deletions_gives_no_events() -> None:
    skip_without_redis()
    async with managed_redis() as redis:
        async with await Resp.connect(redis.url) as resp:
            await resp.call("CONFIG", "SET", "notify-keyspace-events", "")
        deletions = SessionDeletions(redis.url)
        async with anyio.create_task_group() as tg:
            assert await tg.start(deletions.run) is False
        assert deletions.up_since is None


async def test_a_restart_ends_what_the_subscription_can_prove() -> None:
    skip_without_redis()
    async with managed_redis(persistent=True) as redis, anyio.create_task_group() as tg:
        deletions = SessionDeletions(redis.url)
        assert await tg.start(deletions.run)
        started = anyio.current_time()
        await redis.restart()  # deletions while it was down could not have been heard
        assert await deletions.completed("gap", started_at=started) is None
        up_again = await deletions.wait_subscribed()
        assert up_again > started
        async with await RedisStore.connect(redis.url) as store:
            await store.open_session("after", SessionRecord(seed=2, n=2), "o", 31000)
            assert await store.complete("after", "o")
        assert await deletions.completed("after", started_at=started) is True
        assert await deletions.completed("gap", started_at=started) is None
        assert await deletions.completed("gap", started_at=up_again) is False
        tg.cancel_scope.cancel()


async def test_chaos_confirms_a_lost_final_that_no_poll_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two server subprocesses on the harness's Redis; a drop inside FINAL loses it. The store
    poll is made useless (one read an hour) and the proxy's view of FINAL set aside, so only
    the keyspace events can confirm the loss;
    without them, the same claim is unconfirmable and fails the run."""
    skip_without_redis()
    monkeypatch.setattr(harness.servers, "SEED_POLL", 3600.0)
    # The proxy's own proof (it read the whole FINAL from the server) is set aside here.
    proxy_view = harness.chaos.wire_evidence

    def without_final_cut(*args: Any) -> WireEvidence:
        return dataclasses.replace(proxy_view(*args), final_cut=False)

    monkeypatch.setattr(harness.chaos, "wire_evidence", without_final_cut)
    drop = ScheduledFault(client=1, connection=1, after_bytes=BEFORE_FINAL + 5, kind=FaultKind.DROP)
    options = ChaosOptions(
        clients=1,
        mode="stateful",
        n=N,
        interval=0.0,
        servers=2,
        store=StoreOption.parse("redis"),
        seed=5,
        timeout=60,
    )
    report = await run_chaos(options, schedule=[drop])
    (client,) = report.clients
    assert client.phase is ClientPhase.FINAL_LOST, client.to_json()
    assert client.reason is not None
    assert "the server completed the session" in client.reason
    assert report.ok

    monkeypatch.setattr(harness.servers, "_plain_redis", lambda options: False)  # no events
    blind = await run_chaos(dataclasses.replace(options), schedule=[drop])
    (client,) = blind.clients
    assert client.reason is not None, client.to_json()
    assert "unconfirmable" in client.reason, client.to_json()
    assert not blind.ok
