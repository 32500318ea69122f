"""``ClientConnection.next_data_run``: runs of DATA frames taken in bulk (issue 10 point 5).

The bulk path must be invisible except for speed: fed the same bytes in the same chunks, a
client that takes runs wherever it can accepts exactly the numbers, and ends in exactly the
state and error, of a client that takes every frame through ``next_event`` and verifies each
value itself (stateless: a·2^index; stateful: the checksum of the values). Streams are built
here with ``struct`` from the documented layout, then damaged (a byte changed, bytes cut) and
fed in random chunks.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from reference.protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    Error,
    Hello,
    Mode,
    Number,
    RemoteProtocolError,
    State,
    Welcome,
    stateful_value,
)

T_WELCOME, T_DATA, T_FINAL = 2, 3, 4
CID = str(uuid.UUID(int=7, version=4))


def _frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


def _stream(mode: Mode, n: int, a: int, seed: int) -> bytes:
    """WELCOME and every number of a correct stream, from the spec's layouts."""
    welcome = struct.pack(">BBBIIIII", 1, mode, 0, n, 0, 0, a if mode is Mode.STATELESS else 0, 0)
    out = [_frame(T_WELCOME, welcome)]
    digest = hashlib.sha256()
    for index in range(n):
        kind = T_FINAL if index == n - 1 else T_DATA
        if mode is Mode.STATELESS:
            value = a << index
            payload = struct.pack(">I", index) + value.to_bytes((value.bit_length() + 7) // 8)
        else:
            value = stateful_value(seed, index)
            digest.update(struct.pack(">I", value))
            tail = digest.digest() if kind == T_FINAL else b""
            payload = struct.pack(">II", index, value) + tail
        out.append(_frame(kind, payload))
    return b"".join(out)


@dataclass
class _Outcome:
    indices: list[int] = field(default_factory=list)
    digest: bytes = b""
    end: str = "need data"


def _accept(event: object, mode: Mode, a: int, outcome: _Outcome, values: Any) -> bool:
    """A number (verified as the client does), an ERROR or the EOF into ``outcome``; False: stop."""
    if isinstance(event, ConnectionClosed | Error):
        outcome.end = repr(event)
        return False
    assert isinstance(event, Number)
    if mode is Mode.STATELESS and event.value != a << event.index:
        outcome.end = f"not a·2^{event.index}"
        return False
    outcome.indices.append(event.index)
    values.update(struct.pack(">I", event.value) if mode is Mode.STATEFUL else b"")
    if event.final:
        outcome.end = "final"
    return True


def _run(mode: Mode, n: int, chunks: list[bytes], *, bulk: bool) -> _Outcome:
    """Feed ``chunks`` (the last one b"", EOF) to a client: what it accepted, how it ended."""
    conn = ClientConnection()
    hello = Hello(mode=mode, n=n, client_id=CID) if mode is Mode.STATEFUL else Hello(mode=mode, n=n)
    conn.send(hello)
    outcome = _Outcome()
    values = hashlib.sha256()
    a = 0  # as the (possibly damaged) WELCOME announces it
    pending = list(chunks)
    try:
        while True:
            if bulk and conn.state is State.STREAMING:
                first, count, run = conn.next_data_run(a)
                if count:
                    outcome.indices.extend(range(first, first + count))
                    values.update(run)
                    continue
            event = conn.next_event()
            if event is NEED_DATA:
                if conn.state is State.DONE or not pending:
                    break
                conn.receive_data(pending.pop(0))
            elif isinstance(event, Welcome):
                a = event.a
            elif not _accept(event, mode, a, outcome, values):
                break
    except RemoteProtocolError as exc:
        outcome.end = f"error {exc.error_code}"
    outcome.digest = values.digest()
    return outcome


@st.composite
def _damaged_streams(draw: st.DrawFn) -> tuple[Mode, int, int, list[bytes]]:
    mode = draw(st.sampled_from(Mode))
    n = draw(st.integers(1, 40))
    a = draw(st.integers(1, 255))
    data = bytearray(_stream(mode, n, a, draw(st.integers(0, 2**64 - 1))))
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(0, len(data) - 1))
        data[where] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    chunks = [bytes(data[i:j]) for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    chunks = [chunk for chunk in chunks if chunk] + [b""]  # then EOF
    return mode, n, a, chunks


@given(_damaged_streams())
@example((Mode.STATELESS, 30, 255, [_stream(Mode.STATELESS, 30, 255, 0), b""]))
@example((Mode.STATEFUL, 30, 0, [_stream(Mode.STATEFUL, 30, 0, 5), b""]))
def test_runs_accept_and_refuse_exactly_what_frame_by_frame_does(
    case: tuple[Mode, int, int, list[bytes]],
) -> None:
    mode, n, _, chunks = case
    assert _run(mode, n, chunks, bulk=True) == _run(mode, n, chunks, bulk=False)


def test_an_intact_stream_is_taken_in_runs_up_to_its_final_frame() -> None:
    for mode in Mode:
        conn = ClientConnection()
        hello = Hello(mode=mode, n=50, client_id=CID) if mode is Mode.STATEFUL else None
        conn.send(hello or Hello(mode=mode, n=50))
        conn.receive_data(_stream(mode, 50, 3, 11))
        welcome = conn.next_event()
        assert conn.state is State.STREAMING, welcome
        first, count, values = conn.next_data_run(3)
        assert (first, count) == (0, 49)  # every DATA frame, and not the FINAL one
        if mode is Mode.STATEFUL:
            assert values == b"".join(struct.pack(">I", stateful_value(11, i)) for i in range(49))
        final = conn.next_event()
        assert isinstance(final, Number)
        assert final.final
        assert final.index == 49


def test_every_single_byte_change_is_judged_alike_in_runs_and_frame_by_frame() -> None:
    """Exhaustive over one small stream per mode: each byte changed two ways."""
    for mode in Mode:
        intact = _stream(mode, 20, 5, 99)
        for where in range(len(intact)):
            for flip in (0x01, 0xFF):
                data = bytearray(intact)
                data[where] ^= flip
                chunks = [bytes(data[:where]), bytes(data[where:]), b""]
                bulk = _run(mode, 20, chunks, bulk=True)
                assert bulk == _run(mode, 20, chunks, bulk=False), (mode, where, flip)
