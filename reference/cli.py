"""Command-line plumbing shared by ``reference.server``, ``reference.client`` and the harness.

One definition of each argparse value type and of the ``--log-level`` / ``--backend`` options,
so every program accepts and rejects values the same way, with the same messages.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from . import logs
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
