"""Connection state machines for each side: bytes in, events out; events in, bytes out.

The allowed moves of both sides live in one table keyed by (role, state, event kind). Anything
not in the table is a protocol error and moves the side to ERROR. Beyond the table, the machines
check what a table cannot express: indices arrive in order without gap or repeat, the FINAL frame
is exactly the one at index n-1, and WELCOME agrees with the HELLO it answers.
"""

from __future__ import annotations

from enum import IntEnum, auto

from .constants import MAX_DURATION_MS, ErrorCode, FrameType, Mode
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
    NEED_DATA,
    ConnectionClosed,
    Error,
    Event,
    Hello,
    Number,
    Welcome,
    _NeedData,
)
from .frames import (
    FrameReader,
    decode_error,
    decode_hello,
    decode_number,
    decode_welcome,
    encode_data,
    encode_error,
    encode_hello,
    encode_number,
    encode_welcome,
    take_doubling_data,
    take_stateful_data,
)


class Role(IntEnum):
    CLIENT = auto()
    SERVER = auto()


class State(IntEnum):
    IDLE = auto()  # client: nothing sent yet
    AWAIT_HELLO = auto()  # server: waiting for the client's HELLO
    AWAIT_WELCOME = auto()  # client: HELLO sent
    HELLO_RECEIVED = auto()  # server: must answer with WELCOME or ERROR
    STREAMING = auto()  # numbers flow from server to client
    DONE = auto()  # FINAL sent or received
    CLOSED = auto()  # ERROR sent/received, or the peer closed
    ERROR = auto()  # a protocol violation happened; nothing more may pass


class Kind(IntEnum):
    """Event kinds as the table sees them (a Number splits into DATA and FINAL).

    IntEnums, like Role and State, because the table is consulted for every number and int
    hashing is several times faster than Enum's.
    """

    HELLO = auto()
    WELCOME = auto()
    DATA = auto()
    FINAL = auto()
    ERROR = auto()
    EOF = auto()


#: (role, state, kind, direction) -> next state. direction is "send" or "receive".
TRANSITIONS: dict[tuple[Role, State, Kind, str], State] = {
    (Role.CLIENT, State.IDLE, Kind.HELLO, "send"): State.AWAIT_WELCOME,
    (Role.CLIENT, State.AWAIT_WELCOME, Kind.WELCOME, "receive"): State.STREAMING,
    (Role.CLIENT, State.AWAIT_WELCOME, Kind.ERROR, "receive"): State.CLOSED,
    (Role.CLIENT, State.AWAIT_WELCOME, Kind.EOF, "receive"): State.CLOSED,
    (Role.CLIENT, State.STREAMING, Kind.DATA, "receive"): State.STREAMING,
    (Role.CLIENT, State.STREAMING, Kind.FINAL, "receive"): State.DONE,
    (Role.CLIENT, State.STREAMING, Kind.ERROR, "receive"): State.CLOSED,
    (Role.CLIENT, State.STREAMING, Kind.EOF, "receive"): State.CLOSED,
    (Role.SERVER, State.AWAIT_HELLO, Kind.HELLO, "receive"): State.HELLO_RECEIVED,
    (Role.SERVER, State.AWAIT_HELLO, Kind.EOF, "receive"): State.CLOSED,
    (Role.SERVER, State.AWAIT_HELLO, Kind.ERROR, "send"): State.CLOSED,
    (Role.SERVER, State.HELLO_RECEIVED, Kind.WELCOME, "send"): State.STREAMING,
    (Role.SERVER, State.HELLO_RECEIVED, Kind.ERROR, "send"): State.CLOSED,
    (Role.SERVER, State.HELLO_RECEIVED, Kind.EOF, "receive"): State.CLOSED,
    (Role.SERVER, State.STREAMING, Kind.DATA, "send"): State.STREAMING,
    (Role.SERVER, State.STREAMING, Kind.FINAL, "send"): State.DONE,
    (Role.SERVER, State.STREAMING, Kind.ERROR, "send"): State.CLOSED,
    (Role.SERVER, State.STREAMING, Kind.EOF, "receive"): State.CLOSED,
    (Role.SERVER, State.DONE, Kind.EOF, "receive"): State.CLOSED,
}


def kind_of(event: Event) -> Kind:
    if isinstance(event, Hello):
        return Kind.HELLO
    if isinstance(event, Welcome):
        return Kind.WELCOME
    if isinstance(event, Number):
        return Kind.FINAL if event.final else Kind.DATA
    if isinstance(event, Error):
        return Kind.ERROR
    return Kind.EOF


_FRAME_KIND = {
    FrameType.HELLO: Kind.HELLO,
    FrameType.WELCOME: Kind.WELCOME,
    FrameType.DATA: Kind.DATA,
    FrameType.FINAL: Kind.FINAL,
    FrameType.ERROR: Kind.ERROR,
}


class _Connection:
    role: Role

    def __init__(self, initial: State) -> None:
        self._state = initial
        self._reader = FrameReader()
        self._mode: Mode | None = None
        self._n = 0
        self._next_index = 0
        self._peer_broke = False

    @property
    def state(self) -> State:
        return self._state

    @property
    def mode(self) -> Mode | None:
        return self._mode

    @property
    def next_index(self) -> int:
        """Index of the next number expected (client) or due (server)."""
        return self._next_index

    @property
    def n(self) -> int:
        return self._n

    @property
    def trailing_data(self) -> int:
        """Bytes received but not yet consumed by any event (as h11's ``trailing_data``)."""
        return self._reader.buffered

    def _move(self, kind: Kind, direction: str, error: type[ProtocolError]) -> None:
        target = TRANSITIONS.get((self.role, self._state, kind, direction))
        if target is None:
            previous = self._state
            self._enter_error(peer_broke=error is RemoteProtocolError)
            raise error(
                f"{self.role.name.lower()} cannot {direction} {kind.name} in state {previous.name}",
                ErrorCode.UNEXPECTED_FRAME,
            )
        self._state = target

    def _fail(self, exc: ProtocolError) -> ProtocolError:
        self._enter_error(peer_broke=isinstance(exc, RemoteProtocolError))
        return exc

    def _enter_error(self, *, peer_broke: bool) -> None:
        """ERROR is terminal, except that a side which could send ERROR may still explain why."""
        self._peer_broke = peer_broke and (
            (self.role, self._state, Kind.ERROR, "send") in TRANSITIONS
        )
        self._state = State.ERROR

    # --- receiving ----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the transport; ``b""`` means EOF, as in h11.

        A client that has received FINAL reads nothing more (spec §5.5, §10): whatever is fed
        then is discarded, never judged.
        """
        if self._state is State.ERROR:
            raise LocalProtocolError("connection is in ERROR state")
        if self.role is Role.CLIENT and self._state is State.DONE:
            return
        if data:
            self._reader.feed(data)
        else:
            self._reader.feed_eof()

    def next_event(self) -> Event | _NeedData:
        """The next event from the bytes fed so far, or NEED_DATA."""
        if self._state is State.ERROR:
            raise LocalProtocolError("connection is in ERROR state")
        if self.role is Role.CLIENT and self._state is State.DONE:
            self._reader.discard()  # bytes after FINAL are no violation: they are not read
            return NEED_DATA
        try:
            item = self._reader.next_frame()
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None
        if item is None:
            if self._reader.eof and self._state is not State.CLOSED:
                self._move(Kind.EOF, "receive", RemoteProtocolError)
                return ConnectionClosed()
            return NEED_DATA
        frame_type, payload = item
        kind = _FRAME_KIND[frame_type]
        if (self.role, self._state, kind, "receive") not in TRANSITIONS:
            self._move(kind, "receive", RemoteProtocolError)  # raises
        try:
            event = self._decode(kind, payload)
            self._check_received(event)
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None
        self._move(kind, "receive", RemoteProtocolError)
        return event

    def _decode(self, kind: Kind, payload: bytes) -> Event:
        if kind is Kind.HELLO:
            return decode_hello(payload)
        if kind is Kind.WELCOME:
            return decode_welcome(payload)
        if kind is Kind.ERROR:
            return decode_error(payload)
        assert self._mode is not None  # the table admits numbers only after WELCOME
        return decode_number(payload, final=kind is Kind.FINAL, mode=self._mode)

    def _check_received(self, event: Event) -> None:
        raise NotImplementedError

    # --- sending ------------------------------------------------------------------------------

    def send(self, event: Hello | Welcome | Number | Error) -> bytes:
        """Bytes to write for ``event``; raises LocalProtocolError if the protocol forbids it.

        After the *peer* broke the protocol, one ERROR frame may still be sent to tell it why.
        """
        if self._state is State.ERROR:
            if self._peer_broke and isinstance(event, Error):
                self._peer_broke = False
                self._state = State.CLOSED
                return encode_error(event)
            raise LocalProtocolError("connection is in ERROR state")
        kind = kind_of(event)
        if (self.role, self._state, kind, "send") not in TRANSITIONS:
            self._move(kind, "send", LocalProtocolError)  # raises
        try:
            data = self._encode(event)
        except LocalProtocolError as exc:
            raise self._fail(exc) from None
        self._move(kind, "send", LocalProtocolError)
        return data

    def _encode(self, event: Hello | Welcome | Number | Error) -> bytes:
        raise NotImplementedError

    def _check_number(self, number: Number, error: type[ProtocolError]) -> None:
        if number.index != self._next_index:
            raise error(
                f"number index {number.index} where {self._next_index} was due",
                ErrorCode.INVALID_INDEX,
            )
        is_last = number.index == self._n - 1
        if number.final != is_last:
            raise error(
                f"index {number.index} of n={self._n} must {'' if is_last else 'not '}be FINAL",
                ErrorCode.UNEXPECTED_FRAME,
            )
        needs_checksum = number.final and self._mode is Mode.STATEFUL
        if (number.checksum is not None) != needs_checksum:
            raise error("checksum present exactly on a stateful FINAL frame")
        self._next_index += 1


class ClientConnection(_Connection):
    """The client's side: send one HELLO, then receive WELCOME and the numbers."""

    role = Role.CLIENT

    def __init__(self) -> None:
        super().__init__(State.IDLE)
        self._hello: Hello | None = None

    @property
    def welcome_received(self) -> bool:
        """Whether this connection got its WELCOME, however it went on (DONE, CLOSED, ERROR).

        A connection that got one held the session, so its loss starts the TTL (spec §16.4).
        """
        return self._mode is not None  # set by the WELCOME, and only by it, on a client

    def next_data_run(self, a: int = 0) -> tuple[int, int, bytes]:
        """Take a run of DATA frames in bulk: ``(first index, count, values)``; count 0 when
        the next frame is not one (then ``next_event`` takes it, with its checks and errors).

        The fast path of a client reading a long stream: the run is the frames that
        ``next_event`` would turn into DATA numbers passing every check, with the same change
        of state, minus one event per frame. Stateful: values are the run's values as 4-byte
        big-endian integers (what the checksum hashes, spec §7.4). Stateless: only frames whose
        value is exactly ``a·2^index`` (the client's own verification, §7.3) are taken, and
        values is empty (a·2^index is known). FINAL is never part of a run.
        """
        if self._state is not State.STREAMING or self._mode is None:
            return self._next_index, 0, b""
        first = self._next_index
        stop = self._n - 1  # FINAL goes through next_event
        if self._mode is Mode.STATEFUL:
            count, values = take_stateful_data(self._reader, first, stop)
        else:
            count, values = take_doubling_data(self._reader, a, first, stop), b""
        self._next_index = first + count
        return first, count, values

    def _encode(self, event: Hello | Welcome | Number | Error) -> bytes:
        assert isinstance(event, Hello)  # the table lets a client send nothing else
        self._hello = event
        return encode_hello(event)

    def _check_received(self, event: Event) -> None:
        if isinstance(event, Welcome):
            hello = self._hello
            assert hello is not None
            # §5.4 checks 10-14, in the table's order (1-9 ran when the WELCOME was decoded).
            if event.mode is not hello.mode or event.n != hello.n:
                raise RemoteProtocolError("WELCOME does not match the HELLO's mode and n")
            if event.next_index != hello.next_index:
                raise RemoteProtocolError(
                    f"WELCOME resumes at {event.next_index}, HELLO asked for {hello.next_index}",
                    ErrorCode.INVALID_INDEX,
                )
            if hello.resume and hello.mode is Mode.STATELESS and event.a != hello.a:
                raise RemoteProtocolError("WELCOME changed a on a stateless resume")
            _check_durations(event, RemoteProtocolError)
            self._mode = event.mode
            self._n = event.n
            self._next_index = event.next_index
        elif isinstance(event, Number):
            self._check_number(event, RemoteProtocolError)


class ServerConnection(_Connection):
    """The server's side: receive one HELLO, answer WELCOME or ERROR, then send numbers."""

    role = Role.SERVER

    def __init__(self) -> None:
        super().__init__(State.AWAIT_HELLO)

    def _check_received(self, event: Event) -> None:
        """HELLO's field checks already ran when the event was built."""

    def send_data(self, value: int) -> bytes:
        """Bytes of the next number, which must not be the final one: the hot path.

        Equivalent to ``send(Number(index=next_index, value=value))`` for every index but n-1,
        without building an event; anything else (wrong state, the final index) goes through
        ``send`` and its checks. Raises LocalProtocolError as ``send`` does.
        """
        index = self._next_index
        if self._state is not State.STREAMING or index >= self._n - 1 or self._mode is None:
            return self.send(Number(index=index, value=value))
        try:
            data = encode_data(index, value, self._mode)
        except LocalProtocolError as exc:
            raise self._fail(exc) from None
        self._next_index = index + 1
        return data

    def _encode(self, event: Hello | Welcome | Number | Error) -> bytes:
        if isinstance(event, Welcome):
            _check_durations(event, LocalProtocolError)
            self._mode = event.mode
            self._n = event.n
            self._next_index = event.next_index
            return encode_welcome(event)
        if isinstance(event, Error):
            return encode_error(event)
        assert isinstance(event, Number)
        assert self._mode is not None
        self._check_number(event, LocalProtocolError)
        return encode_number(event, self._mode)


def _check_durations(welcome: Welcome, error: type[ProtocolError]) -> None:
    """§5.4 checks 13-14: no announced duration exceeds MAX_DURATION_MS (§13.1)."""
    if welcome.interval_ms > MAX_DURATION_MS:
        raise error(f"interval_ms {welcome.interval_ms} exceeds {MAX_DURATION_MS}")
    if welcome.session_ttl_ms > MAX_DURATION_MS:
        raise error(f"session_ttl_ms {welcome.session_ttl_ms} exceeds {MAX_DURATION_MS}")


__all__ = [
    "NEED_DATA",
    "TRANSITIONS",
    "ClientConnection",
    "Kind",
    "Role",
    "ServerConnection",
    "State",
]
