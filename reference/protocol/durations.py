"""Durations: seconds as written on a command line to whole milliseconds (spec §13.1).

The rule is exact decimal arithmetic, so that every implementation gets the same milliseconds
from the same text: the value the text denotes, times 1000, rounded to the nearest integer with
ties rounded up (``0.0025`` s is 3 ms). Nothing here touches a clock.
"""

from __future__ import annotations

import re
from decimal import Decimal

from .constants import MAX_DURATION_MS

__all__ = ["MAX_DURATION_MS", "seconds_text_to_ms", "seconds_to_ms"]

#: §13.1 rule 1: DIGITS ["." [DIGITS]] [EXP] or "." DIGITS [EXP]; EXP = (e|E) [+|-] DIGITS.
_SECONDS = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
#: Exponents beyond this cannot give a value in any option's range; refusing them early keeps
#: ``1e999999999`` from allocating a huge integer.
_MAX_EXPONENT = 40


def seconds_text_to_ms(text: str) -> int:
    """Milliseconds for a duration written in seconds; ValueError if the text is not one.

    >>> seconds_text_to_ms("0.0025"), seconds_text_to_ms("0.0015"), seconds_text_to_ms("1e-05")
    (3, 2, 0)
    """
    if not _SECONDS.fullmatch(text):
        raise ValueError(f"{text!r} is not a decimal number of seconds")
    value = Decimal(text)  # exact: a Decimal built from a string never rounds
    if not value:
        return 0
    if value.adjusted() > _MAX_EXPONENT:
        return MAX_DURATION_MS * 10**6  # far out of every range; the caller's check refuses it
    if value.adjusted() < -_MAX_EXPONENT:
        return 0  # below 10^-40 s: far below half a millisecond
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: the grammar admits no inf or nan
    mantissa = int("".join(map(str, digits)))
    shift: int = exponent + 3  # value * 1000 = mantissa * 10^shift
    if shift >= 0:
        return mantissa * int(pow(10, shift))
    unit: int = pow(10, -shift)
    whole, rest = divmod(mantissa, unit)
    return whole + (1 if 2 * rest >= unit else 0)  # nearest, ties up


def seconds_to_ms(seconds: float) -> int:
    """The same rule for a float given in code (ServerConfig, ClientConfig).

    The float's shortest decimal representation stands for the text a user would have written,
    so ``0.0025`` gives 3 ms here too, where ``round(0.0025 * 1000)`` gives 2.
    """
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{seconds!r} is not a duration")
    return seconds_text_to_ms(repr(float(seconds)).replace("+", ""))
