"""NSP version 1 on the wire, transcribed from spec/PROTOCOL.md for the conformance suite.

Deliberately independent of ``reference.protocol``: the suite judges the reference too, so it
must not share the reference's encoder, decoder, PRNG or checksum. Everything here is a direct
reading of the spec (§3 framing, §4 frame catalogue, §8 SplitMix64, §9 checksum, §12.1 codes).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

HELLO, WELCOME, DATA, FINAL, ERROR = 1, 2, 3, 4, 5
TYPE_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", DATA: "DATA", FINAL: "FINAL", ERROR: "ERROR"}
HEADER_SIZE = 3
MAX_PAYLOAD = 16384
STATELESS, STATEFUL = 1, 2
RESUME = 0x01
U32_MAX = 0xFFFF_FFFF
MAX_N = 0xFFFF
#: The longest legitimate stateless value, 255·2^65534 (§4.3, §6.2).
MAX_VALUE_BYTES = 8193

#: §12.1, transcribed: code -> (name, retryable).
CODES: dict[int, tuple[str, bool]] = {
    1: ("MALFORMED_FRAME", False),
    2: ("FRAME_TOO_LARGE", False),
    3: ("UNEXPECTED_FRAME", False),
    4: ("UNSUPPORTED_VERSION", False),
    5: ("UNSUPPORTED_MODE", False),
    6: ("INVALID_N", False),
    7: ("INVALID_A", False),
    8: ("INVALID_INDEX", False),
    9: ("INVALID_CLIENT_ID", False),
    10: ("HANDSHAKE_TIMEOUT", True),
    20: ("SESSION_UNKNOWN", False),
    21: ("SESSION_MISMATCH", False),
    22: ("SESSION_SUPERSEDED", False),
    30: ("STORE_UNAVAILABLE", True),
    31: ("SERVER_BUSY", True),
    32: ("SHUTTING_DOWN", True),
    33: ("INTERNAL_ERROR", True),
}
CODE = {name: code for code, (name, _) in CODES.items()}


def code_name(code: int) -> str:
    """The Appendix A.3 reason token of an ERROR code: its name, or ``ERROR_<decimal>``."""
    return CODES[code][0] if code in CODES else f"ERROR_{code}"


def frame(kind: int, payload: bytes) -> bytes:
    """``type u8 | length u16 BE | payload`` (§3); ``length`` is taken modulo 2^16 on purpose
    only by callers that build broken frames with :func:`raw_header`."""
    return struct.pack(">BH", kind, len(payload)) + payload


def raw_header(kind: int, length: int) -> bytes:
    return struct.pack(">BH", kind, length)


def hello(
    mode: int,
    n: int,
    *,
    next_index: int = 0,
    a: int = 0,
    client_id: str | bytes = "",
    resume: bool = False,
    flags: int | None = None,
    version: int = 1,
) -> bytes:
    """A HELLO frame (§4.1); every field is u32 where the spec says so, never truncated."""
    flag_byte = (RESUME if resume else 0) if flags is None else flags
    common = struct.pack(">BBBII", version, mode, flag_byte, n, next_index)
    if mode == STATEFUL:
        tail = client_id.encode("ascii") if isinstance(client_id, str) else client_id
    else:
        tail = struct.pack(">I", a)
    return frame(HELLO, common + tail)


def welcome(
    mode: int,
    n: int,
    next_index: int,
    interval_ms: int,
    a: int,
    ttl_ms: int,
    *,
    version: int = 1,
    flags: int = 0,
) -> bytes:
    """A WELCOME frame (§4.2)."""
    return frame(
        WELCOME,
        struct.pack(">BBBIIIII", version, mode, flags, n, next_index, interval_ms, a, ttl_ms),
    )


def stateless_value(a: int, index: int) -> bytes:
    """``a·2^index`` as its minimal big-endian magnitude (§6.2)."""
    value = a << index
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def number(kind: int, index: int, value: bytes, checksum: bytes = b"") -> bytes:
    """A DATA or FINAL frame (§4.3): ``index u32 | value | checksum``."""
    return frame(kind, struct.pack(">I", index) + value + checksum)


def error(code: int, message: bytes | str = b"") -> bytes:
    """An ERROR frame (§4.4)."""
    text = message.encode() if isinstance(message, str) else message
    return frame(ERROR, struct.pack(">H", code) + text)


# §8: SplitMix64 in counter form.
_MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def element(seed: int, index: int) -> int:
    """``element(seed, i)``: the high 32 bits of SplitMix64 output ``i`` (§8.1)."""
    return _mix((seed + (index + 1) * GAMMA) & _MASK) >> 32


def checksum(values: list[int]) -> bytes:
    """§9: SHA-256 over the values as 4-byte big-endian words, in index order."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(struct.pack(">I", value))
    return digest.digest()


def stateful_number(seed: int, n: int, index: int) -> bytes:
    """DATA for ``index < n-1``, FINAL with the checksum of all ``n`` at ``n-1`` (§4.3)."""
    value = struct.pack(">I", element(seed, index))
    if index == n - 1:
        return number(FINAL, index, value, checksum([element(seed, i) for i in range(n)]))
    return number(DATA, index, value)


def stateless_number(a: int, n: int, index: int) -> bytes:
    return number(FINAL if index == n - 1 else DATA, index, stateless_value(a, index))


CLIENT_ID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


@dataclass(frozen=True)
class Frame:
    """One complete frame as read off the wire."""

    kind: int
    payload: bytes

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.kind, f"type 0x{self.kind:02x}")

    @property
    def raw(self) -> bytes:
        return raw_header(self.kind, len(self.payload)) + self.payload

    def u32(self, offset: int) -> int:
        value: int = struct.unpack_from(">I", self.payload, offset)[0]
        return value

    @property
    def error_code(self) -> int | None:
        if self.kind != ERROR or len(self.payload) < 2:
            return None
        code: int = struct.unpack_from(">H", self.payload)[0]
        return code

    def describe(self) -> str:
        if self.kind == ERROR and self.error_code is not None:
            message = self.payload[2:].decode("utf-8", errors="replace")
            return f"ERROR {code_name(self.error_code)}" + (f" ({message!r})" if message else "")
        if self.kind in (DATA, FINAL) and len(self.payload) >= 4:
            return f"{self.name} index {self.u32(0)}"
        return f"{self.name} ({len(self.payload)} bytes)"


@dataclass(frozen=True)
class Welcome:
    """The decoded fields of a WELCOME payload (§4.2)."""

    version: int
    mode: int
    flags: int
    n: int
    next_index: int
    interval_ms: int
    a: int
    ttl_ms: int

    @classmethod
    def parse(cls, payload: bytes) -> Welcome:
        if len(payload) != 23:
            raise ValueError(f"WELCOME payload is {len(payload)} bytes, not 23")
        return cls(*struct.unpack(">BBBIIIII", payload))


@dataclass(frozen=True)
class Hello:
    """The decoded fields of a HELLO payload (§4.1), as a scripted server reads them."""

    version: int
    mode: int
    flags: int
    n: int
    next_index: int
    a: int
    client_id: bytes

    @property
    def resume(self) -> bool:
        return bool(self.flags & RESUME)

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        if len(payload) < 11:
            raise ValueError(f"HELLO payload is {len(payload)} bytes, under 11")
        version, mode, flags, n, next_index = struct.unpack_from(">BBBII", payload)
        tail = payload[11:]
        if mode == STATELESS and len(tail) == 4:
            return cls(version, mode, flags, n, next_index, struct.unpack(">I", tail)[0], b"")
        if mode == STATEFUL and len(tail) == 36:
            return cls(version, mode, flags, n, next_index, 0, tail)
        raise ValueError(f"HELLO payload of {len(payload)} bytes does not fit mode {mode}")


class FrameBuffer:
    """Reassembles frames from chunks (§2.1 rule 2). Frames of any type are returned: judging
    them is the caller's business. A header announcing more than MAX_PAYLOAD is returned as a
    frame with the oversized length noted, without waiting for the payload."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def next(self) -> Frame | None:
        if len(self.data) < HEADER_SIZE:
            return None
        kind, length = struct.unpack_from(">BH", self.data)
        if length > MAX_PAYLOAD:
            raise OversizedFrameError(kind, length)
        if len(self.data) < HEADER_SIZE + length:
            return None
        payload = bytes(self.data[HEADER_SIZE : HEADER_SIZE + length])
        del self.data[: HEADER_SIZE + length]
        return Frame(kind, payload)


class OversizedFrameError(Exception):
    def __init__(self, kind: int, length: int) -> None:
        super().__init__(f"frame header type 0x{kind:02x} announces {length} bytes")
        self.kind = kind
        self.length = length
