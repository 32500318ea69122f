"""The fault vocabulary, and the seeded decision of which faults hit which connection.

Everything here is pure: decisions depend only on the seed, the connection index and the
configuration, so the same seed gives the same faults for the same traffic however it is timed.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    DROP = "drop"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"
    LIMIT_DATA = "limit_data"
    LATENCY = "latency"
    BANDWIDTH = "bandwidth"
    SLICE = "slice"


class Direction(StrEnum):
    UPSTREAM = "upstream"
    """Bytes from the client to the server."""
    DOWNSTREAM = "downstream"
    """Bytes from the server to the client."""


TERMINAL_KINDS = frozenset(
    {FaultKind.DROP, FaultKind.RESET, FaultKind.BLACKHOLE, FaultKind.LIMIT_DATA}
)
SCHEDULABLE_KINDS = frozenset(
    {FaultKind.DROP, FaultKind.RESET, FaultKind.BLACKHOLE, FaultKind.SLICE}
)
DEFAULT_SLICE_SIZE = 7
"""Slice size for a scheduled SLICE when the config sets none: small and odd, so slices straddle
frame boundaries."""

_RATE_SLACK = 1e-9  # rates like 0.1 + 0.2 + 0.7 sum to a hair above 1.0 in binary floating point


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledFault:
    """An exact fault, so property tests can say which bytes of which connection get through."""

    connection: int
    after_bytes: int
    kind: FaultKind
    direction: Direction = Direction.DOWNSTREAM

    def __post_init__(self) -> None:
        # Accept plain strings (schedules read from JSON) but store the enums the proxy compares.
        object.__setattr__(self, "kind", FaultKind(self.kind))
        object.__setattr__(self, "direction", Direction(self.direction))
        if self.connection < 0 or self.after_bytes < 0:
            raise ValueError(f"connection and after_bytes must be >= 0: {self}")
        if self.kind not in SCHEDULABLE_KINDS:
            raise ValueError(
                f"{self.kind} cannot be scheduled; use one of drop, reset, blackhole, slice"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultConfig:
    """Random faults; all off by default so a bare proxy is a faithful relay."""

    drop_rate: float = 0.0
    reset_rate: float = 0.0
    blackhole_rate: float = 0.0
    fault_window: int = 4096
    refuse_rate: float = 0.0
    refuse_duration: float = 0.5
    limit_data: int | None = None
    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: int | None = None
    slice_size: int | None = None
    slice_delay: float = 0.0

    def __post_init__(self) -> None:
        rates = {
            "drop_rate": self.drop_rate,
            "reset_rate": self.reset_rate,
            "blackhole_rate": self.blackhole_rate,
            "refuse_rate": self.refuse_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")
        if self.drop_rate + self.reset_rate + self.blackhole_rate > 1.0 + _RATE_SLACK:
            raise ValueError("drop_rate + reset_rate + blackhole_rate must not exceed 1")
        for name, seconds in {
            "refuse_duration": self.refuse_duration,
            "latency": self.latency,
            "jitter": self.jitter,
            "slice_delay": self.slice_delay,
        }.items():
            if seconds < 0:
                raise ValueError(f"{name} must be >= 0, got {seconds}")
        if self.fault_window < 1:
            raise ValueError(f"fault_window must be >= 1, got {self.fault_window}")
        if self.limit_data is not None and self.limit_data < 0:
            raise ValueError(f"limit_data must be >= 0, got {self.limit_data}")
        for name, size in {"bandwidth": self.bandwidth, "slice_size": self.slice_size}.items():
            if size is not None and size < 1:
                raise ValueError(f"{name} must be >= 1, got {size}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultEvent:
    """One fault as it fired; offsets say exactly how many bytes had got through each way."""

    t: float
    connection: int
    kind: FaultKind
    direction: Direction | None
    offset_downstream: int
    offset_upstream: int
    upstream: str | None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """A fault waiting for `offset` bytes to have been forwarded in `direction`."""

    offset: int
    kind: FaultKind
    direction: Direction


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionPlan:
    """Every random decision for one connection, made up front so timing cannot change them."""

    starts_refuse: bool
    triggers: tuple[Trigger, ...]  # by offset; at equal offsets, scheduled before random


def plan_connection(
    index: int, *, config: FaultConfig, schedule: Sequence[ScheduledFault], seed: int
) -> ConnectionPlan:
    """Decide connection `index`'s faults from its own generator, apart from other connections."""
    rng = random.Random(f"{seed}:{index}")
    # Every draw is made whatever the rates, so changing one rate never shifts another decision.
    starts_refuse = rng.random() < config.refuse_rate
    terminal_draw = rng.random()
    terminal_offset = rng.randrange(config.fault_window)

    triggers = [
        Trigger(offset=fault.after_bytes, kind=fault.kind, direction=fault.direction)
        for fault in schedule
        if fault.connection == index
    ]
    if not any(trigger.kind in TERMINAL_KINDS for trigger in triggers):
        kind = _terminal_kind(terminal_draw, config)
        if kind is not None:
            triggers.append(
                Trigger(offset=terminal_offset, kind=kind, direction=Direction.DOWNSTREAM)
            )
    if config.limit_data is not None:
        triggers.append(
            Trigger(
                offset=config.limit_data, kind=FaultKind.LIMIT_DATA, direction=Direction.DOWNSTREAM
            )
        )
    triggers.sort(key=lambda trigger: trigger.offset)
    return ConnectionPlan(starts_refuse=starts_refuse, triggers=tuple(triggers))


def _terminal_kind(draw: float, config: FaultConfig) -> FaultKind | None:
    """One draw picks at most one terminal fault, so the rates are exclusive probabilities."""
    for kind, rate in (
        (FaultKind.DROP, config.drop_rate),
        (FaultKind.RESET, config.reset_rate),
        (FaultKind.BLACKHOLE, config.blackhole_rate),
    ):
        if draw < rate:
            return kind
        draw -= rate
    return None
