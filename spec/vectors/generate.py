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
import struct
import sys
from pathlib import Path
from typing import Any

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


def _invalid(
    name: str,
    decoder: str,
    data: bytes,
    code_name: str,
    why: str,
    *,
    eof: bool = False,
    hello: bytes | None = None,
    received: bytes = b"",
) -> Json:
    context: Json = {}
    if hello is not None:
        context["hello"] = hello.hex()
    context["received"] = received.hex()
    return {
        "name": name,
        "decoder": decoder,
        "context": context,
        "hex": data.hex(),
        "eof": eof,
        "error": {"code": ERROR_CODES[code_name], "name": code_name},
        "why": why,
    }


def invalid_vectors() -> Json:
    cid = EXAMPLE_CLIENT_ID
    stateless_payload = raw_hello(STATELESS, 3, 0) + struct.pack(">I", 0)
    good_hello = frame(HELLO, stateless_payload)
    good_stateful = hello_stateful(3, 0, cid, resume=False)

    def sl(n: int, next_index: int, a: int, flags: int = 0) -> bytes:
        return frame(HELLO, raw_hello(STATELESS, n, next_index, flags=flags) + struct.pack(">I", a))

    def sf(client_id: bytes, n: int = 3, next_index: int = 0, flags: int = 0) -> bytes:
        return frame(HELLO, raw_hello(STATEFUL, n, next_index, flags=flags) + client_id)

    srv = "server"
    cases: list[Json] = [
        _invalid(
            "garbage-http-request",
            srv,
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "MALFORMED_FRAME",
            "type byte 0x47 is not a frame type",
        ),
        _invalid("type-zero", srv, bytes.fromhex("000000"), "MALFORMED_FRAME", "type 0x00"),
        _invalid(
            "type-six", srv, bytes.fromhex("06000f") + stateless_payload, "MALFORMED_FRAME", "0x06"
        ),
        _invalid(
            "type-unknown-with-huge-length",
            srv,
            bytes.fromhex("ffffff"),
            "MALFORMED_FRAME",
            "the type is checked before the length",
        ),
        _invalid(
            "length-16385",
            srv,
            bytes.fromhex("014001"),
            "FRAME_TOO_LARGE",
            "header announces 16385 > 16384 payload bytes; rejected before any payload",
        ),
        _invalid(
            "length-65535",
            srv,
            bytes.fromhex("01ffff"),
            "FRAME_TOO_LARGE",
            "header announces 65535 payload bytes",
        ),
        _invalid(
            "eof-inside-header",
            srv,
            bytes.fromhex("0100"),
            "MALFORMED_FRAME",
            "EOF after 2 of the 3 header bytes",
            eof=True,
        ),
        _invalid(
            "eof-inside-payload",
            srv,
            good_hello[:-1],
            "MALFORMED_FRAME",
            "EOF one byte short of the announced payload",
            eof=True,
        ),
        _invalid("hello-empty-payload", srv, frame(HELLO, b""), "MALFORMED_FRAME", "no bytes"),
        _invalid(
            "hello-too-short",
            srv,
            frame(HELLO, bytes.fromhex("0101000000")),
            "MALFORMED_FRAME",
            "version 1 but fewer than the 11 fixed bytes",
        ),
        _invalid(
            "hello-version-2-other-length",
            srv,
            frame(HELLO, bytes([2]) + bytes(19)),
            "UNSUPPORTED_VERSION",
            "the version byte is checked before the length",
        ),
        _invalid(
            "hello-version-2-one-byte",
            srv,
            frame(HELLO, bytes([2])),
            "UNSUPPORTED_VERSION",
            "a 1-byte payload is enough to learn the version",
        ),
        _invalid(
            "hello-version-0",
            srv,
            frame(HELLO, bytes([0]) + stateless_payload[1:]),
            "UNSUPPORTED_VERSION",
            "version 0 is not version 1",
        ),
        _invalid(
            "hello-mode-3",
            srv,
            frame(HELLO, raw_hello(3, 3) + bytes(4)),
            "UNSUPPORTED_MODE",
            "mode 3 does not exist",
        ),
        _invalid(
            "hello-mode-0",
            srv,
            frame(HELLO, raw_hello(0, 3) + bytes(4)),
            "UNSUPPORTED_MODE",
            "mode 0 does not exist",
        ),
        _invalid(
            "hello-reserved-flag-0x02",
            srv,
            sl(3, 0, 0, flags=0x02),
            "MALFORMED_FRAME",
            "flag bits other than bit 0 must be 0",
        ),
        _invalid(
            "hello-reserved-flag-0x80",
            srv,
            sl(3, 1, 23, flags=0x81),
            "MALFORMED_FRAME",
            "RESUME plus a reserved bit",
        ),
        _invalid(
            "hello-stateless-16-bytes",
            srv,
            frame(HELLO, stateless_payload + b"\x00"),
            "MALFORMED_FRAME",
            "stateless HELLO payload must be exactly 15 bytes",
        ),
        _invalid(
            "hello-stateless-with-stateful-length",
            srv,
            frame(HELLO, raw_hello(STATELESS, 3) + cid.encode("ascii")),
            "MALFORMED_FRAME",
            "mode 1 with a 47-byte payload",
        ),
        _invalid(
            "hello-stateful-46-bytes",
            srv,
            sf(cid.encode("ascii")[:-1]),
            "MALFORMED_FRAME",
            "stateful HELLO payload must be exactly 47 bytes",
        ),
        _invalid(
            "hello-stateful-braced-uuid",
            srv,
            sf(b"{" + cid.encode("ascii") + b"}"),
            "MALFORMED_FRAME",
            "38-byte client id: the length is wrong before the id is looked at",
        ),
        _invalid("hello-n-0", srv, sl(0, 0, 0), "INVALID_N", "n must be 1..65535"),
        _invalid("hello-n-65536", srv, sl(0x10000, 0, 0), "INVALID_N", "n = 0x10000"),
        _invalid("hello-n-u32-max", srv, sl(0xFFFFFFFF, 0, 0), "INVALID_N", "n = 0xffffffff"),
        _invalid("hello-stateful-n-0", srv, sf(cid.encode(), n=0), "INVALID_N", "n = 0"),
        _invalid(
            "hello-resume-next-index-equals-n",
            srv,
            sl(3, 3, 23, flags=RESUME),
            "INVALID_INDEX",
            "next_index must be below n (the client already has everything)",
        ),
        _invalid(
            "hello-resume-next-index-u32-max",
            srv,
            sl(3, 0xFFFFFFFF, 23, flags=RESUME),
            "INVALID_INDEX",
            "next_index far past the end",
        ),
        _invalid(
            "hello-stateful-resume-next-index-equals-n",
            srv,
            sf(cid.encode(), n=3, next_index=3, flags=RESUME),
            "INVALID_INDEX",
            "checked before any store access",
        ),
        _invalid(
            "hello-new-with-next-index",
            srv,
            sl(3, 1, 0),
            "INVALID_INDEX",
            "next_index must be 0 without RESUME",
        ),
        _invalid(
            "hello-stateful-new-with-next-index",
            srv,
            sf(cid.encode(), next_index=1),
            "INVALID_INDEX",
            "next_index must be 0 without RESUME",
        ),
        _invalid("hello-resume-a-0", srv, sl(3, 1, 0, flags=RESUME), "INVALID_A", "a = 0"),
        _invalid("hello-resume-a-256", srv, sl(3, 1, 256, flags=RESUME), "INVALID_A", "a = 256"),
        _invalid(
            "hello-resume-a-u32-max",
            srv,
            sl(3, 1, 0xFFFFFFFF, flags=RESUME),
            "INVALID_A",
            "a = 0xffffffff must not be truncated to 255",
        ),
        _invalid(
            "hello-new-with-a",
            srv,
            sl(3, 0, 23),
            "INVALID_A",
            "a must be 0 without RESUME (the server chooses it)",
        ),
        _invalid(
            "hello-client-id-upper-case",
            srv,
            sf(cid.upper().encode("ascii")),
            "INVALID_CLIENT_ID",
            "only lower-case hex digits are canonical",
        ),
        _invalid(
            "hello-client-id-misplaced-dashes",
            srv,
            sf(b"3f2c8a4e9-b1d-4c7e-a5f0-6d8e2b7c1a90"),
            "INVALID_CLIENT_ID",
            "dashes must be at offsets 8, 13, 18 and 23",
        ),
        _invalid(
            "hello-client-id-non-hex",
            srv,
            sf(b"3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a9g"),
            "INVALID_CLIENT_ID",
            "'g' is not a hex digit",
        ),
        _invalid(
            "hello-client-id-no-dashes",
            srv,
            sf(b"3f2c8a4e9b1d4c7ea5f06d8e2b7c1a900000"),
            "INVALID_CLIENT_ID",
            "36 hex digits without dashes",
        ),
        _invalid(
            "hello-client-id-padded",
            srv,
            sf(b" 3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a9"),
            "INVALID_CLIENT_ID",
            "no padding or whitespace",
        ),
        _invalid(
            "hello-client-id-non-ascii",
            srv,
            sf(b"3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a\xc3\xa9"),
            "INVALID_CLIENT_ID",
            "bytes >= 0x80 are never part of a client id",
        ),
        _invalid(
            "order-version-before-everything",
            srv,
            frame(HELLO, bytes([7, 9, 0xFE])),
            "UNSUPPORTED_VERSION",
            "version 7 with bad mode, bad flags and bad length",
        ),
        _invalid(
            "order-mode-before-flags",
            srv,
            frame(HELLO, raw_hello(9, 0, flags=0xFE)),
            "UNSUPPORTED_MODE",
            "mode 9, reserved flags, short payload",
        ),
        _invalid(
            "order-n-before-index-and-a",
            srv,
            sl(0, 5, 0, flags=RESUME),
            "INVALID_N",
            "n = 0, next_index >= n and a = 0 together",
        ),
        _invalid(
            "order-index-before-a",
            srv,
            sl(3, 3, 0, flags=RESUME),
            "INVALID_INDEX",
            "next_index = n and a = 0 together",
        ),
        _invalid(
            "order-stateful-n-before-client-id",
            srv,
            sf(cid.upper().encode("ascii"), n=0),
            "INVALID_N",
            "n = 0 and an upper-case id together",
        ),
        _invalid(
            "client-sends-welcome",
            srv,
            welcome(STATELESS, 3, 0, 1000, 23, 0),
            "UNEXPECTED_FRAME",
            "only HELLO may come from a client",
        ),
        _invalid(
            "client-sends-data-first",
            srv,
            number_stateless(0, 23, final=False),
            "UNEXPECTED_FRAME",
            "only HELLO may come from a client",
        ),
        _invalid(
            "client-sends-error",
            srv,
            error(1, b""),
            "UNEXPECTED_FRAME",
            "clients never send ERROR",
        ),
        _invalid(
            "second-hello",
            srv,
            good_hello,
            "UNEXPECTED_FRAME",
            "a client sends exactly one frame per connection",
            received=good_hello,
        ),
        _invalid(
            "bytes-after-stateful-hello",
            srv,
            error(0, b""),
            "UNEXPECTED_FRAME",
            "anything after HELLO is a violation",
            received=good_stateful,
        ),
    ]

    cli = "client"
    sl_hello = hello_stateless(3, 0, 0, resume=False)
    sl_resume = hello_stateless(3, 1, 23, resume=True)
    sf_hello = good_stateful
    sl_welcome = welcome(STATELESS, 3, 0, 1000, 23, 0)
    sf_welcome = welcome(STATEFUL, 3, 0, 1000, 0, EXAMPLE_TTL_MS)
    welcome_payload = sl_welcome[3:]
    s0, s1 = element(EXAMPLE_SEED, 0), element(EXAMPLE_SEED, 1)
    cases += [
        _invalid(
            "welcome-22-bytes",
            cli,
            frame(WELCOME, welcome_payload[:-1]),
            "MALFORMED_FRAME",
            "WELCOME payload must be exactly 23 bytes",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-version-2",
            cli,
            welcome(STATELESS, 3, 0, 1000, 23, 0, version=2),
            "UNSUPPORTED_VERSION",
            "the server must answer in the client's version",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-mode-3",
            cli,
            frame(WELCOME, struct.pack(">BBBIIIII", 1, 3, 0, 3, 0, 1000, 23, 0)),
            "UNSUPPORTED_MODE",
            "mode 3",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-flags-set",
            cli,
            frame(WELCOME, struct.pack(">BBBIIIII", 1, 1, 1, 3, 0, 1000, 23, 0)),
            "MALFORMED_FRAME",
            "WELCOME flags are reserved (0)",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-stateless-a-0",
            cli,
            welcome(STATELESS, 3, 0, 1000, 0, 0),
            "INVALID_A",
            "a stateless WELCOME carries the a in use, 1..255",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-stateless-a-256",
            cli,
            welcome(STATELESS, 3, 0, 1000, 256, 0),
            "INVALID_A",
            "a = 256",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-stateless-with-ttl",
            cli,
            welcome(STATELESS, 3, 0, 1000, 23, 30000),
            "MALFORMED_FRAME",
            "session_ttl_ms must be 0 in stateless mode",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-stateful-with-a",
            cli,
            welcome(STATEFUL, 3, 0, 1000, 23, 30000),
            "INVALID_A",
            "a must be 0 in stateful mode",
            hello=sf_hello,
        ),
        _invalid(
            "welcome-n-differs",
            cli,
            welcome(STATELESS, 4, 0, 1000, 23, 0),
            "MALFORMED_FRAME",
            "WELCOME n must equal HELLO n",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-mode-differs",
            cli,
            welcome(STATEFUL, 3, 0, 1000, 0, 30000),
            "MALFORMED_FRAME",
            "WELCOME mode must equal HELLO mode",
            hello=sl_hello,
        ),
        _invalid(
            "welcome-next-index-differs",
            cli,
            welcome(STATELESS, 3, 0, 1000, 23, 0),
            "INVALID_INDEX",
            "WELCOME next_index must equal HELLO next_index",
            hello=sl_resume,
        ),
        _invalid(
            "welcome-a-differs-on-resume",
            cli,
            welcome(STATELESS, 3, 1, 1000, 24, 0),
            "MALFORMED_FRAME",
            "a stateless resume must keep a",
            hello=sl_resume,
        ),
        _invalid(
            "server-sends-hello",
            cli,
            sl_hello,
            "UNEXPECTED_FRAME",
            "servers never send HELLO",
            hello=sl_hello,
        ),
        _invalid(
            "data-before-welcome",
            cli,
            number_stateless(0, 23, final=False),
            "UNEXPECTED_FRAME",
            "numbers only after WELCOME",
            hello=sl_hello,
        ),
        _invalid(
            "second-welcome",
            cli,
            sl_welcome,
            "UNEXPECTED_FRAME",
            "exactly one WELCOME per connection",
            hello=sl_hello,
            received=sl_welcome,
        ),
        _invalid(
            "stateless-value-leading-zero",
            cli,
            frame(DATA, bytes.fromhex("0000000000" + "17")),
            "MALFORMED_FRAME",
            "values are minimal: the first value byte is never 0",
            hello=sl_hello,
            received=sl_welcome,
        ),
        _invalid(
            "stateless-value-empty",
            cli,
            frame(DATA, bytes(4)),
            "MALFORMED_FRAME",
            "values are at least 1 byte (a >= 1)",
            hello=sl_hello,
            received=sl_welcome,
        ),
        _invalid(
            "stateless-payload-3-bytes",
            cli,
            frame(DATA, bytes(3)),
            "MALFORMED_FRAME",
            "shorter than the index",
            hello=sl_hello,
            received=sl_welcome,
        ),
        _invalid(
            "stateless-index-gap",
            cli,
            number_stateless(1, 46, final=False),
            "INVALID_INDEX",
            "the first number after WELCOME must have WELCOME.next_index",
            hello=sl_hello,
            received=sl_welcome,
        ),
        _invalid(
            "stateless-index-repeat",
            cli,
            number_stateless(0, 23, final=False),
            "INVALID_INDEX",
            "index 0 twice",
            hello=sl_hello,
            received=sl_welcome + number_stateless(0, 23, final=False),
        ),
        _invalid(
            "stateless-last-index-as-data",
            cli,
            number_stateless(2, 92, final=False),
            "UNEXPECTED_FRAME",
            "index n-1 must be sent as FINAL",
            hello=sl_hello,
            received=sl_welcome
            + number_stateless(0, 23, final=False)
            + number_stateless(1, 46, final=False),
        ),
        _invalid(
            "stateless-final-too-early",
            cli,
            number_stateless(0, 23, final=True),
            "UNEXPECTED_FRAME",
            "only index n-1 may be FINAL",
            hello=sl_hello,
            received=sl_welcome,
        ),
        _invalid(
            "frame-after-final",
            cli,
            number_stateless(2, 92, final=False),
            "UNEXPECTED_FRAME",
            "nothing follows FINAL",
            hello=hello_stateless(3, 2, 23, resume=True),
            received=welcome(STATELESS, 3, 2, 1000, 23, 0) + number_stateless(2, 92, final=True),
        ),
        _invalid(
            "stateful-data-7-bytes",
            cli,
            frame(DATA, struct.pack(">I", 0) + bytes(3)),
            "MALFORMED_FRAME",
            "stateful DATA payload is exactly 8 bytes",
            hello=sf_hello,
            received=sf_welcome,
        ),
        _invalid(
            "stateful-data-9-bytes",
            cli,
            frame(DATA, struct.pack(">II", 0, s0) + b"\x00"),
            "MALFORMED_FRAME",
            "stateful DATA payload is exactly 8 bytes",
            hello=sf_hello,
            received=sf_welcome,
        ),
        _invalid(
            "stateful-data-with-checksum",
            cli,
            frame(DATA, struct.pack(">II", 0, s0) + bytes(32)),
            "MALFORMED_FRAME",
            "only FINAL carries a checksum",
            hello=sf_hello,
            received=sf_welcome,
        ),
        _invalid(
            "stateful-final-without-checksum",
            cli,
            frame(FINAL, struct.pack(">II", 2, element(EXAMPLE_SEED, 2))),
            "MALFORMED_FRAME",
            "stateful FINAL payload is exactly 40 bytes",
            hello=sf_hello,
            received=sf_welcome + number_stateful(0, s0) + number_stateful(1, s1),
        ),
        _invalid(
            "stateful-final-39-bytes",
            cli,
            frame(FINAL, struct.pack(">II", 2, element(EXAMPLE_SEED, 2)) + bytes(31)),
            "MALFORMED_FRAME",
            "stateful FINAL payload is exactly 40 bytes",
            hello=sf_hello,
            received=sf_welcome + number_stateful(0, s0) + number_stateful(1, s1),
        ),
        _invalid(
            "server-frame-too-large",
            cli,
            bytes.fromhex("034001"),
            "FRAME_TOO_LARGE",
            "the limit binds servers too",
            hello=sl_hello,
            received=sl_welcome,
        ),
        _invalid(
            "server-unknown-type",
            cli,
            bytes.fromhex("060000"),
            "MALFORMED_FRAME",
            "type 0x06",
            hello=sl_hello,
            received=sl_welcome,
        ),
        _invalid(
            "stateful-data-truncated-at-eof",
            cli,
            number_stateful(0, s0)[:-2],
            "MALFORMED_FRAME",
            "EOF inside a frame is a protocol error, not a clean drop",
            eof=True,
            hello=sf_hello,
            received=sf_welcome,
        ),
        _invalid(
            "error-payload-1-byte",
            cli,
            frame(ERROR, b"\x00"),
            "MALFORMED_FRAME",
            "the code takes 2 bytes",
            hello=sl_hello,
        ),
        _invalid(
            "error-message-1025-bytes",
            cli,
            error(33, b"y" * 1025),
            "MALFORMED_FRAME",
            "messages are at most 1024 bytes",
            hello=sl_hello,
        ),
        _invalid(
            "error-message-invalid-utf8",
            cli,
            error(20, b"bad \xff\xfe"),
            "MALFORMED_FRAME",
            "0xff never occurs in UTF-8",
            hello=sl_hello,
        ),
        _invalid(
            "error-message-overlong-utf8",
            cli,
            error(20, b"\xc0\xaf"),
            "MALFORMED_FRAME",
            "overlong encoding of '/' is invalid UTF-8",
            hello=sl_hello,
        ),
        _invalid(
            "error-message-surrogate",
            cli,
            error(20, b"\xed\xa0\x80"),
            "MALFORMED_FRAME",
            "an encoded UTF-16 surrogate is invalid UTF-8",
            hello=sl_hello,
        ),
        _invalid(
            "error-message-truncated-utf8",
            cli,
            error(20, "\u00e9".encode()[:1]),
            "MALFORMED_FRAME",
            "a multi-byte sequence cut short",
            hello=sl_hello,
            received=b"",
        ),
    ]
    return {
        "description": (
            "Bytes a receiver must reject. 'decoder' says which side reads them: 'server' (a "
            "fresh server connection) or 'client' (a client that sent context.hello). "
            "context.received holds valid frames that decoder reads first; then 'hex' is fed, "
            "then EOF if 'eof' is true. error.code is the code of the first failure in the "
            "validation order of spec/PROTOCOL.md. On the server side it is the code the server "
            "sends in its ERROR frame (normative); on the client side it only classifies the "
            "failure (a client never sends frames other than HELLO): the client must close the "
            "connection either way."
        ),
        "version": VERSION,
        "cases": cases,
    }


# --- sessions.json --------------------------------------------------------------------------


def _connection(client: list[bytes], server: list[bytes], end: str) -> Json:
    return {
        "client_sends": [c.hex() for c in client],
        "server_sends": [{"type": TYPE_NAMES[s[0]], "hex": s.hex()} for s in server],
        "end": end,
    }


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
