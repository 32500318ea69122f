"""Durations: seconds as written on a command line to whole milliseconds (spec §13.1).

The rule is exact decimal arithmetic, so that every implementation gets the same milliseconds
from the same text: the value the text denotes, times 1000, rounded to the nearest integer with
ties rounded up (``0.0025`` s is 3 ms). Nothing here touches a clock.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

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
    try:
        value = Decimal(text)  # exact: a Decimal built from a string never rounds
    except InvalidOperation:  # an exponent beyond decimal's own range: 1e-99999999999999999999
        mantissa_text, exponent_text = re.split("[eE]", text)
        if not mantissa_text.strip("0."):
            return 0
        return 0 if exponent_text.startswith("-") else MAX_DURATION_MS * 10**6  # as below
    if not value:
        return 0
    if value.adjusted() > _MAX_EXPONENT:
        return MAX_DURATION_MS * 10**6  # far out of every range; the caller's check refuses it
    if value.adjusted() < -_MAX_EXPONENT:
        return 0  # below 10^-40 s: far below half a millisecond
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: the grammar admits no inf or nan
    shift: int = exponent + 3  # value * 1000 = digits * 10^shift
    if shift >= 0:
        return int("".join(map(str, digits))) * int(pow(10, shift))
    # Nearest, ties up: round up exactly when the first dropped digit is 5 or more. Only the
    # kept digits (at most _MAX_EXPONENT + 4 of them) become an int, so 0.111... with 10^5
    # digits is 111 ms, not an int() of 10^5 digits.
    kept, dropped = digits[:shift], digits[shift:]
    whole = int("".join(map(str, kept))) if kept else 0
    return whole + (1 if dropped and dropped[0] >= 5 else 0)


def seconds_to_ms(seconds: float) -> int:
    """The same rule for a float given in code (ServerConfig, ClientConfig).

    The float's shortest decimal representation stands for the text a user would have written,
    so ``0.0025`` gives 3 ms here too, where ``round(0.0025 * 1000)`` gives 2.
    """
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{seconds!r} is not a duration")
    return seconds_text_to_ms(repr(float(seconds)).replace("+", ""))
