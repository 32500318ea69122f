"""In-memory session store for a single server process.

Each operation runs without an ``await`` inside, so on one event loop it is atomic with respect to
every other task: no lock is needed, and none would help.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import Lease, SessionRecord, check_leases, check_owner_and_duration

Clock = Callable[[], float]


@dataclass(slots=True)
class _Entry:
    record: SessionRecord
    owner: str | None
    expires_at: float


class MemoryStore:
    """Sessions in a dict; expiry checked on every access and swept through a heap of deadlines."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._deadlines: list[tuple[float, str]] = []

    def _live(self, client_id: str) -> _Entry | None:
        self._sweep()
        return self._entries.get(client_id)

    def _sweep(self) -> None:
        now = self._clock()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, client_id = heapq.heappop(deadlines)
            entry = self._entries.get(client_id)
            if entry is not None and entry.expires_at <= now:
                del self._entries[client_id]

    def _arm(self, client_id: str, entry: _Entry, ms: int) -> None:
        entry.expires_at = self._clock() + ms / 1000
        heapq.heappush(self._deadlines, (entry.expires_at, client_id))

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
