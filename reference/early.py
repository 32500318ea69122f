"""Signals that arrive while a program is still loading: import-light on purpose.

Every command line documents its status after SIGINT or SIGTERM "whenever it arrives", but
loading a program's modules (anyio, rich, numpy, coredis) takes up to a second on a busy
machine, and a SIGINT then used to end in a KeyboardInterrupt traceback from inside an import,
a SIGTERM in death by the signal. So each program calls ``guard()`` before its heavy imports:
at the top of each ``python -m`` module (only when it runs as ``__main__``), and in the console
scripts below, which import their program only once guarded. ``guard()`` records SIGINT and
SIGTERM instead of acting on them; ``reference.cli.run_program`` then calls ``release()``, which
restores SIGINT's handler and returns the signal recorded meanwhile, and ends the program with
its documented status for that signal without starting it.

This module imports only ``signal``: it must cost nothing before the guard is up.
"""

from __future__ import annotations

import signal
from types import FrameType

_GUARDED = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
#: The handlers ``guard`` replaced, to restore: Python's own SIGINT handler, normally.
_replaced: dict[int, signal.Handlers | signal._HANDLER] = {}


def _record(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def guard() -> None:
    """Record SIGINT and SIGTERM from now on until ``release``. A signal the process was
    started with ignored (a background job of a non-interactive shell ignores SIGINT) stays
    ignored. Main thread only, as every signal handler."""
    for signum in _GUARDED:
        if signum in _replaced:
            continue
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN or current is None:
            continue
        _replaced[signum] = current
        signal.signal(signum, _record)


def release() -> int | None:
    """Stop recording SIGINT (its handler from before ``guard`` is back); the first signal
    recorded so far, if any. SIGTERM keeps being recorded until the caller installs its own
    handler, so that no moment is left in which it would kill the process."""
    previous = _replaced.pop(signal.SIGINT, None)
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
    return _received[0] if _received else None


# --- console scripts (pyproject.toml's [project.scripts]): guarded, then the program ----------


class _ConsoleScript:
    """A console script: ``guard()``, then import ``module`` and return its ``main()``'s exit
    status. The import waits until the call, after the guard is up."""

    def __init__(self, module: str) -> None:
        self.module = module

    def __call__(self) -> int:
        guard()
        program = __import__(self.module, fromlist=["main"])
        status: int = program.main()
        return status


server = _ConsoleScript("reference.server")
client = _ConsoleScript("reference.client")
proxy = _ConsoleScript("proxy.cli")
chaos = _ConsoleScript("harness.chaos")
conformance = _ConsoleScript("harness.conformance.cli")
