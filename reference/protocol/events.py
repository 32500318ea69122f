"""Typed protocol events: what the core yields from bytes and turns into bytes.

Every event validates its fields on construction, so an invalid event can neither be sent nor
be returned by the decoder: the decoder converts construction failures into
RemoteProtocolError with the matching wire error code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .constants import (
    CHECKSUM_SIZE,
    MAX_A,
    MAX_ERROR_MESSAGE,
    MAX_N,
    MIN_A,
    PROTOCOL_VERSION,
    U32_MAX,
    ErrorCode,
    Mode,
)
from .errors import LocalProtocolError

_UUID_TEXT = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def _invalid(message: str, code: ErrorCode) -> LocalProtocolError:
    return LocalProtocolError(message, code)


def _check_u32(name: str, value: int, code: ErrorCode) -> None:
    if not 0 <= value <= U32_MAX:
        raise _invalid(f"{name}={value} does not fit in u32", code)


def is_valid_client_id(client_id: str) -> bool:
    """Lower-case canonical 8-4-4-4-12 hex text, as spec/PROTOCOL.md requires."""
    return _UUID_TEXT.match(client_id) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First and only frame a client sends on a connection."""

    mode: Mode
    n: int
    resume: bool = False
    next_index: int = 0
    a: int = 0
    client_id: str = ""
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:  # noqa: C901 (HELLO validation in the spec's order (§5.3): one if per step)
        if self.version != PROTOCOL_VERSION:
            raise _invalid(f"unsupported version {self.version}", ErrorCode.UNSUPPORTED_VERSION)
        if not 1 <= self.n <= MAX_N:
            raise _invalid(f"n={self.n} outside 1..{MAX_N}", ErrorCode.INVALID_N)
        _check_u32("next_index", self.next_index, ErrorCode.INVALID_INDEX)
        if self.next_index >= self.n:
            raise _invalid(
                f"next_index={self.next_index} is not below n={self.n}", ErrorCode.INVALID_INDEX
            )
        if not self.resume and self.next_index != 0:
            raise _invalid("next_index must be 0 unless resuming", ErrorCode.INVALID_INDEX)
        if self.mode is Mode.STATELESS:
            if self.client_id:
                raise _invalid("stateless hello carries no client id", ErrorCode.INVALID_CLIENT_ID)
            if self.resume and not MIN_A <= self.a <= MAX_A:
                raise _invalid(f"a={self.a} outside {MIN_A}..{MAX_A}", ErrorCode.INVALID_A)
            if not self.resume and self.a != 0:
                raise _invalid("a must be 0 unless resuming", ErrorCode.INVALID_A)
        else:
            if self.a != 0:
                raise _invalid("stateful hello carries no a", ErrorCode.INVALID_A)
            if not is_valid_client_id(self.client_id):
                raise _invalid(
                    f"client id {self.client_id!r} is not a lower-case canonical UUID",
                    ErrorCode.INVALID_CLIENT_ID,
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    """The server's acceptance: the parameters in force on this connection."""

    mode: Mode
    n: int
    next_index: int
    interval_ms: int
    a: int = 0
    session_ttl_ms: int = 0
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if self.version != PROTOCOL_VERSION:
            raise _invalid(f"unsupported version {self.version}", ErrorCode.UNSUPPORTED_VERSION)
        if not 1 <= self.n <= MAX_N:
            raise _invalid(f"n={self.n} outside 1..{MAX_N}", ErrorCode.INVALID_N)
        if not 0 <= self.next_index < self.n:
            raise _invalid(f"next_index={self.next_index} not below n", ErrorCode.INVALID_INDEX)
        _check_u32("interval_ms", self.interval_ms, ErrorCode.MALFORMED_FRAME)
        _check_u32("session_ttl_ms", self.session_ttl_ms, ErrorCode.MALFORMED_FRAME)
        if self.mode is Mode.STATELESS:
            if not MIN_A <= self.a <= MAX_A:
                raise _invalid(f"a={self.a} outside {MIN_A}..{MAX_A}", ErrorCode.INVALID_A)
            if self.session_ttl_ms != 0:
                raise _invalid("stateless welcome carries no TTL", ErrorCode.MALFORMED_FRAME)
        elif self.a != 0:
            raise _invalid("stateful welcome carries no a", ErrorCode.INVALID_A)


@dataclass(frozen=True, slots=True, kw_only=True)
class Number:
    """One element of the sequence; ``final`` marks the last one (a FINAL frame on the wire).

    A stateful final number carries the 32-byte checksum of the whole sequence.
    """

    index: int
    value: int
    final: bool = False
    checksum: bytes | None = None

    def __post_init__(self) -> None:
        _check_u32("index", self.index, ErrorCode.INVALID_INDEX)
        if self.value < 0:
            raise _invalid(f"value {self.value} is negative", ErrorCode.MALFORMED_FRAME)
        if self.checksum is not None:
            if not self.final:
                raise _invalid("only a final number carries a checksum", ErrorCode.MALFORMED_FRAME)
            if len(self.checksum) != CHECKSUM_SIZE:
                raise _invalid("checksum must be 32 bytes", ErrorCode.MALFORMED_FRAME)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """An ERROR frame: the sender closes the connection right after it."""

    code: int
    message: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFFFF:
            raise _invalid(f"error code {self.code} does not fit in u16", ErrorCode.MALFORMED_FRAME)
        try:
            encoded = self.message.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid(
                "error message is not valid Unicode text", ErrorCode.MALFORMED_FRAME
            ) from None
        if len(encoded) > MAX_ERROR_MESSAGE:
            raise _invalid("error message longer than 1024 bytes", ErrorCode.MALFORMED_FRAME)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The peer closed its sending side (EOF), fed explicitly by the I/O layer."""


class _NeedData:
    """Sentinel type: more bytes are needed before the next event."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

Frame = Hello | Welcome | Number | Error
Event = Hello | Welcome | Number | Error | ConnectionClosed
