"""In-memory session store for a single server process.

Each operation runs without an ``await`` inside, so on one event loop it is atomic with respect to
every other task: no lock is needed, and none would help.

Memory is proportional to the number of live sessions, whatever the TTL and however often leases
are refreshed: a session has one item in the heap of deadlines, which a refresh (a later
deadline) leaves where it is; when that item comes due and the session's deadline has moved on,
the item is pushed again at the new deadline. Only a deadline moved *earlier* than the pending
item (a release with a TTL shorter than the lease, say) adds an item, and the heap is rebuilt
from the live sessions whenever it holds more than ``2 x sessions + 64`` items, so it never
holds more than that after any operation.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import Lease, SessionRecord, check_leases, check_owner_and_duration

Clock = Callable[[], float]

#: Slack in the heap bound, so tiny stores are not rebuilt on every other call.
_HEAP_SLACK = 64


@dataclass(slots=True)
class _Entry:
    record: SessionRecord
    owner: str | None
    expires_at: float
    #: Deadline of this session's earliest heap item; never later than ``expires_at``.
    scheduled: float = math.inf


class MemoryStore:
    """Sessions in a dict; expiry checked on every access and swept through a heap of deadlines."""

    def __init__(self, clock: Clock = time.monotonic, *, heap_slack: int = _HEAP_SLACK) -> None:
        """``clock`` is monotonic seconds; ``heap_slack`` (tests) is the ``64`` of the bound."""
        self._clock = clock
        self._heap_slack = heap_slack
        self._entries: dict[str, _Entry] = {}
        self._deadlines: list[tuple[float, str]] = []

    @property
    def heap_items(self) -> int:
        """Items in the deadline heap (tests, monitoring): at most 2 x sessions + heap_slack."""
        return len(self._deadlines)

    def _live(self, client_id: str) -> _Entry | None:
        self._sweep()
        return self._entries.get(client_id)

    def _sweep(self) -> None:
        now = self._clock()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            due, client_id = heapq.heappop(deadlines)
            entry = self._entries.get(client_id)
            if entry is None or due != entry.scheduled:
                continue  # left behind by a deleted session or by a deadline moved earlier
            if entry.expires_at <= now:
                del self._entries[client_id]
            else:  # refreshed since: follow its deadline with the same one item
                entry.scheduled = entry.expires_at
                heapq.heappush(deadlines, (entry.expires_at, client_id))
        self._compact()

    def _compact(self) -> None:
        """Rebuild the heap from the live sessions once leftovers outnumber them (amortised)."""
        if len(self._deadlines) <= 2 * len(self._entries) + self._heap_slack:
            return
        for entry in self._entries.values():
            entry.scheduled = entry.expires_at
        self._deadlines = [(entry.expires_at, cid) for cid, entry in self._entries.items()]
        heapq.heapify(self._deadlines)

    def _arm(self, client_id: str, entry: _Entry, ms: int) -> None:
        entry.expires_at = self._clock() + ms / 1000
        if entry.expires_at < entry.scheduled:  # earlier than the pending item: one more item
            entry.scheduled = entry.expires_at
            heapq.heappush(self._deadlines, (entry.expires_at, client_id))
            self._compact()

    async def open_session(
        self, client_id: str, fresh: SessionRecord, owner: str, lease_ms: int
    ) -> tuple[SessionRecord, bool]:
        check_owner_and_duration(owner, lease_ms)
        entry = self._live(client_id)
        created = entry is None
        if entry is None:
            entry = _Entry(record=fresh, owner=owner, expires_at=0.0)
            self._entries[client_id] = entry
        entry.owner = owner
        self._arm(client_id, entry, lease_ms)
        return entry.record, created

    async def claim(self, client_id: str, owner: str, lease_ms: int) -> SessionRecord | None:
        check_owner_and_duration(owner, lease_ms)
        entry = self._live(client_id)
        if entry is None:
            return None
        entry.owner = owner
        self._arm(client_id, entry, lease_ms)
        return entry.record

    def _owned(self, client_id: str, owner: str) -> _Entry | None:
        entry = self._live(client_id)
        return entry if entry is not None and entry.owner == owner else None

    async def refresh(self, client_id: str, owner: str, lease_ms: int) -> bool:
        check_owner_and_duration(owner, lease_ms)
        entry = self._owned(client_id, owner)
        if entry is None:
            return False
        self._arm(client_id, entry, lease_ms)
        return True

    async def refresh_many(self, leases: Sequence[Lease], lease_ms: int) -> list[bool]:
        check_leases(leases, lease_ms)
        held = []
        for client_id, owner in leases:  # no await: the whole batch is one atomic step here
            entry = self._owned(client_id, owner)
            if entry is not None:
                self._arm(client_id, entry, lease_ms)
            held.append(entry is not None)
        return held

    async def release(self, client_id: str, owner: str, ttl_ms: int) -> bool:
        check_owner_and_duration(owner, ttl_ms)
        entry = self._owned(client_id, owner)
        if entry is None:
            return False
        entry.owner = None
        self._arm(client_id, entry, ttl_ms)
        return True

    async def complete(self, client_id: str, owner: str) -> bool:
        check_owner_and_duration(owner)
        if self._owned(client_id, owner) is None:
            return False
        del self._entries[client_id]
        self._compact()
        return True

    async def get(self, client_id: str) -> SessionRecord | None:
        entry = self._live(client_id)
        return None if entry is None else entry.record

    async def count(self) -> int:
        self._sweep()
        return len(self._entries)

    async def aclose(self) -> None:
        self._entries.clear()
        self._deadlines.clear()
