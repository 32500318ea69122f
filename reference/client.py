"""Reference client: receives a whole sequence across any number of dropped connections.

``python -m reference.client --port 9000 --mode stateless -n 10``. ``run_client`` is the
programmatic API used by the tests and the harness.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the heavy imports below (reference/early.py)
    from reference import early

    early.guard()

import argparse
import json
import logging
import math
import random
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
import anyio.abc

from .cli import (
    SpecParser,
    add_common_arguments,
    add_version,
    configure_logging,
    connect_port,
    discard_stdout,
    positive_float,
    positive_int,
    program_name,
    run_program,
    stream_length,
)
from .logs import quoted
from .numbers import to_decimal
from .protocol import (
    MAX_N,
    NEED_DATA,
    Checksum,
    ClientConnection,
    Error,
    ErrorCode,
    Hello,
    Mode,
    Number,
    ProtocolError,
    State,
    Welcome,
    is_retryable,
    stateless_sum,
)

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger("reference.client")

EXIT_OK = 0
EXIT_VERIFY_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_GAVE_UP = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

_RECEIVE_SIZE = 262144


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Reconnection delays after gRPC's connection-backoff, with a cap below the session TTL.

    After k attempts in a row without progress, the next one waits
    ``min(initial * multiplier**k * uniform(1 - jitter, 1 + jitter), maximum)`` seconds: the
    jitter applies to the nominal delay and ``maximum`` caps the result (spec §15). The client
    gives up when k reaches ``max_retries``.
    """

    initial: float = 1.0
    multiplier: float = 1.6
    jitter: float = 0.2
    maximum: float = 10.0
    max_retries: int = 10

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait after ``retry`` attempts in a row without progress; at most maximum."""
        try:
            nominal = self.initial * self.multiplier**retry
        except OverflowError:  # a float power past 1e308: far beyond any cap
            nominal = math.inf
        return min(nominal * rng.uniform(1 - self.jitter, 1 + self.jitter), self.maximum)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    port: int
    mode: Mode
    n: int
    host: str = "127.0.0.1"
    client_id: str = ""
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    #: None: max(3 x the interval the server announces, min_silence).
    silence_timeout: float | None = None
    min_silence: float = 2.0
    backoff: Backoff = field(default_factory=Backoff)


class Phase(Enum):
    CONNECTING = "connecting"
    STREAMING = "connected"
    BACKING_OFF = "backing off"
    DONE = "done"
    FAILED = "failed"


class ClientObserver(Protocol):
    """Hooks for dashboards and tests; every method is called synchronously and must not block."""

    def phase(self, phase: Phase, detail: str) -> None: ...

    def attempt(self, number: int, at: float) -> None: ...

    def number(self, index: int, value: int) -> None: ...


class RunObserver(ClientObserver, Protocol):
    """An observer that does not need every value: told of numbers a run at a time.

    With one, the client takes runs of DATA frames in bulk (``ClientConnection.next_data_run``)
    and calls ``number_run`` once per run instead of ``number`` once per number, which is what
    lets it keep up with a stream at interval 0. ``number`` is still called for the FINAL one.
    """

    def number_run(self, first: int, count: int) -> None: ...


class _Silent:
    def phase(self, phase: Phase, detail: str) -> None:
        pass

    def attempt(self, number: int, at: float) -> None:
        pass

    def number(self, index: int, value: int) -> None:
        pass

    def number_run(self, first: int, count: int) -> None:
        pass


@dataclass(slots=True, kw_only=True)
class ClientResult:
    mode: Mode
    n: int
    ok: bool = False
    exit_code: int = EXIT_GAVE_UP
    reconnects: int = 0
    received: int = 0
    client_id: str = ""
    first: int | None = None
    total: int | None = None
    checksum_expected: bytes | None = None
    checksum_computed: bytes | None = None
    error: str | None = None
    final_frame_lost: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document; big numbers as decimal strings so no reader loses precision."""
        doc: dict[str, Any] = {
            "mode": self.mode.name.lower(),
            "n": self.n,
            "ok": self.ok,
            "reconnects": self.reconnects,
            "received": self.received,
            "error": self.error,
        }
        if self.mode is Mode.STATELESS:
            doc["first"] = None if self.first is None else str(self.first)
            doc["sum"] = None if self.total is None else to_decimal(self.total)
        else:
            doc["client_id"] = self.client_id
            doc["checksum_expected"] = _hex(self.checksum_expected)
            doc["checksum_computed"] = _hex(self.checksum_computed)
            doc["final_frame_lost"] = self.final_frame_lost
        return doc


def _hex(digest: bytes | None) -> str | None:
    return None if digest is None else digest.hex()


class _Retry(Exception):
    """This connection ended before FINAL in a way that allows a reconnect.

    ``told`` is True when the server ended it with an ERROR frame: it said why it stopped, so
    it did not write FINAL on this connection. ``held`` is True when the connection got its
    WELCOME, so that its loss starts the session TTL (set by ``_one_connection``). ``refused``:
    nothing listens on the server's port, the most common first-run mistake.
    """

    def __init__(self, message: str, *, told: bool = False, refused: bool = False) -> None:
        super().__init__(message)
        self.told = told
        self.refused = refused
        self.held = False


class _Fatal(Exception):
    """The server refused the request for good; ``message`` is the server's, escaped."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Receiver:
    """Running totals across connections: a sum or a checksum, never the list of numbers.

    Per-connection state (WELCOME received, FINAL received) is the protocol core's; this keeps
    what outlives a connection: what to ask for in the next HELLO, and the totals.
    """

    def __init__(self, config: ClientConfig, observer: ClientObserver) -> None:
        self.config = config
        self.observer = observer
        #: The observer, if it takes numbers a run at a time: then runs are taken in bulk.
        self.run_observer: RunObserver | None = None
        if callable(getattr(observer, "number_run", None)):
            self.run_observer = cast(RunObserver, observer)
        self.received = 0
        #: A WELCOME arrived on some connection: from then on every HELLO is a resume (§11).
        self.welcomed = False
        self.a = 0
        self.total = 0
        self.checksum = Checksum()
        self.expected: bytes | None = None
        self.session_ttl = 0.0
        #: When the last complete frame (WELCOME or number) arrived: the §12.2 reference point.
        self.last_frame_at = -math.inf

    def hello(self) -> Hello:
        cfg = self.config
        resume = self.welcomed
        if cfg.mode is Mode.STATELESS:
            return Hello(
                mode=cfg.mode,
                n=cfg.n,
                resume=resume,
                next_index=self.received,
                a=self.a if resume else 0,
            )
        return Hello(
            mode=cfg.mode,
            n=cfg.n,
            resume=resume,
            next_index=self.received,
            client_id=cfg.client_id,
        )

    def welcome(self, welcome: Welcome) -> None:
        self.welcomed = True
        self.last_frame_at = anyio.current_time()
        self.session_ttl = welcome.session_ttl_ms / 1000
        if self.config.mode is Mode.STATELESS:
            self.a = welcome.a

    def number(self, number: Number) -> None:
        """Accept the next number; the core has already checked its index and FINAL flag."""
        value = number.value
        if self.config.mode is Mode.STATELESS:
            if value != self.a << number.index:
                raise _VerifyError(f"value at index {number.index} is not a·2^{number.index}")
            self.total += value
        else:
            self.checksum.update(value)
        self.received += 1
        self.last_frame_at = anyio.current_time()
        self.observer.number(number.index, value)
        if number.final:
            self.expected = number.checksum

    def run(self, first: int, count: int, values: bytes) -> None:
        """Accept ``count`` numbers from index ``first`` that the core took as a run (already
        verified: stateless values are a·2^index; stateful ``values`` are 4-byte big-endian)."""
        if self.config.mode is Mode.STATELESS:
            self.total += stateless_sum(self.a, first + count) - stateless_sum(self.a, first)
        else:
            self.checksum.update_be(values)
        self.received += count
        self.last_frame_at = anyio.current_time()
        assert self.run_observer is not None
        self.run_observer.number_run(first, count)


class _VerifyError(Exception):
    pass


Dial = Callable[[str, int], Awaitable[anyio.abc.ByteStream]]


@dataclass(slots=True)
class _Attempts:
    """The reconnection loop's bookkeeping (spec §15): k, attempts, when a session was lost."""

    without_progress: int = 0
    made: int = 0
    #: The last complete frame of a WELCOMEd connection lost without an ERROR (-inf: never).
    dropped_at: float = -math.inf


def _why_broken(exc: BaseException) -> str:
    """The most specific words for a broken connection: anyio's BrokenResourceError carries no
    text of its own, the OSError it wraps (``Connection reset by peer``) does."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if candidate is not None and str(candidate):
            return str(candidate)
    return type(exc).__name__


async def run_client(
    config: ClientConfig,
    *,
    observer: ClientObserver | None = None,
    rng: random.Random | None = None,
    connect: Dial | None = None,
) -> ClientResult:
    """Receive the whole sequence, reconnecting with backoff; never raises for network trouble.

    ``connect`` lets tests substitute a transport (memory streams, fault injectors).
    """
    obs = observer or _Silent()
    rng = rng or random.Random()
    dial = connect or _connect_tcp
    receiver = _Receiver(config, obs)
    result = ClientResult(mode=config.mode, n=config.n, client_id=config.client_id)
    attempts = _Attempts()
    completed = False
    while True:
        attempts.made += 1
        obs.attempt(attempts.made, anyio.current_time())
        obs.phase(Phase.CONNECTING, f"attempt {attempts.made}")
        before = receiver.received
        try:
            await _one_connection(config, receiver, dial, obs)
        except _Retry as why:
            if why.held:  # the TTL runs from losing a WELCOMEd connection
                # A drop may have eaten FINAL; an ERROR frame means the server stopped short.
                # Measured from the last complete frame, not from noticing the drop (§12.2):
                # a long silence timeout must not turn an expiry into "final frame lost".
                attempts.dropped_at = -math.inf if why.told else receiver.last_frame_at
            delay = _next_delay(config, attempts, progressed=receiver.received > before, rng=rng)
            if delay is None:
                _gave_up(result, attempts, why)
                break
            result.reconnects += 1
            _log_retry(config, receiver, attempts, why, delay)
            obs.phase(Phase.BACKING_OFF, f"{why}; retry in {delay:.2f} s")
            await anyio.sleep(delay)
        except _Fatal as fatal:
            _rejected(result, receiver, attempts, fatal)
            break
        except _VerifyError as bad:
            log.error("verification failed: %s", bad)
            result.error = "VERIFY_FAILED"
            result.exit_code = EXIT_VERIFY_FAILED
            break
        else:
            completed = True
            break
    _finish(result, receiver, completed=completed)
    obs.phase(Phase.DONE if result.ok else Phase.FAILED, result.error or "verified")
    return result


def _next_delay(
    config: ClientConfig, attempts: _Attempts, *, progressed: bool, rng: random.Random
) -> float | None:
    """The backoff before the next attempt, or None when it is time to give up (spec §15)."""
    # k counts attempts in a row that delivered no new number.
    attempts.without_progress = 0 if progressed else attempts.without_progress + 1
    if attempts.without_progress >= config.backoff.max_retries:
        return None
    return config.backoff.delay(attempts.without_progress, rng)


def _log_retry(
    config: ClientConfig, receiver: _Receiver, attempts: _Attempts, why: _Retry, delay: float
) -> None:
    k, limit = attempts.without_progress, config.backoff.max_retries
    where = f" after {receiver.received}/{config.n} numbers" if receiver.received else ""
    log.warning(
        "%s%s; attempt %d of %d without progress, reconnecting in %.2f s",
        why,
        where,
        k,
        limit,
        delay,
    )
    if attempts.made == 1 and why.refused:
        log.warning(
            "is the server running? Start one with: numstream-server --port %d", config.port
        )


def _gave_up(result: ClientResult, attempts: _Attempts, why: _Retry) -> None:
    log.error(
        "giving up after %d attempts in a row without progress (last: %s)",
        attempts.without_progress,
        why,
    )
    result.error = "GAVE_UP"
    result.exit_code = EXIT_GAVE_UP


def _rejected(
    result: ClientResult, receiver: _Receiver, attempts: _Attempts, fatal: _Fatal
) -> None:
    name = _code_name(fatal.code)
    result.error = name
    result.exit_code = EXIT_REJECTED
    if fatal.code != ErrorCode.SESSION_UNKNOWN:
        log.error("server rejected the request: %s %s", name, fatal)
    elif receiver.welcomed and anyio.current_time() - attempts.dropped_at < receiver.session_ttl:
        result.final_frame_lost = True
        log.error("final frame lost: the session completed while FINAL was in flight")
    else:
        log.error("session expired or unknown: %s", fatal)


def _finish(result: ClientResult, receiver: _Receiver, *, completed: bool) -> None:
    """Fill in the result; ``completed``: FINAL arrived (the core reached DONE)."""
    result.received = receiver.received
    if result.mode is Mode.STATELESS:
        if receiver.welcomed:
            result.first = receiver.a
            result.total = receiver.total
        if completed:
            # The closed form is an independent check of the running sum.
            result.ok = receiver.total == stateless_sum(receiver.a, result.n)
    else:
        result.checksum_computed = receiver.checksum.digest() if completed else None
        result.checksum_expected = receiver.expected
        if completed:
            result.ok = receiver.expected == result.checksum_computed
    if completed:
        result.error = None if result.ok else "CHECKSUM_MISMATCH"
        result.exit_code = EXIT_OK if result.ok else EXIT_VERIFY_FAILED


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"ERROR_{code}"


async def _connect_tcp(host: str, port: int) -> anyio.abc.ByteStream:
    return await anyio.connect_tcp(host, port)


async def _one_connection(
    config: ClientConfig, receiver: _Receiver, dial: Dial, obs: ClientObserver
) -> None:
    """One connection from connect to FINAL (returns) or to its loss (raises _Retry)."""
    stream = await _dial(config, dial)
    conn = ClientConnection()
    try:
        welcome = await _handshake(config, receiver, conn, stream)
        obs.phase(Phase.STREAMING, f"from index {welcome.next_index}")
        await _receive_numbers(config, receiver, conn, stream, welcome)
    except ProtocolError as exc:
        raise _held(conn, _Retry(f"protocol error: {exc}")) from None
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
        raise _held(conn, _Retry(f"connection broken: {_why_broken(exc)}")) from None
    except _Retry as why:
        raise _held(conn, why) from None
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


def _held(conn: ClientConnection, why: _Retry) -> _Retry:
    why.held = conn.welcome_received
    return why


async def _dial(config: ClientConfig, dial: Dial) -> anyio.abc.ByteStream:
    """Phase 1: connect within the connect timeout; a failure is said in words."""
    where = f"{config.host}:{config.port}"
    try:
        with anyio.fail_after(config.connect_timeout):
            return await dial(config.host, config.port)
    except TimeoutError:
        raise _Retry(f"{where} did not accept within {config.connect_timeout:g} s") from None
    except OSError as exc:
        if _is_refused(exc):
            raise _Retry(
                f"nothing is listening on {where} (connection refused)", refused=True
            ) from None
        reason = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        raise _Retry(f"cannot connect to {where}: {reason.strerror or reason}") from None


def _is_refused(exc: BaseException | None) -> bool:
    """ECONNREFUSED, also as anyio's "All connection attempts failed" (it keeps the cause)."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_refused(inner) for inner in exc.exceptions)
    return isinstance(exc, OSError) and exc.__cause__ is not None and _is_refused(exc.__cause__)


async def _handshake(
    config: ClientConfig, receiver: _Receiver, conn: ClientConnection, stream: anyio.abc.ByteStream
) -> Welcome:
    """Phase 2: HELLO, then WELCOME or ERROR, all under one handshake timeout (spec §14.1)."""
    timeout = config.handshake_timeout
    try:
        with anyio.fail_after(timeout):
            await stream.send(conn.send(receiver.hello()))
            log.debug("HELLO sent, waiting for WELCOME")
            while (event := conn.next_event()) is NEED_DATA:
                conn.receive_data(await _receive_or_eof(stream))
    except TimeoutError:
        raise _Retry(f"no WELCOME within {timeout:g} s") from None
    if not isinstance(event, Welcome):
        raise _ended(event)
    receiver.welcome(event)
    return event


async def _receive_numbers(
    config: ClientConfig,
    receiver: _Receiver,
    conn: ClientConnection,
    stream: anyio.abc.ByteStream,
    welcome: Welcome,
) -> None:
    """Phase 3: numbers until FINAL, each complete frame restarting the silence timer (§14.1).

    A trickle of bytes that never completes a frame is silence too.
    """
    timeout = _silence_timeout(config, welcome.interval_ms / 1000)
    deadline = anyio.current_time() + timeout
    in_runs = receiver.run_observer is not None
    while conn.state is not State.DONE:
        if in_runs:
            first, count, values = conn.next_data_run(receiver.a)
            if count:
                receiver.run(first, count, values)
                deadline = receiver.last_frame_at + timeout
                continue
        event = conn.next_event()
        if event is NEED_DATA:
            try:
                with anyio.fail_at(deadline):
                    data = await _receive_or_eof(stream)
            except TimeoutError:
                raise _Retry(f"silence for {timeout:g} s") from None
            conn.receive_data(data)
        elif isinstance(event, Number):
            deadline = anyio.current_time() + timeout
            receiver.number(event)
        else:
            raise _ended(event)


async def _receive_or_eof(stream: anyio.abc.ByteStream) -> bytes:
    try:
        return await stream.receive(_RECEIVE_SIZE)
    except anyio.EndOfStream:
        return b""


def _ended(event: object) -> _Retry | _Fatal:
    """What an ERROR or the peer's EOF means: retry, or stop for good (spec §12.2)."""
    if isinstance(event, Error):
        name = _code_name(event.code)
        if is_retryable(event.code):
            return _Retry(f"server error {name}: {quoted(event.message)}", told=True)
        return _Fatal(event.code, quoted(event.message))
    return _Retry("connection closed by the server")


def _silence_timeout(config: ClientConfig, interval: float) -> float:
    if config.silence_timeout is not None:
        return config.silence_timeout
    return max(3 * interval, config.min_silence)


# --- command line ---------------------------------------------------------------------------------


class _ProgressObserver:
    """A rich progress bar on ``console`` (stderr), for humans watching a long stream.

    The log handler writes through the same console (``configure_logging(console=...)``), so
    a reconnect warning is printed above the bar instead of through it.
    """

    def __init__(self, n: int, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("stream", total=n, phase="connecting")

    @property
    def console(self) -> Console:
        return self._progress.console

    def __enter__(self) -> _ProgressObserver:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, phase: Phase, detail: str) -> None:
        self._progress.update(self._task, phase=phase.value)

    def attempt(self, number: int, at: float) -> None:
        pass

    def number(self, index: int, value: int) -> None:
        self._progress.advance(self._task)

    def number_run(self, first: int, count: int) -> None:
        self._progress.advance(self._task, count)


class _EventLineObserver:
    """``--events``: JSON lines on stderr for a supervising harness, progress at most 10/s."""

    def __init__(self) -> None:
        self._last_progress = -math.inf
        self._received = 0

    def _emit(self, **fields: Any) -> None:
        print(json.dumps(fields), file=sys.stderr, flush=True)

    def phase(self, phase: Phase, detail: str) -> None:
        self._emit(event="phase", phase=phase.name.lower(), detail=detail, received=self._received)

    def attempt(self, number: int, at: float) -> None:
        self._emit(event="attempt", attempt=number)

    def number(self, index: int, value: int) -> None:
        self.number_run(index, 1)

    def number_run(self, first: int, count: int) -> None:
        self._received += count
        now = anyio.current_time()
        if now - self._last_progress >= 0.1:
            self._last_progress = now
            self._emit(event="progress", received=self._received)


def build_parser() -> argparse.ArgumentParser:
    parser = SpecParser(
        prog=program_name("python -m reference.client"),
        description=(
            "Receive a numeric stream from a reference server (spec/PROTOCOL.md), reconnecting "
            "and resuming whenever the connection drops. Stateless mode prints the sum of the "
            "n numbers; stateful mode prints the server's and our checksum and SUCCESS/FAILURE."
        ),
        epilog=(
            "Exit status: 0 verified; 1 verification failed (checksum mismatch); 2 bad arguments; "
            "3 rejected by the server (e.g. session expired, final frame lost); 4 gave up after "
            "too many reconnections without progress; 130 interrupted by SIGINT and 143 by "
            "SIGTERM, at any moment (nothing on stdout then)."
        ),
    )
    parser.add_argument("--port", type=connect_port, required=True, help="server port on --host")
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument(
        "--mode", choices=["stateless", "stateful"], required=True, help="protocol variant"
    )
    parser.add_argument(
        "-n",
        type=stream_length,
        default=None,
        help=f"numbers to receive, 1..{MAX_N} (required for stateless; stateful default: random)",
    )
    parser.add_argument(
        "--client-id",
        type=_client_id,
        default=None,
        help="stateful session id (default: a random UUID4); accepted and ignored in stateless "
        "mode, so one command template serves both",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout instead of text"
    )
    parser.add_argument(
        "--events",
        action="store_true",
        help="write progress events as JSON lines on stderr (for the chaos harness)",
    )
    parser.add_argument(
        "--silence-timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="treat a connection as dead after this long without a frame "
        "(default: max(3 x the server's interval, --min-silence))",
    )
    parser.add_argument(
        "--min-silence",
        type=positive_float,
        default=2.0,
        metavar="SECONDS",
        help="floor of the default silence timeout (default 2)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="bound on each connect and on waiting for the WELCOME (default 5)",
    )
    parser.add_argument(
        "--backoff-initial",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="first reconnection delay (default 1.0; grows x1.6 per retry without progress)",
    )
    parser.add_argument(
        "--backoff-max",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="largest reconnection delay (default 10)",
    )
    parser.add_argument(
        "--max-retries",
        type=positive_int,
        default=10,
        metavar="N",
        help="reconnections without progress before giving up (default 10)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed for backoff jitter and the random n/id"
    )
    add_common_arguments(
        parser,
        log_level_help="stderr log verbosity (default info; reconnects are logged at warning)",
    )
    add_version(parser)
    return parser


def _client_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID") from None


def config_from_args(args: argparse.Namespace, rng: random.Random) -> ClientConfig:
    mode = Mode[args.mode.upper()]
    n = args.n if args.n is not None else rng.randint(1, MAX_N)
    client_id = ""
    if mode is Mode.STATEFUL:
        client_id = args.client_id or str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return ClientConfig(
        host=args.host,
        port=args.port,
        mode=mode,
        n=n,
        client_id=client_id,
        connect_timeout=args.connect_timeout,
        handshake_timeout=args.connect_timeout,
        silence_timeout=args.silence_timeout,
        min_silence=args.min_silence,
        backoff=Backoff(
            initial=args.backoff_initial,
            maximum=args.backoff_max,
            max_retries=args.max_retries,
        ),
    )


def render_text(result: ClientResult) -> str:
    if result.mode is Mode.STATELESS:
        if result.ok and result.total is not None:
            return to_decimal(result.total)
        return f"FAILURE {result.error or ''}".rstrip()
    lines = [
        f"client_id {result.client_id}",
        f"checksum_expected {_hex(result.checksum_expected) or '-'}",
        f"checksum_computed {_hex(result.checksum_computed) or '-'}",
        "SUCCESS" if result.ok else f"FAILURE {result.error or ''}".rstrip(),
    ]
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed) if args.seed is not None else random.SystemRandom()
    config = config_from_args(args, rng)
    if args.n is None:
        log.info("n not given: drew n=%d", config.n)
    if config.mode is Mode.STATEFUL:
        log.info("client id %s, n=%d", config.client_id, config.n)
    if args.events:
        result = await run_client(config, observer=_EventLineObserver(), rng=rng)
    elif args.console is not None:
        with _ProgressObserver(config.n, args.console) as progress:
            result = await run_client(config, observer=progress, rng=rng)
    else:
        result = await run_client(config, rng=rng)
    text = json.dumps(result.to_json()) if args.json else render_text(result)
    try:
        print(text, flush=True)
    except OSError as exc:
        return _stdout_failed(exc, result.exit_code)
    return result.exit_code


def _stdout_failed(exc: OSError, status: int) -> int:
    """The result could not be written. A reader that left (``| head -c0``: EPIPE) leaves the
    exit status to tell the outcome, so a failed run never exits 0 because of it; any other
    write error (a full disk) is logged, and a success that nobody received is status 1."""
    discard_stdout()
    if isinstance(exc, BrokenPipeError):
        return status
    log.error("cannot write the result to stdout: %s", exc.strerror or exc)
    return status if status != EXIT_OK else EXIT_VERIFY_FAILED


def _progress_console(args: argparse.Namespace) -> Console | None:
    """The console of the progress bar (and of the log), when a human watches stderr."""
    if args.events or not sys.stderr.isatty():
        return None
    from rich.console import Console

    return Console(stderr=True)


def _interrupted(signum: int) -> int:
    print("interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode == "stateless" and args.n is None:
        parser.error("stateless mode needs -n (1..65535)")
    args.console = _progress_console(args)
    configure_logging(args.log_level, console=args.console)
    try:
        return run_program(
            _run, args, prog="numstream-client", backend=args.backend, on_signal=_interrupted
        )
    except BrokenPipeError:
        # stdout's reader went away (e.g. `| head`); nothing left to tell anyone.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
