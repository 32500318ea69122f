"""The fault vocabulary, and the seeded decision of which faults hit which connection.

Everything here is pure: decisions depend only on the seed, the connection's key (its index,
or its client and that client's connection number) and the configuration, so the same seed gives
the same faults for the same traffic however it is timed.

**What a rate means.** One draw per connection picks at most one of drop, reset, blackhole,
partition and corrupt (exclusive probabilities, summing to at most 1), and a point ``u`` uniform
in [0, 1). The fault strikes at downstream byte ``floor(u * size)``: the bytes before it pass,
and the stream's last byte never does. ``size`` is what the connection would carry when a
``sizer`` can tell (the chaos harness reads it from the stream's first frame: a resumed
connection carries only the rest), else ``fault_window``. So with a sizer a rate R is exactly
the probability that a connection carrying stream data is ended (corrupted) by that fault before
its last byte; without one it is the probability per connection that a fault is armed somewhere
in the first ``fault_window`` bytes, and a connection carrying fewer bytes than the armed offset
escapes it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class FaultKind(StrEnum):
    DROP = "drop"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    PARTITION = "partition"
    CORRUPT = "corrupt"
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
    {
        FaultKind.DROP,
        FaultKind.RESET,
        FaultKind.BLACKHOLE,
        FaultKind.PARTITION,
        FaultKind.LIMIT_DATA,
    }
)
#: The kinds one draw per connection chooses among, in draw order; each has a ``<kind>_rate``.
DRAWN_KINDS = (
    FaultKind.DROP,
    FaultKind.RESET,
    FaultKind.BLACKHOLE,
    FaultKind.PARTITION,
    FaultKind.CORRUPT,
)
SCHEDULABLE_KINDS = frozenset({*DRAWN_KINDS, FaultKind.SLICE, FaultKind.REFUSE})
DEFAULT_SLICE_SIZE = 7
"""Slice size for a scheduled SLICE when the config sets none: small and odd, so slices straddle
frame boundaries."""

DEFAULT_FAULT_WINDOW = 200
"""Without a sizer, drawn faults are armed at a byte uniform below this. The README's proxy
example (a stateless stream of 20 numbers: 202 to 219 bytes, depending on a) carries at least
this much, so there every armed fault strikes and a rate is exactly the chance per connection."""

_RATE_SLACK = 1e-9  # rates like 0.1 + 0.2 + 0.7 sum to a hair above 1.0 in binary floating point


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledFault:
    """An exact fault, so property tests can say which bytes of which connection get through.

    ``client`` None: ``connection`` is the proxy-wide accept index (0 = first). ``client`` set:
    the fault is for connections of the listener serving that client (``ChaosProxy.serve(client
    =...)``) and ``connection`` is that client's connection number (1 = its first). A CORRUPT
    fault XORs the byte at ``after_bytes`` with ``xor`` (1..255); REFUSE ignores ``after_bytes``.
    """

    connection: int
    after_bytes: int
    kind: FaultKind
    direction: Direction = Direction.DOWNSTREAM
    client: int | None = None
    xor: int = 0xFF

    def __post_init__(self) -> None:
        # Accept plain strings (schedules read from JSON) but store the enums the proxy compares.
        object.__setattr__(self, "kind", FaultKind(self.kind))
        object.__setattr__(self, "direction", Direction(self.direction))
        if self.connection < 0 or self.after_bytes < 0:
            raise ValueError(f"connection and after_bytes must be >= 0: {self}")
        if self.kind not in SCHEDULABLE_KINDS:
            names = ", ".join(sorted(kind.value for kind in SCHEDULABLE_KINDS))
            raise ValueError(f"{self.kind} cannot be scheduled; use one of {names}")
        if not 1 <= self.xor <= 0xFF:
            raise ValueError(f"xor must be in 1..255: {self}")

    def matches(self, key: ConnectionKey) -> bool:
        if self.client is None:
            return self.connection == key.index
        return self.client == key.client and self.connection == key.number


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultConfig:
    """Random faults; all off by default so a bare proxy is a faithful relay."""

    drop_rate: float = 0.0
    reset_rate: float = 0.0
    blackhole_rate: float = 0.0
    partition_rate: float = 0.0
    corrupt_rate: float = 0.0
    fault_window: int = DEFAULT_FAULT_WINDOW
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
            "partition_rate": self.partition_rate,
            "corrupt_rate": self.corrupt_rate,
            "refuse_rate": self.refuse_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")
        if sum(self.rate(kind) for kind in DRAWN_KINDS) > 1.0 + _RATE_SLACK:
            raise ValueError(
                "drop_rate + reset_rate + blackhole_rate + partition_rate + corrupt_rate "
                "must not exceed 1"
            )
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

    def rate(self, kind: FaultKind) -> float:
        """The configured rate of a drawn kind (0 for any other kind)."""
        return float(getattr(self, f"{kind.value}_rate", 0.0)) if kind in DRAWN_KINDS else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FramePosition:
    """Where in a stream a byte offset falls, as a ``sizer`` describes it."""

    frame_index: int
    """The index of the first frame that did not arrive whole (the frame holding the byte)."""
    frame: str
    """What that frame is (for NSP: ``welcome``, ``data`` or ``final``)."""


class StreamShape(Protocol):
    """What one connection's downstream would carry, as a ``Sizer`` read it off its first bytes."""

    @property
    def size(self) -> int:
        """Downstream bytes of the whole connection if nothing cuts it; 0: no stream data."""
        ...

    @property
    def label(self) -> str:
        """A name to group connections by in counts (for NSP: the mode)."""
        ...

    def locate(self, offset: int) -> FramePosition:
        """The frame holding downstream byte ``offset`` (0 <= offset < size)."""
        ...


Sizer = Callable[[bytes], StreamShape | None]
"""Reads a connection's first downstream bytes: its shape, or None while it needs more bytes.
The proxy holds those bytes back until it answers (at most ``SIZER_MAX_PREFIX``)."""

SIZER_MAX_PREFIX = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionKey:
    """Who a connection is: the proxy-wide accept ``index`` (from 0) and, on a client's own
    listener, that ``client`` and its connection ``number`` (from 1)."""

    index: int
    client: int | None = None
    number: int = 0

    def seed_key(self, seed: int) -> str:
        if self.client is None:
            return f"{seed}:{self.index}"
        return f"{seed}:client {self.client}:{self.number}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultEvent:
    """One fault as it fired; offsets say exactly how many bytes had got through each way.

    ``client``/``client_connection``: the listener's client and its connection number (1 =
    first), when the connection came through a client's own listener. ``frame_index`` and
    ``frame``: where the fault struck in the stream, when a sizer read the stream's shape.
    ``xor``: the mask a CORRUPT applied to byte ``offset_downstream``.
    """

    t: float
    connection: int
    kind: FaultKind
    direction: Direction | None
    offset_downstream: int
    offset_upstream: int
    upstream: str | None
    client: int | None = None
    client_connection: int | None = None
    frame_index: int | None = None
    frame: str | None = None
    xor: int | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """A fault waiting for `offset` bytes to have been forwarded in `direction`."""

    offset: int
    kind: FaultKind
    direction: Direction
    xor: int = 0xFF


def point_offset(point: float, size: int) -> int:
    """The byte a point in [0, 1) of a ``size``-byte connection falls on: 0 .. size - 1."""
    return max(0, min(size - 1, math.floor(point * size)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DrawnFault:
    """The random fault of one connection: its kind, and the point ``u`` in [0, 1) of what the
    connection carries where it strikes (resolved into a byte offset once the size is known)."""

    kind: FaultKind
    point: float
    xor: int

    def trigger(self, size: int) -> Trigger:
        return Trigger(
            offset=point_offset(self.point, size),
            kind=self.kind,
            direction=Direction.DOWNSTREAM,
            xor=self.xor,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionPlan:
    """Every random decision for one connection, made up front so timing cannot change them."""

    starts_refuse: bool
    triggers: tuple[Trigger, ...]  # by offset; at equal offsets, scheduled before random
    drawn: DrawnFault | None = None  # placed once the connection's size is known
    refused: bool = False  # a scheduled REFUSE
    #: The point in [0, 1) where a drawn fault strikes: drawn for every connection, so that a
    #: connection without a fault can be told to have reached it (see ``ConnectionRecord``).
    point: float = 0.0


def plan_connection(
    key: ConnectionKey | int,
    *,
    config: FaultConfig,
    schedule: Sequence[ScheduledFault],
    seed: int,
) -> ConnectionPlan:
    """Decide one connection's faults from its own generator, apart from other connections.

    An int ``key`` is a proxy-wide accept index. A connection with a scheduled terminal or
    corrupt fault gets no drawn one (the schedule is exact).
    """
    if isinstance(key, int):
        key = ConnectionKey(index=key)
    rng = random.Random(key.seed_key(seed))
    # Every draw is made whatever the rates, so changing one rate never shifts another decision.
    starts_refuse = rng.random() < config.refuse_rate
    kind_draw = rng.random()
    if key.client is not None:
        kind_draw = stratified_draw(seed, key.client, key.number)
    point = rng.random()
    xor = rng.randrange(1, 256)

    mine = [fault for fault in schedule if fault.matches(key)]
    triggers = [
        Trigger(offset=fault.after_bytes, kind=fault.kind, direction=fault.direction, xor=fault.xor)
        for fault in mine
        if fault.kind is not FaultKind.REFUSE
    ]
    drawn = None
    if not any(t.kind in TERMINAL_KINDS or t.kind is FaultKind.CORRUPT for t in triggers):
        kind = _drawn_kind(kind_draw, config)
        if kind is not None:
            drawn = DrawnFault(kind=kind, point=point, xor=xor)
    if config.limit_data is not None:
        triggers.append(
            Trigger(
                offset=config.limit_data, kind=FaultKind.LIMIT_DATA, direction=Direction.DOWNSTREAM
            )
        )
    triggers.sort(key=lambda trigger: trigger.offset)
    return ConnectionPlan(
        starts_refuse=starts_refuse,
        triggers=tuple(triggers),
        drawn=drawn,
        refused=any(fault.kind is FaultKind.REFUSE for fault in mine),
        point=point,
    )


#: Kronecker steps for ``stratified_draw``, one per connection number (cycled): the fractional
#: parts of the golden ratio and of square roots of primes, rationally independent of each other.
_STEPS = (
    (1 + math.sqrt(5)) / 2 % 1.0,
    *(math.sqrt(root) % 1.0 for root in (2, 3, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43)),
)


def stratified_draw(seed: int, client: int, number: int) -> float:
    """Client ``client``'s draw for its connection ``number``: uniform in [0, 1), and spread
    evenly over the clients (a randomly shifted Kronecker sequence in the client number).

    Each draw on its own is uniform, as an independent one is; but over a run's clients the
    fraction of first (second, ...) connections that draw below R is R within about one client,
    not within the binomial spread, so a run's realised fault rates sit close to the rates asked
    for. Each connection number has its own step, rationally independent of the others, so
    which clients reach a second connection says nothing about their second draws.
    """
    shift = random.Random(f"{seed}:stratum:{number}").random()
    step = _STEPS[(number - 1) % len(_STEPS)]
    return (shift + client * step) % 1.0


def _drawn_kind(draw: float, config: FaultConfig) -> FaultKind | None:
    """One draw picks at most one fault, so the rates are exclusive probabilities."""
    for kind in DRAWN_KINDS:
        rate = config.rate(kind)
        if draw < rate:
            return kind
        draw -= rate
    return None
