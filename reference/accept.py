"""One accept loop for every TCP service in this project (the server and the proxy).

Running out of descriptors or kernel memory is a moment to back off, not a reason to die; a
client that gave up between its SYN and our ``accept`` is nobody's problem.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

#: Accept errors that mean "out of descriptors/memory right now": back off instead of dying.
ACCEPT_RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: The client gave up during the handshake: accept the next one.
ACCEPT_ABORTED_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO})
#: Seconds to wait after a resource error before accepting again (trio does the same).
ACCEPT_BACKOFF = 0.1
#: While accepts keep failing, one warning per this many seconds (with the count since).
ACCEPT_WARNING_PERIOD = 10.0

_T = TypeVar("_T")


async def accept_forever(
    accept: Callable[[], Awaitable[_T]],
    spawn: Callable[[_T], object],
    *,
    log: logging.Logger,
) -> None:
    """Call ``accept`` (a listener's) until cancelled, handing each connection to ``spawn``,
    which must not block.

    Raises whatever ``accept`` raises that is neither a resource shortage nor an aborted
    handshake (for example the listener being closed).
    """
    failing_since: float | None = None  # the first failure of the current run of them
    failures = 0
    while True:
        try:
            connection = await accept()
        except (OSError, anyio.BrokenResourceError) as exc:
            # trio's listener wraps the OSError in BrokenResourceError; asyncio's does not.
            code = exc.errno if isinstance(exc, OSError) else getattr(exc.__cause__, "errno", 0)
            if code in ACCEPT_ABORTED_ERRNOS:
                continue
            if code not in ACCEPT_RETRY_ERRNOS:
                raise
            now = anyio.current_time()
            failures += 1
            if failing_since is None or now - failing_since >= ACCEPT_WARNING_PERIOD:
                failing_since = now
                log.warning(
                    "accept failed (%s, %d times); connections wait in the kernel's queue, "
                    "retrying every %d ms%s",
                    os.strerror(code),
                    failures,
                    ACCEPT_BACKOFF * 1000,
                    _advice(code),
                )
                failures = 0
            await anyio.sleep(ACCEPT_BACKOFF)
            continue
        failing_since, failures = None, 0
        spawn(connection)


def _advice(code: int) -> str:
    """What the user can do about an accept error, after '; '."""
    if code == errno.EMFILE:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return (
            f"; this process may open {soft} files (ulimit -n; hard limit {hard}): raise that "
            "limit, or allow fewer connections at once"
        )
    if code == errno.ENFILE:
        return "; the whole system is out of open files (fs.file-max)"
    return "; the kernel is short of memory"


def raise_open_file_limit(want: int) -> int:
    """Raise this process's soft limit on open files (RLIMIT_NOFILE, inherited by children)
    to ``want``, as far as its hard limit allows; never lowers it. Returns the soft limit now
    in force (``sys.maxsize`` if unlimited), which is below ``want`` when the hard limit is
    (``ulimit -Hn``) or the kernel refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    if soft >= want:
        return soft
    raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if raised > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (ValueError, OSError):
            return soft
        return raised
    return soft
