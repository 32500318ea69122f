"""A fault-injecting TCP proxy for chaos tests; it forwards bytes and knows no protocol."""

from proxy.faults import Direction, FaultConfig, FaultEvent, FaultKind, ScheduledFault
from proxy.server import ChaosProxy, ProxyCounters

__all__ = [
    "ChaosProxy",
    "Direction",
    "FaultConfig",
    "FaultEvent",
    "FaultKind",
    "ProxyCounters",
    "ScheduledFault",
]
