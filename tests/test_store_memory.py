"""MemoryStore's memory stays proportional to live sessions (issue 10 point 3), counted in items.

Before, every lease refresh pushed a heap item that stayed until its own deadline, so a server
held sessions x (TTL + 1 s) items at a refresh a second. The bound checked here is the one the
store documents: at most ``2 x sessions + 64`` heap items after any operation, whatever the TTL
and however many refreshes, releases and completions there were. Time is a fake clock.
"""

from __future__ import annotations

import random
import uuid

import pytest

from reference.store import Lease, MemoryStore, SessionRecord

from .support import FakeClock

pytestmark = pytest.mark.anyio

SLACK = 64
RECORD = SessionRecord(seed=7, n=65535)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the memory store never awaits: one backend says all there is to say


def bound(sessions: int) -> int:
    return 2 * sessions + SLACK


@pytest.mark.parametrize("ttl_s", [30, 3600, 86_400])
@pytest.mark.parametrize("batched", [True, False], ids=["refresh_many", "refresh"])
async def test_refreshing_adds_nothing_whatever_the_ttl(ttl_s: int, batched: bool) -> None:
    """1,000 streaming sessions refreshed once a second for 60 s: items stay <= 2 x sessions."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    lease_ms = ttl_s * 1000 + 1000
    leases = [Lease(str(uuid.uuid4()), f"owner-{i}") for i in range(1000)]
    for client_id, owner in leases:
        await store.open_session(client_id, RECORD, owner, lease_ms)
    for _ in range(60):
        clock.advance_ms(1000)
        if batched:
            assert await store.refresh_many(leases, lease_ms) == [True] * len(leases)
        else:
            for client_id, owner in leases:
                assert await store.refresh(client_id, owner, lease_ms)
        assert store.heap_items <= bound(len(leases))
    assert await store.count() == len(leases)
    assert store.heap_items <= bound(len(leases))


async def test_short_lease_refreshed_for_many_leases_keeps_one_item_per_session() -> None:
    """Deadlines that come due and are followed (lease 2 s, refreshed every 1 s, 100 s)."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    leases = [Lease(str(uuid.uuid4()), "o") for _ in range(100)]
    for client_id, owner in leases:
        await store.open_session(client_id, RECORD, owner, 2000)
    for _ in range(100):
        clock.advance_ms(1000)
        assert await store.refresh_many(leases, 2000) == [True] * len(leases)
        assert store.heap_items <= len(leases) + 1  # one item each; no leftovers at all
    assert await store.count() == len(leases)


async def test_completed_sessions_leave_no_items_behind() -> None:
    """10,000 sessions created and completed beside 100 long-lived ones, TTL one hour."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    lease_ms = 3_601_000
    for i in range(100):
        await store.open_session(f"live-{i}", RECORD, "o", lease_ms)
    for i in range(10_000):
        client_id = f"short-{i}"
        await store.open_session(client_id, RECORD, "o", lease_ms)
        assert await store.complete(client_id, "o")
        assert store.heap_items <= bound(101)
    assert await store.count() == 100


async def test_release_and_claim_cycles_stay_bounded_and_expire_correctly() -> None:
    """Random claims, releases (deadlines moved earlier), refreshes and completions."""
    rng = random.Random(20261129)  # fixed: a failure reproduces as is
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    ids = [f"c{i}" for i in range(300)]
    owners: dict[str, str] = {}
    for step in range(20_000):
        client_id = rng.choice(ids)
        action = rng.random()
        if action < 0.3:
            owner = f"o{step}"
            await store.open_session(client_id, RECORD, owner, rng.choice([31_000, 3_601_000]))
            owners[client_id] = owner
        elif action < 0.6 and client_id in owners:
            await store.release(client_id, owners.pop(client_id), rng.choice([0, 1000, 30_000]))
        elif action < 0.8 and client_id in owners:
            await store.refresh(client_id, owners[client_id], rng.choice([31_000, 3_601_000]))
        elif action < 0.85 and client_id in owners:
            await store.complete(client_id, owners.pop(client_id))
        else:
            clock.advance_ms(rng.choice([1, 500, 1000, 30_000]))
        sessions = await store.count()  # first: it sweeps out what has expired
        assert store.heap_items <= bound(sessions)
    # Everything still held or released expires once its longest deadline has passed.
    clock.advance_ms(3_601_001)
    assert await store.count() == 0
    assert store.heap_items <= SLACK
