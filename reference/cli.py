"""Command-line plumbing shared by ``reference.server``, ``reference.client`` and the harness.

One definition of each argparse value type and of the ``--log-level`` / ``--backend`` /
``--version`` options, so every program accepts and rejects values the same way, with the same
messages; and ``run_program``, which gives every program the same exits for a missing optional
dependency and for a signal at any moment.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio

from . import early, logs
from .protocol import MAX_DURATION_MS, MAX_N, seconds_text_to_ms

LOG_LEVELS = ("debug", "info", "warning", "error")
BACKENDS = ("asyncio", "trio")

_T = TypeVar("_T", int, float)

#: The longest duration any option may give, in seconds: MAX_DURATION_MS, one day (spec §13.1).
#: Every duration option is held to it, so none can stand for "no bound" (infinity), and every
#: timer derived from one fits a signed 32-bit millisecond count.
MAX_SECONDS = MAX_DURATION_MS // 1000
#: Largest count option (``--max-connections``, ``--max-retries``): a signed 32-bit int.
MAX_COUNT = 2**31 - 1


def _checked(text: str, convert: Callable[[str], _T], ok: Callable[[_T], bool], allowed: str) -> _T:
    """``convert(text)`` if it parses and passes ``ok``; else argparse's usage error (exit 2).

    A bad value and an out-of-range one get the same one-line message, which argparse prefixes
    with the option's name: ``argument --interval: invalid value '5000000': allowed ...``.
    """
    try:
        value = convert(text)
    except (ValueError, OverflowError):
        value = None
    if value is None or not ok(value):  # `not`, so that NaN fails every range
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: allowed {allowed}")
    return value


def duration(*, zero_ok: bool, what: str = "") -> Callable[[str], float]:
    """An argparse type for seconds, converted to whole milliseconds by spec §13.1.

    The text must be a decimal number (``0.5``, ``.5``, ``1e-05``; no sign, ``inf`` or ``nan``);
    its exact value times 1000 is rounded to the nearest integer, ties up (``0.0025`` is 3 ms),
    and must be in ``0..MAX_DURATION_MS`` (``1..`` unless ``zero_ok``). Returns the milliseconds
    / 1000, so every value is a whole number of ms. ``what`` is appended to the allowed range
    in the message (why the range is what it is).
    """
    low_ms = 0 if zero_ok else 1
    span = f"0..{MAX_SECONDS}" if zero_ok else f"0.001..{MAX_SECONDS}"
    allowed = f"{span} seconds, in whole milliseconds (spec §13.1){what}"

    def parse(text: str) -> float:
        ms = _checked(text, seconds_text_to_ms, lambda v: low_ms <= v <= MAX_DURATION_MS, allowed)
        return ms / 1000

    return parse


def _decimal_digits(text: str) -> int:
    """ASCII digits only: no sign, prefix, ``_`` or spaces, which ``int()`` would accept."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    return int(text, 10)


def int_range(low: int, high: int = MAX_COUNT, *, what: str = "") -> Callable[[str], int]:
    """An argparse type for ASCII decimal digits whose value is in ``low..high``."""
    allowed = f"an integer in {low}..{high}{what}"

    def parse(text: str) -> int:
        return _checked(text, _decimal_digits, lambda value: low <= value <= high, allowed)

    return parse


#: ``--interval``: announced in WELCOME as ``interval_ms`` (spec §4.2, §13, §13.1); 0 streams
#: as fast as the client reads.
interval_seconds = duration(zero_ok=True, what="; announced in WELCOME as interval_ms")
#: ``--session-ttl``: announced in WELCOME as ``session_ttl_ms`` (spec §4.2, §13.1, §16.4).
ttl_seconds = duration(zero_ok=True, what="; announced in WELCOME as session_ttl_ms")
#: Durations that may be zero (a delay of 0 means none).
non_negative_float = duration(zero_ok=True)
#: Timeouts and delays where zero would mean "never wait" and infinity "no bound".
positive_float = duration(zero_ok=False)
#: Counts and limits of things (clients, servers, connections, retries): 1..2^31-1.
positive_int = int_range(1)


def probability(text: str) -> float:
    """A fault rate: a probability in [0, 1]."""
    return _checked(text, float, lambda value: 0 <= value <= 1, "a probability in 0..1")


def listen_port(text: str) -> int:
    """A port to bind on; 0 lets the OS choose."""
    return _checked(text, int, lambda value: 0 <= value <= 65535, "a TCP port in 0..65535")


def connect_port(text: str) -> int:
    """A port to connect to; 0 cannot be connected to."""
    return _checked(text, int, lambda value: 1 <= value <= 65535, "a TCP port in 1..65535")


def stream_length(text: str) -> int:
    """``-n``: ASCII decimal digits, 1..65535 (spec Appendix A.1; no 0x prefixes)."""
    return _checked(
        text, _decimal_digits, lambda value: 1 <= value <= MAX_N, f"an integer in 1..{MAX_N}"
    )


def add_common_arguments(
    parser: argparse._ActionsContainer,
    *,
    log_level_default: str = "info",
    log_level_help: str = "stderr log verbosity (default %(default)s)",
    backend: bool = True,
    log_format: bool = False,
) -> None:
    """``--log-level``; unless ``backend`` is false, ``--backend`` (anyio's event loop); if
    ``log_format``, ``--log-format text|json``.

    ``parser`` may be an argument group. Programs differ only in the default log level and in
    what the help says is logged.
    """
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=log_level_default, help=log_level_help
    )
    if backend:
        parser.add_argument(
            "--backend",
            choices=BACKENDS,
            default="asyncio",
            help="anyio event loop backend (default asyncio; trio needs the [trio] extra)",
        )
    if log_format:
        parser.add_argument(
            "--log-format",
            choices=logs.LOG_FORMATS,
            default="text",
            help="stderr log lines as text (default) or as one JSON object each",
        )


configure_logging = logs.configure_logging


# --- running a program: version, optional dependencies, signals -----------------------------------

#: The oldest trio the ``[trio]`` extra allows (pyproject.toml).
TRIO_MINIMUM = (0, 27)
TRIO_INSTALL = (
    "python -m pip install 'numstream[trio]' (in a clone: python -m pip install -e '.[trio]')"
)


def version() -> str:
    """The installed distribution's version, or a note that this is an uninstalled checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("numstream")
    except PackageNotFoundError:
        return "unknown (not installed; run from a source tree)"


#: What every console script's name starts with (pyproject.toml's ``[project.scripts]``).
SCRIPT_PREFIX = "numstream-"


def program_name(module_form: str) -> str:
    """The name the user typed: a console script's (``numstream-server``), else ``module_form``
    (``python -m reference.server``), for usage lines, errors and ``--version``."""
    typed = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return typed if typed.startswith(SCRIPT_PREFIX) else module_form


class OneLineErrorParser(argparse.ArgumentParser):
    """A parser whose usage error is one line on stderr, ``PROG: error: MESSAGE (see --help)``,
    exit status 2, instead of argparse's whole usage block first (20 lines for the chaos
    harness): for the tools whose command line no spec fixes (the chaos harness, the proxy)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class SpecParser(OneLineErrorParser):
    """The parser of a command line that spec/PROTOCOL.md Appendix A or B fixes.

    Options are spelled in full: an abbreviation (``--mod`` for ``--mode``) is an unknown
    option, as for every other implementation. A usage error is one line on stderr (the spec's
    "one line naming the option, the value and the allowed range"), exit status 2.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(**kwargs)


def discard_stdout() -> None:
    """Point standard output at /dev/null after a write to it failed (a reader gone, a full
    disk): what is left in its buffer then goes nowhere, not to another error (and a
    traceback) when the interpreter flushes it at exit. Never raises."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):
        pass


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the program's name and the package version, then exit 0."""
    parser.add_argument(
        "--version", action="version", version=f"{parser.prog} (numstream) {version()}"
    )


def backend_problem(backend: str) -> str | None:
    """None if ``backend`` can run here; else one line saying what is missing and how to get it."""
    if backend != "trio":
        return None
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        found = installed_version("trio")
    except PackageNotFoundError:
        return f"--backend trio needs trio, which is not installed; install it with: {TRIO_INSTALL}"
    numbers = tuple(int(part) for part in re.findall(r"\d+", found)[:2])
    if numbers < TRIO_MINIMUM:
        wanted = ".".join(map(str, TRIO_MINIMUM))
        return (
            f"--backend trio needs trio >= {wanted}, found {found}; upgrade it with: {TRIO_INSTALL}"
        )
    return None


def run_program(
    entry: Callable[[argparse.Namespace], Awaitable[int]],
    args: argparse.Namespace,
    *,
    prog: str,
    backend: str,
    on_signal: Callable[[int], int],
) -> int:
    """``anyio.run(entry, args)`` with the exits every CLI documents, and no traceback for them.

    * ``--backend trio`` without a usable trio: one line saying how to install it, status 2.
    * SIGINT or SIGTERM at a moment ``entry`` does not handle itself (start-up before its
      signal receiver exists, teardown after it is gone): status ``on_signal(signum)``.
      SIGTERM is turned into SIGINT, whose handling the event loop already makes safe (asyncio
      cancels the main task, trio raises KeyboardInterrupt where it is safe), so every await
      unwinds through its ``finally`` blocks and SIGTERM no longer kills the process outright.
    * A signal that arrived while the program was loading, recorded by ``reference.early``:
      status ``on_signal(signum)`` at once, ``entry`` never runs.
    """
    problem = backend_problem(backend)
    if problem is not None:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return 2
    received: list[int] = []

    def terminate(signum: int, frame: object) -> None:
        received.append(signum)
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        loading = early.release()
        if loading is not None:
            return on_signal(loading)
        return anyio.run(entry, args, backend=backend)
    except BaseException as exc:
        if not _only_interrupts(exc):
            raise
        return on_signal(received[-1] if received else signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _only_interrupts(exc: BaseException) -> bool:
    """KeyboardInterrupt, possibly wrapped in exception groups (trio's nurseries wrap it)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(inner) for inner in exc.exceptions)
    return False
