"""The server's collector policy (reference.gc_policy): start-up heap frozen, no automatic full
collection, full collections on the policy's own schedule."""

from __future__ import annotations

import functools
import gc
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from reference.gc_policy import run_server_gc_policy

pytestmark = pytest.mark.anyio

OLDEST = 2  # gc.get_stats() index of the oldest generation (full collections)


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The policy is process-wide: give the test process its collector back afterwards."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def test_policy_is_in_force_when_started(restored_gc: None) -> None:
    young, middle, _ = gc.get_threshold()
    async with anyio.create_task_group() as tg:
        await tg.start(run_server_gc_policy)
        assert gc.get_freeze_count() > 0  # what was alive at start-up is out of every collection
        assert gc.get_threshold() == (young, middle, 1 << 30)  # young ones stay automatic
        tg.cancel_scope.cancel()


async def test_policy_runs_full_collections_on_its_period(restored_gc: None) -> None:
    full = gc.get_stats()[OLDEST]["collections"]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(run_server_gc_policy, period=0))
            while gc.get_stats()[OLDEST]["collections"] < full + 3:  # start-up + two scheduled
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
