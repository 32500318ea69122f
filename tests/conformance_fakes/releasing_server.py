"""The reference server with one planted bug: when ``complete`` fails after FINAL, it releases
the session (owner cleared, the TTL armed as after a drop) instead of leaving it to its lease,
which spec §16.6 forbids (1.1, issue 8 point e).

Used by tests/test_conformance.py to show that ``16.6/complete-fails`` can fail.
"""

from __future__ import annotations

import sys
from typing import Any

import reference.server as server
from reference.store import StoreError


async def _complete_or_release(self: server.NumberServer, lease: Any) -> None:
    lease.held = False
    self._leases.pop(lease.owner, None)
    try:
        await self.store.complete(lease.client_id, lease.owner)
    except StoreError:
        await self.store.release(lease.client_id, lease.owner, self.config.ttl_ms)


server.NumberServer._complete = _complete_or_release  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(server.main())
