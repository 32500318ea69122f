"""Byte layouts of version-1 frames: encoders, and a buffering decoder.

Every frame is ``type:u8 | length:u16be | payload[length]``. The payload layouts are tabled in
spec/PROTOCOL.md; DATA and FINAL payloads depend on the mode announced in WELCOME, so their
decoder takes the mode.
"""

from __future__ import annotations

import struct
from typing import TypeVar

import numpy as np

from .constants import (
    CHECKSUM_SIZE,
    CLIENT_ID_LENGTH,
    HEADER_SIZE,
    MAX_ERROR_MESSAGE,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    ErrorCode,
    FrameType,
    HelloFlag,
    Mode,
)
from .errors import LocalProtocolError, RemoteProtocolError
from .events import Error, Frame, Hello, Number, Welcome

_HEADER = struct.Struct(">BH")
_HELLO_FIXED = struct.Struct(">BBBII")  # version, mode, flags, n, next_index
_U32 = struct.Struct(">I")
_WELCOME = struct.Struct(">BBBIIIII")  # version, mode, flags, n, next_index, interval, a, ttl
_INDEX_HEADER = struct.Struct(">BHI")  # frame header followed by the u32 index
_STATEFUL_NUMBER = struct.Struct(">BHII")
_ERROR_CODE = struct.Struct(">H")

HELLO_STATELESS_SIZE = _HELLO_FIXED.size + 4
HELLO_STATEFUL_SIZE = _HELLO_FIXED.size + CLIENT_ID_LENGTH
WELCOME_SIZE = _WELCOME.size
STATEFUL_DATA_SIZE = 8
STATEFUL_FINAL_SIZE = 8 + CHECKSUM_SIZE

_KNOWN_TYPES = frozenset(int(t) for t in FrameType)


def _frame(frame_type: FrameType, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return _HEADER.pack(frame_type, len(payload)) + payload


def encode_hello(hello: Hello) -> bytes:
    flags = HelloFlag.RESUME if hello.resume else 0
    fixed = _HELLO_FIXED.pack(hello.version, hello.mode, flags, hello.n, hello.next_index)
    if hello.mode is Mode.STATELESS:
        return _frame(FrameType.HELLO, fixed + _U32.pack(hello.a))
    return _frame(FrameType.HELLO, fixed + hello.client_id.encode("ascii"))


def encode_welcome(welcome: Welcome) -> bytes:
    payload = _WELCOME.pack(
        welcome.version,
        welcome.mode,
        0,
        welcome.n,
        welcome.next_index,
        welcome.interval_ms,
        welcome.a,
        welcome.session_ttl_ms,
    )
    return _frame(FrameType.WELCOME, payload)


def encode_number(number: Number, mode: Mode) -> bytes:
    """Linear in the value's size: one shift-free ``to_bytes`` and one concatenation."""
    frame_type = FrameType.FINAL if number.final else FrameType.DATA
    if mode is Mode.STATELESS:
        if number.value < 1:
            raise LocalProtocolError("stateless values are positive")
        if number.checksum is not None:
            raise LocalProtocolError("stateless final frames carry no checksum")
        size = (number.value.bit_length() + 7) // 8
        if 4 + size > MAX_PAYLOAD:
            raise LocalProtocolError(f"value of {size} bytes exceeds the frame limit")
        head = _INDEX_HEADER.pack(frame_type, 4 + size, number.index)
        return head + number.value.to_bytes(size, "big")
    if number.value > 0xFFFF_FFFF:
        raise LocalProtocolError("stateful values are u32")
    if number.final:
        if number.checksum is None:
            raise LocalProtocolError("a stateful final frame carries the checksum")
        head = _STATEFUL_NUMBER.pack(frame_type, STATEFUL_FINAL_SIZE, number.index, number.value)
        return head + number.checksum
    if number.checksum is not None:
        raise LocalProtocolError("only the final frame carries a checksum")
    return _STATEFUL_NUMBER.pack(frame_type, STATEFUL_DATA_SIZE, number.index, number.value)


def encode_data(index: int, value: int, mode: Mode) -> bytes:
    """A DATA (non-final) frame straight from its fields: the per-number hot path.

    Same bytes and checks as ``encode_number(Number(index=index, value=value), mode)``, without
    building the event. Raises LocalProtocolError for a value the mode cannot carry.
    """
    if mode is Mode.STATEFUL:
        if not 0 <= value <= 0xFFFF_FFFF:
            raise LocalProtocolError("stateful values are u32")
        return _STATEFUL_NUMBER.pack(FrameType.DATA, STATEFUL_DATA_SIZE, index, value)
    if value < 1:
        raise LocalProtocolError("stateless values are positive")
    size = (value.bit_length() + 7) // 8
    if 4 + size > MAX_PAYLOAD:
        raise LocalProtocolError(f"value of {size} bytes exceeds the frame limit")
    return _INDEX_HEADER.pack(FrameType.DATA, 4 + size, index) + value.to_bytes(size, "big")


def encode_error(error: Error) -> bytes:
    return _frame(FrameType.ERROR, _ERROR_CODE.pack(error.code) + error.message.encode("utf-8"))


def encode_frame(frame: Frame, mode: Mode | None = None) -> bytes:
    if isinstance(frame, Hello):
        return encode_hello(frame)
    if isinstance(frame, Welcome):
        return encode_welcome(frame)
    if isinstance(frame, Error):
        return encode_error(frame)
    if mode is None:
        raise LocalProtocolError("encoding a number needs the connection's mode")
    return encode_number(frame, mode)


# --- decoding ---------------------------------------------------------------------------------


def _malformed(message: str, code: ErrorCode = ErrorCode.MALFORMED_FRAME) -> RemoteProtocolError:
    return RemoteProtocolError(message, code)


_T = TypeVar("_T")


def _validated(build: type[_T], **fields: object) -> _T:
    """Turn an event's own validation failure into the peer's fault with the same wire code."""
    try:
        return build(**fields)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(str(exc), exc.error_code) from None


def decode_hello(payload: bytes | memoryview) -> Hello:
    if len(payload) < 1:
        raise _malformed("empty HELLO payload")
    if payload[0] != PROTOCOL_VERSION:
        raise _malformed(
            f"protocol version {payload[0]} not supported (this server speaks {PROTOCOL_VERSION})",
            ErrorCode.UNSUPPORTED_VERSION,
        )
    if len(payload) < _HELLO_FIXED.size:
        raise _malformed(f"HELLO payload of {len(payload)} bytes is too short")
    version, mode_byte, flags, n, next_index = _HELLO_FIXED.unpack_from(payload)
    if mode_byte not in (Mode.STATELESS, Mode.STATEFUL):
        raise _malformed(f"unknown mode {mode_byte}", ErrorCode.UNSUPPORTED_MODE)
    mode = Mode(mode_byte)
    if flags & ~HelloFlag.RESUME:
        raise _malformed(f"reserved HELLO flag bits set: {flags:#04x}")
    expected = HELLO_STATELESS_SIZE if mode is Mode.STATELESS else HELLO_STATEFUL_SIZE
    if len(payload) != expected:
        raise _malformed(f"{mode.name} HELLO payload must be {expected} bytes, got {len(payload)}")
    resume = bool(flags & HelloFlag.RESUME)
    if mode is Mode.STATELESS:
        (a,) = _U32.unpack_from(payload, _HELLO_FIXED.size)
        return _validated(
            Hello, version=version, mode=mode, n=n, resume=resume, next_index=next_index, a=a
        )
    # Non-ASCII bytes become U+FFFD, which the UUID check after the n and index checks rejects.
    client_id = bytes(payload[_HELLO_FIXED.size :]).decode("ascii", errors="replace")
    return _validated(
        Hello,
        version=version,
        mode=mode,
        n=n,
        resume=resume,
        next_index=next_index,
        client_id=client_id,
    )


def decode_welcome(payload: bytes | memoryview) -> Welcome:
    if len(payload) != WELCOME_SIZE:
        raise _malformed(f"WELCOME payload must be {WELCOME_SIZE} bytes, got {len(payload)}")
    version, mode_byte, flags, n, next_index, interval_ms, a, ttl = _WELCOME.unpack_from(payload)
    if version != PROTOCOL_VERSION:
        raise _malformed(f"server speaks version {version}", ErrorCode.UNSUPPORTED_VERSION)
    if mode_byte not in (Mode.STATELESS, Mode.STATEFUL):
        raise _malformed(f"unknown mode {mode_byte}", ErrorCode.UNSUPPORTED_MODE)
    if flags:
        raise _malformed(f"reserved WELCOME flags set: {flags:#04x}")
    return _validated(
        Welcome,
        version=version,
        mode=Mode(mode_byte),
        n=n,
        next_index=next_index,
        interval_ms=interval_ms,
        a=a,
        session_ttl_ms=ttl,
    )


def decode_number(payload: bytes | memoryview, *, final: bool, mode: Mode) -> Number:
    if mode is Mode.STATELESS:
        if len(payload) < 5:
            raise _malformed(f"stateless number payload of {len(payload)} bytes is too short")
        if payload[4] == 0:
            raise _malformed("stateless value has a leading zero byte (not minimal)")
        (index,) = _U32.unpack_from(payload)
        value = int.from_bytes(payload[4:], "big")
        return _validated(Number, index=index, value=value, final=final)
    expected = STATEFUL_FINAL_SIZE if final else STATEFUL_DATA_SIZE
    if len(payload) != expected:
        kind = "FINAL" if final else "DATA"
        raise _malformed(f"stateful {kind} payload must be {expected} bytes, got {len(payload)}")
    index, value = struct.unpack_from(">II", payload)
    checksum = bytes(payload[8:]) if final else None
    return _validated(Number, index=index, value=value, final=final, checksum=checksum)


def decode_error(payload: bytes | memoryview) -> Error:
    if len(payload) < 2:
        raise _malformed("ERROR payload shorter than its code")
    if len(payload) - 2 > MAX_ERROR_MESSAGE:
        raise _malformed("ERROR message longer than 1024 bytes")
    (code,) = _ERROR_CODE.unpack_from(payload)
    try:
        message = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("ERROR message is not UTF-8") from None
    return Error(code=code, message=message)


class FrameReader:
    """Reassembles frames from arbitrary chunks; holds at most one incomplete frame's bytes.

    An unknown type fails as soon as its first byte is in, and an announced length over
    MAX_PAYLOAD as soon as the header is in, before any payload is awaited (spec §3 rule 1).
    """

    __slots__ = ("_buffer", "_eof")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof and data:
            raise LocalProtocolError("data fed after EOF")
        self._buffer += data

    def feed_eof(self) -> None:
        self._eof = True

    def discard(self) -> None:
        """Forget every buffered byte (a client's bytes after FINAL, spec §5.5)."""
        self._buffer.clear()

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_frame(self) -> tuple[FrameType, bytes] | None:
        """The next complete (type, payload), or None when more bytes are needed."""
        buffer = self._buffer
        if buffer and buffer[0] not in _KNOWN_TYPES:  # judged on the first byte (spec §3)
            raise _malformed(f"unknown frame type {buffer[0]:#04x}")
        if len(buffer) < HEADER_SIZE:
            if self._eof and buffer:
                raise _malformed(f"connection closed inside a frame header ({len(buffer)} bytes)")
            return None
        frame_type, length = _HEADER.unpack_from(buffer)
        if frame_type not in _KNOWN_TYPES:
            raise _malformed(f"unknown frame type {frame_type:#04x}")
        if length > MAX_PAYLOAD:
            raise _malformed(
                f"frame announces {length} payload bytes, limit is {MAX_PAYLOAD}",
                ErrorCode.FRAME_TOO_LARGE,
            )
        end = HEADER_SIZE + length
        if len(buffer) < end:
            if self._eof:
                raise _malformed(f"connection closed inside a frame ({len(buffer)} of {end} bytes)")
            return None
        with memoryview(buffer) as view:
            payload = bytes(view[HEADER_SIZE:end])  # one copy; slicing the bytearray makes two
        del buffer[:end]
        return FrameType(frame_type), payload


# --- runs of DATA frames, checked in bulk ------------------------------------------------------

#: A stateful DATA frame as numpy sees it: 11 bytes, fields big-endian as on the wire.
_STATEFUL_DATA_FRAME = np.dtype(
    [("type", "u1"), ("length", ">u2"), ("index", ">u4"), ("value", ">u4")]
)


def take_stateful_data(reader: FrameReader, first: int, stop: int) -> tuple[int, bytes]:
    """Consume the longest run of stateful DATA frames at the front of ``reader`` with indices
    ``first, first + 1, ...`` (all below ``stop``), each well formed (type 0x03, 8-byte payload).

    Returns how many, and their values as 4-byte big-endian integers (``4 * count`` bytes,
    exactly what the checksum hashes, spec §7.4). Consumes nothing from the first frame that is
    anything else; taking those one by one (``next_frame``) gives the same frames and raises the
    same errors as ever. Vectorised: about the cost of a copy of the bytes.
    """
    size = _STATEFUL_DATA_FRAME.itemsize
    buffer = reader._buffer
    most = min(len(buffer) // size, stop - first)
    if most <= 0:
        return 0, b""
    with memoryview(buffer) as view:
        frames = np.frombuffer(bytes(view[: most * size]), dtype=_STATEFUL_DATA_FRAME)
    good = (
        (frames["type"] == FrameType.DATA)
        & (frames["length"] == STATEFUL_DATA_SIZE)
        & (frames["index"] == np.arange(first, first + most, dtype=np.int64))
    )
    count = most if bool(good.all()) else int(np.argmin(good))
    values = frames["value"][:count].tobytes()
    del buffer[: count * size]
    return count, values


#: Zero bytes to compare the tail of a stateless value with (a view: slicing copies nothing).
_ZEROS = memoryview(bytes(MAX_PAYLOAD))


def take_doubling_data(reader: FrameReader, a: int, first: int, stop: int) -> int:
    """Consume the longest run of DATA frames at the front of ``reader`` that are byte for byte
    the stateless frames of ``a·2^index`` for ``index = first, first + 1, ...`` (below ``stop``).

    Returns how many. A frame that differs in any byte (another value, a non-minimal encoding, a
    wrong index or type) ends the run unconsumed; taking it one by one (``next_frame``) gives the
    frame and raises the same errors as ever. No integer is built from a frame's bytes: each is
    compared with the few bytes of ``a << (index % 8)`` and checked to end in ``index // 8``
    zero bytes.
    """
    if a < 1:
        return 0
    buffer = reader._buffer
    size = len(buffer)
    offset = 0
    index = first
    while index < stop:
        head = a << (index & 7)
        head_bytes = head.to_bytes((head.bit_length() + 7) // 8, "big")
        zeros = index >> 3
        length = 4 + len(head_bytes) + zeros
        end = offset + HEADER_SIZE + length
        if length > MAX_PAYLOAD or end > size:
            break
        if not buffer.startswith(
            _INDEX_HEADER.pack(FrameType.DATA, length, index) + head_bytes, offset
        ):
            break
        if zeros and not buffer.startswith(_ZEROS[:zeros], end - zeros):
            break
        offset = end
        index += 1
    del buffer[:offset]
    return index - first
