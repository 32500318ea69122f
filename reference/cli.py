"""Command-line plumbing shared by ``reference.server``, ``reference.client`` and the harness.

One definition of each argparse value type and of the ``--log-level`` / ``--backend`` options,
so every program accepts and rejects values the same way, with the same messages.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from typing import TypeVar

from .protocol import MAX_N

LOG_LEVELS = ("debug", "info", "warning", "error")
BACKENDS = ("asyncio", "trio")

_T = TypeVar("_T", int, float)

#: WELCOME carries ``interval_ms`` and ``session_ttl_ms`` as u32 milliseconds (spec §4.2, §17).
U32_MAX = 2**32 - 1
#: The longest duration the protocol can express, in seconds: 2^32 - 1 ms, about 49.7 days.
#: Every duration option is held to it, so none can stand for "no bound" (infinity).
MAX_SECONDS = U32_MAX / 1000


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


def _fits_u32_ms(seconds: float) -> bool:
    """``seconds`` is finite and, rounded to milliseconds as WELCOME does, fits a u32."""
    return math.isfinite(seconds) and round(seconds * 1000) <= U32_MAX


def duration(*, zero_ok: bool, what: str = "") -> Callable[[str], float]:
    """An argparse type for seconds: finite, at most ``MAX_SECONDS``, > 0 unless ``zero_ok``.

    ``what`` is appended to the allowed range in the message (why the range is what it is).
    """
    span = f"0..{MAX_SECONDS:.3f}" if zero_ok else f"more than 0, at most {MAX_SECONDS:.3f}"
    allowed = f"{span} seconds (2^32-1 ms, spec §17){what}"

    def ok(value: float) -> bool:
        return (value >= 0 if zero_ok else value > 0) and _fits_u32_ms(value)

    def parse(text: str) -> float:
        return _checked(text, float, ok, allowed)

    return parse


def int_range(low: int, high: int | None = None, *, what: str = "") -> Callable[[str], int]:
    """An argparse type for an integer in ``low..high`` (no upper bound when ``high`` is None)."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
    allowed += what

    def parse(text: str) -> int:
        return _checked(
            text, int, lambda value: value >= low and (high is None or value <= high), allowed
        )

    return parse


#: ``--interval``: announced in WELCOME as ``interval_ms``, a u32 (spec §4.2, §13); 0 streams
#: as fast as the client reads.
interval_seconds = duration(zero_ok=True, what="; WELCOME carries it as a u32 interval_ms")
#: ``--session-ttl``: announced in WELCOME as ``session_ttl_ms``, a u32 (spec §4.2, §16.4).
ttl_seconds = duration(zero_ok=True, what="; WELCOME carries it as a u32 session_ttl_ms")
#: Durations that may be zero (a delay of 0 means none).
non_negative_float = duration(zero_ok=True)
#: Timeouts and delays where zero would mean "never wait" and infinity "no bound".
positive_float = duration(zero_ok=False)
#: Counts and limits of things (clients, servers, connections, retries): at least 1.
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
    """``-n``: numbers in one stream, as HELLO can carry it (0x prefixes accepted)."""
    return _checked(
        text,
        lambda digits: int(digits, 0),
        lambda value: 1 <= value <= MAX_N,
        f"an integer in 1..{MAX_N} (spec §17)",
    )


def add_common_arguments(
    parser: argparse._ActionsContainer,
    *,
    log_level_default: str = "info",
    log_level_help: str = "stderr log verbosity (default %(default)s)",
    backend: bool = True,
) -> None:
    """``--log-level`` and, unless ``backend`` is false, ``--backend`` (anyio's event loop).

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
            help="anyio event loop backend (default asyncio)",
        )


def configure_logging(level: str) -> None:
    """Logs go to stderr, so stdout carries nothing but the result."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
