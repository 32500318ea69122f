"""A fault-injecting TCP proxy for chaos tests; it forwards bytes and knows no protocol.

The names below are loaded on first use (from ``proxy.faults`` and ``proxy.server``), so that
importing the package costs nothing: ``python -m proxy`` guards its signals before anything
heavy loads (reference/early.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "ChaosProxy": "proxy.server",
    "ConnectionKey": "proxy.faults",
    "ConnectionRecord": "proxy.server",
    "Direction": "proxy.faults",
    "FaultConfig": "proxy.faults",
    "FaultEvent": "proxy.faults",
    "FaultKind": "proxy.faults",
    "FramePosition": "proxy.faults",
    "ProxyCounters": "proxy.server",
    "ScheduledFault": "proxy.faults",
    "Sizer": "proxy.faults",
    "StreamShape": "proxy.faults",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'proxy' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


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
