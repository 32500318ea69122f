"""A fault-injecting TCP proxy for chaos tests; it forwards bytes and knows no protocol."""

from proxy.faults import (
    ConnectionKey,
    Direction,
    FaultConfig,
    FaultEvent,
    FaultKind,
    FramePosition,
    ScheduledFault,
    Sizer,
    StreamShape,
)
from proxy.server import ChaosProxy, ConnectionRecord, ProxyCounters

__all__ = [
    "ChaosProxy",
    "ConnectionKey",
    "ConnectionRecord",
    "Direction",
    "FaultConfig",
    "FaultEvent",
    "FaultKind",
    "FramePosition",
    "ProxyCounters",
    "ScheduledFault",
    "Sizer",
    "StreamShape",
]
