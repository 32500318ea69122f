"""What one NSP connection carries downstream, read off its WELCOME: the proxy's sizer.

The proxy knows no protocol. The harness gives it ``nsp_shape``: from a connection's first
downstream bytes (the WELCOME, spec/PROTOCOL.md §7) it computes how many bytes the whole
connection would carry (a resumed connection carries only the rest of the stream) and where each
frame starts, so that a fault drawn at a point uniform in [0, 1) strikes a uniform byte of that
connection, and so that every fault can be named by the frame it hit.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from dataclasses import dataclass, field

from proxy import FramePosition
from reference.protocol import Mode
from reference.protocol.constants import CHECKSUM_SIZE, HEADER_SIZE, FrameType
from reference.protocol.errors import RemoteProtocolError
from reference.protocol.frames import (
    STATEFUL_DATA_SIZE,
    STATEFUL_FINAL_SIZE,
    WELCOME_SIZE,
    decode_welcome,
)

_HEADER = struct.Struct(">BH")
#: The whole WELCOME frame: header and payload.
WELCOME_FRAME_BYTES = HEADER_SIZE + WELCOME_SIZE
#: A stateless DATA/FINAL frame besides its value's bytes: header and u32 index.
STATELESS_OVERHEAD = HEADER_SIZE + 4
STATEFUL_DATA_FRAME = HEADER_SIZE + STATEFUL_DATA_SIZE
STATEFUL_FINAL_FRAME = HEADER_SIZE + STATEFUL_FINAL_SIZE
assert STATEFUL_FINAL_FRAME == STATEFUL_DATA_FRAME + CHECKSUM_SIZE


def stateless_frame_bytes(a: int, index: int) -> int:
    """Bytes of the frame carrying a·2^index: its value in minimal big-endian bytes."""
    return STATELESS_OVERHEAD + ((a.bit_length() + index + 7) // 8)


@dataclass(frozen=True, slots=True)
class NoStream:
    """A connection that carries no stream data (an ERROR instead of a WELCOME, garbage)."""

    label: str = "none"
    size: int = 0

    def locate(self, offset: int) -> FramePosition:
        return FramePosition(frame_index=0, frame="none")


@dataclass(frozen=True, slots=True)
class NspShape:
    """One connection's downstream: the WELCOME, then frames ``next_index`` .. ``n - 1``.

    ``ends[k]``: the offset just past frame ``next_index + k``.
    """

    mode: Mode
    n: int
    next_index: int
    a: int
    ends: tuple[int, ...] = field(repr=False)

    @property
    def label(self) -> str:
        return self.mode.name.lower()

    @property
    def size(self) -> int:
        return self.ends[-1] if self.ends else WELCOME_FRAME_BYTES

    def locate(self, offset: int) -> FramePosition:
        """The frame holding byte ``offset``: the first frame that does not arrive whole when
        the connection is cut just before that byte (``welcome``: the number frames are then
        counted from ``next_index``, the first number the client lacks)."""
        if offset < WELCOME_FRAME_BYTES:
            return FramePosition(frame_index=self.next_index, frame="welcome")
        k = bisect.bisect_right(self.ends, offset)
        index = self.next_index + min(k, len(self.ends) - 1)
        return FramePosition(frame_index=index, frame="final" if index == self.n - 1 else "data")


def nsp_shape(prefix: bytes) -> NspShape | NoStream | None:
    """The shape of a connection from its first downstream bytes; None while more are needed."""
    if len(prefix) < HEADER_SIZE:
        return None
    frame_type, length = _HEADER.unpack_from(prefix)
    if frame_type != FrameType.WELCOME or length != WELCOME_SIZE:
        return NoStream()
    if len(prefix) < WELCOME_FRAME_BYTES:
        return None
    try:
        welcome = decode_welcome(prefix[HEADER_SIZE:WELCOME_FRAME_BYTES])
    except RemoteProtocolError:
        return NoStream()
    return shape_of(welcome.mode, welcome.n, welcome.next_index, welcome.a)


def shape_of(mode: Mode, n: int, next_index: int, a: int) -> NspShape:
    """The frames of a connection streaming ``next_index`` .. ``n - 1`` after its WELCOME."""
    indices = range(next_index, n)
    if mode is Mode.STATEFUL:
        sizes = [
            STATEFUL_FINAL_FRAME if index == n - 1 else STATEFUL_DATA_FRAME for index in indices
        ]
    else:
        sizes = [stateless_frame_bytes(a, index) for index in indices]
    ends = tuple(itertools.accumulate(sizes, initial=WELCOME_FRAME_BYTES))[1:]
    return NspShape(mode=mode, n=n, next_index=next_index, a=a, ends=ends)
