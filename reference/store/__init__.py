"""Session stores, chosen by URL: ``memory://``, ``redis://host:port/db`` or
``redis+cluster://host:port`` (any one node of a Redis Cluster)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

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
    "redacted_url",
]


def redacted_url(url: str) -> str:
    """The store URL for a log line or a message: its password replaced by ``***``. In a text
    that is no URL (``redis://:pw@[::1``) everything between ``//`` and ``@`` is hidden."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return re.sub(r"(?<=//)[^/]*@", "***@", url, count=1)
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def split_prefix(url: str) -> tuple[str, str | None]:
    """``(url without its prefix parameter, the prefix or None)``: PROTOCOL.md Appendix B.

    ``redis://HOST:PORT/DB?prefix=P`` carries the key prefix of STORE-REDIS.md §2
    (percent-encoded); the other query parameters stay for the Redis client. ValueError for a
    prefix given twice or empty.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in query if key == "prefix"]
    if not prefixes:
        return url, None
    if len(prefixes) > 1 or not prefixes[0]:
        raise ValueError("the store URL's prefix parameter must be given once and not be empty")
    rest = urlencode([(key, value) for key, value in query if key != "prefix"])
    return parts._replace(query=rest).geturl(), prefixes[0]


#: The path of a redis:// URL: none, ``/``, or ``/DB`` with DB a decimal database number.
_DATABASE_PATH = re.compile(r"(?:/(?:[0-9]+)?)?", re.ASCII)
#: DB, in the path or in a ``db=`` query parameter: ASCII decimal digits.
_DATABASE = re.compile(r"[0-9]+", re.ASCII)


def _check_database(url: str) -> None:
    """ValueError unless a ``redis://`` or ``rediss://`` URL names its database as PROTOCOL.md
    Appendix B writes it: a path that is empty, ``/`` or ``/DB``, and at most one ``db=DB``
    query parameter (which wins over the path), DB being ASCII decimal digits.

    The Redis client reads ``/abc``, ``/1x`` or ``/0/extra`` as no database at all and quietly
    uses database 0 (and ``?db=`` likewise), so a server given a mistyped database would share
    nothing with the servers it was meant to share sessions with (Appendix B: a --store value
    the server cannot use is a failure to open the store). ``unix://`` paths are socket paths.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return
    if not _DATABASE_PATH.fullmatch(parts.path):
        raise ValueError(
            f"the database in a redis URL is /DB with DB a decimal number, not {parts.path!r}"
        )
    given = [value for key, value in parse_qsl(parts.query, keep_blank_values=True) if key == "db"]
    if len(given) > 1 or not all(_DATABASE.fullmatch(value) for value in given):
        raise ValueError(
            f"the database parameter of a redis URL is one db=DB, DB decimal digits, not {given!r}"
        )


#: The one spelling of the memory store (PROTOCOL.md Appendix B).
MEMORY_URL = "memory://"


async def open_store(url: str) -> SessionStore:
    """Open the store a URL names (PROTOCOL.md Appendix B): exactly ``memory://``, or a Redis
    URL. Raises ValueError for a URL it cannot use without trying (a scheme we do not know,
    another spelling of ``memory://``, a database that is not ``/DB`` or one ``?db=DB``, a
    ``prefix`` given twice or empty), StoreError for a Redis it cannot reach or use."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        if url != MEMORY_URL:  # memory:, memory://x: refused, as Appendix B requires
            raise ValueError(f"the memory store is spelt {MEMORY_URL}, not {url!r}")
        return MemoryStore()
    if scheme in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        from .redis import RedisStore  # imported lazily: memory-only servers need no Redis client

        _check_database(url)
        plain, prefix = split_prefix(url)
        if prefix is None:
            return await RedisStore.connect(plain)
        return await RedisStore.connect(plain, prefix=prefix)
    raise ValueError(
        f"unknown store URL scheme {scheme!r}"
        " (use memory://, redis://host:port/db or redis+cluster://host:port)"
    )


_ = Clock  # re-exported for typing convenience
