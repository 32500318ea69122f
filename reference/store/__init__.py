"""Session stores, chosen by URL: ``memory://`` or ``redis://host:port/db``."""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import Lease, SessionRecord, SessionStore, StoreError
from .delegating import DelegatingStore
from .memory import Clock, MemoryStore

__all__ = [
    "DelegatingStore",
    "Lease",
    "MemoryStore",
    "SessionRecord",
    "SessionStore",
    "StoreError",
    "open_store",
]


async def open_store(url: str) -> SessionStore:
    """Open the store a URL names; raises ValueError for a scheme we do not know."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore()
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore  # imported lazily: memory-only servers need no Redis client

        return await RedisStore.connect(url)
    raise ValueError(f"unknown store URL scheme {scheme!r} (use memory:// or redis://host:port/db)")


_ = Clock  # re-exported for typing convenience
