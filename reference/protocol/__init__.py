"""Sans-I/O core of the numeric-stream protocol: no sockets, clocks or randomness in here."""

from .connection import ClientConnection, Kind, Role, ServerConnection, State
from .constants import (
    MAX_DURATION_MS,
    MAX_N,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    ErrorCode,
    FrameType,
    Mode,
    is_retryable,
)
from .durations import seconds_text_to_ms, seconds_to_ms
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import NEED_DATA, ConnectionClosed, Error, Event, Hello, Number, Welcome
from .sequences import (
    Checksum,
    extend_stateful_checksum,
    stateful_checksum,
    stateful_prefix_checksum,
    stateful_value,
    stateless_sum,
    stateless_value,
)

__all__ = [
    "MAX_DURATION_MS",
    "MAX_N",
    "MAX_PAYLOAD",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Checksum",
    "ClientConnection",
    "ConnectionClosed",
    "Error",
    "ErrorCode",
    "Event",
    "FrameType",
    "Hello",
    "Kind",
    "LocalProtocolError",
    "Mode",
    "Number",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "ServerConnection",
    "State",
    "Welcome",
    "extend_stateful_checksum",
    "is_retryable",
    "seconds_text_to_ms",
    "seconds_to_ms",
    "stateful_checksum",
    "stateful_prefix_checksum",
    "stateful_value",
    "stateless_sum",
    "stateless_value",
]
