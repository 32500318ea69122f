"""The interface between a server and its session store.

Every operation is atomic by contract: a store shared by several server processes (Redis) must
implement each one as a single server-side step, never read-then-write from the caller. Times are
milliseconds because that is what shared stores (Redis ``PX``) count in.

Lifecycle of one session (spec/PROTOCOL.md §16; Redis layout in spec/STORE-REDIS.md):

* ``open_session`` creates it (or, if it exists, claims it) for the connection ``owner``;
* while a connection streams, the owner holds a *lease*: the session cannot expire, and
  ``refresh`` extends the lease; a lease not refreshed runs out, which is how a crashed server's
  sessions become resumable-then-expiring instead of immortal;
* ``release`` on disconnection arms the TTL; ``claim`` by a resuming connection takes the session
  over from any earlier owner (latest connection wins) and replaces the TTL with a lease;
* ``complete`` deletes it right after the final frame; an expired session is indistinguishable
  from one that never existed.

Every owner-qualified call does nothing and returns False when ``owner`` no longer holds the
session: a superseded connection can never delete, expire or extend its successor's session.

``refresh_many`` is ``refresh`` for every lease a server holds, in one round trip: each session's
refresh is atomic and owner-fenced exactly as a single ``refresh``; the batch as a whole is not a
transaction (sessions may live on different Redis Cluster nodes), which nothing needs.

Owners are non-empty strings unique per connection (a shared store uses "" for "nobody").
Durations are whole milliseconds in 0..999_999_999_999 (12 digits, what the Redis scripts
accept); every backend raises ValueError outside that range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

SEED_MAX = (1 << 64) - 1


MAX_DURATION_MS = 999_999_999_999


def check_owner_and_duration(owner: str, ms: int | None = None) -> None:
    """Argument checks every backend applies, so they all reject the same calls."""
    if not owner:
        raise ValueError("owner must be a non-empty string")
    if ms is not None and (
        isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= MAX_DURATION_MS
    ):
        raise ValueError(f"a duration must be an int of 0..{MAX_DURATION_MS} ms, not {ms!r}")


class Lease(NamedTuple):
    """One connection's hold on one session: what :meth:`SessionStore.refresh_many` extends."""

    client_id: str
    owner: str


def check_leases(leases: Sequence[Lease], lease_ms: int) -> None:
    """``refresh_many``'s argument checks: the whole batch is refused before anything is sent."""
    check_owner_and_duration("-", lease_ms)
    for lease in leases:
        check_owner_and_duration(lease.owner)


class StoreError(Exception):
    """The store could not be reached or failed; the server answers STORE_UNAVAILABLE."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """The whole stored state of a session; why nothing more is needed is argued in the spec."""

    seed: int
    n: int

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"seed {self.seed} is not a u64")
        if not 1 <= self.n <= 0xFFFF:
            raise ValueError(f"n {self.n} outside 1..65535")


@runtime_checkable
class SessionStore(Protocol):
    async def open_session(
        self, client_id: str, fresh: SessionRecord, owner: str, lease_ms: int
    ) -> tuple[SessionRecord, bool]:
        """Create the session from ``fresh`` if absent, else claim the existing one.

        Returns the record now in force and whether it was created.
        """
        ...

    async def claim(self, client_id: str, owner: str, lease_ms: int) -> SessionRecord | None:
        """Take the session over for ``owner`` under a lease; None if absent or expired."""
        ...

    async def refresh(self, client_id: str, owner: str, lease_ms: int) -> bool:
        """Extend ``owner``'s lease; False if ``owner`` no longer holds the session."""
        ...

    async def refresh_many(self, leases: Sequence[Lease], lease_ms: int) -> list[bool]:
        """Extend every lease in ``leases`` by ``lease_ms``, in one round trip to the store.

        Element ``i`` of the result is what ``refresh(*leases[i], lease_ms)`` would return: True
        if ``leases[i].owner`` held the session (its lease now ends ``lease_ms`` from now),
        False if the lease is lost (superseded by a newer owner, or the session is gone). Each
        session's refresh is atomic and owner-fenced; the batch is not one transaction. An empty
        batch returns ``[]`` without touching the store. Raises StoreError if the batch could not
        be completed (then any part of it may have been applied, which is harmless: a refresh
        only ever extends its own holder's lease), and ValueError for an empty owner or a
        duration out of range (before anything is sent). Spec: STORE-REDIS.md §4.
        """
        ...

    async def release(self, client_id: str, owner: str, ttl_ms: int) -> bool:
        """Mark the session disconnected: it expires ``ttl_ms`` from now unless claimed."""
        ...

    async def complete(self, client_id: str, owner: str) -> bool:
        """Delete the session after its final frame; False if ``owner`` does not hold it."""
        ...

    async def get(self, client_id: str) -> SessionRecord | None:
        """Read without claiming: for tests and monitoring only."""
        ...

    async def count(self) -> int:
        """Live (unexpired) sessions, for dashboards."""
        ...

    async def aclose(self) -> None: ...
