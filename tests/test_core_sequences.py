"""The number sequences, the PRNG, the checksum and the decimal renderer, against outside truth.

Stateless values are checked against closed forms (a * 2**i, a * (2**n - 1)) and against plain
iterative doubling; SplitMix64 against its published reference outputs and against a
stateful generator written here; the checksum against hashlib over hand-packed bytes; and
``to_decimal`` against ``str`` with the digit limit lifted.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reference.numbers import to_decimal
from reference.protocol.sequences import (
    Checksum,
    splitmix64_output,
    stateful_checksum,
    stateful_prefix_checksum,
    stateful_value,
    stateful_values_be,
    stateless_sum,
    stateless_value,
)

MASK64 = (1 << 64) - 1
MAX_N = 0xFFFF


def splitmix64(seed: int) -> Iterator[int]:
    """SplitMix64 as Steele, Lea and Flood publish it: a state advanced by a fixed gamma."""
    state = seed & MASK64
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        yield z ^ (z >> 31)


def packed(values: list[int]) -> bytes:
    return b"".join(struct.pack(">I", v) for v in values)


seeds = st.integers(0, MASK64)
a_values = st.integers(1, 255)
#: Mostly small n, sometimes anywhere up to the maximum, sometimes exactly the maximum.
n_values = st.one_of(st.integers(1, 300), st.integers(1, MAX_N), st.just(MAX_N))


# --- stateless --------------------------------------------------------------------------------


@given(a_values, st.integers(0, MAX_N - 1))
@example(255, MAX_N - 1)
@example(1, 0)
@example(1, 64)
def test_stateless_value_closed_form(a: int, index: int) -> None:
    value = stateless_value(a, index)
    assert value == a * 2**index
    assert value.bit_length() == a.bit_length() + index  # no truncation to any fixed width


@given(a_values, n_values)
@example(255, MAX_N)
@example(1, 1)
def test_stateless_sum_closed_form(a: int, n: int) -> None:
    assert stateless_sum(a, n) == a * (2**n - 1)


@given(a_values, n_values)
@settings(max_examples=25)
@example(255, MAX_N)
@example(23, 3)
def test_stateless_by_iterative_doubling(a: int, n: int) -> None:
    """The sequence is a, 2a, 4a, ...; its sum and every sampled element agree with doubling."""
    rng = random.Random(a * 65536 + n)
    samples = {0, n - 1, *(rng.randrange(n) for _ in range(5))}
    value, total = a, 0
    for index in range(n):
        if index in samples:
            assert stateless_value(a, index) == value
        total += value
        value += value
    assert stateless_sum(a, n) == total


def test_stateless_worked_example() -> None:
    assert [stateless_value(23, i) for i in range(4)] == [23, 46, 92, 184]
    assert stateless_sum(23, 4) == 23 + 46 + 92 + 184


# --- SplitMix64 -------------------------------------------------------------------------------

PUBLISHED = {
    0: [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F],
    1234567: [6457827717110365317, 3203168211198807973, 9817491932198370423],
}


@pytest.mark.parametrize("seed", PUBLISHED)
def test_splitmix64_published_outputs(seed: int) -> None:
    expected = PUBLISHED[seed]
    assert [splitmix64_output(seed, i) for i in range(3)] == expected
    assert list(islice(splitmix64(seed), 3)) == expected  # the test's own generator is right too
    assert [stateful_value(seed, i) for i in range(3)] == [v >> 32 for v in expected]


@given(seeds)
@example(0)
@example(MASK64)
@example(0x9E3779B97F4A7C15)
def test_splitmix64_direct_access_equals_generator(seed: int) -> None:
    for index, output in enumerate(islice(splitmix64(seed), 50)):
        assert splitmix64_output(seed, index) == output
        assert stateful_value(seed, index) == output >> 32
        assert 0 <= stateful_value(seed, index) <= 0xFFFF_FFFF


@pytest.mark.parametrize("seed", [0, 1234567, MASK64, 0xDEADBEEFCAFEBABE])
def test_splitmix64_large_index_equals_stepping(seed: int) -> None:
    checkpoints = {1_000, 65_534, 65_535, 99_999}
    stepped = enumerate(islice(splitmix64(seed), max(checkpoints) + 1))
    found = {index: output for index, output in stepped if index in checkpoints}
    assert {i: splitmix64_output(seed, i) for i in checkpoints} == found


@given(seeds, st.integers(0, MAX_N - 1))
def test_stateful_value_is_the_high_half(seed: int, index: int) -> None:
    output = splitmix64_output(seed, index)
    assert 0 <= output <= MASK64
    assert stateful_value(seed, index) == output >> 32
    assert stateful_value(seed, index) == (output & ~0xFFFF_FFFF) // 2**32


def test_stateful_values_differ_across_seeds_and_indices() -> None:
    """A PRNG chained on its own 32-bit output repeats quickly; this one must not."""
    values = [stateful_value(seed, i) for seed in range(20) for i in range(200)]
    assert len(set(values)) > 0.99 * len(values)


# --- the checksum -----------------------------------------------------------------------------

u32_lists = st.lists(st.integers(0, 0xFFFF_FFFF), max_size=200)


@given(u32_lists)
@example([])
@example([0])
@example([0xFFFF_FFFF, 0, 1])
def test_checksum_is_sha256_of_big_endian_u32s(values: list[int]) -> None:
    checksum = Checksum()
    for v in values:
        checksum.update(v)
    assert checksum.digest() == hashlib.sha256(packed(values)).digest()
    assert len(checksum.digest()) == 32
    assert checksum.digest() == checksum.digest()  # digest() does not consume the state


@given(u32_lists, u32_lists, u32_lists)
def test_checksum_copy_is_independent(prefix: list[int], left: list[int], right: list[int]) -> None:
    original = Checksum()
    for v in prefix:
        original.update(v)
    clone = original.copy()
    for v in left:
        original.update(v)
    for v in right:
        clone.update(v)
    assert original.digest() == hashlib.sha256(packed(prefix + left)).digest()
    assert clone.digest() == hashlib.sha256(packed(prefix + right)).digest()


@given(st.lists(st.integers(0, 0xFFFF_FFFF), min_size=2, max_size=50, unique=True), st.data())
def test_checksum_is_order_sensitive(values: list[int], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(values) - 2), label="i")
    j = data.draw(st.integers(i + 1, len(values) - 1), label="j")
    swapped = list(values)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    a, b = Checksum(), Checksum()
    for v in values:
        a.update(v)
    for v in swapped:
        b.update(v)
    assert a.digest() != b.digest()


def test_checksum_has_no_ambiguous_encoding() -> None:
    """Fixed-width values: [1, 23] and [12, 3] (equal as concatenated decimals) differ."""
    a, b = Checksum(), Checksum()
    for v in (1, 23):
        a.update(v)
    for v in (12, 3):
        b.update(v)
    assert a.digest() != b.digest()
    assert a.digest() == hashlib.sha256(bytes.fromhex("0000000100000017")).digest()


@given(seeds, st.one_of(st.integers(1, 500), st.just(MAX_N)))
@settings(max_examples=30)
@example(0, 1)
@example(1234567, 3)
def test_stateful_checksum_against_generator(seed: int, n: int) -> None:
    highs = [v >> 32 for v in islice(splitmix64(seed), n)]
    assert stateful_checksum(seed, n) == hashlib.sha256(packed(highs)).digest()


@given(seeds, st.data())
@settings(max_examples=50)
def test_prefix_checksum_continues_to_the_whole(seed: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 2000), label="n")
    k = data.draw(st.integers(0, n), label="k")
    resumed = stateful_prefix_checksum(seed, k)
    assert (
        resumed.digest()
        == hashlib.sha256(packed([stateful_value(seed, i) for i in range(k)])).digest()
    )
    for index in range(k, n):
        resumed.update(stateful_value(seed, index))
    assert resumed.digest() == stateful_checksum(seed, n)
    # A fresh prefix is unaffected by the updates made to an earlier one.
    assert (
        stateful_prefix_checksum(seed, k).digest()
        == hashlib.sha256(packed([stateful_value(seed, i) for i in range(k)])).digest()
    )


@pytest.mark.parametrize("seed", [0, 1, 2**53 + 1, 2**63, MASK64, 0x0123_4567_89AB_CDEF])
def test_vectorised_values_equal_the_generator_over_the_whole_range(seed: int) -> None:
    """numpy's uint64 arithmetic must wrap exactly like SplitMix64's, at every index 0..65534."""
    highs = [v >> 32 for v in islice(splitmix64(seed), MAX_N)]
    assert stateful_values_be(seed, 0, MAX_N) == packed(highs)
    for begin, end in ((0, 0), (0, 1), (MAX_N - 1, MAX_N), (4095, 4097), (60_000, 65_534)):
        assert stateful_values_be(seed, begin, end) == packed(highs[begin:end])


@pytest.mark.parametrize("count", [0, 1, 2, 4096, 60_000, MAX_N - 1])
def test_prefix_checksum_at_resume_points_equals_the_oracle(count: int) -> None:
    seed = 0xFEDC_BA98_7654_3210
    expected = hashlib.sha256(packed([v >> 32 for v in islice(splitmix64(seed), count)]))
    assert stateful_prefix_checksum(seed, count).digest() == expected.digest()


@pytest.mark.parametrize(("seed", "begin", "end"), [(-1, 0, 1), (MASK64 + 1, 0, 1), (1, 5, 4)])
def test_vectorised_values_refuse_bad_arguments(seed: int, begin: int, end: int) -> None:
    with pytest.raises(ValueError, match=r"seed|range"):
        stateful_values_be(seed, begin, end)


def test_stateful_checksum_of_empty_prefix_is_sha256_of_nothing() -> None:
    assert stateful_prefix_checksum(42, 0).digest() == hashlib.sha256(b"").digest()


# --- decimal rendering ------------------------------------------------------------------------


@contextmanager
def unlimited_str_digits() -> Iterator[None]:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(previous)


@st.composite
def big_ints(draw: st.DrawFn) -> int:
    bits = draw(st.one_of(st.integers(0, 4200), st.integers(0, 70_000)), label="bits")
    seed = draw(st.integers(0, 2**32), label="seed")
    magnitude = random.Random(seed).getrandbits(bits) if bits else 0
    shape = draw(st.sampled_from(["random", "power-of-two", "all-ones", "power-of-ten"]))
    if shape == "power-of-two":
        magnitude = 1 << bits
    elif shape == "all-ones":
        magnitude = (1 << bits) - 1
    elif shape == "power-of-ten":
        magnitude = 10 ** (bits // 4) + draw(st.sampled_from([-1, 0, 1]))
    return -magnitude if draw(st.booleans()) else magnitude


@given(big_ints())
@settings(max_examples=60)
@example(0)
@example(-1)
@example(2**2048)
@example(2**2049 - 1)
@example(10**5000)
@example(-(10**5000) + 1)
@example(255 * (2**MAX_N - 1))
def test_to_decimal_equals_str(value: int) -> None:
    with unlimited_str_digits():
        expected = str(value)
    assert to_decimal(value) == expected


def test_to_decimal_of_the_largest_stateless_sum() -> None:
    value = stateless_sum(255, MAX_N)
    with unlimited_str_digits():
        expected = str(value)
    text = to_decimal(value)
    assert text == expected
    # floor(log10(255) + 65535 * log10(2)) + 1 = floor(19730.41) + 1
    assert len(text) == math.floor(math.log10(255) + MAX_N * math.log10(2)) + 1 == 19_731
    assert int(text[-1]) == (255 * (pow(2, MAX_N, 10) - 1)) % 10
