"""A session store wrapper that remembers every seed handed out and every session completed.

A completed session is deleted from the store at once, so after a client finishes the store can
no longer say which seed it had. Recording the record in force at ``open_session`` lets the
harness recompute a stateful checksum from the seed instead of trusting the client's; recording
``complete`` lets it confirm a client's "final frame lost" (spec/PROTOCOL.md §16.6): the server
did write FINAL, so a fault must have eaten it.
"""

from __future__ import annotations

from reference.store import DelegatingStore, SessionRecord, SessionStore


class RecordingStore(DelegatingStore):
    """Delegates every operation; notes only what ``open_session`` and ``complete`` did.

    ``opened`` and ``completed_session`` are called as each is noted (a subclass reports them).
    """

    def __init__(self, inner: SessionStore) -> None:
        super().__init__(inner)
        self.sessions: dict[str, SessionRecord] = {}
        self.completed: set[str] = set()

    async def open_session(
        self, client_id: str, fresh: SessionRecord, owner: str, lease_ms: int
    ) -> tuple[SessionRecord, bool]:
        record, created = await super().open_session(client_id, fresh, owner, lease_ms)
        # The record in force, not ``fresh``: when the session existed, its seed is the truth.
        self.sessions[client_id] = record
        self.opened(client_id, record.seed)
        return record, created

    async def complete(self, client_id: str, owner: str) -> bool:
        done = await super().complete(client_id, owner)
        if done:
            self.completed.add(client_id)
            self.completed_session(client_id)
        return done

    def opened(self, client_id: str, seed: int) -> None:
        """A session was opened (or taken over) with this seed."""

    def completed_session(self, client_id: str) -> None:
        """A session was completed: its FINAL was written."""
