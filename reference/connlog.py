"""The server's per-connection log: who connected, what they asked for, how it ended.

At info, three lines per connection (spec terms throughout)::

    [a1b2c3-7] accepted from 127.0.0.1:50412
    [a1b2c3-7] HELLO stateful n=100 resume from index 40, client id 3f2c8a4e-...
    [a1b2c3-7] ended after 1.52 s: ERROR SESSION_UNKNOWN "no session for ..."

At debug, every frame: the HELLO received (every field), the WELCOME, each DATA and the FINAL
sent, and the ERROR sent. Whether number frames are logged is decided once per connection
(``ConnectionTrace.frames``), so with debug off the hot path pays one test of ``None`` per
number and formats nothing. Every line goes through a token bucket (one for info, one for the
HELLO and ERROR lines at debug, one for number frames, so that numbers cannot crowd out the
frames that decide a connection's course), so a connection flood or a fast stream cannot flood
the log: over the rate, lines are dropped and the next line that passes says how many were.
With ``--log-format json`` each line carries its facts as fields (``event``, ``conn``, ``peer``,
``mode``, ``n``, ``resume``, ``next_index``, ``client_id``, ``code``, ``reason``, ``seconds``;
frame lines ``frame``, ``direction`` and ``index``). Peer text (ERROR messages the server
echoes, malformed client ids) is escaped by ``reference.logs`` before it reaches a terminal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.abc

from .logs import RateLimit, quoted
from .protocol import ErrorCode, Hello, Mode, Welcome

#: Life-cycle lines (info) per second, and the burst allowed before the rate applies.
INFO_RATE, INFO_BURST = 50.0, 200
#: Frame lines (debug) per second, and their burst; number frames have a bucket of their own.
DEBUG_RATE, DEBUG_BURST = 20.0, 100
#: A number wider than this is logged by its size and first hex digits, not in full (a stateless
#: value at index 65535 has 19,729 decimal digits).
_SHOWN_BITS = 64


class ConnectionLog:
    """One per server: makes a ``ConnectionTrace`` for each accepted connection."""

    def __init__(
        self, logger: logging.Logger, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self._clock = clock
        self._info = RateLimit(INFO_RATE, INFO_BURST, clock=clock)
        self._debug = RateLimit(DEBUG_RATE, DEBUG_BURST, clock=clock)
        self._numbers = RateLimit(DEBUG_RATE, DEBUG_BURST, clock=clock)

    def open(self, conn_id: str, stream: anyio.abc.ByteStream) -> ConnectionTrace:
        """Log the accept; the trace logs the rest of this connection's life."""
        trace = ConnectionTrace(self, conn_id, _peer(stream), self._clock())
        self.info(trace, "accepted from %s", trace.peer, event="accepted")
        return trace

    def info(self, trace: ConnectionTrace, message: str, *args: object, **fields: Any) -> None:
        self._emit(logging.INFO, self._info, trace, message, args, fields)

    def debug(self, trace: ConnectionTrace, message: str, *args: object, **fields: Any) -> None:
        self._emit(logging.DEBUG, self._debug, trace, message, args, fields)

    def number(self, trace: ConnectionTrace, message: str, *args: object, **fields: Any) -> None:
        """A DATA or FINAL frame sent, at debug, in the number frames' own bucket."""
        self._emit(logging.DEBUG, self._numbers, trace, message, args, fields)

    def _emit(
        self,
        level: int,
        bucket: RateLimit,
        trace: ConnectionTrace,
        message: str,
        args: tuple[object, ...],
        fields: dict[str, Any],
    ) -> None:
        if not self.logger.isEnabledFor(level) or not bucket.allow():
            return
        dropped = bucket.take_suppressed()
        if dropped:
            self.logger.log(
                level,
                "%d connection log lines dropped (over %g lines/s)",
                dropped,
                bucket.rate,
                extra={"fields": {"event": "dropped", "dropped": dropped}},
            )
        fields = {"conn": trace.conn_id, "peer": trace.peer, **fields}
        self.logger.log(level, f"[%s] {message}", trace.conn_id, *args, extra={"fields": fields})


class ConnectionTrace:
    """One connection's life: ``hello``, then ``completed`` or ``refused``, then ``close``."""

    __slots__ = ("conn_id", "fields", "log", "outcome", "peer", "started")

    def __init__(self, log: ConnectionLog, conn_id: str, peer: str, started: float) -> None:
        self.log = log
        self.conn_id = conn_id
        self.peer = peer
        self.started = started
        #: How it ended, in words; the default holds when nothing else was recorded.
        self.outcome = "client closed the connection before FINAL"
        self.fields: dict[str, Any] = {"reason": "closed"}

    def no_hello(self) -> None:
        self.outcome = "client closed the connection before its HELLO"
        self.fields = {"reason": "no_hello"}

    def hello(self, hello: Hello) -> None:
        """The HELLO summary at info (new stream or resume), every field at debug."""
        if hello.mode is Mode.STATELESS:
            who = f"a={hello.a}" if hello.resume else "new a"
        else:
            who = f"client id {hello.client_id}"
        start = f"resume from index {hello.next_index}" if hello.resume else "new stream"
        self.log.info(
            self,
            "HELLO %s n=%d %s, %s",
            hello.mode.name.lower(),
            hello.n,
            start,
            who,
            event="hello",
            mode=hello.mode.name.lower(),
            n=hello.n,
            resume=hello.resume,
            next_index=hello.next_index,
            client_id=hello.client_id or None,
        )
        self.log.debug(
            self,
            "<- HELLO version=%d mode=%s resume=%d n=%d next_index=%d a=%d client_id=%s",
            hello.version,
            hello.mode.name.lower(),
            hello.resume,
            hello.n,
            hello.next_index,
            hello.a,
            quoted(hello.client_id),
            event="frame",
            direction="in",
            frame="HELLO",
        )

    def frames(self) -> ConnectionTrace | None:
        """This trace if number frames are to be logged (debug is on), else None; asked once
        per stream, so the writer tests a local for None per frame and formats nothing."""
        return self if self.log.logger.isEnabledFor(logging.DEBUG) else None

    def welcome(self, welcome: Welcome) -> None:
        self.log.debug(
            self,
            "-> WELCOME mode=%s n=%d next_index=%d interval_ms=%d a=%d session_ttl_ms=%d",
            welcome.mode.name.lower(),
            welcome.n,
            welcome.next_index,
            welcome.interval_ms,
            welcome.a,
            welcome.session_ttl_ms,
            event="frame",
            direction="out",
            frame="WELCOME",
        )

    def data(self, index: int, value: int) -> None:
        """A DATA frame sent (spec §4.3): its index and value."""
        self.log.number(
            self,
            "-> DATA index=%d value=%s",
            index,
            _Number(value),
            event="frame",
            direction="out",
            frame="DATA",
            index=index,
        )

    def final(self, index: int, checksum: bytes | None) -> None:
        """The FINAL frame sent: the last index, and the checksum of a stateful stream."""
        self.log.number(
            self,
            "-> FINAL index=%d checksum=%s",
            index,
            "-" if checksum is None else checksum.hex(),
            event="frame",
            direction="out",
            frame="FINAL",
            index=index,
        )

    def write_stalled(self, seconds: float) -> None:
        """The server ends the connection: the client read nothing for ``seconds`` (spec §14.2)."""
        self.outcome = f"server closed it: the client read nothing for {seconds:g} s (write stall)"
        self.fields = {"reason": "write_stall"}
        self.log.info(
            self, "client stopped reading for %g s; closing", seconds, event="write_stall"
        )

    def completed(self) -> None:
        self.outcome = "stream completed (FINAL written)"
        self.fields = {"reason": "completed"}

    def refused(self, code: ErrorCode, message: str) -> None:
        """The connection ends with an ERROR frame (a rejection, a violation, the shutdown)."""
        self.outcome = f"ERROR {code.name} {quoted(message)}"
        self.fields = {"reason": "error", "code": code.name}
        self.log.debug(
            self, "-> ERROR %s %s", code.name, quoted(message), event="frame", direction="out"
        )

    def close(self) -> None:
        seconds = self.log._clock() - self.started
        self.log.info(
            self,
            "ended after %.2f s: %s",
            seconds,
            self.outcome,
            event="ended",
            seconds=round(seconds, 3),
            **self.fields,
        )


class _Number:
    """A value formatted only if its line is written: in decimal up to 64 bits, else by its
    size and leading hex digits (the decimal text of a wide stateless value is costly)."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def __str__(self) -> str:
        bits = self.value.bit_length()
        if bits <= _SHOWN_BITS:
            return str(self.value)
        return f"0x{self.value >> (bits - 32):x}... ({bits} bits)"


def _peer(stream: anyio.abc.ByteStream) -> str:
    address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return "-" if address is None else str(address)
