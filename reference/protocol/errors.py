"""The two error families of the core: the peer broke the protocol, or we tried to."""

from __future__ import annotations

from .constants import ErrorCode


class ProtocolError(Exception):
    """Base class; ``error_code`` is what an ERROR frame would carry for this failure."""

    error_code: ErrorCode = ErrorCode.MALFORMED_FRAME

    def __init__(self, message: str, error_code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids; answer with an ERROR frame and close."""


class LocalProtocolError(ProtocolError):
    """Our own code asked the core to do something the protocol forbids: a bug on this side."""
