"""The two number sequences and the checksum, as spec/PROTOCOL.md defines them.

Pure functions of their arguments: the seed and ``a`` come from the caller's random source.
Single values are computed with Python integers (one per number sent); whole prefixes, which a
resuming server must hash (up to 65,534 values), are computed with numpy over uint64 arrays, whose
arithmetic wraps modulo 2^64 exactly as SplitMix64 needs.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

_MASK64 = (1 << 64) - 1
#: SplitMix64 increment (the odd integer closest to 2^64 / golden ratio).
SPLITMIX64_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX64_MUL1 = 0xBF58476D1CE4E5B9
SPLITMIX64_MUL2 = 0x94D049BB133111EB


def stateless_value(a: int, index: int) -> int:
    """Element ``index`` of the doubling sequence: exact, however many bits it takes."""
    return a << index


def stateless_sum(a: int, n: int) -> int:
    """Closed form of a + 2a + ... + 2^(n-1)a."""
    return a * ((1 << n) - 1)


def splitmix64_output(seed: int, index: int) -> int:
    """The (index+1)-th 64-bit output of SplitMix64 started at ``seed``; O(1) for any index."""
    z = (seed + (index + 1) * SPLITMIX64_GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * SPLITMIX64_MUL1) & _MASK64
    z = ((z ^ (z >> 27)) * SPLITMIX64_MUL2) & _MASK64
    return z ^ (z >> 31)


def stateful_value(seed: int, index: int) -> int:
    """Element ``index`` of a session's uint32 sequence: the high half of the SplitMix64 output."""
    return splitmix64_output(seed, index) >> 32


class Checksum:
    """SHA-256 over each value as 4 big-endian bytes, in index order; fed one value at a time."""

    __slots__ = ("_hash",)

    _U32 = struct.Struct(">I")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, value: int) -> None:
        self._hash.update(self._U32.pack(value))

    def update_be(self, values: bytes) -> None:
        """Feed values given as 4-byte big-endian integers, in index order (many at once)."""
        self._hash.update(values)

    def digest(self) -> bytes:
        return self._hash.digest()

    def copy(self) -> Checksum:
        clone = Checksum.__new__(Checksum)
        clone._hash = self._hash.copy()
        return clone


def stateful_checksum(seed: int, n: int) -> bytes:
    """Checksum of a whole session's sequence, computed from its seed alone."""
    return stateful_prefix_checksum(seed, n).digest()


def stateful_prefix_checksum(seed: int, count: int) -> Checksum:
    """Checksum state after the first ``count`` values: how a resuming server rebuilds it."""
    checksum = Checksum()
    extend_stateful_checksum(checksum, seed, 0, count)
    return checksum


def stateful_values_be(seed: int, begin: int, end: int) -> bytes:
    """Values ``begin..end-1`` of the session seeded ``seed``, each as 4 big-endian bytes.

    Shape: ``4 * (end - begin)`` bytes, exactly what the checksum hashes for those indices
    (spec/PROTOCOL.md §7.4). Vectorised: about a millisecond for 65,535 values. Raises ValueError
    unless ``0 <= begin <= end`` and ``seed`` is a u64.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"bad index range {begin}..{end}")
    if not 0 <= seed <= _MASK64:
        raise ValueError(f"seed {seed} is not a u64")
    z = np.arange(begin + 1, end + 1, dtype=np.uint64)  # SplitMix64's k-th output uses k * gamma
    z *= np.uint64(SPLITMIX64_GAMMA)
    z += np.uint64(seed)
    z ^= z >> np.uint64(30)
    z *= np.uint64(SPLITMIX64_MUL1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(SPLITMIX64_MUL2)
    z ^= z >> np.uint64(31)
    z >>= np.uint64(32)
    return z.astype(">u4").tobytes()


def extend_stateful_checksum(checksum: Checksum, seed: int, begin: int, end: int) -> None:
    """Feed values ``begin..end-1`` into ``checksum`` in one hash update (callers may slice)."""
    checksum._hash.update(stateful_values_be(seed, begin, end))
