"""Wire constants of protocol version 1; spec/PROTOCOL.md is the authority for each value."""

from __future__ import annotations

from enum import IntEnum

PROTOCOL_VERSION = 1

#: Frame header: type (u8) then payload length (u16, big-endian).
HEADER_SIZE = 3
#: Largest payload any version-1 frame may carry; a header announcing more is rejected at once.
MAX_PAYLOAD = 16384
#: Longest UTF-8 message an ERROR frame may carry.
MAX_ERROR_MESSAGE = 1024

MAX_N = 0xFFFF
MIN_A = 1
MAX_A = 0xFF
CLIENT_ID_LENGTH = 36
CHECKSUM_SIZE = 32
U32_MAX = 0xFFFF_FFFF
#: Longest duration NSP carries, in ms (spec §13.1): WELCOME's interval and TTL, every option.
MAX_DURATION_MS = 86_400_000


class FrameType(IntEnum):
    HELLO = 0x01
    WELCOME = 0x02
    DATA = 0x03
    FINAL = 0x04
    ERROR = 0x05


class Mode(IntEnum):
    STATELESS = 1
    STATEFUL = 2


class HelloFlag(IntEnum):
    RESUME = 0x01


class ErrorCode(IntEnum):
    """Codes carried by ERROR frames; see the table in spec/PROTOCOL.md."""

    MALFORMED_FRAME = 1
    FRAME_TOO_LARGE = 2
    UNEXPECTED_FRAME = 3
    UNSUPPORTED_VERSION = 4
    UNSUPPORTED_MODE = 5
    INVALID_N = 6
    INVALID_A = 7
    INVALID_INDEX = 8
    INVALID_CLIENT_ID = 9
    HANDSHAKE_TIMEOUT = 10
    SESSION_UNKNOWN = 20
    SESSION_MISMATCH = 21
    SESSION_SUPERSEDED = 22
    STORE_UNAVAILABLE = 30
    SERVER_BUSY = 31
    SHUTTING_DOWN = 32
    INTERNAL_ERROR = 33


#: Codes after which a client may reconnect (with backoff) and resume; all others are final.
RETRYABLE_CODES = frozenset(
    {
        ErrorCode.STORE_UNAVAILABLE,
        ErrorCode.SERVER_BUSY,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.HANDSHAKE_TIMEOUT,
    }
)


def is_retryable(code: int) -> bool:
    """Unknown codes are treated as final so that a newer server cannot make old clients loop."""
    return code in RETRYABLE_CODES
