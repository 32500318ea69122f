"""MemoryStore against a plain-dict model of the SessionStore contract (reference/store/base.py).

Hypothesis drives random interleavings of every operation, a few client ids and owners, and a
fake clock; after every step the store's ``get`` and ``count`` must agree with the model. The
model is written from the contract, not from MemoryStore's code: a session is live while
``now < expires_at``; claim/open take it over; owner-qualified calls act only for the holder.
"""

from __future__ import annotations

from dataclasses import dataclass

import hypothesis.strategies as st
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from reference.store import Lease, MemoryStore, SessionRecord
from reference.store.base import SEED_MAX

CLIENT_IDS = st.sampled_from(["c1", "c2", "c3"])
OWNERS = st.sampled_from(["o1", "o2", "o3"])
# Durations meet on exact boundaries often (1000 + 1000 == 2000), and 0 expires at once.
DURATIONS_MS = st.sampled_from([0, 1, 500, 1000, 2000, 5000])
RECORDS = st.builds(
    SessionRecord,
    seed=st.integers(0, SEED_MAX),
    n=st.integers(1, 0xFFFF),
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Entry:
    record: SessionRecord
    owner: str | None
    expires_at: float


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = start_blocking_portal("asyncio")
        self.portal: BlockingPortal = self._portal_cm.__enter__()
        self.clock = FakeClock()
        # No slack: the heap is rebuilt as soon as leftovers outnumber sessions, so rebuilds
        # happen all the time and are checked against the model like everything else.
        self.store = MemoryStore(clock=self.clock, heap_slack=0)
        self.model: dict[str, Entry] = {}

    def teardown(self) -> None:
        try:
            self.portal.call(self.store.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)

    # -- the model -------------------------------------------------------------------------

    def live(self, client_id: str) -> Entry | None:
        entry = self.model.get(client_id)
        if entry is not None and not self.clock.now < entry.expires_at:
            del self.model[client_id]
            entry = None
        return entry

    def deadline(self, ms: int) -> float:
        return self.clock.now + ms / 1000  # the same arithmetic any float-seconds clock does

    def held(self, client_id: str, owner: str) -> Entry | None:
        entry = self.live(client_id)
        return entry if entry is not None and entry.owner == owner else None

    # -- rules -----------------------------------------------------------------------------

    @rule(client_id=CLIENT_IDS, fresh=RECORDS, owner=OWNERS, lease_ms=DURATIONS_MS)
    def open_session(self, client_id: str, fresh: SessionRecord, owner: str, lease_ms: int) -> None:
        got = self.portal.call(self.store.open_session, client_id, fresh, owner, lease_ms)
        entry = self.live(client_id)
        if entry is None:
            self.model[client_id] = Entry(fresh, owner, self.deadline(lease_ms))
            assert got == (fresh, True)
        else:
            entry.owner, entry.expires_at = owner, self.deadline(lease_ms)
            assert got == (entry.record, False)

    @rule(client_id=CLIENT_IDS, owner=OWNERS, lease_ms=DURATIONS_MS)
    def claim(self, client_id: str, owner: str, lease_ms: int) -> None:
        got = self.portal.call(self.store.claim, client_id, owner, lease_ms)
        entry = self.live(client_id)
        if entry is None:
            assert got is None
        else:
            entry.owner, entry.expires_at = owner, self.deadline(lease_ms)
            assert got == entry.record

    @rule(client_id=CLIENT_IDS, owner=OWNERS, lease_ms=DURATIONS_MS)
    def refresh(self, client_id: str, owner: str, lease_ms: int) -> None:
        got = self.portal.call(self.store.refresh, client_id, owner, lease_ms)
        entry = self.held(client_id, owner)
        if entry is not None:
            entry.expires_at = self.deadline(lease_ms)
        assert got is (entry is not None)

    @rule(leases=st.lists(st.builds(Lease, CLIENT_IDS, OWNERS), max_size=5), lease_ms=DURATIONS_MS)
    def refresh_many(self, leases: list[Lease], lease_ms: int) -> None:
        got = self.portal.call(self.store.refresh_many, leases, lease_ms)
        expected = []
        for client_id, owner in leases:  # in order: a batch is a sequence of refreshes
            entry = self.held(client_id, owner)
            if entry is not None:
                entry.expires_at = self.deadline(lease_ms)
            expected.append(entry is not None)
        assert got == expected

    @rule(client_id=CLIENT_IDS, owner=OWNERS, ttl_ms=DURATIONS_MS)
    def release(self, client_id: str, owner: str, ttl_ms: int) -> None:
        got = self.portal.call(self.store.release, client_id, owner, ttl_ms)
        entry = self.held(client_id, owner)
        if entry is not None:
            entry.owner, entry.expires_at = None, self.deadline(ttl_ms)
        assert got is (entry is not None)

    @rule(client_id=CLIENT_IDS, owner=OWNERS)
    def complete(self, client_id: str, owner: str) -> None:
        got = self.portal.call(self.store.complete, client_id, owner)
        entry = self.held(client_id, owner)
        if entry is not None:
            del self.model[client_id]
        assert got is (entry is not None)

    @rule(ms=st.sampled_from([1, 499, 500, 1000, 3000]) | st.integers(0, 6000))
    def advance_clock(self, ms: int) -> None:
        self.clock.now += ms / 1000

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def get_agrees(self) -> None:
        for client_id in ("c1", "c2", "c3"):
            entry = self.live(client_id)
            expected = None if entry is None else entry.record
            assert self.portal.call(self.store.get, client_id) == expected

    @invariant()
    def heap_is_bounded_by_sessions(self) -> None:
        """Memory proportional to sessions: at most two heap items per session (slack 0)."""
        sessions = self.portal.call(self.store.count)
        assert self.store.heap_items <= 2 * sessions

    @invariant()
    def count_agrees(self) -> None:
        live = sum(self.live(client_id) is not None for client_id in list(self.model))
        assert self.portal.call(self.store.count) == live


StoreModel.TestCase.settings = settings(StoreModel.TestCase.settings, deadline=None)
TestStoreModel = StoreModel.TestCase
