"""A session store that forwards every operation to another one: the base for store wrappers.

A wrapper that records or counts what a server does with its store overrides ``_observe`` (called
with the operation's name before each call) or the one operation it cares about; it never has
to restate the rest of the interface.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Lease, SessionRecord, SessionStore


class DelegatingStore:
    """Implements :class:`SessionStore` by delegating every operation to ``inner``."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner

    def _observe(self, operation: str) -> None:
        """Called with the operation's name (``"open_session"``, ...) before it is delegated."""

    async def open_session(
        self, client_id: str, fresh: SessionRecord, owner: str, lease_ms: int
    ) -> tuple[SessionRecord, bool]:
        self._observe("open_session")
        return await self.inner.open_session(client_id, fresh, owner, lease_ms)

    async def claim(self, client_id: str, owner: str, lease_ms: int) -> SessionRecord | None:
        self._observe("claim")
        return await self.inner.claim(client_id, owner, lease_ms)

    async def refresh(self, client_id: str, owner: str, lease_ms: int) -> bool:
        self._observe("refresh")
        return await self.inner.refresh(client_id, owner, lease_ms)

    async def refresh_many(self, leases: Sequence[Lease], lease_ms: int) -> list[bool]:
        self._observe("refresh_many")
        return await self.inner.refresh_many(leases, lease_ms)

    async def release(self, client_id: str, owner: str, ttl_ms: int) -> bool:
        self._observe("release")
        return await self.inner.release(client_id, owner, ttl_ms)

    async def complete(self, client_id: str, owner: str) -> bool:
        self._observe("complete")
        return await self.inner.complete(client_id, owner)

    async def get(self, client_id: str) -> SessionRecord | None:
        self._observe("get")
        return await self.inner.get(client_id)

    async def count(self) -> int:
        self._observe("count")
        return await self.inner.count()

    async def aclose(self) -> None:
        self._observe("aclose")
        await self.inner.aclose()
