"""Independent truth for end-to-end tests, written from spec/PROTOCOL.md, not from reference/.

The generator form (state += gamma; mix) is deliberately different from the core's counter form.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Iterator

_MASK = (1 << 64) - 1


def splitmix64_stream(seed: int) -> Iterator[int]:
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        yield z ^ (z >> 31)


def session_values(seed: int, n: int) -> list[int]:
    stream = splitmix64_stream(seed)
    return [next(stream) >> 32 for _ in range(n)]


def session_checksum(seed: int, n: int) -> bytes:
    values = session_values(seed, n)
    return hashlib.sha256(struct.pack(f">{n}I", *values)).digest()


def doubling_sum(a: int, n: int) -> int:
    return a * ((1 << n) - 1)


def decimal(value: int) -> str:
    """``value`` in decimal with Python's 4,300-digit limit lifted (sums reach 19,731 digits)."""
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(value)
    finally:
        sys.set_int_max_str_digits(previous)
