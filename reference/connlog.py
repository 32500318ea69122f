"""The server's per-connection log: who connected, what they asked for, how it ended.

At info, three lines per connection (spec terms throughout)::

    [a1b2c3-7] accepted from 127.0.0.1:50412
    [a1b2c3-7] HELLO stateful n=100 resume from index 40, client id 3f2c8a4e-...
    [a1b2c3-7] ended after 1.52 s: ERROR SESSION_UNKNOWN "no session for ..."

At debug, the frames that decide a connection's course: the HELLO received (every field) and
the ERROR sent. Number frames are not logged one by one (they are the hot path, and their count
is in the ``ended`` line's ``completed``); ``--log-level debug`` on a busy server is still
bounded. Every line goes through one token bucket per level, so a connection flood cannot
flood the log: over the rate, lines are dropped and the next line that passes says how many
were. With ``--log-format json`` each line carries its facts as fields (``event``, ``conn``,
``peer``, ``mode``, ``n``, ``resume``, ``next_index``, ``client_id``, ``code``, ``reason``,
``seconds``). Peer text (ERROR messages the server echoes, malformed client ids) is escaped
by ``reference.logs`` before it reaches a terminal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.abc

from .logs import RateLimit, quoted
from .protocol import ErrorCode, Hello, Mode

#: Life-cycle lines (info) per second, and the burst allowed before the rate applies.
INFO_RATE, INFO_BURST = 50.0, 200
#: Frame lines (debug) per second, and their burst.
DEBUG_RATE, DEBUG_BURST = 20.0, 100


class ConnectionLog:
    """One per server: makes a ``ConnectionTrace`` for each accepted connection."""

    def __init__(
        self, logger: logging.Logger, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self._clock = clock
        self._info = RateLimit(INFO_RATE, INFO_BURST, clock=clock)
        self._debug = RateLimit(DEBUG_RATE, DEBUG_BURST, clock=clock)

    def open(self, conn_id: str, stream: anyio.abc.ByteStream) -> ConnectionTrace:
        """Log the accept; the trace logs the rest of this connection's life."""
        trace = ConnectionTrace(self, conn_id, _peer(stream), self._clock())
        self.info(trace, "accepted from %s", trace.peer, event="accepted")
        return trace

    def info(self, trace: ConnectionTrace, message: str, *args: object, **fields: Any) -> None:
        self._emit(logging.INFO, self._info, trace, message, args, fields)

    def debug(self, trace: ConnectionTrace, message: str, *args: object, **fields: Any) -> None:
        self._emit(logging.DEBUG, self._debug, trace, message, args, fields)

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


def _peer(stream: anyio.abc.ByteStream) -> str:
    address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return "-" if address is None else str(address)
