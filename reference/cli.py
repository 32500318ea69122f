"""Command-line plumbing shared by ``reference.server``, ``reference.client`` and the harness.

One definition of each argparse value type and of the ``--log-level`` / ``--backend`` options,
so every program accepts and rejects values the same way, with the same messages.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from .protocol import MAX_N

LOG_LEVELS = ("debug", "info", "warning", "error")
BACKENDS = ("asyncio", "trio")

_T = TypeVar("_T", int, float)


def _checked(text: str, convert: Callable[[str], _T], ok: Callable[[_T], bool], why: str) -> _T:
    """``convert(text)`` if it parses and passes ``ok``; else argparse's usage error (exit 2).

    A bad value and an out-of-range one get the same message, rather than argparse's
    "invalid <function name> value" for the former.
    """
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} {why}") from None
    if not ok(value):  # `not`, so that NaN fails every range
        raise argparse.ArgumentTypeError(f"{text} {why}")
    return value


def non_negative_float(text: str) -> float:
    """Durations that may be zero (an interval of 0 streams as fast as the client reads)."""
    return _checked(text, float, lambda value: value >= 0, "must be a number >= 0")


def positive_float(text: str) -> float:
    """Timeouts and delays where zero would mean "never wait"."""
    return _checked(text, float, lambda value: value > 0, "must be a number > 0")


def positive_int(text: str) -> int:
    """Counts of things (clients, servers, concurrency)."""
    return _checked(text, int, lambda value: value >= 1, "must be an integer >= 1")


def listen_port(text: str) -> int:
    """A port to bind on; 0 lets the OS choose."""
    return _checked(text, int, lambda value: 0 <= value <= 65535, "is not a TCP port (0..65535)")


def connect_port(text: str) -> int:
    """A port to connect to; 0 cannot be connected to."""
    return _checked(text, int, lambda value: 1 <= value <= 65535, "is not a TCP port (1..65535)")


def stream_length(text: str) -> int:
    """``-n``: numbers in one stream, as HELLO can carry it (0x prefixes accepted)."""
    return _checked(
        text,
        lambda digits: int(digits, 0),
        lambda value: 1 <= value <= MAX_N,
        f"must be an integer in 1..{MAX_N}",
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
