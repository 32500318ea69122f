#!/usr/bin/env python3
"""Generate the language-neutral test vectors of NSP version 1 (spec/PROTOCOL.md).

Usage: ``python spec/vectors/generate.py [OUTPUT_DIR]`` (default: the directory of this file).

This script is deliberately independent of the reference implementation: it uses only the Python
standard library and re-derives every byte from the text of spec/PROTOCOL.md, so that the vectors
are a second opinion on the code rather than a recording of it. Output is deterministic: running
it twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

VERSION = 1
MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB

# Frame types, modes, flags, limits (spec/PROTOCOL.md sections 3 and 4).
HELLO, WELCOME, DATA, FINAL, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05
TYPE_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", DATA: "DATA", FINAL: "FINAL", ERROR: "ERROR"}
STATELESS, STATEFUL = 1, 2
MODE_NAMES = {STATELESS: "stateless", STATEFUL: "stateful"}
RESUME = 0x01
MAX_PAYLOAD = 16384

ERROR_CODES = {
    "MALFORMED_FRAME": 1,
    "FRAME_TOO_LARGE": 2,
    "UNEXPECTED_FRAME": 3,
    "UNSUPPORTED_VERSION": 4,
    "UNSUPPORTED_MODE": 5,
    "INVALID_N": 6,
    "INVALID_A": 7,
    "INVALID_INDEX": 8,
    "INVALID_CLIENT_ID": 9,
    "HANDSHAKE_TIMEOUT": 10,
    "SESSION_UNKNOWN": 20,
    "SESSION_MISMATCH": 21,
    "SESSION_SUPERSEDED": 22,
    "STORE_UNAVAILABLE": 30,
    "SERVER_BUSY": 31,
    "SHUTTING_DOWN": 32,
    "INTERNAL_ERROR": 33,
}

# Parameters of the worked examples (spec/PROTOCOL.md section 20).
EXAMPLE_A = 23
EXAMPLE_SEED = 0x0123456789ABCDEF
EXAMPLE_CLIENT_ID = "3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a90"
EXAMPLE_INTERVAL_MS = 1000
EXAMPLE_TTL_MS = 30000

Json = dict[str, Any]


# --- sequences ------------------------------------------------------------------------------


def splitmix64(seed: int, index: int) -> int:
    """Output number ``index`` (0-based) of SplitMix64 seeded with ``seed``."""
    z = (seed + (index + 1) * GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * MUL1) & MASK64
    z = ((z ^ (z >> 27)) * MUL2) & MASK64
    return z ^ (z >> 31)


def element(seed: int, index: int) -> int:
    return splitmix64(seed, index) >> 32


def checksum(values: list[int]) -> str:
    return hashlib.sha256(b"".join(struct.pack(">I", v) for v in values)).hexdigest()


def session_checksum(seed: int, n: int) -> str:
    digest = hashlib.sha256()
    for index in range(n):
        digest.update(struct.pack(">I", element(seed, index)))
    return digest.hexdigest()


def h64(value: int) -> str:
    return f"{value:016x}"


def h32(value: int) -> str:
    return f"{value:08x}"


# --- frame encoding -------------------------------------------------------------------------


def frame(frame_type: int, payload: bytes) -> bytes:
    return struct.pack(">BH", frame_type, len(payload)) + payload


def raw_hello(
    mode: int, n: int, next_index: int = 0, *, flags: int = 0, version: int = VERSION
) -> bytes:
    return struct.pack(">BBBII", version, mode, flags, n, next_index)


def hello_stateless(n: int, next_index: int, a: int, *, resume: bool) -> bytes:
    flags = RESUME if resume else 0
    return frame(HELLO, raw_hello(STATELESS, n, next_index, flags=flags) + struct.pack(">I", a))


def hello_stateful(n: int, next_index: int, client_id: str, *, resume: bool) -> bytes:
    flags = RESUME if resume else 0
    payload = raw_hello(STATEFUL, n, next_index, flags=flags) + client_id.encode("ascii")
    return frame(HELLO, payload)


def welcome(
    mode: int, n: int, next_index: int, interval_ms: int, a: int, ttl_ms: int, *, version: int = 1
) -> bytes:
    payload = struct.pack(">BBBIIIII", version, mode, 0, n, next_index, interval_ms, a, ttl_ms)
    return frame(WELCOME, payload)


def magnitude(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def number_stateless(index: int, value: int, *, final: bool) -> bytes:
    return frame(FINAL if final else DATA, struct.pack(">I", index) + magnitude(value))


def number_stateful(index: int, value: int, checksum_hex: str | None = None) -> bytes:
    payload = struct.pack(">II", index, value)
    if checksum_hex is None:
        return frame(DATA, payload)
    return frame(FINAL, payload + bytes.fromhex(checksum_hex))


def error(code: int, message: bytes) -> bytes:
    return frame(ERROR, struct.pack(">H", code) + message)


# --- prng.json ------------------------------------------------------------------------------


def prng_vectors() -> Json:
    seeds = [0, 1, 1234567, 0xFFFFFFFFFFFFFFFF, 0x0123456789ABCDEF]
    indices = [*range(10), 1000, 65534, 2**32]
    cases = []
    for seed in seeds:
        outputs = []
        for index in indices:
            out = splitmix64(seed, index)
            outputs.append(
                {
                    "index": index,
                    "output": str(out),
                    "output_hex": h64(out),
                    "element": out >> 32,
                    "element_hex": h32(out >> 32),
                }
            )
        cases.append({"seed": str(seed), "seed_hex": h64(seed), "outputs": outputs})
    return {
        "description": (
            "SplitMix64 in counter form. output(seed, i) = mix((seed + (i+1)*gamma) mod 2^64); "
            "element(seed, i) = output(seed, i) >> 32 is the u32 sent at index i. 'output' is the "
            "u64 as a decimal string, 'output_hex' the same as 16 lower-case hex digits; "
            "'element' is a JSON number (u32), 'element_hex' 8 hex digits. Indices above 65534 "
            "never occur on the wire; they check the mod 2^64 arithmetic."
        ),
        "version": VERSION,
        "constants": {
            "gamma_hex": h64(GAMMA),
            "mul1_hex": h64(MUL1),
            "mul2_hex": h64(MUL2),
            "shifts": [30, 27, 31],
        },
        "cases": cases,
    }


# --- checksum.json --------------------------------------------------------------------------


def checksum_vectors() -> Json:
    sequences: list[tuple[str, list[int]]] = [
        ("empty (the running hash before index 0)", []),
        ("single zero", [0]),
        ("single u32 max", [0xFFFFFFFF]),
        ("one two", [1, 2]),
        ("two one (order matters)", [2, 1]),
        ("twelve then three (not the same as 1, 2, 3 or 123)", [12, 3]),
        ("one twenty-three", [1, 23]),
        ("byte-boundary values", [0x000000FF, 0x0000FF00, 0x00FF0000, 0xFF000000]),
        (
            "worked example (seed 0x0123456789abcdef, n=3)",
            [element(EXAMPLE_SEED, i) for i in range(3)],
        ),
    ]
    sequence_cases = [
        {
            "name": name,
            "values": values,
            "bytes_hex": b"".join(struct.pack(">I", v) for v in values).hex(),
            "sha256": checksum(values),
        }
        for name, values in sequences
    ]
    session_cases = [
        {
            "seed": str(seed),
            "seed_hex": h64(seed),
            "n": n,
            "first_elements": [element(seed, i) for i in range(min(n, 3))],
            "last_element": element(seed, n - 1),
            "sha256": session_checksum(seed, n),
        }
        for seed in [0, 1, 1234567, 0xFFFFFFFFFFFFFFFF, EXAMPLE_SEED]
        for n in [1, 3, 1000, 65535]
    ]
    return {
        "description": (
            "Checksum = SHA-256 over the concatenation of the n u32 values, each as 4 big-endian "
            "bytes, in index order (4n bytes in all); shown as 64 lower-case hex digits. "
            "'sequences' lists explicit values; 'sessions' gives the checksum of the whole "
            "stateful sequence element(seed, 0..n-1) that a FINAL frame carries."
        ),
        "version": VERSION,
        "sequences": sequence_cases,
        "sessions": session_cases,
    }


# --- stateless_sums.json --------------------------------------------------------------------


def stateless_vectors() -> Json:
    cases = []
    for a, n in [(1, 1), (23, 1), (23, 3), (255, 1), (1, 64), (255, 100), (1, 65535), (255, 65535)]:
        total = sum(a << k for k in range(n)) if n <= 100 else a * ((1 << n) - 1)
        assert total == a * ((1 << n) - 1)
        last = a << (n - 1)
        cases.append(
            {
                "a": a,
                "n": n,
                "sum": str(total),
                "sum_bits": total.bit_length(),
                "sum_digits": len(str(total)),
                "last_value_bytes": len(magnitude(last)),
            }
        )
    return {
        "description": (
            "Stateless sums: element k = a * 2^k for k = 0..n-1, and the client prints their sum "
            "a * (2^n - 1) in decimal. 'sum' is the exact decimal string (up to 19,731 digits: "
            "use arbitrary-precision integers); 'sum_bits' its bit length; 'last_value_bytes' "
            "the length of the minimal big-endian magnitude of the last element a * 2^(n-1), "
            "which is the value field of the FINAL frame."
        ),
        "version": VERSION,
        "cases": cases,
    }


# --- frames.json ----------------------------------------------------------------------------


def _frame_entry(
    name: str,
    data: bytes,
    direction: str,
    mode: int | None,
    fields: Json,
    context: Json | None = None,
) -> Json:
    entry: Json = {
        "name": name,
        "type": TYPE_NAMES[data[0]],
        "direction": direction,
        "mode": None if mode is None else MODE_NAMES[mode],
        "fields": fields,
    }
    if context is not None:
        entry["context"] = context
    entry["size"] = len(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    entry["hex"] = data.hex()
    return entry


def _hello_fields(
    mode: int, n: int, next_index: int, *, resume: bool, a: int = 0, client_id: str = ""
) -> Json:
    fields: Json = {
        "version": VERSION,
        "mode": mode,
        "flags": RESUME if resume else 0,
        "resume": resume,
        "n": n,
        "next_index": next_index,
    }
    if mode == STATELESS:
        fields["a"] = a
    else:
        fields["client_id"] = client_id
    return fields


def _welcome_fields(mode: int, n: int, next_index: int, a: int, ttl: int) -> Json:
    return {
        "version": VERSION,
        "mode": mode,
        "flags": 0,
        "n": n,
        "next_index": next_index,
        "interval_ms": EXAMPLE_INTERVAL_MS,
        "a": a,
        "session_ttl_ms": ttl,
    }


def _stateless_number(name: str, a: int, n: int, index: int) -> Json:
    final = index == n - 1
    value = a << index
    resume = index > 0
    context = {
        "hello": hello_stateless(n, index, a if resume else 0, resume=resume).hex(),
        "welcome": welcome(STATELESS, n, index, EXAMPLE_INTERVAL_MS, a, 0).hex(),
    }
    fields: Json = {"index": index, "value": str(value), "value_bytes": len(magnitude(value))}
    data = number_stateless(index, value, final=final)
    return _frame_entry(name, data, "server-to-client", STATELESS, fields, context)


def _stateful_number(name: str, seed: int, n: int, index: int) -> Json:
    final = index == n - 1
    value = element(seed, index)
    digest = session_checksum(seed, n) if final else None
    context = {
        "hello": hello_stateful(n, index, EXAMPLE_CLIENT_ID, resume=index > 0).hex(),
        "welcome": welcome(STATEFUL, n, index, EXAMPLE_INTERVAL_MS, 0, EXAMPLE_TTL_MS).hex(),
    }
    fields: Json = {"index": index, "value": value}
    if digest is not None:
        fields["checksum"] = digest
    data = number_stateful(index, value, digest)
    return _frame_entry(name, data, "server-to-client", STATEFUL, fields, context)


def frame_vectors() -> Json:
    c2s, s2c = "client-to-server", "server-to-client"
    cid = EXAMPLE_CLIENT_ID
    any_hello = hello_stateless(3, 0, 0, resume=False).hex()
    frames: list[Json] = [
        _frame_entry(
            "hello-stateless-new",
            hello_stateless(3, 0, 0, resume=False),
            c2s,
            STATELESS,
            _hello_fields(STATELESS, 3, 0, resume=False),
        ),
        _frame_entry(
            "hello-stateless-resume",
            hello_stateless(3, 1, 23, resume=True),
            c2s,
            STATELESS,
            _hello_fields(STATELESS, 3, 1, resume=True, a=23),
        ),
        _frame_entry(
            "hello-stateless-resume-at-zero",
            hello_stateless(3, 0, 23, resume=True),
            c2s,
            STATELESS,
            _hello_fields(STATELESS, 3, 0, resume=True, a=23),
        ),
        _frame_entry(
            "hello-stateless-resume-largest",
            hello_stateless(65535, 65534, 255, resume=True),
            c2s,
            STATELESS,
            _hello_fields(STATELESS, 65535, 65534, resume=True, a=255),
        ),
        _frame_entry(
            "hello-stateful-new",
            hello_stateful(3, 0, cid, resume=False),
            c2s,
            STATEFUL,
            _hello_fields(STATEFUL, 3, 0, resume=False, client_id=cid),
        ),
        _frame_entry(
            "hello-stateful-resume",
            hello_stateful(3, 2, cid, resume=True),
            c2s,
            STATEFUL,
            _hello_fields(STATEFUL, 3, 2, resume=True, client_id=cid),
        ),
        _frame_entry(
            "hello-stateful-resume-at-zero",
            hello_stateful(3, 0, cid, resume=True),
            c2s,
            STATEFUL,
            _hello_fields(STATEFUL, 3, 0, resume=True, client_id=cid),
        ),
        _frame_entry(
            "hello-stateful-max-n",
            hello_stateful(65535, 0, cid, resume=False),
            c2s,
            STATEFUL,
            _hello_fields(STATEFUL, 65535, 0, resume=False, client_id=cid),
        ),
        _frame_entry(
            "welcome-stateless-new",
            welcome(STATELESS, 3, 0, EXAMPLE_INTERVAL_MS, 23, 0),
            s2c,
            STATELESS,
            _welcome_fields(STATELESS, 3, 0, 23, 0),
            {"hello": any_hello},
        ),
        _frame_entry(
            "welcome-stateless-resume",
            welcome(STATELESS, 3, 1, EXAMPLE_INTERVAL_MS, 23, 0),
            s2c,
            STATELESS,
            _welcome_fields(STATELESS, 3, 1, 23, 0),
            {"hello": hello_stateless(3, 1, 23, resume=True).hex()},
        ),
        _frame_entry(
            "welcome-stateful-new",
            welcome(STATEFUL, 3, 0, EXAMPLE_INTERVAL_MS, 0, EXAMPLE_TTL_MS),
            s2c,
            STATEFUL,
            _welcome_fields(STATEFUL, 3, 0, 0, EXAMPLE_TTL_MS),
            {"hello": hello_stateful(3, 0, cid, resume=False).hex()},
        ),
        _frame_entry(
            "welcome-stateful-resume",
            welcome(STATEFUL, 3, 2, EXAMPLE_INTERVAL_MS, 0, EXAMPLE_TTL_MS),
            s2c,
            STATEFUL,
            _welcome_fields(STATEFUL, 3, 2, 0, EXAMPLE_TTL_MS),
            {"hello": hello_stateful(3, 2, cid, resume=True).hex()},
        ),
        _stateless_number("data-stateless-k0", 23, 3, 0),
        _stateless_number("data-stateless-k1", 23, 3, 1),
        _stateless_number("data-stateless-two-byte-boundary", 2, 10, 7),
        _stateless_number("data-stateless-k64", 255, 100, 64),
        _stateless_number("final-stateless-k2", 23, 3, 2),
        _stateless_number("final-stateless-n1", 255, 1, 0),
        _stateless_number("final-stateless-largest-frame", 255, 65535, 65534),
        _stateful_number("data-stateful-k0", EXAMPLE_SEED, 3, 0),
        _stateful_number("data-stateful-k1", EXAMPLE_SEED, 3, 1),
        _stateful_number("final-stateful-k2", EXAMPLE_SEED, 3, 2),
        _stateful_number("final-stateful-n1", EXAMPLE_SEED, 1, 0),
    ]
    errors: list[tuple[str, int, str]] = [
        ("error-session-unknown", 20, "session unknown or expired"),
        ("error-empty-message", 31, ""),
        ("error-non-ascii-message", 6, "n=0 hors limites \u2014 1..65535 \u2713"),
        ("error-unknown-code", 999, "a code this version does not define"),
        ("error-longest-message", 33, "x" * 1024),
    ]
    for name, code, message in errors:
        fields: Json = {"code": code, "message": message}
        code_name = {v: k for k, v in ERROR_CODES.items()}.get(code)
        if code_name is not None:
            fields["code_name"] = code_name
        frames.append(
            _frame_entry(
                name,
                error(code, message.encode("utf-8")),
                s2c,
                None,
                fields,
                {"hello": any_hello},
            )
        )
    return {
        "description": (
            "Valid frames with their decoded fields. 'hex' is the whole frame (3-byte header "
            "included). For server-to-client frames, 'context' holds the HELLO the client sent "
            "and, for DATA/FINAL, the WELCOME it received first, so each frame can be fed to a "
            "client connection; the number frame is always the first one after that WELCOME. "
            "Stateless values are decimal strings (arbitrary precision), stateful values u32 "
            "numbers; checksums are hex."
        ),
        "version": VERSION,
        "frames": frames,
    }


# --- invalid_frames.json --------------------------------------------------------------------
#
# One table per rule set of spec/PROTOCOL.md. Every row is bytes that break one rule, cited by
# its section and step ("5.3 step 9": section 5.3, step 9 of its table), with the code of the
# first failing check and why. A table fixes which side reads the bytes and, for a client, the
# HELLO it sent and the valid frames it read first; a row overrides them where it must.


class Bad(NamedTuple):
    """One case: ``data`` breaks the rule at ``step`` (PROTOCOL.md) and fails with ``code``."""

    name: str
    data: bytes
    code: str
    step: str
    why: str
    eof: bool = False
    received: bytes | None = None  # None: the table's
    hello: bytes | None = None  # None: the table's (client tables only)


class Table(NamedTuple):
    """Rows read by one side in one context: ``decoder`` is "server" or "client"."""

    decoder: str
    rows: tuple[Bad, ...]
    hello: bytes | None = None
    received: bytes = b""


CID = EXAMPLE_CLIENT_ID.encode("ascii")
SL_HELLO = hello_stateless(3, 0, 0, resume=False)
SL_RESUME = hello_stateless(3, 1, 23, resume=True)
SF_HELLO = hello_stateful(3, 0, EXAMPLE_CLIENT_ID, resume=False)
SL_WELCOME = welcome(STATELESS, 3, 0, 1000, 23, 0)
SF_WELCOME = welcome(STATEFUL, 3, 0, 1000, 0, EXAMPLE_TTL_MS)
S0, S1, S2 = (element(EXAMPLE_SEED, i) for i in range(3))
MAX_DURATION_MS = 86_400_000  # section 13.1


def sl(n: int, next_index: int, a: int, flags: int = 0) -> bytes:
    """A stateless HELLO with any field values, valid or not."""
    return frame(HELLO, raw_hello(STATELESS, n, next_index, flags=flags) + struct.pack(">I", a))


def sf(client_id: bytes, n: int = 3, next_index: int = 0, flags: int = 0) -> bytes:
    """A stateful HELLO with any field values and any client-id bytes."""
    return frame(HELLO, raw_hello(STATEFUL, n, next_index, flags=flags) + client_id)


# Section 3, receiving rules 1 (header: type on the first byte, then length) and 3 (EOF inside a
# frame), as a server reads them: they are also step 1 of the HELLO validation (section 5.3).
FRAMING_SERVER = Table(
    "server",
    (
        Bad(
            "garbage-http-request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "MALFORMED_FRAME",
            "3 rule 1",
            "type byte 0x47 is not a frame type",
        ),
        Bad("type-zero", bytes.fromhex("000000"), "MALFORMED_FRAME", "3 rule 1", "type 0x00"),
        Bad(
            "type-six",
            bytes.fromhex("06000f") + sl(3, 0, 0)[3:],
            "MALFORMED_FRAME",
            "3 rule 1",
            "0x06",
        ),
        Bad(
            "type-unknown-with-huge-length",
            bytes.fromhex("ffffff"),
            "MALFORMED_FRAME",
            "3 rule 1",
            "the type is checked before the length",
        ),
        Bad(
            "first-byte-unknown",
            bytes.fromhex("ff"),
            "MALFORMED_FRAME",
            "3 rule 1",
            "one byte that is no frame type, then silence: rejected at once, never timed out",
        ),
        Bad(
            "first-bytes-unknown-two",
            b"GE",
            "MALFORMED_FRAME",
            "3 rule 1",
            "two bytes of an HTTP request, then silence: judged on the first byte",
        ),
        Bad(
            "length-16385",
            bytes.fromhex("014001"),
            "FRAME_TOO_LARGE",
            "3 rule 1",
            "header announces 16385 > 16384 payload bytes; rejected before any payload",
        ),
        Bad(
            "length-65535",
            bytes.fromhex("01ffff"),
            "FRAME_TOO_LARGE",
            "3 rule 1",
            "header announces 65535 payload bytes",
        ),
        Bad(
            "eof-inside-header",
            bytes.fromhex("0100"),
            "MALFORMED_FRAME",
            "3 rule 3",
            "EOF after 2 of the 3 header bytes",
            eof=True,
        ),
        Bad(
            "eof-inside-payload",
            SL_HELLO[:-1],
            "MALFORMED_FRAME",
            "3 rule 3",
            "EOF one byte short of the announced payload",
            eof=True,
        ),
    ),
)

# Section 5.3, steps 3 to 13: each check alone, then several faults at once, where the first
# failing step decides the code (the order-* rows).
HELLO_CHECKS = Table(
    "server",
    (
        Bad("hello-empty-payload", frame(HELLO, b""), "MALFORMED_FRAME", "5.3 step 3", "no bytes"),
        Bad(
            "hello-too-short",
            frame(HELLO, bytes.fromhex("0101000000")),
            "MALFORMED_FRAME",
            "5.3 step 5",
            "version 1 but fewer than the 11 fixed bytes",
        ),
        Bad(
            "hello-version-2-other-length",
            frame(HELLO, bytes([2]) + bytes(19)),
            "UNSUPPORTED_VERSION",
            "5.3 step 4",
            "the version byte is checked before the length",
        ),
        Bad(
            "hello-version-2-one-byte",
            frame(HELLO, bytes([2])),
            "UNSUPPORTED_VERSION",
            "5.3 step 4",
            "a 1-byte payload is enough to learn the version",
        ),
        Bad(
            "hello-version-0",
            frame(HELLO, bytes([0]) + SL_HELLO[4:]),
            "UNSUPPORTED_VERSION",
            "5.3 step 4",
            "version 0 is not version 1",
        ),
        Bad(
            "hello-mode-3",
            frame(HELLO, raw_hello(3, 3) + bytes(4)),
            "UNSUPPORTED_MODE",
            "5.3 step 6",
            "mode 3 does not exist",
        ),
        Bad(
            "hello-mode-0",
            frame(HELLO, raw_hello(0, 3) + bytes(4)),
            "UNSUPPORTED_MODE",
            "5.3 step 6",
            "mode 0 does not exist",
        ),
        Bad(
            "hello-reserved-flag-0x02",
            sl(3, 0, 0, flags=0x02),
            "MALFORMED_FRAME",
            "5.3 step 7",
            "flag bits other than bit 0 must be 0",
        ),
        Bad(
            "hello-reserved-flag-0x80",
            sl(3, 1, 23, flags=0x81),
            "MALFORMED_FRAME",
            "5.3 step 7",
            "RESUME plus a reserved bit",
        ),
        Bad(
            "hello-stateless-16-bytes",
            frame(HELLO, SL_HELLO[3:] + b"\x00"),
            "MALFORMED_FRAME",
            "5.3 step 8",
            "stateless HELLO payload must be exactly 15 bytes",
        ),
        Bad(
            "hello-stateless-with-stateful-length",
            frame(HELLO, raw_hello(STATELESS, 3) + CID),
            "MALFORMED_FRAME",
            "5.3 step 8",
            "mode 1 with a 47-byte payload",
        ),
        Bad(
            "hello-stateful-46-bytes",
            sf(CID[:-1]),
            "MALFORMED_FRAME",
            "5.3 step 8",
            "stateful HELLO payload must be exactly 47 bytes",
        ),
        Bad(
            "hello-stateful-braced-uuid",
            sf(b"{" + CID + b"}"),
            "MALFORMED_FRAME",
            "5.3 step 8",
            "38-byte client id: the length is wrong before the id is looked at",
        ),
        Bad("hello-n-0", sl(0, 0, 0), "INVALID_N", "5.3 step 9", "n must be 1..65535"),
        Bad("hello-n-65536", sl(0x10000, 0, 0), "INVALID_N", "5.3 step 9", "n = 0x10000"),
        Bad("hello-n-u32-max", sl(0xFFFFFFFF, 0, 0), "INVALID_N", "5.3 step 9", "n = 0xffffffff"),
        Bad("hello-stateful-n-0", sf(CID, n=0), "INVALID_N", "5.3 step 9", "n = 0"),
        Bad(
            "hello-resume-next-index-equals-n",
            sl(3, 3, 23, flags=RESUME),
            "INVALID_INDEX",
            "5.3 step 10",
            "next_index must be below n (the client already has everything)",
        ),
        Bad(
            "hello-resume-next-index-u32-max",
            sl(3, 0xFFFFFFFF, 23, flags=RESUME),
            "INVALID_INDEX",
            "5.3 step 10",
            "next_index far past the end",
        ),
        Bad(
            "hello-stateful-resume-next-index-equals-n",
            sf(CID, n=3, next_index=3, flags=RESUME),
            "INVALID_INDEX",
            "5.3 step 10",
            "checked before any store access",
        ),
        Bad(
            "hello-new-with-next-index",
            sl(3, 1, 0),
            "INVALID_INDEX",
            "5.3 step 11",
            "next_index must be 0 without RESUME",
        ),
        Bad(
            "hello-stateful-new-with-next-index",
            sf(CID, next_index=1),
            "INVALID_INDEX",
            "5.3 step 11",
            "next_index must be 0 without RESUME",
        ),
        Bad("hello-resume-a-0", sl(3, 1, 0, flags=RESUME), "INVALID_A", "5.3 step 12", "a = 0"),
        Bad(
            "hello-resume-a-256", sl(3, 1, 256, flags=RESUME), "INVALID_A", "5.3 step 12", "a = 256"
        ),
        Bad(
            "hello-resume-a-u32-max",
            sl(3, 1, 0xFFFFFFFF, flags=RESUME),
            "INVALID_A",
            "5.3 step 12",
            "a = 0xffffffff must not be truncated to 255",
        ),
        Bad(
            "hello-new-with-a",
            sl(3, 0, 23),
            "INVALID_A",
            "5.3 step 12",
            "a must be 0 without RESUME (the server chooses it)",
        ),
        Bad(
            "hello-client-id-upper-case",
            sf(CID.upper()),
            "INVALID_CLIENT_ID",
            "5.3 step 13",
            "only lower-case hex digits are canonical",
        ),
        Bad(
            "hello-client-id-misplaced-dashes",
            sf(b"3f2c8a4e9-b1d-4c7e-a5f0-6d8e2b7c1a90"),
            "INVALID_CLIENT_ID",
            "5.3 step 13",
            "dashes must be at offsets 8, 13, 18 and 23",
        ),
        Bad(
            "hello-client-id-non-hex",
            sf(b"3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a9g"),
            "INVALID_CLIENT_ID",
            "5.3 step 13",
            "'g' is not a hex digit",
        ),
        Bad(
            "hello-client-id-no-dashes",
            sf(b"3f2c8a4e9b1d4c7ea5f06d8e2b7c1a900000"),
            "INVALID_CLIENT_ID",
            "5.3 step 13",
            "36 hex digits without dashes",
        ),
        Bad(
            "hello-client-id-padded",
            sf(b" 3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a9"),
            "INVALID_CLIENT_ID",
            "5.3 step 13",
            "no padding or whitespace",
        ),
        Bad(
            "hello-client-id-non-ascii",
            sf(b"3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a\xc3\xa9"),
            "INVALID_CLIENT_ID",
            "5.3 step 13",
            "bytes >= 0x80 are never part of a client id",
        ),
        Bad(
            "order-version-before-everything",
            frame(HELLO, bytes([7, 9, 0xFE])),
            "UNSUPPORTED_VERSION",
            "5.3 step 4",
            "version 7 with bad mode, bad flags and bad length",
        ),
        Bad(
            "order-mode-before-flags",
            frame(HELLO, raw_hello(9, 0, flags=0xFE)),
            "UNSUPPORTED_MODE",
            "5.3 step 6",
            "mode 9, reserved flags, short payload",
        ),
        Bad(
            "order-n-before-index-and-a",
            sl(0, 5, 0, flags=RESUME),
            "INVALID_N",
            "5.3 step 9",
            "n = 0, next_index >= n and a = 0 together",
        ),
        Bad(
            "order-index-before-a",
            sl(3, 3, 0, flags=RESUME),
            "INVALID_INDEX",
            "5.3 step 10",
            "next_index = n and a = 0 together",
        ),
        Bad(
            "order-stateful-n-before-client-id",
            sf(CID.upper(), n=0),
            "INVALID_N",
            "5.3 step 9",
            "n = 0 and an upper-case id together",
        ),
    ),
)

# Section 5.3 steps 2 and 14 with the table of section 5.5: a client sends one HELLO and nothing
# else, not even in the same read as the HELLO.
HELLO_SEQUENCE = Table(
    "server",
    (
        Bad(
            "client-sends-welcome",
            SL_WELCOME,
            "UNEXPECTED_FRAME",
            "5.3 step 2",
            "only HELLO may come from a client",
        ),
        Bad(
            "client-sends-data-first",
            number_stateless(0, 23, final=False),
            "UNEXPECTED_FRAME",
            "5.3 step 2",
            "only HELLO may come from a client",
        ),
        Bad(
            "client-sends-error",
            error(1, b""),
            "UNEXPECTED_FRAME",
            "5.3 step 2",
            "clients never send ERROR",
        ),
        Bad(
            "second-hello",
            SL_HELLO,
            "UNEXPECTED_FRAME",
            "5.3 step 14",
            "a client sends exactly one frame per connection",
            received=SL_HELLO,
        ),
        Bad(
            "bytes-after-stateful-hello",
            error(0, b""),
            "UNEXPECTED_FRAME",
            "5.3 step 14",
            "anything after HELLO is a violation",
            received=SF_HELLO,
        ),
    ),
)

# Section 5.4: the client's checks of the WELCOME, in the table's order (checks 13 and 14 are
# the section 13.1 limit on announced durations).
WELCOME_CHECKS = Table(
    "client",
    (
        Bad(
            "welcome-22-bytes",
            frame(WELCOME, SL_WELCOME[3:-1]),
            "MALFORMED_FRAME",
            "5.4 check 1",
            "WELCOME payload must be exactly 23 bytes",
        ),
        Bad(
            "welcome-version-2",
            welcome(STATELESS, 3, 0, 1000, 23, 0, version=2),
            "UNSUPPORTED_VERSION",
            "5.4 check 2",
            "the server must answer in the client's version",
        ),
        Bad(
            "welcome-mode-3",
            frame(WELCOME, struct.pack(">BBBIIIII", 1, 3, 0, 3, 0, 1000, 23, 0)),
            "UNSUPPORTED_MODE",
            "5.4 check 3",
            "mode 3",
        ),
        Bad(
            "welcome-flags-set",
            frame(WELCOME, struct.pack(">BBBIIIII", 1, 1, 1, 3, 0, 1000, 23, 0)),
            "MALFORMED_FRAME",
            "5.4 check 4",
            "WELCOME flags are reserved (0)",
        ),
        Bad(
            "welcome-n-0",
            welcome(STATELESS, 0, 0, 1000, 23, 0),
            "INVALID_N",
            "5.4 check 5",
            "n = 0 is never valid",
        ),
        Bad(
            "welcome-next-index-at-n",
            welcome(STATELESS, 3, 3, 1000, 23, 0),
            "INVALID_INDEX",
            "5.4 check 6",
            "next_index must be below n",
        ),
        Bad(
            "welcome-stateless-a-0",
            welcome(STATELESS, 3, 0, 1000, 0, 0),
            "INVALID_A",
            "5.4 check 7",
            "a stateless WELCOME carries the a in use, 1..255",
        ),
        Bad(
            "welcome-stateless-a-256",
            welcome(STATELESS, 3, 0, 1000, 256, 0),
            "INVALID_A",
            "5.4 check 7",
            "a = 256",
        ),
        Bad(
            "welcome-stateless-with-ttl",
            welcome(STATELESS, 3, 0, 1000, 23, 30000),
            "MALFORMED_FRAME",
            "5.4 check 8",
            "session_ttl_ms must be 0 in stateless mode",
        ),
        Bad(
            "welcome-stateful-with-a",
            welcome(STATEFUL, 3, 0, 1000, 23, 30000),
            "INVALID_A",
            "5.4 check 9",
            "a must be 0 in stateful mode",
            hello=SF_HELLO,
        ),
        Bad(
            "welcome-n-differs",
            welcome(STATELESS, 4, 0, 1000, 23, 0),
            "MALFORMED_FRAME",
            "5.4 check 10",
            "WELCOME n must equal HELLO n",
        ),
        Bad(
            "welcome-mode-differs",
            welcome(STATEFUL, 3, 0, 1000, 0, 30000),
            "MALFORMED_FRAME",
            "5.4 check 10",
            "WELCOME mode must equal HELLO mode",
        ),
        Bad(
            "welcome-next-index-differs",
            welcome(STATELESS, 3, 0, 1000, 23, 0),
            "INVALID_INDEX",
            "5.4 check 11",
            "WELCOME next_index must equal HELLO next_index",
            hello=SL_RESUME,
        ),
        Bad(
            "welcome-a-differs-on-resume",
            welcome(STATELESS, 3, 1, 1000, 24, 0),
            "MALFORMED_FRAME",
            "5.4 check 12",
            "a stateless resume must keep a",
            hello=SL_RESUME,
        ),
        Bad(
            "welcome-interval-above-max",
            welcome(STATELESS, 3, 0, MAX_DURATION_MS + 1, 23, 0),
            "MALFORMED_FRAME",
            "5.4 check 13",
            "interval_ms is at most 86,400,000 (section 13.1)",
        ),
        Bad(
            "welcome-interval-u32-max",
            welcome(STATELESS, 3, 0, 0xFFFFFFFF, 23, 0),
            "MALFORMED_FRAME",
            "5.4 check 13",
            "a u32 interval would need a 149-day silence timer",
        ),
        Bad(
            "welcome-stateful-ttl-above-max",
            welcome(STATEFUL, 3, 0, 1000, 0, MAX_DURATION_MS + 1),
            "MALFORMED_FRAME",
            "5.4 check 14",
            "session_ttl_ms is at most 86,400,000 (section 13.1)",
            hello=SF_HELLO,
        ),
    ),
    hello=SL_HELLO,
)

# Section 5.5, client check 2: the table of what may follow what (after FINAL the client reads
# nothing at all, so no bytes after FINAL can be a case here).
CLIENT_SEQUENCE = Table(
    "client",
    (
        Bad(
            "server-sends-hello",
            SL_HELLO,
            "UNEXPECTED_FRAME",
            "5.5 check 2",
            "servers never send HELLO",
        ),
        Bad(
            "data-before-welcome",
            number_stateless(0, 23, final=False),
            "UNEXPECTED_FRAME",
            "5.5 check 2",
            "numbers only after WELCOME",
        ),
        Bad(
            "second-welcome",
            SL_WELCOME,
            "UNEXPECTED_FRAME",
            "5.5 check 2",
            "exactly one WELCOME per connection",
            received=SL_WELCOME,
        ),
    ),
    hello=SL_HELLO,
)

# Section 5.5, client checks 3 to 5 (payload layout of section 4.3, index, FINAL at n-1), after
# a stateless WELCOME.
NUMBER_CHECKS_STATELESS = Table(
    "client",
    (
        Bad(
            "stateless-value-leading-zero",
            frame(DATA, bytes.fromhex("0000000000" + "17")),
            "MALFORMED_FRAME",
            "5.5 check 3",
            "values are minimal: the first value byte is never 0",
        ),
        Bad(
            "stateless-value-empty",
            frame(DATA, bytes(4)),
            "MALFORMED_FRAME",
            "5.5 check 3",
            "values are at least 1 byte (a >= 1)",
        ),
        Bad(
            "stateless-payload-3-bytes",
            frame(DATA, bytes(3)),
            "MALFORMED_FRAME",
            "5.5 check 3",
            "shorter than the index",
        ),
        Bad(
            "stateless-index-gap",
            number_stateless(1, 46, final=False),
            "INVALID_INDEX",
            "5.5 check 4",
            "the first number after WELCOME must have WELCOME.next_index",
        ),
        Bad(
            "stateless-index-repeat",
            number_stateless(0, 23, final=False),
            "INVALID_INDEX",
            "5.5 check 4",
            "index 0 twice",
            received=SL_WELCOME + number_stateless(0, 23, final=False),
        ),
        Bad(
            "stateless-last-index-as-data",
            number_stateless(2, 92, final=False),
            "UNEXPECTED_FRAME",
            "5.5 check 5",
            "index n-1 must be sent as FINAL",
            received=SL_WELCOME
            + number_stateless(0, 23, final=False)
            + number_stateless(1, 46, final=False),
        ),
        Bad(
            "stateless-final-too-early",
            number_stateless(0, 23, final=True),
            "UNEXPECTED_FRAME",
            "5.5 check 5",
            "only index n-1 may be FINAL",
        ),
    ),
    hello=SL_HELLO,
    received=SL_WELCOME,
)

# The same checks after a stateful WELCOME, where DATA is exactly 8 and FINAL 40 bytes.
NUMBER_CHECKS_STATEFUL = Table(
    "client",
    (
        Bad(
            "stateful-data-7-bytes",
            frame(DATA, struct.pack(">I", 0) + bytes(3)),
            "MALFORMED_FRAME",
            "5.5 check 3",
            "stateful DATA payload is exactly 8 bytes",
        ),
        Bad(
            "stateful-data-9-bytes",
            frame(DATA, struct.pack(">II", 0, S0) + b"\x00"),
            "MALFORMED_FRAME",
            "5.5 check 3",
            "stateful DATA payload is exactly 8 bytes",
        ),
        Bad(
            "stateful-data-with-checksum",
            frame(DATA, struct.pack(">II", 0, S0) + bytes(32)),
            "MALFORMED_FRAME",
            "5.5 check 3",
            "only FINAL carries a checksum",
        ),
        Bad(
            "stateful-final-without-checksum",
            frame(FINAL, struct.pack(">II", 2, S2)),
            "MALFORMED_FRAME",
            "5.5 check 3",
            "stateful FINAL payload is exactly 40 bytes",
            received=SF_WELCOME + number_stateful(0, S0) + number_stateful(1, S1),
        ),
        Bad(
            "stateful-final-39-bytes",
            frame(FINAL, struct.pack(">II", 2, S2) + bytes(31)),
            "MALFORMED_FRAME",
            "5.5 check 3",
            "stateful FINAL payload is exactly 40 bytes",
            received=SF_WELCOME + number_stateful(0, S0) + number_stateful(1, S1),
        ),
    ),
    hello=SF_HELLO,
    received=SF_WELCOME,
)

# Section 3, rules 1 and 3, as a client reads them (after a WELCOME).
FRAMING_CLIENT = Table(
    "client",
    (
        Bad(
            "server-frame-too-large",
            bytes.fromhex("034001"),
            "FRAME_TOO_LARGE",
            "3 rule 1",
            "the limit binds servers too",
        ),
        Bad(
            "server-unknown-type",
            bytes.fromhex("060000"),
            "MALFORMED_FRAME",
            "3 rule 1",
            "type 0x06",
        ),
        Bad(
            "server-first-byte-unknown",
            bytes.fromhex("ff"),
            "MALFORMED_FRAME",
            "3 rule 1",
            "judged on the first byte, without waiting for the rest of the header",
        ),
        Bad(
            "stateful-data-truncated-at-eof",
            number_stateful(0, S0)[:-2],
            "MALFORMED_FRAME",
            "3 rule 3",
            "EOF inside a frame is a protocol error, not a clean drop",
            eof=True,
            received=SF_WELCOME,
            hello=SF_HELLO,
        ),
    ),
    hello=SL_HELLO,
    received=SL_WELCOME,
)

# Section 4.4: the ERROR payload (code, then at most 1024 bytes of strict UTF-8).
ERROR_PAYLOAD = Table(
    "client",
    (
        Bad(
            "error-payload-1-byte",
            frame(ERROR, b"\x00"),
            "MALFORMED_FRAME",
            "4.4",
            "the code takes 2 bytes",
        ),
        Bad(
            "error-message-1025-bytes",
            error(33, b"y" * 1025),
            "MALFORMED_FRAME",
            "4.4",
            "messages are at most 1024 bytes",
        ),
        Bad(
            "error-message-invalid-utf8",
            error(20, b"bad \xff\xfe"),
            "MALFORMED_FRAME",
            "4.4",
            "0xff never occurs in UTF-8",
        ),
        Bad(
            "error-message-overlong-utf8",
            error(20, b"\xc0\xaf"),
            "MALFORMED_FRAME",
            "4.4",
            "overlong encoding of '/' is invalid UTF-8",
        ),
        Bad(
            "error-message-surrogate",
            error(20, b"\xed\xa0\x80"),
            "MALFORMED_FRAME",
            "4.4",
            "an encoded UTF-16 surrogate is invalid UTF-8",
        ),
        Bad(
            "error-message-truncated-utf8",
            error(20, "\u00e9".encode()[:1]),
            "MALFORMED_FRAME",
            "4.4",
            "a multi-byte sequence cut short",
        ),
    ),
    hello=SL_HELLO,
)

INVALID_TABLES = (
    FRAMING_SERVER,
    HELLO_CHECKS,
    HELLO_SEQUENCE,
    WELCOME_CHECKS,
    CLIENT_SEQUENCE,
    NUMBER_CHECKS_STATELESS,
    NUMBER_CHECKS_STATEFUL,
    FRAMING_CLIENT,
    ERROR_PAYLOAD,
)


def _invalid_case(table: Table, bad: Bad) -> Json:
    context: Json = {}
    hello = bad.hello if bad.hello is not None else table.hello
    if hello is not None:
        context["hello"] = hello.hex()
    context["received"] = (bad.received if bad.received is not None else table.received).hex()
    return {
        "name": bad.name,
        "decoder": table.decoder,
        "context": context,
        "hex": bad.data.hex(),
        "eof": bad.eof,
        "error": {"code": ERROR_CODES[bad.code], "name": bad.code},
        "spec": bad.step,
        "why": bad.why,
    }


def invalid_vectors() -> Json:
    cases = [_invalid_case(table, bad) for table in INVALID_TABLES for bad in table.rows]
    assert len({case["name"] for case in cases}) == len(cases), "case names are unique"
    return {
        "description": (
            "Bytes a receiver must reject. 'decoder' says which side reads them: 'server' (a "
            "fresh server connection) or 'client' (a client that sent context.hello). "
            "context.received holds valid frames that decoder reads first; then 'hex' is fed, "
            "then EOF if 'eof' is true (without EOF, the bytes must be rejected without waiting "
            "for more). error.code is the code of the first failure in the validation order of "
            "spec/PROTOCOL.md; 'spec' names the rule broken (section, then step or check). On "
            "the server side it is the code the server sends in its ERROR frame (normative); on "
            "the client side it only classifies the failure (a client never sends frames other "
            "than HELLO): the client must close the connection either way."
        ),
        "version": VERSION,
        "cases": cases,
    }


# --- sessions.json --------------------------------------------------------------------------


def _connection(
    client: list[bytes], server: list[bytes], end: str, *, after_final: bytes = b""
) -> Json:
    connection: Json = {
        "client_sends": [c.hex() for c in client],
        "server_sends": [{"type": TYPE_NAMES[s[0]], "hex": s.hex()} for s in server],
        "end": end,
    }
    if after_final:  # what a faulty server writes after FINAL; no server may send it
        connection["after_final"] = after_final.hex()
    return connection


def session_vectors() -> Json:
    a, n, seed, cid = EXAMPLE_A, 3, EXAMPLE_SEED, EXAMPLE_CLIENT_ID
    iv, ttl = EXAMPLE_INTERVAL_MS, EXAMPLE_TTL_MS
    values_sl = [a << k for k in range(n)]
    values_sf = [element(seed, k) for k in range(n)]
    digest = session_checksum(seed, n)
    sl_num = [number_stateless(k, values_sl[k], final=k == n - 1) for k in range(n)]
    sf_num = [number_stateful(k, values_sf[k], digest if k == n - 1 else None) for k in range(n)]
    closes = "server closes after FINAL; client closes on FINAL"
    sessions: list[Json] = [
        {
            "name": "stateless-complete",
            "mode": "stateless",
            "parameters": {"n": n, "a": a, "interval_ms": iv},
            "connections": [
                _connection(
                    [hello_stateless(n, 0, 0, resume=False)],
                    [welcome(STATELESS, n, 0, iv, a, 0), *sl_num],
                    closes,
                )
            ],
            "values": [str(v) for v in values_sl],
            "result": {"sum": str(sum(values_sl)), "exit_status": 0},
        },
        {
            "name": "stateless-bytes-after-final",
            "mode": "stateless",
            "parameters": {"n": n, "a": a, "interval_ms": iv},
            "connections": [
                _connection(
                    [hello_stateless(n, 0, 0, resume=False)],
                    [welcome(STATELESS, n, 0, iv, a, 0), *sl_num],
                    "a faulty server writes a DATA and a byte that is no frame type after FINAL "
                    "(after_final); the client reads nothing after FINAL (PROTOCOL.md 5.5, 10): "
                    "no violation, the result stands",
                    after_final=sl_num[0] + b"\xff",
                )
            ],
            "values": [str(v) for v in values_sl],
            "result": {"sum": str(sum(values_sl)), "exit_status": 0},
        },
        {
            "name": "stateless-resume",
            "mode": "stateless",
            "parameters": {"n": n, "a": a, "interval_ms": iv},
            "connections": [
                _connection(
                    [hello_stateless(n, 0, 0, resume=False)],
                    [welcome(STATELESS, n, 0, iv, a, 0), sl_num[0]],
                    "dropped (EOF, RST or silence) after DATA 0",
                ),
                _connection(
                    [hello_stateless(n, 1, a, resume=True)],
                    [welcome(STATELESS, n, 1, iv, a, 0), sl_num[1], sl_num[2]],
                    closes,
                ),
            ],
            "values": [str(v) for v in values_sl],
            "result": {"sum": str(sum(values_sl)), "exit_status": 0},
        },
        {
            "name": "stateful-complete",
            "mode": "stateful",
            "parameters": {
                "n": n,
                "seed": str(seed),
                "seed_hex": h64(seed),
                "client_id": cid,
                "interval_ms": iv,
                "session_ttl_ms": ttl,
            },
            "connections": [
                _connection(
                    [hello_stateful(n, 0, cid, resume=False)],
                    [welcome(STATEFUL, n, 0, iv, 0, ttl), *sf_num],
                    closes,
                )
            ],
            "values": values_sf,
            "result": {"checksum": digest, "verdict": "SUCCESS", "exit_status": 0},
        },
        {
            "name": "stateful-resume",
            "mode": "stateful",
            "parameters": {
                "n": n,
                "seed": str(seed),
                "seed_hex": h64(seed),
                "client_id": cid,
                "interval_ms": iv,
                "session_ttl_ms": ttl,
            },
            "connections": [
                _connection(
                    [hello_stateful(n, 0, cid, resume=False)],
                    [welcome(STATEFUL, n, 0, iv, 0, ttl), sf_num[0]],
                    "dropped (EOF, RST or silence) after DATA 0",
                ),
                _connection(
                    [hello_stateful(n, 1, cid, resume=True)],
                    [welcome(STATEFUL, n, 1, iv, 0, ttl), sf_num[1], sf_num[2]],
                    closes,
                ),
            ],
            "values": values_sf,
            "result": {"checksum": digest, "verdict": "SUCCESS", "exit_status": 0},
        },
        {
            "name": "stateful-final-frame-lost",
            "mode": "stateful",
            "parameters": {
                "n": n,
                "seed": str(seed),
                "seed_hex": h64(seed),
                "client_id": cid,
                "interval_ms": iv,
                "session_ttl_ms": ttl,
            },
            "connections": [
                _connection(
                    [hello_stateful(n, 0, cid, resume=False)],
                    [welcome(STATEFUL, n, 0, iv, 0, ttl), sf_num[0], sf_num[1]],
                    "dropped while FINAL was in flight; the server deleted the session",
                ),
                _connection(
                    [hello_stateful(n, 2, cid, resume=True)],
                    [error(20, b"session unknown or expired")],
                    "server closes after ERROR",
                ),
            ],
            "values": values_sf[:2],
            "result": {
                "verdict": "FAILURE",
                "reason": "final frame lost",
                "exit_status": 3,
            },
        },
    ]
    return {
        "description": (
            "Whole conversations, one per worked example of spec/PROTOCOL.md section 20. Each "
            "connection lists the bytes the client sends (always one HELLO) and the frames the "
            "client receives, in order, then how the connection ended. 'values' are the numbers "
            "the client received in index order (stateless as decimal strings)."
        ),
        "version": VERSION,
        "sessions": sessions,
    }


# --- cli_values.json ------------------------------------------------------------------------
#
# Section 13.1 (durations in seconds to whole milliseconds) and Appendices A and B (integer
# options), derived here with fractions.Fraction: exact rational arithmetic, independent of
# any decimal library an implementation might use.

DURATION_GRAMMAR = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
INTEGER_GRAMMAR = re.compile(r"[0-9]+")
MAX_COUNT = 2**31 - 1


def duration_ms(text: str) -> int | None:
    """Section 13.1: the exact value x 1000, nearest integer, ties up; None if not the grammar."""
    if not DURATION_GRAMMAR.fullmatch(text):
        return None
    mantissa, _, exponent = text.lower().partition("e")
    whole, _, fraction = mantissa.partition(".")
    # The value is below 10^(len(whole) + exponent) s. At 10^-4 s or less it is at most 0.1 ms,
    # which rounds to 0, whatever the digits: 10^exponent need not be computed (1e-99999...).
    if len(whole) + int(exponent or "0") <= -4:
        return 0
    value = Fraction(int(whole or "0") * 10 ** len(fraction) + int(fraction or "0"))
    value /= 10 ** len(fraction)
    value *= Fraction(10) ** int(exponent or "0")
    return math.floor(value * 1000 + Fraction(1, 2))


def beyond_a_day(text: str) -> bool:
    """Whether a text of the grammar denotes more than MAX_DURATION_MS without computing its
    value: a nonzero digit before the point and an exponent of 6 or more is 10^6 s at least."""
    mantissa, _, exponent = text.lower().partition("e")
    whole = mantissa.partition(".")[0]
    return bool(whole.strip("0")) and int(exponent or "0") >= 6


#: 13.1 admits exponents of any size and fractions of any length; an implementation must read
#: them without overflow, an exception or a digit limit (Python's int() refuses more than 4,300
#: digits by default). A fraction of 5,000 digits; an exponent of 20 digits either way.
LONG_FRACTION = "0." + "1" * 5000
TINY_EXPONENT = "1e-99999999999999999999"
#: Texts whose milliseconds are too many to write down: in 'options' only, refused by all.
HUGE_TEXTS = ("1e99999999999999999999", "1E+99999999999999999999")


DURATION_TEXTS = (
    "0", "1", "30", "0.01", "0.0025", "0.0015", "0.0035", "0.0005", "0.0004999", "0.0045",
    "1e-05", "2.5e-3", "2.5E-3", ".5", "5.", "1e3", "1E+3", "0.000", "000.5", "86400",
    "86400.0004", "86400.0005", "86401", "800000", "2500000", "3000000", "5000000",
    "", "-1", "+1", " 1", "1 ", "1_000", "inf", "nan", "Infinity", "0x10", "1,5", "1e", "e3",
    ".", "1.2.3", "1e+", "--1", "\u0661", "1s", "0.5\n", TINY_EXPONENT, LONG_FRACTION,
)  # fmt: skip

INTEGER_TEXTS = (
    "1", "7", "007", "65535", "65536", "0", "00", "2147483647", "2147483648",
    "", "0x10", "0X10", "0o7", "0b1", "+5", "-5", "1_0", " 5", "5 ", "5.0", "1e3", "\u0663",
    "5\n",
)  # fmt: skip

#: Option -> (kind, smallest, largest): milliseconds for durations, the value for integers.
OPTION_RANGES = {
    "server --interval": ("duration", 0, MAX_DURATION_MS),
    "server --session-ttl": ("duration", 0, MAX_DURATION_MS),
    "server --handshake-timeout": ("duration", 1, MAX_DURATION_MS),
    "server --max-connections": ("integer", 1, MAX_COUNT),
    "client -n": ("integer", 1, 65535),
    "client --max-retries": ("integer", 1, MAX_COUNT),
    "client --connect-timeout": ("duration", 1, MAX_DURATION_MS),
    "client --handshake-timeout": ("duration", 1, MAX_DURATION_MS),
    "client --silence-timeout": ("duration", 1, MAX_DURATION_MS),
    "client --min-silence": ("duration", 1, MAX_DURATION_MS),
    "client --backoff-initial": ("duration", 1, MAX_DURATION_MS),
    "client --backoff-max": ("duration", 1, MAX_DURATION_MS),
}


def cli_vectors() -> Json:
    durations = [{"text": text, "ms": duration_ms(text)} for text in DURATION_TEXTS]
    integers = [
        {"text": text, "value": int(text) if INTEGER_GRAMMAR.fullmatch(text) else None}
        for text in INTEGER_TEXTS
    ]
    options: list[Json] = []
    for option, (kind, low, high) in OPTION_RANGES.items():
        texts = DURATION_TEXTS if kind == "duration" else INTEGER_TEXTS
        for text in texts:
            value = duration_ms(text) if kind == "duration" else None
            if kind == "integer" and INTEGER_GRAMMAR.fullmatch(text):
                value = int(text)
            accepted = value is not None and low <= value <= high
            options.append({"option": option, "text": text, "accepted": accepted})
        if kind == "duration":
            for text in HUGE_TEXTS:
                assert DURATION_GRAMMAR.fullmatch(text)
                assert beyond_a_day(text)
                options.append({"option": option, "text": text, "accepted": False})
    return {
        "description": (
            "Command-line values (PROTOCOL.md 13.1, Appendices A and B). 'durations': seconds "
            "as text and the whole milliseconds they denote (exact value x 1000, nearest "
            "integer, ties up), or null where the text is not the grammar of 13.1. 'integers': "
            "ASCII decimal digits and their value, or null. 'ranges': each option's kind and "
            "its accepted range (milliseconds for durations). 'options': every text against "
            "every option, accepted or a usage error (exit status 2); the duration options "
            "also against texts of the grammar whose milliseconds are too many to list in "
            "'durations' (an exponent of 20 digits), which every option refuses."
        ),
        "version": VERSION,
        "max_duration_ms": MAX_DURATION_MS,
        "durations": durations,
        "integers": integers,
        "ranges": {
            option: {"kind": kind, "min": low, "max": high}
            for option, (kind, low, high) in OPTION_RANGES.items()
        },
        "options": options,
    }


# --- store_records.json ---------------------------------------------------------------------
#
# STORE-REDIS.md section 2: what a reader makes of a session hash's seed and n fields.

CANONICAL = re.compile(r"0|[1-9][0-9]*")
SEED_MAX = MASK64
RECORD_FIELDS: tuple[tuple[str | None, str | None], ...] = (
    ("0", "1"),
    ("18446744073709551615", "65535"),
    ("81985529216486895", "3"),
    ("0123", "3"),
    ("5", "050"),
    ("5", "+5"),
    ("5", " 5"),
    ("5", "5 "),
    ("5", "5.0"),
    ("", "5"),
    ("5", ""),
    ("5", "0"),
    ("5", "65536"),
    ("18446744073709551616", "5"),
    ("-1", "5"),
    ("1e3", "5"),
    ("0x10", "5"),
    ("5", "\u0663"),
    ("5", "5\n"),  # a regex whose $ matches before a final newline would take it (specread S2)
    ("7\n", "5"),
    (None, "5"),
    ("5", None),
    (None, None),
)


def record_vectors() -> Json:
    cases: list[Json] = []
    for seed, n in RECORD_FIELDS:
        valid = (
            seed is not None
            and n is not None
            and bool(CANONICAL.fullmatch(seed))
            and bool(CANONICAL.fullmatch(n))
            and int(seed) <= SEED_MAX
            and 1 <= int(n) <= 65535
        )
        case: Json = {"seed": seed, "n": n, "valid": valid}
        if seed is None and n is None:
            case["absent"] = True  # no hash at all: an absent session, not a damaged one
            case["valid"] = False
        cases.append(case)
    return {
        "description": (
            "The seed and n fields of a session hash (STORE-REDIS.md section 2) and whether a "
            "reader accepts them: both present, canonical decimal (^(0|[1-9][0-9]*)$), seed <= "
            "2^64-1, 1 <= n <= 65535; the whole value must match (a trailing newline is not "
            "allowed). null means the field is missing. A rejected record is a store failure "
            "(STORE_UNAVAILABLE); 'absent' marks the case with neither field, which is no "
            "record at all (an absent session; 'valid' is false there, as no record is read). "
            "A missing owner field means disconnected; other fields are ignored."
        ),
        "version": VERSION,
        "cases": cases,
    }


# --- output ---------------------------------------------------------------------------------


def render(document: Json) -> str:
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def generate() -> dict[str, str]:
    return {
        "prng.json": render(prng_vectors()),
        "checksum.json": render(checksum_vectors()),
        "stateless_sums.json": render(stateless_vectors()),
        "frames.json": render(frame_vectors()),
        "invalid_frames.json": render(invalid_vectors()),
        "sessions.json": render(session_vectors()),
        "cli_values.json": render(cli_vectors()),
        "store_records.json": render(record_vectors()),
    }


def self_check() -> None:
    """Published SplitMix64 outputs (Vigna's splitmix64.c), so a typo here cannot go unnoticed."""
    assert [splitmix64(0, i) for i in range(3)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]
    assert [splitmix64(1234567, i) for i in range(3)] == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
    ]


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        print("usage: generate.py [OUTPUT_DIR]", file=sys.stderr)
        return 2
    sys.set_int_max_str_digits(0)
    self_check()
    out = Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (out / name).write_text(text, encoding="ascii", newline="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
