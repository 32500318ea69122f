"""Decimal rendering of huge integers in better than quadratic time.

CPython 3.11's ``str(int)`` is quadratic in the number of digits and refuses more than 4,300
digits by default; a stateless sum at n = 65535 has 19,730. The decimal module multiplies big
numbers with a number-theoretic transform, so building the value from binary halves there
(value = high * 2**k + low, recursively) costs O(M(d) log d) instead.
"""

from __future__ import annotations

import decimal
from functools import cache

#: Below this many bits the plain conversion is faster than recursing further.
_LEAF_BITS = 2048
_CONTEXT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


@cache
def _power_of_two(bits: int) -> decimal.Decimal:
    return _CONTEXT.power(decimal.Decimal(2), bits)


def _to_decimal(value: int, bits: int) -> decimal.Decimal:
    if bits <= _LEAF_BITS:
        return decimal.Decimal(value)
    half = bits // 2
    high = _to_decimal(value >> half, bits - half)
    low = _to_decimal(value & ((1 << half) - 1), half)
    return _CONTEXT.add(_CONTEXT.multiply(high, _power_of_two(half)), low)


def to_decimal(value: int) -> str:
    """Exact base-10 text of any integer."""
    if value < 0:
        return "-" + to_decimal(-value)
    return str(_to_decimal(value, value.bit_length()))
