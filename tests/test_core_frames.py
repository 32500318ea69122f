"""Frame layer of the sans-I/O core: encoders, decoders and the buffering FrameReader.

Expected bytes are built here by hand with ``struct`` from the documented layout
(``type:u8 | length:u16be | payload``) and never taken from the encoders themselves. The
reader is tested three ways (whole buffer, one byte at a time, arbitrary chunks), with
trailing bytes that must stay buffered, and with garbage that may only ever raise
RemoteProtocolError.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from reference.protocol import (
    Error,
    ErrorCode,
    FrameType,
    Hello,
    LocalProtocolError,
    Mode,
    Number,
    RemoteProtocolError,
    ServerConnection,
    State,
    Welcome,
)
from reference.protocol.events import Frame
from reference.protocol.frames import (
    FrameReader,
    decode_error,
    decode_hello,
    decode_number,
    decode_welcome,
    encode_error,
    encode_frame,
    encode_hello,
    encode_number,
    encode_welcome,
)

# Wire values restated from the spec, not imported, so a wrong constant in the core shows up.
T_HELLO, T_WELCOME, T_DATA, T_FINAL, T_ERROR = 1, 2, 3, 4, 5
STATELESS, STATEFUL = 1, 2
LIMIT = 16384
U32 = 0xFFFF_FFFF
VALID_ID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"

# --- independent expectations -----------------------------------------------------------------


def frame(frame_type: int, payload: bytes) -> bytes:
    return struct.pack(">BH", frame_type, len(payload)) + payload


def minimal_be(value: int) -> bytes:
    """Minimal big-endian bytes of a positive int, via hex text rather than int.to_bytes."""
    digits = f"{value:x}"
    if len(digits) % 2:
        digits = "0" + digits
    return bytes.fromhex(digits)


def hello_payload(
    *,
    version: int = 1,
    mode: int = STATELESS,
    flags: int = 0,
    n: int = 10,
    next_index: int = 0,
    a: int = 0,
    client_id: bytes = VALID_ID.encode(),
) -> bytes:
    head = struct.pack(">BBBII", version, mode, flags, n, next_index)
    if mode == STATELESS:
        return head + struct.pack(">I", a)
    return head + client_id


def expected_hello(h: Hello) -> bytes:
    flags = 1 if h.resume else 0
    head = struct.pack(">BBBII", 1, int(h.mode), flags, h.n, h.next_index)
    tail = struct.pack(">I", h.a) if h.mode is Mode.STATELESS else h.client_id.encode("ascii")
    return frame(T_HELLO, head + tail)


def welcome_payload(
    *,
    version: int = 1,
    mode: int = STATELESS,
    flags: int = 0,
    n: int = 10,
    next_index: int = 0,
    interval: int = 1000,
    a: int = 7,
    ttl: int = 0,
) -> bytes:
    return struct.pack(">BBBIIIII", version, mode, flags, n, next_index, interval, a, ttl)


def expected_welcome(w: Welcome) -> bytes:
    return frame(
        T_WELCOME,
        welcome_payload(
            mode=int(w.mode),
            n=w.n,
            next_index=w.next_index,
            interval=w.interval_ms,
            a=w.a,
            ttl=w.session_ttl_ms,
        ),
    )


def expected_number(num: Number, mode: Mode) -> bytes:
    frame_type = T_FINAL if num.final else T_DATA
    if mode is Mode.STATELESS:
        return frame(frame_type, struct.pack(">I", num.index) + minimal_be(num.value))
    payload = struct.pack(">II", num.index, num.value)
    if num.checksum is not None:
        payload += num.checksum
    return frame(frame_type, payload)


def expected_error(e: Error) -> bytes:
    return frame(T_ERROR, struct.pack(">H", e.code) + e.message.encode("utf-8"))


def expected_bytes(event: Frame, mode: Mode) -> bytes:
    if isinstance(event, Hello):
        return expected_hello(event)
    if isinstance(event, Welcome):
        return expected_welcome(event)
    if isinstance(event, Error):
        return expected_error(event)
    return expected_number(event, mode)


def decode(frame_type: FrameType, payload: bytes, mode: Mode) -> Frame:
    if frame_type is FrameType.HELLO:
        return decode_hello(payload)
    if frame_type is FrameType.WELCOME:
        return decode_welcome(payload)
    if frame_type is FrameType.ERROR:
        return decode_error(payload)
    return decode_number(payload, final=frame_type is FrameType.FINAL, mode=mode)


def state_of(conn: ServerConnection) -> State:
    """The state, read through a call so that the type checker does not narrow it."""
    return conn.state


def drain(reader: FrameReader) -> Iterator[tuple[FrameType, bytes]]:
    while (item := reader.next_frame()) is not None:
        yield item


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[i:j] for i, j in itertools.pairwise(points)]


# --- strategies -------------------------------------------------------------------------------

client_ids = st.uuids().map(str)
ns = st.integers(1, 0xFFFF)
u32s = st.integers(0, U32)


@st.composite
def hellos(draw: st.DrawFn, mode: Mode | None = None) -> Hello:
    mode = draw(st.sampled_from(Mode)) if mode is None else mode
    n = draw(ns)
    resume = draw(st.booleans())
    next_index = draw(st.integers(0, n - 1)) if resume else 0
    if mode is Mode.STATELESS:
        a = draw(st.integers(1, 255)) if resume else 0
        return Hello(mode=mode, n=n, resume=resume, next_index=next_index, a=a)
    cid = draw(client_ids)
    return Hello(mode=mode, n=n, resume=resume, next_index=next_index, client_id=cid)


@st.composite
def welcomes(draw: st.DrawFn, mode: Mode | None = None) -> Welcome:
    mode = draw(st.sampled_from(Mode)) if mode is None else mode
    n = draw(ns)
    next_index = draw(st.integers(0, n - 1))
    interval = draw(u32s)
    if mode is Mode.STATELESS:
        a = draw(st.integers(1, 255))
        return Welcome(mode=mode, n=n, next_index=next_index, interval_ms=interval, a=a)
    ttl = draw(u32s)
    return Welcome(mode=mode, n=n, next_index=next_index, interval_ms=interval, session_ttl_ms=ttl)


#: Stateless values: small ones, 64-bit-crossing ones, and a<<k up to the largest legal k.
stateless_values = st.one_of(
    st.integers(1, 2**70),
    st.builds(lambda a, k: a << k, st.integers(1, 255), st.integers(0, 200)),
    st.builds(lambda a, k: a << k, st.integers(1, 255), st.integers(0, 65534)),
)


@st.composite
def stateless_numbers(draw: st.DrawFn) -> Number:
    return Number(index=draw(u32s), value=draw(stateless_values), final=draw(st.booleans()))


@st.composite
def stateful_numbers(draw: st.DrawFn) -> Number:
    final = draw(st.booleans())
    checksum = draw(st.binary(min_size=32, max_size=32)) if final else None
    return Number(index=draw(u32s), value=draw(u32s), final=final, checksum=checksum)


def numbers(mode: Mode) -> st.SearchStrategy[Number]:
    return stateless_numbers() if mode is Mode.STATELESS else stateful_numbers()


messages = st.text(st.characters(codec="utf-8"), max_size=1024).filter(
    lambda s: len(s.encode("utf-8")) <= 1024
)
errors = st.builds(Error, code=st.integers(0, 0xFFFF), message=messages)


def frames_for(mode: Mode) -> st.SearchStrategy[Frame]:
    return st.one_of(hellos(), welcomes(), numbers(mode), errors)


@st.composite
def mode_and_frames(draw: st.DrawFn, max_size: int = 8) -> tuple[Mode, list[Frame]]:
    mode = draw(st.sampled_from(Mode))
    return mode, draw(st.lists(frames_for(mode), min_size=1, max_size=max_size))


# --- encoding matches the documented layout, and decodes back ----------------------------------


def check_round_trip(event: Frame, mode: Mode) -> None:
    encoded = encode_frame(event, mode)
    assert encoded == expected_bytes(event, mode)
    (length,) = struct.unpack_from(">H", encoded, 1)
    assert length == len(encoded) - 3
    reader = FrameReader()
    reader.feed(encoded)
    items = list(drain(reader))
    assert len(items) == 1
    frame_type, payload = items[0]
    assert frame_type == encoded[0]
    assert payload == encoded[3:]
    assert decode(frame_type, payload, mode) == event
    assert reader.buffered == 0


@given(hellos())
@example(Hello(mode=Mode.STATELESS, n=0xFFFF, resume=True, next_index=0xFFFE, a=255))
@example(Hello(mode=Mode.STATEFUL, n=1, client_id=VALID_ID))
def test_hello_round_trip(hello: Hello) -> None:
    assert encode_hello(hello) == expected_hello(hello)
    check_round_trip(hello, Mode.STATELESS)


@given(welcomes())
@example(Welcome(mode=Mode.STATEFUL, n=1, next_index=0, interval_ms=U32, session_ttl_ms=U32))
def test_welcome_round_trip(welcome: Welcome) -> None:
    assert encode_welcome(welcome) == expected_welcome(welcome)
    check_round_trip(welcome, welcome.mode)


@given(stateless_numbers())
@example(Number(index=U32, value=1, final=True))
@example(Number(index=0, value=255 << 65534, final=True))
@example(Number(index=5, value=1 << 64))
@example(Number(index=5, value=(1 << 64) - 1))
def test_stateless_number_round_trip(number: Number) -> None:
    assert encode_number(number, Mode.STATELESS) == expected_number(number, Mode.STATELESS)
    check_round_trip(number, Mode.STATELESS)


@given(stateful_numbers())
@example(Number(index=U32, value=U32, final=True, checksum=bytes(range(32))))
@example(Number(index=0, value=0))
def test_stateful_number_round_trip(number: Number) -> None:
    assert encode_number(number, Mode.STATEFUL) == expected_number(number, Mode.STATEFUL)
    check_round_trip(number, Mode.STATEFUL)


@given(errors)
@example(Error(code=0xFFFF, message="\u20ac" * 341 + "x"))  # exactly 1024 bytes
@example(Error(code=0, message=""))
@example(Error(code=3, message="\U0001f600" * 256))  # 4-byte characters, 1024 bytes
def test_error_round_trip(error: Error) -> None:
    assert encode_error(error) == expected_error(error)
    check_round_trip(error, Mode.STATELESS)


def test_largest_stateless_frame_fits_and_round_trips() -> None:
    value = 255 << 65534
    number = Number(index=65534, value=value, final=True)
    encoded = encode_number(number, Mode.STATELESS)
    # 8 + 65534 bits = 65542 bits = 8193 bytes, plus the 4-byte index.
    assert len(encoded) == 3 + 4 + 8193
    assert encoded[:7] == struct.pack(">BHI", T_FINAL, 4 + 8193, 65534)
    # 65534 = 8 * 8191 + 6, so the value is (0xFF << 6) = 0x3FC0 followed by 8191 zero bytes.
    assert encoded[7:9] == b"\x3f\xc0"
    assert set(encoded[9:]) == {0}
    check_round_trip(number, Mode.STATELESS)


def test_stateless_value_of_exactly_the_limit_fits_and_one_byte_more_does_not() -> None:
    fits = (1 << (8 * (LIMIT - 4))) - 1  # 16380 bytes of 0xFF
    encoded = encode_number(Number(index=1, value=fits), Mode.STATELESS)
    assert encoded == frame(T_DATA, struct.pack(">I", 1) + b"\xff" * (LIMIT - 4))
    check_round_trip(Number(index=1, value=fits), Mode.STATELESS)
    with pytest.raises(LocalProtocolError):
        encode_number(Number(index=1, value=fits + 1), Mode.STATELESS)


@given(st.integers(1, 255), st.integers(0, 65534))
@settings(max_examples=40)
def test_stateless_a_shift_k_is_exact(a: int, k: int) -> None:
    """No fixed-width arithmetic anywhere: the decoded value equals a * 2**k exactly."""
    number = Number(index=k, value=a * 2**k)
    encoded = encode_number(number, Mode.STATELESS)
    assert encoded[7:] == minimal_be(a * 2**k)
    assert decode_number(encoded[3:], final=False, mode=Mode.STATELESS).value == a * 2**k


# --- the reader: whole, byte by byte, arbitrary chunks, trailing bytes -------------------------


def stream_of(mode: Mode, events: list[Frame]) -> bytes:
    return b"".join(expected_bytes(e, mode) for e in events)


def decoded(items: list[tuple[FrameType, bytes]], mode: Mode) -> list[Frame]:
    return [decode(t, p, mode) for t, p in items]


@given(mode_and_frames())
def test_reader_whole_buffer(case: tuple[Mode, list[Frame]]) -> None:
    mode, events = case
    reader = FrameReader()
    reader.feed(stream_of(mode, events))
    assert decoded(list(drain(reader)), mode) == events
    assert reader.buffered == 0
    reader.feed_eof()
    assert reader.next_frame() is None  # a clean EOF between frames is no error


@given(mode_and_frames(max_size=4))
@settings(max_examples=50)
def test_reader_one_byte_at_a_time(case: tuple[Mode, list[Frame]]) -> None:
    mode, events = case
    data = stream_of(mode, events)
    assume(len(data) < 20_000)
    reader = FrameReader()
    items: list[tuple[FrameType, bytes]] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        items.extend(drain(reader))
        # Everything fed and not yet returned is held: nothing lost, nothing invented.
        assert reader.buffered == i + 1 - sum(3 + len(p) for _, p in items)
    assert decoded(items, mode) == events


@given(mode_and_frames(), st.lists(st.integers(0, 2**20), max_size=30))
def test_reader_any_chunking(case: tuple[Mode, list[Frame]], cuts: list[int]) -> None:
    mode, events = case
    data = stream_of(mode, events)
    chunks = split_at(data, cuts)
    assert b"".join(chunks) == data
    reader = FrameReader()
    items: list[tuple[FrameType, bytes]] = []
    for chunk in chunks:
        reader.feed(chunk)
        items.extend(drain(reader))
    assert decoded(items, mode) == events
    assert reader.buffered == 0


@given(mode_and_frames(max_size=4), frames_for(Mode.STATEFUL), st.data())
def test_trailing_partial_frame_stays_buffered(
    case: tuple[Mode, list[Frame]], last: Frame, data: st.DataObject
) -> None:
    mode, events = case
    if isinstance(last, Number):
        mode = Mode.STATEFUL
        events = [e for e in events if not isinstance(e, Number)]
    tail = expected_bytes(last, mode)
    cut = data.draw(st.integers(1, len(tail) - 1), label="cut")
    reader = FrameReader()
    reader.feed(stream_of(mode, events) + tail[:cut])
    assert decoded(list(drain(reader)), mode) == events
    assert reader.buffered == cut
    assert reader.next_frame() is None
    assert reader.buffered == cut
    reader.feed(tail[cut:])
    items = list(drain(reader))
    assert decoded(items, mode) == [last]
    assert reader.buffered == 0


@given(frames_for(Mode.STATELESS), st.data())
def test_eof_inside_a_frame_is_malformed(event: Frame, data: st.DataObject) -> None:
    encoded = expected_bytes(event, Mode.STATELESS)
    cut = data.draw(st.integers(1, len(encoded) - 1), label="cut")
    reader = FrameReader()
    reader.feed(encoded[:cut])
    assert reader.next_frame() is None
    reader.feed_eof()
    assert reader.eof
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_frame()
    assert info.value.error_code is ErrorCode.MALFORMED_FRAME


def test_data_after_eof_is_refused() -> None:
    reader = FrameReader()
    reader.feed_eof()
    with pytest.raises(LocalProtocolError):
        reader.feed(b"\x05")
    assert reader.buffered == 0


@given(
    st.sampled_from([T_HELLO, T_WELCOME, T_DATA, T_FINAL, T_ERROR]), st.integers(LIMIT + 1, 0xFFFF)
)
@example(T_DATA, LIMIT + 1)
@example(T_HELLO, 0xFFFF)
def test_oversized_header_fails_after_three_bytes(frame_type: int, length: int) -> None:
    reader = FrameReader()
    header = struct.pack(">BH", frame_type, length)
    reader.feed(header[:2])
    assert reader.next_frame() is None  # cannot judge two bytes yet
    reader.feed(header[2:])
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_frame()
    assert info.value.error_code is ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize("frame_type", [T_HELLO, T_WELCOME, T_DATA, T_FINAL, T_ERROR])
def test_header_at_exactly_the_limit_waits_for_payload(frame_type: int) -> None:
    reader = FrameReader()
    reader.feed(struct.pack(">BH", frame_type, LIMIT))
    assert reader.next_frame() is None
    reader.feed(b"\x00" * (LIMIT - 1))
    assert reader.next_frame() is None
    reader.feed(b"\x00")
    item = reader.next_frame()
    assert item is not None
    assert item == (frame_type, b"\x00" * LIMIT)


@given(
    st.integers(0, 255).filter(lambda t: not 1 <= t <= 5),
    st.integers(0, 0xFFFF),
)
@example(0, 0)
@example(6, 0)
@example(0xFF, 0xFFFF)
def test_unknown_type_fails_on_the_header(frame_type: int, length: int) -> None:
    reader = FrameReader()
    reader.feed(struct.pack(">BH", frame_type, length))
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_frame()
    assert info.value.error_code is ErrorCode.MALFORMED_FRAME


def decode_everything(data: bytes, chunks: list[int]) -> None:
    """Run every decoder on whatever frames garbage contains; only peer errors may escape."""
    reader = FrameReader()
    for piece in split_at(data, chunks):
        reader.feed(piece)
        for frame_type, payload in drain(reader):
            for mode in Mode:
                with contextlib.suppress(RemoteProtocolError):
                    decode(frame_type, payload, mode)
    reader.feed_eof()
    list(drain(reader))


def outcome_of(run: Callable[[], None]) -> ErrorCode | None:
    """The wire code of the RemoteProtocolError ``run`` raised, or None; anything else escapes."""
    try:
        run()
    except RemoteProtocolError as exc:
        return exc.error_code
    return None


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
@settings(max_examples=300)
def test_garbage_only_raises_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    assert outcome_of(lambda: decode_everything(data, cuts)) in {None, *ErrorCode}


@given(
    st.sampled_from([T_HELLO, T_WELCOME, T_DATA, T_FINAL, T_ERROR]),
    st.binary(max_size=120),
)
@settings(max_examples=300)
def test_garbage_payloads_only_raise_remote_protocol_error(frame_type: int, payload: bytes) -> None:
    """Well-framed garbage reaches the payload decoders, which random bytes rarely do."""
    assert outcome_of(lambda: decode_everything(frame(frame_type, payload), [])) in {
        None,
        *ErrorCode,
    }


# --- HELLO validation: one fault at a time, each with its wire code -----------------------------

BAD_IDS: dict[str, bytes] = {
    "upper-case": VALID_ID.upper().encode(),
    "dash-replaced-by-hex": (VALID_ID[:8] + "a" + VALID_ID[9:]).encode(),
    "dashes-moved": (VALID_ID[:7] + "-" + VALID_ID[7] + VALID_ID[9:]).encode(),
    "non-hex": ("g" + VALID_ID[1:]).encode(),
    "no-dashes-padded": uuid.UUID(VALID_ID).hex.encode() + b"0000",
    "trailing-newline": (VALID_ID[:-1] + "\n").encode(),
    "non-ascii-byte": b"\xff" + VALID_ID[1:].encode(),
    "utf8-letter": "\u00e9".encode() + VALID_ID[2:].encode(),
    "nul": b"\x00" * 36,
    "spaces": b" " * 36,
}

HELLO_CASES: dict[str, tuple[bytes, ErrorCode]] = {
    "n-0": (hello_payload(n=0), ErrorCode.INVALID_N),
    "n-65536": (hello_payload(n=0x10000), ErrorCode.INVALID_N),
    "n-u32-max": (hello_payload(n=U32), ErrorCode.INVALID_N),
    "stateful-n-0": (hello_payload(mode=STATEFUL, n=0), ErrorCode.INVALID_N),
    "stateful-n-65536": (hello_payload(mode=STATEFUL, n=0x10000), ErrorCode.INVALID_N),
    "resume-a-0": (hello_payload(flags=1, a=0), ErrorCode.INVALID_A),
    "resume-a-256": (hello_payload(flags=1, a=256), ErrorCode.INVALID_A),
    "resume-a-u32-max": (hello_payload(flags=1, a=U32), ErrorCode.INVALID_A),
    "new-with-a": (hello_payload(a=1), ErrorCode.INVALID_A),
    "new-with-a-255": (hello_payload(a=255), ErrorCode.INVALID_A),
    "resume-next-index-equals-n": (
        hello_payload(flags=1, n=10, next_index=10, a=3),
        ErrorCode.INVALID_INDEX,
    ),
    "resume-next-index-u32-max": (
        hello_payload(flags=1, n=10, next_index=U32, a=3),
        ErrorCode.INVALID_INDEX,
    ),
    "stateful-resume-next-index-equals-n": (
        hello_payload(mode=STATEFUL, flags=1, n=5, next_index=5),
        ErrorCode.INVALID_INDEX,
    ),
    "new-with-next-index": (hello_payload(next_index=1), ErrorCode.INVALID_INDEX),
    "stateful-new-with-next-index": (
        hello_payload(mode=STATEFUL, next_index=1),
        ErrorCode.INVALID_INDEX,
    ),
    **{
        f"client-id-{name}": (
            hello_payload(mode=STATEFUL, client_id=raw),
            ErrorCode.INVALID_CLIENT_ID,
        )
        for name, raw in BAD_IDS.items()
    },
    "client-id-35-bytes": (
        hello_payload(mode=STATEFUL, client_id=VALID_ID[:35].encode()),
        ErrorCode.MALFORMED_FRAME,
    ),
    "client-id-37-bytes": (
        hello_payload(mode=STATEFUL, client_id=VALID_ID.encode() + b"0"),
        ErrorCode.MALFORMED_FRAME,
    ),
    "client-id-braced": (
        hello_payload(mode=STATEFUL, client_id=b"{" + VALID_ID.encode() + b"}"),
        ErrorCode.MALFORMED_FRAME,
    ),
    "mode-0": (hello_payload(mode=0)[:11] + b"\x00" * 4, ErrorCode.UNSUPPORTED_MODE),
    "mode-3": (hello_payload(mode=3)[:11] + b"\x00" * 4, ErrorCode.UNSUPPORTED_MODE),
    "mode-3-stateful-length": (
        hello_payload(mode=3)[:11] + VALID_ID.encode(),
        ErrorCode.UNSUPPORTED_MODE,
    ),
    "mode-255": (hello_payload(mode=255)[:11] + b"\x00" * 4, ErrorCode.UNSUPPORTED_MODE),
    "empty": (b"", ErrorCode.MALFORMED_FRAME),
    "version-only": (b"\x01", ErrorCode.MALFORMED_FRAME),
    "ten-bytes": (hello_payload()[:10], ErrorCode.MALFORMED_FRAME),
    "stateless-14-bytes": (hello_payload()[:14], ErrorCode.MALFORMED_FRAME),
    "stateless-16-bytes": (hello_payload() + b"\x00", ErrorCode.MALFORMED_FRAME),
    "stateless-with-stateful-length": (
        hello_payload()[:11] + VALID_ID.encode(),
        ErrorCode.MALFORMED_FRAME,
    ),
    "stateful-with-stateless-length": (
        hello_payload(mode=STATEFUL)[:15],
        ErrorCode.MALFORMED_FRAME,
    ),
}
for _bit in range(1, 8):
    HELLO_CASES[f"reserved-flag-{1 << _bit:#04x}"] = (
        hello_payload(flags=1 << _bit),
        ErrorCode.MALFORMED_FRAME,
    )
    HELLO_CASES[f"reserved-flag-{1 << _bit:#04x}-with-resume"] = (
        hello_payload(mode=STATEFUL, flags=1 | 1 << _bit),
        ErrorCode.MALFORMED_FRAME,
    )


@pytest.mark.parametrize(("payload", "code"), HELLO_CASES.values(), ids=HELLO_CASES.keys())
def test_hello_validation(payload: bytes, code: ErrorCode) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_hello(payload)
    assert info.value.error_code is code
    # The same bytes through a server connection: same code, and the side is finished.
    server = ServerConnection()
    server.receive_data(frame(T_HELLO, payload))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.error_code is code
    assert server.state is State.ERROR
    # The server still tells the client why, once, with that code; then the side is closed.
    answer = Error(code=code, message=str(info.value)[:200])
    assert server.send(answer) == frame(
        T_ERROR, struct.pack(">H", int(code)) + answer.message.encode()
    )
    assert state_of(server) is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send(answer)


@pytest.mark.parametrize(
    "payload",
    [
        hello_payload(flags=1, n=10, next_index=0, a=1),  # resume at zero is allowed
        hello_payload(flags=1, n=10, next_index=9, a=255),
        hello_payload(n=0xFFFF),
        hello_payload(mode=STATEFUL, flags=1, n=0xFFFF, next_index=0xFFFE),
    ],
)
def test_hello_boundaries_accepted(payload: bytes) -> None:
    hello = decode_hello(payload)
    assert expected_hello(hello) == frame(T_HELLO, payload)


@given(st.integers(0, 255).filter(lambda v: v != 1), st.binary(max_size=60))
@example(2, b"")
@example(2, hello_payload()[1:])
@example(2, hello_payload(mode=STATEFUL)[1:])
@example(0, hello_payload()[1:])
def test_hello_other_version_is_unsupported_at_any_length(version: int, rest: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_hello(bytes([version]) + rest)
    assert info.value.error_code is ErrorCode.UNSUPPORTED_VERSION


@given(st.integers(0, 255).filter(lambda m: m not in (1, 2)), st.binary(min_size=0, max_size=40))
def test_hello_unknown_mode_at_any_length(mode: int, rest: bytes) -> None:
    payload = hello_payload()[:1] + bytes([mode]) + b"\x00" * 9 + rest
    with pytest.raises(RemoteProtocolError) as info:
        decode_hello(payload)
    assert info.value.error_code is ErrorCode.UNSUPPORTED_MODE


# --- other decoders' validation ---------------------------------------------------------------

WELCOME_CASES: dict[str, tuple[bytes, ErrorCode]] = {
    "22-bytes": (welcome_payload()[:22], ErrorCode.MALFORMED_FRAME),
    "24-bytes": (welcome_payload() + b"\x00", ErrorCode.MALFORMED_FRAME),
    "empty": (b"", ErrorCode.MALFORMED_FRAME),
    "version-2": (welcome_payload(version=2), ErrorCode.UNSUPPORTED_VERSION),
    "version-0": (welcome_payload(version=0), ErrorCode.UNSUPPORTED_VERSION),
    "mode-0": (welcome_payload(mode=0), ErrorCode.UNSUPPORTED_MODE),
    "mode-3": (welcome_payload(mode=3), ErrorCode.UNSUPPORTED_MODE),
    "flags": (welcome_payload(flags=1), ErrorCode.MALFORMED_FRAME),
    "flags-0x80": (welcome_payload(flags=0x80), ErrorCode.MALFORMED_FRAME),
    "n-0": (welcome_payload(n=0), ErrorCode.INVALID_N),
    "n-65536": (welcome_payload(n=0x10000), ErrorCode.INVALID_N),
    "next-index-equals-n": (welcome_payload(n=4, next_index=4), ErrorCode.INVALID_INDEX),
    "stateless-a-0": (welcome_payload(a=0), ErrorCode.INVALID_A),
    "stateless-a-256": (welcome_payload(a=256), ErrorCode.INVALID_A),
    "stateless-ttl": (welcome_payload(ttl=30000), ErrorCode.MALFORMED_FRAME),
    "stateful-a": (welcome_payload(mode=STATEFUL, a=5, ttl=30000), ErrorCode.INVALID_A),
}


@pytest.mark.parametrize(("payload", "code"), WELCOME_CASES.values(), ids=WELCOME_CASES.keys())
def test_welcome_validation(payload: bytes, code: ErrorCode) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_welcome(payload)
    assert info.value.error_code is code


NUMBER_CASES: dict[str, tuple[bytes, bool, Mode]] = {
    "stateless-empty": (b"", False, Mode.STATELESS),
    "stateless-index-only": (struct.pack(">I", 0), False, Mode.STATELESS),
    "stateless-3-bytes": (b"\x00\x00\x00", True, Mode.STATELESS),
    "stateless-leading-zero": (struct.pack(">I", 0) + b"\x00\x17", False, Mode.STATELESS),
    "stateless-zero-value": (struct.pack(">I", 0) + b"\x00", True, Mode.STATELESS),
    "stateful-data-7": (struct.pack(">II", 0, 1)[:7], False, Mode.STATEFUL),
    "stateful-data-9": (struct.pack(">II", 0, 1) + b"\x00", False, Mode.STATEFUL),
    "stateful-data-with-checksum": (struct.pack(">II", 0, 1) + bytes(32), False, Mode.STATEFUL),
    "stateful-final-without-checksum": (struct.pack(">II", 0, 1), True, Mode.STATEFUL),
    "stateful-final-39": (struct.pack(">II", 0, 1) + bytes(31), True, Mode.STATEFUL),
    "stateful-final-41": (struct.pack(">II", 0, 1) + bytes(33), True, Mode.STATEFUL),
}


@pytest.mark.parametrize(
    ("payload", "final", "mode"), NUMBER_CASES.values(), ids=NUMBER_CASES.keys()
)
def test_number_validation(payload: bytes, final: bool, mode: Mode) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_number(payload, final=final, mode=mode)
    assert info.value.error_code is ErrorCode.MALFORMED_FRAME


@given(st.integers(0, U32), st.integers(1, 2**200), st.integers(1, 4))
def test_stateless_value_with_any_leading_zeros_is_rejected(
    index: int, value: int, pad: int
) -> None:
    payload = struct.pack(">I", index) + b"\x00" * pad + minimal_be(value)
    with pytest.raises(RemoteProtocolError) as info:
        decode_number(payload, final=False, mode=Mode.STATELESS)
    assert info.value.error_code is ErrorCode.MALFORMED_FRAME
    # Without the padding the same value is accepted.
    ok = decode_number(payload[:4] + payload[4 + pad :], final=False, mode=Mode.STATELESS)
    assert ok == Number(index=index, value=value)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",
        struct.pack(">H", 1) + b"x" * 1025,
        struct.pack(">H", 1) + b"\xff",
        struct.pack(">H", 1) + b"\xc3",  # truncated 2-byte sequence
        struct.pack(">H", 1) + b"\xed\xa0\x80",  # encoded surrogate: not UTF-8
    ],
    ids=["empty", "one-byte", "message-1025", "invalid-utf8", "truncated-utf8", "surrogate"],
)
def test_error_validation(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_error(payload)
    assert info.value.error_code is ErrorCode.MALFORMED_FRAME


def test_error_message_of_exactly_1024_bytes_decodes() -> None:
    payload = struct.pack(">H", 0xFFFF) + b"x" * 1024
    assert decode_error(payload) == Error(code=0xFFFF, message="x" * 1024)


# --- encoding refuses what the protocol forbids -------------------------------------------------

INVALID_EVENTS: dict[str, Callable[[], object]] = {
    "hello-version-2": lambda: Hello(mode=Mode.STATELESS, n=1, version=2),
    "hello-n-0": lambda: Hello(mode=Mode.STATELESS, n=0),
    "hello-n-65536": lambda: Hello(mode=Mode.STATELESS, n=0x10000),
    "hello-next-index-without-resume": lambda: Hello(mode=Mode.STATELESS, n=5, next_index=1),
    "hello-next-index-equals-n": lambda: Hello(
        mode=Mode.STATELESS, n=5, resume=True, next_index=5, a=1
    ),
    "hello-negative-next-index": lambda: Hello(
        mode=Mode.STATELESS, n=5, resume=True, next_index=-1, a=1
    ),
    "hello-resume-a-0": lambda: Hello(mode=Mode.STATELESS, n=5, resume=True),
    "hello-resume-a-256": lambda: Hello(mode=Mode.STATELESS, n=5, resume=True, a=256),
    "hello-new-with-a": lambda: Hello(mode=Mode.STATELESS, n=5, a=3),
    "hello-stateless-client-id": lambda: Hello(mode=Mode.STATELESS, n=5, client_id=VALID_ID),
    "hello-stateful-no-id": lambda: Hello(mode=Mode.STATEFUL, n=5),
    "hello-stateful-upper-id": lambda: Hello(mode=Mode.STATEFUL, n=5, client_id=VALID_ID.upper()),
    "hello-stateful-short-id": lambda: Hello(mode=Mode.STATEFUL, n=5, client_id=VALID_ID[:35]),
    "hello-stateful-newline-id": lambda: Hello(mode=Mode.STATEFUL, n=5, client_id=VALID_ID + "\n"),
    "hello-stateful-non-ascii-id": lambda: Hello(
        mode=Mode.STATEFUL, n=5, client_id="\u00e9" + VALID_ID[1:]
    ),
    "hello-stateful-with-a": lambda: Hello(mode=Mode.STATEFUL, n=5, a=1, client_id=VALID_ID),
    "welcome-version-2": lambda: Welcome(
        mode=Mode.STATELESS, n=1, next_index=0, interval_ms=0, a=1, version=2
    ),
    "welcome-n-0": lambda: Welcome(mode=Mode.STATELESS, n=0, next_index=0, interval_ms=0, a=1),
    "welcome-index-equals-n": lambda: Welcome(
        mode=Mode.STATELESS, n=3, next_index=3, interval_ms=0, a=1
    ),
    "welcome-interval-over-u32": lambda: Welcome(
        mode=Mode.STATELESS, n=3, next_index=0, interval_ms=U32 + 1, a=1
    ),
    "welcome-negative-interval": lambda: Welcome(
        mode=Mode.STATELESS, n=3, next_index=0, interval_ms=-1, a=1
    ),
    "welcome-stateless-a-0": lambda: Welcome(mode=Mode.STATELESS, n=3, next_index=0, interval_ms=0),
    "welcome-stateless-ttl": lambda: Welcome(
        mode=Mode.STATELESS, n=3, next_index=0, interval_ms=0, a=1, session_ttl_ms=1
    ),
    "welcome-stateful-a": lambda: Welcome(
        mode=Mode.STATEFUL, n=3, next_index=0, interval_ms=0, a=1
    ),
    "welcome-stateful-ttl-over-u32": lambda: Welcome(
        mode=Mode.STATEFUL, n=3, next_index=0, interval_ms=0, session_ttl_ms=U32 + 1
    ),
    "number-index-over-u32": lambda: Number(index=U32 + 1, value=1),
    "number-negative-index": lambda: Number(index=-1, value=1),
    "number-negative-value": lambda: Number(index=0, value=-1),
    "number-checksum-on-data": lambda: Number(index=0, value=1, checksum=bytes(32)),
    "number-short-checksum": lambda: Number(index=0, value=1, final=True, checksum=bytes(31)),
    "error-code-over-u16": lambda: Error(code=0x10000),
    "error-negative-code": lambda: Error(code=-1),
    "error-message-1025-bytes": lambda: Error(code=1, message="x" * 1025),
    "error-message-1026-bytes-multibyte": lambda: Error(code=1, message="\u00e9" * 513),
    "error-message-lone-surrogate": lambda: Error(code=1, message="bad \ud800 text"),
    "stateless-zero-value": lambda: encode_number(Number(index=0, value=0), Mode.STATELESS),
    "stateless-checksum": lambda: encode_number(
        Number(index=0, value=1, final=True, checksum=bytes(32)), Mode.STATELESS
    ),
    "stateless-too-large": lambda: encode_number(
        Number(index=0, value=1 << (8 * (LIMIT - 4))), Mode.STATELESS
    ),
    "stateful-over-u32": lambda: encode_number(Number(index=0, value=U32 + 1), Mode.STATEFUL),
    "stateful-final-without-checksum": lambda: encode_number(
        Number(index=0, value=1, final=True), Mode.STATEFUL
    ),
    "number-without-mode": lambda: encode_frame(Number(index=0, value=1)),
}


@pytest.mark.parametrize("build", INVALID_EVENTS.values(), ids=INVALID_EVENTS.keys())
def test_invalid_events_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        build()


@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=600))
def test_error_message_limit_is_in_bytes(message: str) -> None:
    size = len(message.encode("utf-8"))
    if size <= 1024:
        assert encode_error(Error(code=1, message=message)) == frame(
            T_ERROR, b"\x00\x01" + message.encode("utf-8")
        )
    else:
        with pytest.raises(LocalProtocolError):
            Error(code=1, message=message)
