"""Connection state machines: every (role, state, kind, direction) against the table of
spec/PROTOCOL.md §5.5 (read from the spec itself, not from the core's TRANSITIONS), a client and
a server run back to back under Hypothesis, and hand-built server streams that break the
ordering rules the table cannot express.

Wire bytes fed to a connection are built here with ``struct`` from the documented layout
(``type:u8 | length:u16be | payload``), not with the core's encoders.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from reference.protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    Error,
    ErrorCode,
    Event,
    Hello,
    Kind,
    LocalProtocolError,
    Mode,
    Number,
    ProtocolError,
    RemoteProtocolError,
    Role,
    ServerConnection,
    State,
    Welcome,
)
from reference.protocol.connection import TRANSITIONS, _Connection
from reference.protocol.events import _NeedData

CID = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
T_HELLO, T_WELCOME, T_DATA, T_FINAL, T_ERROR = 1, 2, 3, 4, 5
U32 = 0xFFFF_FFFF
N = 2  # the grid's sessions: one DATA then one FINAL

# --- hand-built wire bytes ----------------------------------------------------------------------


def frame(frame_type: int, payload: bytes) -> bytes:
    return struct.pack(">BH", frame_type, len(payload)) + payload


def hello_bytes(h: Hello) -> bytes:
    head = struct.pack(">BBBII", 1, int(h.mode), 1 if h.resume else 0, h.n, h.next_index)
    tail = struct.pack(">I", h.a) if h.mode is Mode.STATELESS else h.client_id.encode("ascii")
    return frame(T_HELLO, head + tail)


def welcome_bytes(w: Welcome) -> bytes:
    payload = struct.pack(
        ">BBBIIIII",
        1,
        int(w.mode),
        0,
        w.n,
        w.next_index,
        w.interval_ms,
        w.a,
        w.session_ttl_ms,
    )
    return frame(T_WELCOME, payload)


def number_bytes(
    mode: Mode, index: int, value: int, *, final: bool, checksum: bytes = b""
) -> bytes:
    frame_type = T_FINAL if final else T_DATA
    if mode is Mode.STATELESS:
        size = (value.bit_length() + 7) // 8
        return frame(frame_type, struct.pack(">I", index) + value.to_bytes(size, "big"))
    return frame(frame_type, struct.pack(">II", index, value) + checksum)


def error_bytes(e: Error) -> bytes:
    return frame(T_ERROR, struct.pack(">H", e.code) + e.message.encode("utf-8"))


# --- events of a well-behaved session -------------------------------------------------------------


def value_of(mode: Mode, index: int, a: int = 7) -> int:
    if mode is Mode.STATELESS:
        return int(a * 2**index)
    return (index * 2654435761 + 12345) & U32


@cache
def checksum_of(n: int) -> bytes:
    values = [value_of(Mode.STATEFUL, i) for i in range(n)]
    return hashlib.sha256(b"".join(struct.pack(">I", v) for v in values)).digest()


def number_of(mode: Mode, index: int, n: int, a: int = 7) -> Number:
    final = index == n - 1
    checksum = checksum_of(n) if final and mode is Mode.STATEFUL else None
    return Number(index=index, value=value_of(mode, index, a), final=final, checksum=checksum)


def wire_number(mode: Mode, number: Number) -> bytes:
    return number_bytes(
        mode, number.index, number.value, final=number.final, checksum=number.checksum or b""
    )


def hello_of(mode: Mode, n: int = N) -> Hello:
    if mode is Mode.STATELESS:
        return Hello(mode=mode, n=n)
    return Hello(mode=mode, n=n, client_id=CID)


def welcome_of(hello: Hello, a: int = 7) -> Welcome:
    if hello.mode is Mode.STATELESS:
        return Welcome(
            mode=hello.mode,
            n=hello.n,
            next_index=hello.next_index,
            interval_ms=1000,
            a=hello.a if hello.resume else a,
        )
    return Welcome(
        mode=hello.mode,
        n=hello.n,
        next_index=hello.next_index,
        interval_ms=1000,
        session_ttl_ms=30_000,
    )


ERROR_EVENT = Error(code=ErrorCode.SERVER_BUSY, message="busy, retry \u2013 later")


# --- the spec's table ---------------------------------------------------------------------------

PROTOCOL_MD = Path(__file__).resolve().parent.parent / "spec" / "PROTOCOL.md"
#: The spec's state names (§5.5, "state" and "next state" columns) and the core's.
SPEC_STATES = {
    "before HELLO": State.IDLE,
    "awaiting WELCOME": State.AWAIT_WELCOME,
    "awaiting HELLO": State.AWAIT_HELLO,
    "HELLO received": State.HELLO_RECEIVED,
    "streaming": State.STREAMING,
    "done": State.DONE,
    "closed": State.CLOSED,
}
Cell = tuple[Role, State, Kind, str]


def _spec_state(text: str) -> State:
    return SPEC_STATES[re.sub(r"\s*\(.*\)$", "", text.strip())]  # "done (FINAL sent)"


def _spec_kinds(text: str) -> list[Kind]:
    """ "DATA / FINAL / ERROR / EOF" -> kinds; "—" (with any remark in brackets) -> none."""
    text = re.sub(r"\(.*\)", "", text).strip()
    return [] if text == "\u2014" else [Kind[word.strip()] for word in text.split("/")]


def spec_transitions() -> dict[Cell, State]:
    """§5.5 "What may follow what", transcribed from PROTOCOL.md's own table.

    Each row lists what a side may receive, then what it may send, and the next states in that
    order (receive entries first). The table is normative and complete: any cell not in it is
    a violation.
    """
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    section = text[text.index("### 5.5 What may follow what") :]
    section = section[: section.index("\n\n", section.index("| side |"))]
    cells: dict[Cell, State] = {}
    rows = [line for line in section.splitlines() if re.match(r"\| (client|server) \|", line)]
    assert len(rows) == 8
    for row in rows:
        side, state, receive, send, after = (c.strip() for c in row.strip("|").split("|"))
        moves = [(k, "receive") for k in _spec_kinds(receive)]
        moves += [(k, "send") for k in _spec_kinds(send)]
        targets = [_spec_state(t) for t in after.split("/")]
        if moves:
            assert len(targets) == len(moves), row
        for (kind, direction), target in zip(moves, targets, strict=False):
            cells[(Role[side.upper()], _spec_state(state), kind, direction)] = target
    return cells


SPEC_TRANSITIONS = spec_transitions()


def test_spec_table_transcription() -> None:
    """Anchors for the parse above: cells any reading of §5.5 must give."""
    assert len(SPEC_TRANSITIONS) == 19
    assert SPEC_TRANSITIONS[(Role.CLIENT, State.STREAMING, Kind.FINAL, "receive")] is State.DONE
    assert SPEC_TRANSITIONS[(Role.SERVER, State.AWAIT_HELLO, Kind.ERROR, "send")] is State.CLOSED
    # §5.5 (1.1): a client that has FINAL reads nothing more, not even EOF.
    assert not [c for c in SPEC_TRANSITIONS if c[:2] == (Role.CLIENT, State.DONE)]


def test_core_table_is_the_spec_table() -> None:
    assert dict(TRANSITIONS) == SPEC_TRANSITIONS


def poll(conn: _Connection) -> Event | _NeedData:
    return conn.next_event()


def receive(conn: _Connection, data: bytes) -> Event | _NeedData:
    conn.receive_data(data)
    return conn.next_event()


# --- driving each side into each reachable state by legitimate traffic ---------------------------

Setup = Callable[[Mode], _Connection]


def client_idle(mode: Mode) -> _Connection:
    return ClientConnection()


def client_await_welcome(mode: Mode) -> _Connection:
    client = ClientConnection()
    assert client.send(hello_of(mode)) == hello_bytes(hello_of(mode))
    return client


def client_streaming(mode: Mode) -> _Connection:
    client = client_await_welcome(mode)
    assert receive(client, welcome_bytes(welcome_of(hello_of(mode)))) == welcome_of(hello_of(mode))
    return client


def client_done(mode: Mode) -> _Connection:
    client = client_streaming(mode)
    for index in range(N):
        number = number_of(mode, index, N)
        assert receive(client, wire_number(mode, number)) == number
    return client


def client_closed_by_error_awaiting_welcome(mode: Mode) -> _Connection:
    client = client_await_welcome(mode)
    assert receive(client, error_bytes(ERROR_EVENT)) == ERROR_EVENT
    return client


def client_closed_by_error_streaming(mode: Mode) -> _Connection:
    client = client_streaming(mode)
    assert receive(client, error_bytes(ERROR_EVENT)) == ERROR_EVENT
    return client


def client_error_by_receive(mode: Mode) -> _Connection:
    client = ClientConnection()
    with pytest.raises(RemoteProtocolError):
        receive(client, wire_number(mode, number_of(mode, 0, N)))
    return client


def client_error_by_send(mode: Mode) -> _Connection:
    client = client_streaming(mode)
    with pytest.raises(LocalProtocolError):
        client.send(hello_of(mode))
    return client


def server_await_hello(mode: Mode) -> _Connection:
    return ServerConnection()


def server_hello_received(mode: Mode) -> _Connection:
    server = ServerConnection()
    assert receive(server, hello_bytes(hello_of(mode))) == hello_of(mode)
    return server


def server_streaming(mode: Mode) -> _Connection:
    server = server_hello_received(mode)
    welcome = welcome_of(hello_of(mode))
    assert server.send(welcome) == welcome_bytes(welcome)
    return server


def server_done(mode: Mode) -> _Connection:
    server = server_streaming(mode)
    for index in range(N):
        number = number_of(mode, index, N)
        assert server.send(number) == wire_number(mode, number)
    return server


def server_closed_by_error_awaiting_hello(mode: Mode) -> _Connection:
    server = ServerConnection()
    assert server.send(ERROR_EVENT) == error_bytes(ERROR_EVENT)
    return server


def server_closed_by_error_after_hello(mode: Mode) -> _Connection:
    server = server_hello_received(mode)
    assert server.send(ERROR_EVENT) == error_bytes(ERROR_EVENT)
    return server


def server_closed_by_error_streaming(mode: Mode) -> _Connection:
    server = server_streaming(mode)
    assert server.send(ERROR_EVENT) == error_bytes(ERROR_EVENT)
    return server


def server_error_by_receive(mode: Mode) -> _Connection:
    server = ServerConnection()
    with pytest.raises(RemoteProtocolError):
        receive(server, welcome_bytes(welcome_of(hello_of(mode))))
    return server


def server_error_by_send(mode: Mode) -> _Connection:
    server = ServerConnection()
    with pytest.raises(LocalProtocolError):
        server.send(number_of(mode, 0, N))
    return server


SETUPS: dict[tuple[Role, State], list[Setup]] = {
    (Role.CLIENT, State.IDLE): [client_idle],
    (Role.CLIENT, State.AWAIT_WELCOME): [client_await_welcome],
    (Role.CLIENT, State.STREAMING): [client_streaming],
    (Role.CLIENT, State.DONE): [client_done],
    (Role.CLIENT, State.CLOSED): [
        client_closed_by_error_awaiting_welcome,
        client_closed_by_error_streaming,
    ],
    (Role.CLIENT, State.ERROR): [client_error_by_receive, client_error_by_send],
    (Role.SERVER, State.AWAIT_HELLO): [server_await_hello],
    (Role.SERVER, State.HELLO_RECEIVED): [server_hello_received],
    (Role.SERVER, State.STREAMING): [server_streaming],
    (Role.SERVER, State.DONE): [server_done],
    (Role.SERVER, State.CLOSED): [
        server_closed_by_error_awaiting_hello,
        server_closed_by_error_after_hello,
        server_closed_by_error_streaming,
    ],
    (Role.SERVER, State.ERROR): [server_error_by_receive, server_error_by_send],
}


def test_every_table_entry_starts_in_a_state_reachable_for_its_role() -> None:
    for role, state, _kind, direction in SPEC_TRANSITIONS:
        assert (role, state) in SETUPS
        assert direction in ("send", "receive")
    for role in Role:
        states = {s for (r, s) in SETUPS if r is role}
        assert len(states) == 6  # the other two states belong to the other role
    # Only a client says HELLO and only a server says WELCOME or numbers.
    sent = {(r, k) for (r, _s, k, d) in SPEC_TRANSITIONS if d == "send"}
    assert sent == {
        (Role.CLIENT, Kind.HELLO),
        (Role.SERVER, Kind.WELCOME),
        (Role.SERVER, Kind.DATA),
        (Role.SERVER, Kind.FINAL),
        (Role.SERVER, Kind.ERROR),
    }


def test_setups_reach_their_states() -> None:
    for (role, state), setups in SETUPS.items():
        for setup in setups:
            for mode in Mode:
                conn = setup(mode)
                assert conn.role is role
                assert conn.state is state, setup.__name__


# --- the grid ---------------------------------------------------------------------------------


def advance_to_last(conn: _Connection, mode: Mode) -> None:
    """Legitimate DATA that leaves the state unchanged, so that FINAL becomes due."""
    if conn.state is not State.STREAMING:
        return
    while conn.next_index < conn.n - 1:
        number = number_of(mode, conn.next_index, conn.n)
        if isinstance(conn, ServerConnection):
            conn.send(number)
        else:
            assert receive(conn, wire_number(mode, number)) == number
        assert conn.state is State.STREAMING


def event_for(kind: Kind, conn: _Connection, mode: Mode) -> Event:
    """A valid event of ``kind`` that fits where ``conn`` stands, so only the table can object."""
    n = conn.n or N
    if kind is Kind.HELLO:
        return hello_of(mode)
    if kind is Kind.WELCOME:
        return welcome_of(hello_of(mode))
    if kind is Kind.DATA:
        return number_of(mode, min(conn.next_index, n - 2), n)
    if kind is Kind.FINAL:
        return number_of(mode, n - 1, n)
    if kind is Kind.ERROR:
        return ERROR_EVENT
    return ConnectionClosed()


def bytes_for(event: Event, mode: Mode) -> bytes:
    if isinstance(event, Hello):
        return hello_bytes(event)
    if isinstance(event, Welcome):
        return welcome_bytes(event)
    if isinstance(event, Number):
        return wire_number(mode, event)
    if isinstance(event, Error):
        return error_bytes(event)
    return b""


def state_of(conn: _Connection) -> State:
    """The state, read through a call so that the type checker does not narrow it."""
    return conn.state


def assert_dead(conn: _Connection, mode: Mode, *, peer_broke: bool) -> None:
    """In ERROR every verb is refused as our own misuse and the state stays ERROR.

    The one exception, an ERROR frame telling a misbehaving peer why, has its own tests
    below; here it is only checked that a side which broke the protocol itself sends none.
    """
    assert conn.state is State.ERROR
    attempts: list[Callable[[], object]] = [
        conn.next_event,
        lambda: conn.receive_data(b"\x03"),
        lambda: conn.receive_data(b""),
    ]
    for kind in (Kind.HELLO, Kind.WELCOME, Kind.DATA, Kind.FINAL):
        event = cast("Hello | Welcome | Number", event_for(kind, conn, mode))
        attempts.append(lambda event=event: conn.send(event))  # type: ignore[misc]
    if not peer_broke:
        attempts.append(lambda: conn.send(ERROR_EVENT))
    for attempt in attempts:
        with pytest.raises(LocalProtocolError):
            attempt()
        assert conn.state is State.ERROR


#: ERROR-state setups, and whether the peer (rather than this side) broke the protocol.
PEER_BROKE: dict[Setup, bool] = {
    client_error_by_receive: True,
    client_error_by_send: False,
    server_error_by_receive: True,
    server_error_by_send: False,
}


GRID = [
    pytest.param(
        setup,
        kind,
        direction,
        mode,
        id=f"{setup.__name__}-{direction}-{kind.name}-{mode.name}",
    )
    for (_role, _state), setups in SETUPS.items()
    for setup in setups
    for kind in Kind
    for direction in ("send", "receive")
    for mode in Mode
]


@pytest.mark.parametrize(("setup", "kind", "direction", "mode"), GRID)
def test_transition_grid(setup: Setup, kind: Kind, direction: str, mode: Mode) -> None:
    conn = setup(mode)
    start = conn.state
    if kind is Kind.FINAL:
        advance_to_last(conn, mode)
    assert conn.state is start
    target = SPEC_TRANSITIONS.get((conn.role, start, kind, direction))
    event = event_for(kind, conn, mode)

    if start is State.ERROR:
        assert target is None
        assert_dead(conn, mode, peer_broke=PEER_BROKE[setup])
        return

    if direction == "send":
        if target is not None:
            assert isinstance(event, Hello | Welcome | Number | Error)
            assert conn.send(event) == bytes_for(event, mode)
            assert conn.state is target
            return
        with pytest.raises(LocalProtocolError) as sent:
            conn.send(cast("Hello | Welcome | Number | Error", event))
        assert sent.value.error_code is ErrorCode.UNEXPECTED_FRAME
        assert_dead(conn, mode, peer_broke=False)
        return

    conn.receive_data(bytes_for(event, mode))
    if conn.role is Role.CLIENT and start is State.DONE:
        # §5.5: after FINAL the client reads nothing more; what follows is discarded unread.
        assert conn.next_event() is NEED_DATA
        assert conn.state is State.DONE
        return
    if target is not None:
        assert conn.next_event() == event
        assert conn.state is target
        assert conn.next_event() is NEED_DATA
        return
    if kind is Kind.EOF and start is State.CLOSED:
        # Not in the table, but deliberately no error: EOF normally follows an ERROR frame.
        assert conn.next_event() is NEED_DATA
        assert conn.state is State.CLOSED
        return
    with pytest.raises(RemoteProtocolError) as received:
        conn.next_event()
    assert received.value.error_code is ErrorCode.UNEXPECTED_FRAME
    assert_dead(conn, mode, peer_broke=True)


def violate(conn: _Connection, mode: Mode) -> ErrorCode:
    """Feed the first frame kind this side may not receive in its state; return its code."""
    start = conn.state
    for kind in (Kind.HELLO, Kind.WELCOME, Kind.DATA, Kind.FINAL, Kind.ERROR):
        if (conn.role, start, kind, "receive") not in SPEC_TRANSITIONS:
            conn.receive_data(bytes_for(event_for(kind, conn, mode), mode))
            with pytest.raises(RemoteProtocolError) as info:
                conn.next_event()
            assert conn.state is State.ERROR
            return info.value.error_code
    raise AssertionError(f"every kind is receivable in {start}")


NON_ERROR_SETUPS = [
    setup for (_r, state), setups in SETUPS.items() if state is not State.ERROR for setup in setups
]
#: A client that has FINAL reads nothing more (§5.5), so it cannot see a violation there.
CLIENT_SETUPS = [
    s for s in NON_ERROR_SETUPS if s.__name__.startswith("client") and s is not client_done
]
SERVER_SETUPS = [s for s in NON_ERROR_SETUPS if s.__name__.startswith("server")]


@pytest.mark.parametrize("setup", CLIENT_SETUPS)
def test_client_never_sends_error_even_after_a_server_violation(setup: Setup) -> None:
    """Spec 12.3: a client sends no frames other than HELLO, so it never sends an ERROR."""
    client = setup(Mode.STATELESS)
    violate(client, Mode.STATELESS)
    with pytest.raises(LocalProtocolError):
        client.send(ERROR_EVENT)
    assert client.state is State.ERROR


@pytest.mark.parametrize("setup", SERVER_SETUPS)
def test_server_answers_a_violation_with_one_error_where_error_is_sendable(setup: Setup) -> None:
    """After the client breaks the protocol the server may send one ERROR frame, carrying the
    code, but only in a state where the table lets it send ERROR: not after its own FINAL or
    ERROR, since the sender of either closes the connection right after it."""
    mode = Mode.STATEFUL
    server = setup(mode)
    start = server.state
    code = violate(server, mode)
    assert code is ErrorCode.UNEXPECTED_FRAME
    if (Role.SERVER, start, Kind.ERROR, "send") in SPEC_TRANSITIONS:
        answer = Error(code=code, message="unexpected frame")
        assert server.send(answer) == error_bytes(answer)
        assert state_of(server) is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send(ERROR_EVENT)
    assert state_of(server) is State.ERROR


@pytest.mark.parametrize("mode", Mode, ids=lambda m: m.name)
def test_server_answers_a_bad_hello_with_its_code(mode: Mode) -> None:
    server = ServerConnection()
    payload = bytearray(hello_bytes(hello_of(mode)))
    payload[3 + 3 : 3 + 7] = struct.pack(">I", 0x10000)  # n out of range
    server.receive_data(bytes(payload))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.error_code is ErrorCode.INVALID_N
    with pytest.raises(LocalProtocolError):
        server.send(welcome_of(hello_of(mode)))  # refusing this does not use up the answer
    answer = Error(code=info.value.error_code, message=str(info.value))
    assert server.send(answer) == frame(T_ERROR, b"\x00\x06" + str(info.value).encode())
    assert state_of(server) is State.CLOSED
    assert receive(server, b"") is NEED_DATA  # the client's close after reading it


@pytest.mark.parametrize(
    "setup",
    [
        client_await_welcome,
        client_streaming,
        server_await_hello,
        server_hello_received,
        server_streaming,
        server_done,
    ],
)
@pytest.mark.parametrize("mode", Mode, ids=lambda m: m.name)
def test_closed_by_eof_then_refuses_more_data(setup: Setup, mode: Mode) -> None:
    conn = setup(mode)
    assert receive(conn, b"") == ConnectionClosed()
    assert conn.state is State.CLOSED
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")  # a repeated EOF is harmless
    assert conn.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"\x05")  # bytes after EOF: the I/O layer's bug, not the peer's


@pytest.mark.parametrize("mode", Mode, ids=lambda m: m.name)
def test_client_reads_nothing_after_final(mode: Mode) -> None:
    """§5.5 and §10: bytes after FINAL, a frame, garbage or EOF, are no violation."""
    client = client_done(mode)
    for data in (wire_number(mode, number_of(mode, 0, N)), b"\xff\xff", b"\x05", b""):
        client.receive_data(data)
        assert client.next_event() is NEED_DATA
        assert client.state is State.DONE


@given(
    st.sampled_from([client_streaming, client_await_welcome, server_await_hello]),
    st.sampled_from(Mode),
    st.data(),
)
def test_eof_inside_a_frame_is_malformed(setup: Setup, mode: Mode, data: st.DataObject) -> None:
    conn = setup(mode)
    whole = (
        hello_bytes(hello_of(mode))
        if isinstance(conn, ServerConnection)
        else wire_number(mode, number_of(mode, 0, N))
        if conn.state is State.STREAMING
        else welcome_bytes(welcome_of(hello_of(mode)))
    )
    cut = data.draw(st.integers(1, len(whole) - 1), label="cut")
    assert receive(conn, whole[:cut]) is NEED_DATA
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_code is ErrorCode.MALFORMED_FRAME
    assert conn.state is State.ERROR


@given(
    st.sampled_from(NON_ERROR_SETUPS),
    st.sampled_from(Mode),
    st.binary(max_size=200),
    st.booleans(),
)
@settings(max_examples=300)
def test_garbage_from_the_peer_only_raises_remote_protocol_error(
    setup: Setup, mode: Mode, garbage: bytes, then_eof: bool
) -> None:
    conn = setup(mode)
    conn.receive_data(garbage)
    if then_eof:
        conn.receive_data(b"")
    events: list[Event] = []
    code: ErrorCode | None = None
    try:
        while not isinstance(event := conn.next_event(), _NeedData):
            events.append(event)
            assert len(events) < 200
    except RemoteProtocolError as exc:
        code = exc.error_code
    if code is not None:
        assert code in set(ErrorCode)
        assert conn.state is State.ERROR
    else:
        assert conn.state is not State.ERROR
        if setup is client_done:  # reads nothing after FINAL (§5.5)
            assert conn.state is State.DONE
            assert not events
        else:
            assert conn.state is State.CLOSED or not then_eof


messages = st.text(st.characters(codec="utf-8"), max_size=300).filter(
    lambda s: len(s.encode("utf-8")) <= 1024
)


@given(
    st.sampled_from([client_await_welcome, client_streaming]),
    st.sampled_from(Mode),
    st.integers(0, 0xFFFF),
    messages,
)
def test_error_frame_received_while_waiting_or_streaming(
    setup: Setup, mode: Mode, code: int, message: str
) -> None:
    client = setup(mode)
    error = Error(code=code, message=message)
    assert receive(client, error_bytes(error)) == error
    assert client.state is State.CLOSED
    assert receive(client, b"") is NEED_DATA  # the server's close after its ERROR
    assert client.state is State.CLOSED


# --- WELCOME must answer the HELLO ---------------------------------------------------------------


@st.composite
def hellos(draw: st.DrawFn, max_n: int = 0xFFFF) -> Hello:
    mode = draw(st.sampled_from(Mode))
    n = draw(st.integers(1, max_n))
    resume = draw(st.booleans())
    next_index = draw(st.integers(0, n - 1)) if resume else 0
    if mode is Mode.STATELESS:
        a = draw(st.integers(1, 255)) if resume else 0
        return Hello(mode=mode, n=n, resume=resume, next_index=next_index, a=a)
    return Hello(
        mode=mode, n=n, resume=resume, next_index=next_index, client_id=str(draw(st.uuids()))
    )


@st.composite
def welcome_variants(draw: st.DrawFn, hello: Hello) -> Welcome:
    """Usually the right answer, often with one or more fields changed."""
    right = welcome_of(hello, a=draw(st.integers(1, 255)))
    mode = draw(st.sampled_from([hello.mode, hello.mode, *Mode]))
    n = draw(st.sampled_from([right.n, right.n, 1, 0xFFFF, max(1, right.n - 1), right.n + 1]))
    n = min(n, 0xFFFF)
    next_index = draw(st.sampled_from([right.next_index, right.next_index, 0, n - 1]))
    next_index = min(next_index, n - 1)
    if mode is Mode.STATELESS:
        a = draw(st.sampled_from([right.a or 1, right.a or 1, 1, 255]))
        return Welcome(mode=mode, n=n, next_index=next_index, interval_ms=1000, a=a)
    return Welcome(mode=mode, n=n, next_index=next_index, interval_ms=1000, session_ttl_ms=5)


@given(st.data())
def test_welcome_must_match_hello(data: st.DataObject) -> None:
    hello = data.draw(hellos(), label="hello")
    welcome = data.draw(welcome_variants(hello), label="welcome")
    client = ClientConnection()
    client.send(hello)
    client.receive_data(welcome_bytes(welcome))
    if welcome.mode is not hello.mode or welcome.n != hello.n:
        expected: ErrorCode | None = ErrorCode.MALFORMED_FRAME
    elif welcome.next_index != hello.next_index:
        expected = ErrorCode.INVALID_INDEX
    elif hello.mode is Mode.STATELESS and hello.resume and welcome.a != hello.a:
        expected = ErrorCode.MALFORMED_FRAME
    else:
        expected = None
    if expected is None:
        assert client.next_event() == welcome
        assert client.state is State.STREAMING
        assert client.mode is hello.mode
        assert client.n == hello.n
        assert client.next_index == hello.next_index
        return
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert info.value.error_code is expected
    assert client.state is State.ERROR


@pytest.mark.parametrize("a", [1, 200, 255])
def test_fresh_stateless_welcome_may_choose_any_a(a: int) -> None:
    client = ClientConnection()
    client.send(Hello(mode=Mode.STATELESS, n=3))
    welcome = Welcome(mode=Mode.STATELESS, n=3, next_index=0, interval_ms=0, a=a)
    assert receive(client, welcome_bytes(welcome)) == welcome
    assert receive(client, number_bytes(Mode.STATELESS, 0, a, final=False)) == Number(
        index=0, value=a
    )


# --- numbers in order, FINAL exactly at n-1 ------------------------------------------------------


def ordering_outcome(
    n: int, start: int, frames: list[tuple[int, bool]]
) -> tuple[int, ErrorCode | None]:
    """Model: how many frames are accepted, then the code of the first rejected one (if any)."""
    due = start
    done = False
    for position, (index, final) in enumerate(frames):
        if done:
            return position, ErrorCode.UNEXPECTED_FRAME
        if index != due:
            return position, ErrorCode.INVALID_INDEX
        if final != (index == n - 1):
            return position, ErrorCode.UNEXPECTED_FRAME
        due += 1
        done = final
    return len(frames), None


@st.composite
def index_streams(draw: st.DrawFn) -> tuple[Mode, int, int, list[tuple[int, bool]]]:
    """A session and server frames that are mostly right, with repeats, gaps and early FINALs."""
    mode = draw(st.sampled_from(Mode))
    n = draw(st.integers(1, 12))
    start = draw(st.integers(0, n - 1))
    frames: list[tuple[int, bool]] = []
    due = start
    for _ in range(draw(st.integers(0, n - start + 2))):
        step = draw(st.sampled_from([1, 1, 1, 1, 0, 2, -1, 3]))
        index = max(0, due + step - 1)
        final = draw(st.sampled_from([index == n - 1, index == n - 1, index != n - 1]))
        frames.append((index, final))
        due = index + 1
    return mode, n, start, frames


def client_at(mode: Mode, n: int, start: int, a: int = 7) -> ClientConnection:
    if mode is Mode.STATELESS:
        hello = Hello(mode=mode, n=n, resume=start > 0, next_index=start, a=a if start else 0)
    else:
        hello = Hello(mode=mode, n=n, resume=start > 0, next_index=start, client_id=CID)
    client = ClientConnection()
    client.send(hello)
    assert receive(client, welcome_bytes(welcome_of(hello, a=a))) == welcome_of(hello, a=a)
    return client


@given(index_streams())
@example((Mode.STATELESS, 3, 0, [(0, False), (2, False)]))  # gap
@example((Mode.STATELESS, 3, 0, [(0, False), (0, False)]))  # repeat
@example((Mode.STATEFUL, 3, 1, [(2, True), (1, False)]))  # out of order
@example((Mode.STATEFUL, 3, 0, [(0, False), (1, True)]))  # FINAL too early
@example((Mode.STATELESS, 3, 0, [(0, False), (1, False), (2, False)]))  # DATA at n-1
@example((Mode.STATELESS, 1, 0, [(0, True), (1, False)]))  # anything after FINAL
def test_client_enforces_index_order_and_final_position(
    case: tuple[Mode, int, int, list[tuple[int, bool]]],
) -> None:
    mode, n, start, frames = case
    accepted, code = ordering_outcome(n, start, frames)
    client = client_at(mode, n, start)
    for position, (index, final) in enumerate(frames):
        checksum = bytes(range(32)) if final and mode is Mode.STATEFUL else b""
        value = value_of(mode, index)
        client.receive_data(number_bytes(mode, index, value, final=final, checksum=checksum))
        if position < accepted:
            event = client.next_event()
            assert isinstance(event, Number)
            assert (event.index, event.final, event.value) == (index, final, value)
            assert client.next_index == start + position + 1
            assert (client.state is State.DONE) == (index == n - 1)
            continue
        if client.state is State.DONE:  # §5.5: a client reads nothing after FINAL
            assert client.next_event() is NEED_DATA
            continue
        with pytest.raises(RemoteProtocolError) as info:
            client.next_event()
        assert info.value.error_code is code
        assert client.state is State.ERROR
        return
    assert code is None or client.state is State.DONE


@given(index_streams())
def test_server_refuses_to_send_out_of_order(
    case: tuple[Mode, int, int, list[tuple[int, bool]]],
) -> None:
    mode, n, start, frames = case
    accepted, code = ordering_outcome(n, start, frames)
    server = ServerConnection()
    hello = Hello(
        mode=mode,
        n=n,
        resume=start > 0,
        next_index=start,
        a=7 if start and mode is Mode.STATELESS else 0,
        client_id=CID if mode is Mode.STATEFUL else "",
    )
    assert receive(server, hello_bytes(hello)) == hello
    server.send(welcome_of(hello))
    for position, (index, final) in enumerate(frames):
        checksum = bytes(32) if final and mode is Mode.STATEFUL else None
        number = Number(index=index, value=value_of(mode, index), final=final, checksum=checksum)
        if position < accepted:
            assert server.send(number) == wire_number(mode, number)
            assert server.next_index == index + 1
            continue
        with pytest.raises(LocalProtocolError) as info:
            server.send(number)
        assert info.value.error_code is code
        assert server.state is State.ERROR
        return
    assert code is None


@pytest.mark.parametrize(
    ("payload_tail", "final"),
    [
        (b"", True),  # stateful FINAL without its checksum
        (bytes(31), True),
        (bytes(33), True),
        (bytes(32), False),  # stateful DATA carrying a checksum
        (b"\x00", False),
    ],
)
def test_client_rejects_wrong_stateful_payload_lengths(payload_tail: bytes, final: bool) -> None:
    client = client_at(Mode.STATEFUL, 1 if final else 2, 0)
    client.receive_data(
        frame(T_FINAL if final else T_DATA, struct.pack(">II", 0, 5) + payload_tail)
    )
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert info.value.error_code is ErrorCode.MALFORMED_FRAME
    assert client.state is State.ERROR


@pytest.mark.parametrize(
    ("number", "mode"),
    [
        (Number(index=0, value=5, final=True), Mode.STATEFUL),  # FINAL without checksum
        (Number(index=0, value=5, final=True, checksum=bytes(32)), Mode.STATELESS),
        (Number(index=0, value=U32 + 1, final=True, checksum=bytes(32)), Mode.STATEFUL),
        (Number(index=0, value=0, final=True), Mode.STATELESS),
    ],
)
def test_server_refuses_unencodable_final(number: Number, mode: Mode) -> None:
    server = ServerConnection()
    hello = hello_of(mode, n=1)
    receive(server, hello_bytes(hello))
    server.send(welcome_of(hello))
    with pytest.raises(LocalProtocolError):
        server.send(number)
    assert server.state is State.ERROR


# --- a client and a server back to back --------------------------------------------------------


class BackToBack(RuleBasedStateMachine):
    """Server bytes reach the client in arbitrary pieces; the client must see the exact session."""

    def __init__(self) -> None:
        super().__init__()
        self.client = ClientConnection()
        self.server = ServerConnection()
        self.wire = bytearray()
        self.server_closed = False
        self.eof_delivered = False
        self.hello = hello_of(Mode.STATELESS)
        self.a = 1
        self.received: list[Number] = []
        self.welcomed = False
        self.error_received: Error | None = None
        self.closed_seen = False

    @initialize(
        hello=hellos(max_n=12) | hellos(max_n=500),
        a=st.integers(1, 255),
        cut=st.integers(0, 60),
    )
    def handshake(self, hello: Hello, a: int, cut: int) -> None:
        self.hello = hello
        self.a = hello.a if hello.resume and hello.mode is Mode.STATELESS else a
        data = self.client.send(hello)
        assert data == hello_bytes(hello)
        assert self.client.state is State.AWAIT_WELCOME
        cut = min(cut, len(data) - 1)
        if cut:
            self.server.receive_data(data[:cut])
            assert self.server.next_event() is NEED_DATA
            assert self.server.state is State.AWAIT_HELLO
        assert receive(self.server, data[cut:]) == hello
        assert self.server.state is State.HELLO_RECEIVED
        self.wire += self.server.send(welcome_of(hello, a=self.a))

    def expected_number(self, index: int) -> Number:
        n = self.hello.n
        return number_of(self.hello.mode, index, n, a=self.a)

    @precondition(lambda self: self.server.state is State.STREAMING and not self.server_closed)
    @rule(count=st.integers(1, 4))
    def server_sends(self, count: int) -> None:
        for _ in range(count):
            number = self.expected_number(self.server.next_index)
            self.wire += self.server.send(number)
            if number.final:
                assert self.server.state is State.DONE
                return
            assert self.server.state is State.STREAMING

    @precondition(lambda self: self.server.state is State.STREAMING and not self.server_closed)
    @rule(code=st.sampled_from([ErrorCode.SHUTTING_DOWN, ErrorCode.SESSION_SUPERSEDED]))
    def server_gives_up(self, code: ErrorCode) -> None:
        self.wire += self.server.send(Error(code=code, message="bye"))
        assert self.server.state is State.CLOSED

    @precondition(lambda self: not self.server_closed)
    @rule(luck=st.integers(0, 3))
    def server_closes(self, luck: int) -> None:
        """Always after FINAL or ERROR; mid-stream (a drop) only now and then."""
        if self.server.state is State.STREAMING and luck:
            return
        self.server_closed = True

    @precondition(lambda self: bool(self.wire))
    @rule(size=st.integers(1, 64))
    def deliver(self, size: int) -> None:
        chunk = bytes(self.wire[:size])
        del self.wire[:size]
        self.client.receive_data(chunk)

    @precondition(lambda self: self.server_closed and not self.wire and not self.eof_delivered)
    @rule()
    def deliver_eof(self) -> None:
        self.eof_delivered = True
        self.client.receive_data(b"")

    @rule()
    def client_polls(self) -> None:
        while (event := self.client.next_event()) is not NEED_DATA:
            assert not self.closed_seen  # nothing after ConnectionClosed
            if isinstance(event, Welcome):
                assert not self.welcomed
                assert event == welcome_of(self.hello, a=self.a)
                self.welcomed = True
            elif isinstance(event, Number):
                assert self.welcomed
                assert event == self.expected_number(self.hello.next_index + len(self.received))
                self.received.append(event)
                # Checked at once, before a following EOF can move DONE on to CLOSED.
                assert (self.client.state is State.DONE) == event.final
                assert self.client.next_index == event.index + 1
            elif isinstance(event, Error):
                self.error_received = event
            else:
                assert isinstance(event, ConnectionClosed)
                assert self.eof_delivered
                self.closed_seen = True

    @invariant()
    def client_is_never_in_error(self) -> None:
        assert self.client.state is not State.ERROR
        assert self.server.state is not State.ERROR

    @invariant()
    def next_index_counts_numbers(self) -> None:
        if self.welcomed:
            assert self.client.next_index == self.hello.next_index + len(self.received)
            assert self.client.n == self.hello.n
            assert self.client.mode is self.hello.mode
        else:
            assert not self.received

    @invariant()
    def done_exactly_after_the_last_number(self) -> None:
        last = self.received[-1] if self.received else None
        finished = last is not None and last.final and last.index == self.hello.n - 1
        assert all(not number.final for number in self.received[:-1])
        if self.client.state is State.DONE:
            assert finished
        if finished:
            assert self.client.state in (State.DONE, State.CLOSED)
            assert self.client.next_index == self.hello.n
        if last is not None and last.final and self.hello.mode is Mode.STATEFUL:
            assert last.checksum == checksum_of(self.hello.n)

    @invariant()
    def closed_only_by_error_or_eof(self) -> None:
        if self.client.state is State.CLOSED:
            assert self.error_received is not None or self.closed_seen
        if self.closed_seen or self.error_received is not None:
            assert self.client.state is State.CLOSED


BackToBack.TestCase.settings = settings(max_examples=100, stateful_step_count=30)
TestBackToBack = BackToBack.TestCase


@given(hellos(max_n=40), st.integers(1, 255), st.lists(st.integers(1, 50), min_size=1))
@settings(max_examples=60)
def test_whole_session_any_chunking(hello: Hello, a: int, sizes: list[int]) -> None:
    """Every byte the server writes, split any way, yields exactly the session's events."""
    server, client = ServerConnection(), ClientConnection()
    assert receive(server, client.send(hello)) == hello
    a = hello.a if hello.resume and hello.mode is Mode.STATELESS else a
    wire = server.send(welcome_of(hello, a=a))
    for index in range(hello.next_index, hello.n):
        wire += server.send(number_of(hello.mode, index, hello.n, a=a))
    assert server.state is State.DONE
    events: list[Event] = []
    position = 0
    turn = 0
    while position < len(wire):
        size = sizes[turn % len(sizes)]
        client.receive_data(wire[position : position + size])
        position += size
        turn += 1
        while (event := client.next_event()) is not NEED_DATA:
            assert not isinstance(event, _NeedData)
            events.append(event)
    expected: list[Event] = [welcome_of(hello, a=a)]
    expected += [number_of(hello.mode, i, hello.n, a=a) for i in range(hello.next_index, hello.n)]
    assert events == expected
    client.receive_data(b"")  # after FINAL the client reads nothing more, not even EOF (§5.5)
    assert client.next_event() is NEED_DATA
    assert client.state is State.DONE
    assert client.next_index == hello.n


def test_protocol_errors_share_a_base() -> None:
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
