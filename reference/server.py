"""Reference server: one port, both variants, any number of concurrent clients.

``python -m reference.server --port 9000``. The protocol rules live in ``reference.protocol``;
this module only moves bytes, keeps time and talks to the session store.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import logging
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import TaskStatus

from .cli import (
    add_common_arguments,
    configure_logging,
    interval_seconds,
    listen_port,
    positive_float,
    positive_int,
    ttl_seconds,
)
from .protocol import (
    NEED_DATA,
    Checksum,
    ConnectionClosed,
    Error,
    ErrorCode,
    Hello,
    LocalProtocolError,
    Mode,
    Number,
    RemoteProtocolError,
    ServerConnection,
    Welcome,
    stateful_prefix_checksum,
    stateful_value,
)
from .store import SessionRecord, SessionStore, StoreError, open_store

log = logging.getLogger("reference.server")

#: Accept errors that mean "out of descriptors/memory right now": back off instead of dying.
_ACCEPT_RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_ABORTED_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO})
_RECEIVE_SIZE = 65536
#: Numbers due at the same moment (interval 0, or after a stall) are written in one batch of
#: about this many bytes, instead of one system call each.
_BATCH_BYTES = 65536
#: How long shutdown waits to tell a client SHUTTING_DOWN and release its session.
_CLEANUP_TIMEOUT = 2.0
#: A write blocked this long means the client stopped reading: treat it as gone, so its
#: session's TTL starts instead of the lease being held until the kernel gives up (minutes).
_WRITE_STALL_TIMEOUT = 10.0
#: After an ERROR frame, how long to drain the client's unread bytes so that closing does not
#: turn into a reset that destroys the ERROR frame before the client reads it.
_LINGER = 1.0


class RandomSource(Protocol):
    """Where the server's randomness comes from; tests inject a deterministic one."""

    def stateless_a(self) -> int:
        """A uniform integer in 1..255."""
        ...

    def session_seed(self) -> int:
        """A uniform 64-bit seed."""
        ...


class SystemRandomSource:
    """Cryptographically secure: seeds must not be guessable or shared by two sessions."""

    def stateless_a(self) -> int:
        return 1 + secrets.randbelow(255)

    def session_seed(self) -> int:
        return secrets.randbits(64)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    port: int = 0
    host: str = "127.0.0.1"
    interval: float = 1.0
    session_ttl: float = 30.0
    handshake_timeout: float = 5.0
    max_connections: int = 1024
    lease_refresh: float = 1.0
    modes: frozenset[Mode] = frozenset(Mode)

    @property
    def interval_ms(self) -> int:
        return round(self.interval * 1000)

    @property
    def ttl_ms(self) -> int:
        return round(self.session_ttl * 1000)

    @property
    def lease_ms(self) -> int:
        """A lease outlives one missed refresh, so a crash never shortens the TTL window."""
        return self.ttl_ms + round(self.lease_refresh * 1000)


@dataclass(slots=True)
class ServerStats:
    """Live counters, read by the harness dashboard and by tests."""

    connections_active: int = 0
    connections_total: int = 0
    streams_completed: int = 0
    errors_sent: dict[str, int] = field(default_factory=dict)


class _Rejected(Exception):
    """Ends a connection with an ERROR frame; raised where the reason becomes known."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Stream:
    """What one connection streams: the sequence, where it starts, and its session if any."""

    hello: Hello
    start: int
    a: int = 0
    session: SessionRecord | None = None
    owner: str = ""
    #: False once the session is completed or taken over: then it is not ours to release.
    holds_session: bool = False

    def value(self, index: int) -> int:
        if self.session is None:
            return self.a << index
        return stateful_value(self.session.seed, index)


class NumberServer:
    """Serves both protocol variants; ``handle`` accepts any ByteStream, so tests can inject one."""

    def __init__(
        self,
        config: ServerConfig,
        store: SessionStore,
        *,
        random_source: RandomSource | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.stats = ServerStats()
        self._random = random_source or SystemRandomSource()
        self._instance = instance_id or secrets.token_hex(6)
        self._connection_ids = itertools.count(1)
        self._shutting_down = False
        self._activity: anyio.Event | None = None

    def _notify_activity(self) -> None:
        if self._activity is not None:
            self._activity.set()
            self._activity = None

    async def wait_active(self, count: int) -> None:
        """Return once exactly ``count`` connections are open: lets tests wait for an event."""
        while self.stats.connections_active != count:
            if self._activity is None:
                self._activity = anyio.Event()
            await self._activity.wait()

    # --- accepting ------------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; reports the bound port through ``task_status``."""
        multi = await anyio.create_tcp_listener(
            local_host=self.config.host, local_port=self.config.port
        )
        try:
            port = int(multi.extra(anyio.abc.SocketAttribute.local_port))
            log.info("listening on %s:%d", self.config.host, port)
            task_status.started(port)
            async with anyio.create_task_group() as tg:
                try:
                    for listener in multi.listeners:
                        assert isinstance(listener, anyio.abc.SocketListener)
                        tg.start_soon(self._accept_loop, listener, tg)
                    await anyio.sleep_forever()
                finally:
                    self._shutting_down = True
        finally:
            with anyio.CancelScope(shield=True):
                await multi.aclose()

    async def _accept_loop(
        self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                # trio's listener wraps the OSError in BrokenResourceError; asyncio's does not.
                code = exc.errno if isinstance(exc, OSError) else getattr(exc.__cause__, "errno", 0)
                if code in _ACCEPT_ABORTED_ERRNOS:
                    continue  # that one client gave up during the handshake
                if code not in _ACCEPT_RETRY_ERRNOS:
                    raise
                log.warning("accept failed (%s); backing off 100 ms", os.strerror(code))
                await anyio.sleep(0.1)
                continue
            tg.start_soon(self.handle, stream)

    # --- one connection -------------------------------------------------------------------------

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        """Run one connection to its end; never raises for anything the peer does."""
        conn_id = f"{self._instance}-{next(self._connection_ids)}"
        self.stats.connections_total += 1
        self.stats.connections_active += 1
        self._notify_activity()
        conn = ServerConnection()
        writer = _Writer(stream)
        job: _Stream | None = None
        try:
            if self.stats.connections_active > self.config.max_connections:
                raise _Rejected(ErrorCode.SERVER_BUSY, "connection limit reached; retry later")
            hello = await self._receive_hello(stream, conn)
            if hello is None:
                return
            job = await self._admit(hello, conn_id)
            await self._run_stream(writer, conn, job)
        except _Rejected as rejection:
            await self._send_error(writer, conn, rejection.code, str(rejection))
        except RemoteProtocolError as exc:
            log.info("[%s] protocol error from client: %s", conn_id, exc)
            await self._send_error(writer, conn, exc.error_code, str(exc))
        except anyio.get_cancelled_exc_class():
            if self._shutting_down:
                with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                    await self._send_error(
                        writer, conn, ErrorCode.SHUTTING_DOWN, "server shutting down"
                    )
            raise
        except Exception:
            log.exception("[%s] internal error", conn_id)
            await self._send_error(writer, conn, ErrorCode.INTERNAL_ERROR, "internal error")
        finally:
            if job is not None and job.holds_session:  # not completed, not taken over
                with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                    await self._release(job)
            with anyio.CancelScope(shield=True):
                await stream.aclose()  # its own scope: a slow store must not skip it
            self.stats.connections_active -= 1
            self._notify_activity()

    async def _receive_hello(
        self, stream: anyio.abc.ByteStream, conn: ServerConnection
    ) -> Hello | None:
        """The client's HELLO, or None if it left first; HANDSHAKE_TIMEOUT if it dawdles."""
        with anyio.move_on_after(self.config.handshake_timeout):
            while True:
                event = conn.next_event()
                if isinstance(event, Hello):
                    if conn.trailing_data:  # arrived in the same read as the HELLO
                        raise _Rejected(
                            ErrorCode.UNEXPECTED_FRAME, "a client sends nothing after its HELLO"
                        )
                    return event
                if isinstance(event, ConnectionClosed):
                    return None
                assert event is NEED_DATA  # the table lets a server receive nothing else here
                conn.receive_data(await _receive_or_eof(stream))
        raise _Rejected(
            ErrorCode.HANDSHAKE_TIMEOUT,
            f"no HELLO within {self.config.handshake_timeout:g} s",
        )

    async def _admit(self, hello: Hello, owner: str) -> _Stream:
        """Decide what this connection streams, creating or claiming its session."""
        if hello.mode not in self.config.modes:
            raise _Rejected(
                ErrorCode.UNSUPPORTED_MODE, f"this server does not serve {hello.mode.name} mode"
            )
        if hello.mode is Mode.STATELESS:
            a = hello.a if hello.resume else self._random.stateless_a()
            return _Stream(hello=hello, start=hello.next_index, a=a)
        cfg = self.config
        try:
            existing = await self.store.get(hello.client_id)
            if existing is not None and existing.n != hello.n:
                raise _Rejected(  # checked before claiming, so a bad HELLO cannot steal a session
                    ErrorCode.SESSION_MISMATCH,
                    f"session {hello.client_id} has n={existing.n}, HELLO says n={hello.n}",
                )
            if hello.resume:
                record = await self.store.claim(hello.client_id, owner, cfg.lease_ms)
                if record is None:
                    raise _Rejected(
                        ErrorCode.SESSION_UNKNOWN,
                        f"no session for {hello.client_id}: expired, completed or never created",
                    )
            else:
                fresh = SessionRecord(seed=self._random.session_seed(), n=hello.n)
                record, _ = await self.store.open_session(
                    hello.client_id, fresh, owner, cfg.lease_ms
                )
        except StoreError as exc:
            log.warning("session store unavailable: %s", exc)
            raise _Rejected(ErrorCode.STORE_UNAVAILABLE, "session store unavailable") from exc
        job = _Stream(
            hello=hello, start=hello.next_index, session=record, owner=owner, holds_session=True
        )
        if record.n != hello.n:
            await self._release(job)
            raise _Rejected(
                ErrorCode.SESSION_MISMATCH,
                f"session {hello.client_id} has n={record.n}, HELLO says n={hello.n}",
            )
        return job

    async def _run_stream(self, writer: _Writer, conn: ServerConnection, job: _Stream) -> None:
        """Stream until FINAL or until the client leaves; raises _Rejected for a violation."""
        cfg = self.config
        hello = job.hello
        welcome = Welcome(
            mode=hello.mode,
            n=hello.n,
            next_index=job.start,
            interval_ms=cfg.interval_ms,
            a=job.a,
            session_ttl_ms=cfg.ttl_ms if job.session is not None else 0,
        )
        outcome = _Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_client, writer.stream, outcome, tg.cancel_scope)
            if job.session is not None:
                tg.start_soon(self._keep_lease, job, outcome, tg.cancel_scope)
            try:
                await self._send_numbers(writer, conn, welcome, job)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, TimeoutError):
                pass  # the client is gone (or stopped reading): its session gets released
            else:
                outcome.completed = True
            tg.cancel_scope.cancel()
        if outcome.completed:
            self.stats.streams_completed += 1
        elif outcome.rejection is not None:
            raise outcome.rejection

    async def _send_numbers(
        self, writer: _Writer, conn: ServerConnection, welcome: Welcome, job: _Stream
    ) -> None:
        """Absolute deadlines t0 + j·interval; whatever is due at once goes in one write."""
        interval = self.config.interval
        n = job.hello.n
        checksum: Checksum | None = None
        if job.session is not None:
            checksum = stateful_prefix_checksum(job.session.seed, job.start)  # vectorised, ~1 ms
        pending = [conn.send(welcome)]
        pending_bytes = 0
        t0 = anyio.current_time()
        for j, index in enumerate(range(job.start, n)):
            deadline = t0 + j * interval
            now = anyio.current_time()
            if deadline > now:
                if pending:
                    await writer.send(b"".join(pending))
                    pending, pending_bytes = [], 0
                await anyio.sleep_until(deadline)
            elif interval > 0 and now - deadline > interval:
                t0 = now - j * interval  # fell a whole interval behind: re-anchor, never burst
            value = job.value(index)
            final = index == n - 1
            digest = None
            if checksum is not None:
                checksum.update(value)
                digest = checksum.digest() if final else None
            frame = conn.send(Number(index=index, value=value, final=final, checksum=digest))
            pending.append(frame)
            pending_bytes += len(frame)
            if pending_bytes >= _BATCH_BYTES:
                await writer.send(b"".join(pending))
                pending, pending_bytes = [], 0
        if pending:
            await writer.send(b"".join(pending))
        if job.session is not None:
            with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                await self._complete(job)

    async def _watch_client(
        self, stream: anyio.abc.ByteStream, outcome: _Outcome, scope: anyio.CancelScope
    ) -> None:
        """A client sends nothing after HELLO: EOF means it left, any byte is a violation.

        The violation is reported on the first byte, without waiting for a whole frame, because
        no frame from a client is acceptable here whatever it turns out to be. The connection
        object is left alone: the sender task owns it, and feeding it EOF here could close it
        under a send that is about to run before the cancellation lands.
        """
        if await _receive_or_eof(stream):
            outcome.rejection = _Rejected(
                ErrorCode.UNEXPECTED_FRAME, "a client sends nothing after its HELLO"
            )
        scope.cancel()

    async def _keep_lease(self, job: _Stream, outcome: _Outcome, scope: anyio.CancelScope) -> None:
        """Refresh the session lease; losing it means a newer connection took the session."""
        cfg = self.config
        while True:
            await anyio.sleep(cfg.lease_refresh)
            try:
                held = await self.store.refresh(job.hello.client_id, job.owner, cfg.lease_ms)
            except StoreError as exc:
                log.warning("lease refresh failed, will retry: %s", exc)
                continue
            if not held:
                outcome.rejection = await self._lease_lost(job)
                job.holds_session = False
                scope.cancel()
                return

    async def _lease_lost(self, job: _Stream) -> _Rejected:
        """Taken over by a newer connection, or expired while the store was out of reach."""
        try:
            taken_over = await self.store.get(job.hello.client_id) is not None
        except StoreError:
            taken_over = False
        if taken_over:
            return _Rejected(
                ErrorCode.SESSION_SUPERSEDED, "a newer connection took over this session"
            )
        return _Rejected(  # retryable: the client's resume will learn the session's fate
            ErrorCode.STORE_UNAVAILABLE, "session lease lost while the store was unreachable"
        )

    async def _complete(self, job: _Stream) -> None:
        job.holds_session = False
        try:
            await self.store.complete(job.hello.client_id, job.owner)
        except StoreError as exc:
            log.warning("could not delete completed session %s: %s", job.hello.client_id, exc)

    async def _release(self, job: _Stream) -> None:
        try:
            await self.store.release(job.hello.client_id, job.owner, self.config.ttl_ms)
        except StoreError as exc:
            log.warning("could not release session %s: %s", job.hello.client_id, exc)

    async def _send_error(
        self, writer: _Writer, conn: ServerConnection, code: ErrorCode, message: str
    ) -> None:
        """Best effort: the peer may already be gone, which is fine."""
        if writer.torn:
            return  # bytes behind a half-written frame would corrupt it, not explain anything
        self.stats.errors_sent[code.name] = self.stats.errors_sent.get(code.name, 0) + 1
        stream = writer.stream
        try:
            text = message.encode("utf-8")[:1024].decode("utf-8", errors="ignore")  # bytes cap
            data = conn.send(Error(code=code, message=text))
        except LocalProtocolError:
            return  # already closed or errored: nothing may be sent
        try:
            with anyio.move_on_after(_CLEANUP_TIMEOUT):
                await stream.send(data)
                await stream.send_eof()
            with anyio.move_on_after(_LINGER):
                while await _receive_or_eof(stream):
                    pass
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


@dataclass(slots=True)
class _Outcome:
    """How the streaming task group ended, as its tasks found out."""

    completed: bool = False
    rejection: _Rejected | None = None


class _Writer:
    """Writes whole batches of frames and remembers a write that did not finish.

    A cancelled or timed-out write may have sent part of its bytes (trio's ``send_all`` can);
    after that the framing is torn, and an ERROR frame written behind it would be read as the
    rest of the broken frame. A torn connection is just closed.
    """

    __slots__ = ("stream", "torn")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.torn = False

    async def send(self, data: bytes) -> None:
        self.torn = True
        with anyio.fail_after(_WRITE_STALL_TIMEOUT):
            await self.stream.send(data)
        self.torn = False


async def _receive_or_eof(stream: anyio.abc.ByteStream) -> bytes:
    """Bytes, or b"" for EOF and resets alike: to the protocol both end the connection."""
    try:
        return await stream.receive(_RECEIVE_SIZE)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        return b""
    except OSError:
        return b""


# --- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reference.server",
        description=(
            "Serve the resumable numeric-stream protocol (spec/PROTOCOL.md) on 127.0.0.1. "
            "One port serves both variants; the client's HELLO selects one."
        ),
        epilog="Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 1 if the port or the "
        "store cannot be opened, 2 for bad arguments.",
    )
    parser.add_argument("--port", type=listen_port, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--mode",
        choices=["both", "stateless", "stateful"],
        default="both",
        help="restrict the variants served (default: both)",
    )
    parser.add_argument(
        "--interval",
        type=interval_seconds,
        default=1.0,
        metavar="SECONDS",
        help="time between numbers (default 1.0; 0 streams as fast as the client reads)",
    )
    parser.add_argument(
        "--session-ttl",
        type=ttl_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long a disconnected stateful session is kept for a resume (default 30)",
    )
    parser.add_argument(
        "--store",
        default="memory://",
        metavar="URL",
        help="session store: memory:// (default) or redis://HOST:PORT/DB to share sessions "
        "between server instances",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="how long a new connection may take to send its HELLO (default 5)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=1024,
        metavar="N",
        help="concurrent connections served; beyond this, SERVER_BUSY (default 1024)",
    )
    add_common_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    modes = frozenset(Mode) if args.mode == "both" else frozenset({Mode[args.mode.upper()]})
    return ServerConfig(
        port=args.port,
        interval=args.interval,
        session_ttl=args.session_ttl,
        handshake_timeout=args.handshake_timeout,
        max_connections=args.max_connections,
        modes=modes,
    )


async def _run(args: argparse.Namespace) -> int:
    try:
        store = await open_store(args.store)
    except (StoreError, ValueError) as exc:
        log.error("cannot open session store %s: %s", args.store, exc)
        return 1
    server = NumberServer(config_from_args(args), store)
    try:
        async with anyio.create_task_group() as tg:
            try:
                await tg.start(server.serve)
            except OSError as exc:
                log.error("cannot listen on 127.0.0.1:%d: %s", args.port, exc.strerror or exc)
                return 1
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    break
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return anyio.run(_run, args, backend=args.backend)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
