"""Issue 11, points 2 and 5-8 and the first run: peer text, backoff cap, the client's console,
its first failure in words, the server's connection log, --version, a missing trio.

Each test names the CLI it covers; the kinds and the CLIs they apply to:

* peer text shown escaped: client (ERROR messages, final and retryable), server (HELLO fields),
  conformance suite (a server's ERROR message in its results), chaos harness (a client's error
  in its lines and verdict table); the proxy shows nothing from the wire (it logs fault
  decisions only); the Node client and the Go server in their own tests.
* a missing or too old trio: server and client (the proxy has no --backend).
* --version, and the name the user typed (console script or python -m): server, client,
  proxy, chaos, conformance.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import random
import re
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from reference import client, server
from reference.client import Backoff
from reference.connlog import DEBUG_BURST, INFO_BURST, ConnectionLog, ConnectionTrace
from reference.logs import printable
from reference.protocol import ErrorCode
from reference.server import ServerConfig

from .oracle import session_checksum, session_values
from .redis_fixture import free_port
from .support import (
    FixedRandom,
    RawReader,
    frame,
    running_server,
    stateful_hello,
    stateless_hello,
    wait_until_listening,
)

PYTHON = sys.executable

#: The issue's hostile ERROR message: retitle the window, clear the screen, forge a log line.
HOSTILE = "\x1b]0;owned\x07\x1b[2J\nINFO reference.client: all good"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _no_terminal_control(text: str) -> None:
    assert "\x1b" not in text
    assert "\x07" not in text
    assert not any(line.startswith("INFO reference.client: all good") for line in text.splitlines())


# --- point 2: peer text ---------------------------------------------------------------------------


def test_printable_escapes_controls_and_keeps_any_other_text() -> None:
    assert printable(HOSTILE) == "\\x1b]0;owned\\x07\\x1b[2J\\nINFO reference.client: all good"
    assert (
        printable("caf\u00e9 \u00e0 10\u00a0\u20ac \\x1b") == "caf\u00e9 \u00e0 10\\xa0\u20ac \\x1b"
    )
    assert printable("\u202egnp.exe") == "\\u202egnp.exe"  # a bidi override cannot reorder
    assert printable("\ufeff\x00") == "\\ufeff\\x00"


class _ErrorServer:
    """Answers every HELLO with ERROR ``code`` and ``message`` (any UTF-8, spec §4.4)."""

    def __init__(self, code: int, message: str) -> None:
        payload = struct.pack(">H", code) + message.encode("utf-8")
        self.frame = frame(0x05, payload)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int]) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            task_status.started(int(listener.extra(anyio.abc.SocketAttribute.local_port)))
            await listener.serve(self._answer)

    async def _answer(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(self.frame)


@pytest.mark.parametrize(
    ("code", "status"),
    [(0x12, 3), (0x20, 4)],  # SESSION_UNKNOWN: final; SHUTTING_DOWN: retried until GAVE_UP
    ids=["final", "retryable"],
)
def test_client_shows_a_hostile_error_message_escaped(code: int, status: int) -> None:
    async def scenario() -> subprocess.CompletedProcess[str]:
        async with anyio.create_task_group() as tg:
            port = await tg.start(_ErrorServer(code, HOSTILE).serve)
            done = await anyio.to_thread.run_sync(
                lambda: run(
                    "reference.client",
                    "--port",
                    str(port),
                    "--mode",
                    "stateful",
                    "-n",
                    "5",
                    "--backoff-initial",
                    "0.01",
                    "--max-retries",
                    "2",
                )
            )
            tg.cancel_scope.cancel()
        return done

    done = anyio.run(scenario)
    assert done.returncode == status, done.stderr
    _no_terminal_control(done.stderr + done.stdout)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\nINFO reference.client: all good" in done.stderr


def test_server_log_shows_peer_text_escaped() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "reference.server", "--port", str(port), "--log-level", "debug"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        async def send_hostile_hello() -> None:
            await wait_until_listening(port, within=20)
            bad_id = "\x1b[2J\n\x1b]0;owned\x07" + "x" * 21  # 36 bytes, as a UUID's, but not one
            assert len(bad_id.encode()) == 36
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                payload = struct.pack(">BBBII", 1, 2, 0, 5, 0) + bad_id.encode()
                await stream.send(frame(0x01, payload))
                with anyio.fail_after(10):
                    while await RawReader(stream).next() is not None:
                        pass

        anyio.run(send_hostile_hello)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    ended = [line for line in err.splitlines() if "ended after" in line]
    assert len(ended) == 2, err  # the readiness probe, then the hostile HELLO
    assert "ERROR INVALID_CLIENT_ID" in ended[1], err
    assert "\\x1b[2J\\n\\x1b]0;owned\\x07" in err  # shown, escaped
    _no_terminal_control(err)


def test_conformance_shows_a_servers_error_message_escaped() -> None:
    """The suite's results quote what a server under test sent: escaped, never raw."""
    from harness.conformance.wire import ERROR, Frame

    shown = Frame(ERROR, struct.pack(">H", 0x20) + HOSTILE.encode()).describe()
    assert shown.startswith("ERROR SHUTTING_DOWN")
    _no_terminal_control(shown)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\nINFO reference.client: all good" in shown


def test_chaos_shows_a_clients_text_escaped() -> None:
    """The harness's lines and verdict table quote a client's error: escaped, never raw."""
    from rich.console import Console

    from harness.dashboard import client_line, summary_table
    from harness.model import ChaosOptions, ChaosReport, ClientPhase, ClientSpec, ClientState

    state = ClientState(ClientSpec(id=1, mode="stateless", n=3, seed=1, client_id="x"))
    state.phase, state.reason, state.exit_code = ClientPhase.FAILED, f"exit code 3 ({HOSTILE})", 3
    line = client_line(state)
    _no_terminal_control(line)
    assert "\\x1b]0;owned\\x07" in line
    report = ChaosReport(
        ok=False, seed=1, proxy_seed=2, duration_s=1.0, options=ChaosOptions(clients=1),
        clients=[state], proxy={}, server={},
    )  # fmt: skip
    for width in (80, None):
        out = io.StringIO()
        Console(width=200, file=out, force_terminal=False).print(summary_table(report, width))
        _no_terminal_control(out.getvalue())


# --- point 5: the cap is a cap -------------------------------------------------------------------


def test_backoff_delay_never_exceeds_the_cap() -> None:
    rng = random.Random(11)
    for maximum in (0.05, 1.0, 10.0):
        backoff = Backoff(maximum=maximum)
        for retry in (*range(30), 5000):
            for _ in range(50):
                delay = backoff.delay(retry, rng)
                nominal = 1.6**retry if retry < 1000 else float("inf")
                assert delay <= maximum
                assert delay >= min(0.8 * nominal, maximum) * 0.8  # jitter kept below the cap


def test_client_logged_delays_stay_under_backoff_max() -> None:
    port = free_port()
    done = run(
        "reference.client", "--port", str(port), "--mode", "stateless", "-n", "3",
        "--backoff-initial", "1", "--backoff-max", "0.05", "--max-retries", "6", "--seed", "1",
    )  # fmt: skip
    delays = [float(d) for d in re.findall(r"reconnecting in ([0-9.]+) s", done.stderr)]
    assert len(delays) == 5
    assert max(delays) <= 0.05


# --- point 7: the first failure in words ---------------------------------------------------------


def test_client_says_nothing_is_listening_with_attempt_k_of_n() -> None:
    port = free_port()
    done = run(
        "reference.client", "--port", str(port), "--mode", "stateless", "-n", "3",
        "--backoff-initial", "0.01", "--max-retries", "3",
    )  # fmt: skip
    first = next(line for line in done.stderr.splitlines() if "WARNING" in line)
    assert f"nothing is listening on 127.0.0.1:{port}" in first
    assert "attempt 1 of 3" in first
    assert "reconnecting in" in first
    assert done.stderr.count("is the server running?") == 1
    assert done.returncode == 4


def test_conformance_says_no_server_answers_where_nothing_listens() -> None:
    port = free_port()
    done = run("harness.conformance", "server", "--port", str(port))
    assert done.returncode == 3, done.stderr  # the target could not be reached
    assert f"no NSP server answers on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


# --- point 6: one console for the log and the progress bar ---------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_client_logs_through_the_progress_bars_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.logging import RichHandler

    consoles = []

    class Recording(client._ProgressObserver):
        def __init__(self, n: int, console: object) -> None:
            super().__init__(n, console)  # type: ignore[arg-type]
            consoles.append(self.console)

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(client, "_ProgressObserver", Recording)
    status = client.main(
        ["--port", str(free_port()), "--mode", "stateless", "-n", "3",
         "--backoff-initial", "0.01", "--max-retries", "2"]
    )  # fmt: skip
    assert status == 4
    handlers = logging.getLogger().handlers
    assert len(handlers) == 1
    assert isinstance(handlers[0], RichHandler)
    assert consoles == [handlers[0].console]
    assert "nothing is listening" in terminal.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_conformance_logs_through_its_progress_bars_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The suite's log handler writes to the console its progress bar draws on, so rich prints
    each record above the bar instead of over it."""
    from rich.logging import RichHandler

    from harness.conformance import cli as conformance_cli
    from harness.conformance import server_setup

    async def prepared(*args: object) -> tuple[object, set[str], dict[str, object]]:
        return object(), set(), {}

    consoles: list[object] = []

    async def run_all(*args: object, console: object, **kwargs: object) -> list[object]:
        consoles.append(console)
        return []

    monkeypatch.setattr(server_setup, "prepare_server", prepared)
    monkeypatch.setattr(conformance_cli, "run_all", run_all)
    assert conformance_cli.main(["server", "--log-level", "info"]) == 0
    handlers = logging.getLogger().handlers
    assert len(handlers) == 1
    assert isinstance(handlers[0], RichHandler)
    assert consoles == [handlers[0].console]


# --- point 8: the server's connection log --------------------------------------------------------


@pytest.mark.anyio
async def test_server_logs_each_connection_life_cycle(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reference.server")
    cid = str(uuid.uuid4())
    async with running_server(ServerConfig(interval=0.0)) as (_, port):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(stateful_hello(cid, 3))
            with anyio.fail_after(10):
                while await RawReader(stream).next() is not None:
                    pass
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(stateful_hello(cid, 3, resume=True, next_index=1))
            with anyio.fail_after(10):
                while await RawReader(stream).next() is not None:
                    pass
    lines = [r.getMessage() for r in caplog.records if r.name == "reference.server"]
    accepted = [line for line in lines if "accepted from 127.0.0.1:" in line]
    assert len(accepted) == 2
    assert any(f"HELLO stateful n=3 new stream, client id {cid}" in line for line in lines)
    assert any(f"HELLO stateful n=3 resume from index 1, client id {cid}" in line for line in lines)
    assert any("ended after" in line and "stream completed" in line for line in lines)
    # the completed session is gone: the resume is refused, and the log says so
    assert any("ended after" in line and "ERROR SESSION_UNKNOWN" in line for line in lines)


def _kept_records(name: str, level: int) -> tuple[logging.Logger, list[logging.LogRecord]]:
    """A logger of its own at ``level`` (not propagating) and the list its records go to."""
    logger = logging.getLogger(name)
    logger.propagate = False
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    logger.setLevel(level)
    return logger, records


def test_connection_log_is_rate_limited() -> None:
    now = [0.0]
    logger, records = _kept_records("test.connlog", logging.INFO)
    connlog = ConnectionLog(logger, clock=lambda: now[0])
    stream = anyio.abc.ByteStream.__new__(_Bare)
    for i in range(10 * INFO_BURST):  # a flood within one instant
        connlog.open(f"c-{i}", stream).close()
    assert len(records) == INFO_BURST
    now[0] += 60.0  # a minute later the bucket is full again; the first line says what was lost
    connlog.open("late", stream)
    dropped = records[INFO_BURST]
    assert dropped.getMessage().startswith(f"{2 * 10 * INFO_BURST - INFO_BURST} connection log")


class _Bare(anyio.abc.ByteStream):
    async def receive(self, max_bytes: int = 65536) -> bytes:
        raise NotImplementedError

    async def send(self, item: bytes) -> None:
        raise NotImplementedError

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


@pytest.mark.anyio
@pytest.mark.parametrize("interval", [0.0, 0.06], ids=["own-task", "timer-wheel"])
async def test_server_logs_every_frame_at_debug(
    interval: float, caplog: pytest.LogCaptureFixture
) -> None:
    """WELCOME, each DATA with its index and value (against the closed form a·2^i and the
    session's values), FINAL with the checksum: on both write paths."""
    caplog.set_level(logging.DEBUG, logger="reference.server")
    seed = FixedRandom().seeds[0]
    async with running_server(ServerConfig(interval=interval)) as (_, port):
        for hello in (stateless_hello(4), stateful_hello(str(uuid.uuid4()), 4)):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(hello)
                with anyio.fail_after(10):
                    while await RawReader(stream).next() is not None:
                        pass
    lines = [r.getMessage() for r in caplog.records if r.name == "reference.server"]
    frames = [line.split("] ", 1)[1] for line in lines if "] -> " in line]
    values = session_values(seed, 4)
    ms = round(interval * 1000)
    assert frames == [
        f"-> WELCOME mode=stateless n=4 next_index=0 interval_ms={ms} a=23 session_ttl_ms=0",
        *(f"-> DATA index={i} value={23 << i}" for i in range(3)),
        "-> FINAL index=3 checksum=-",
        f"-> WELCOME mode=stateful n=4 next_index=0 interval_ms={ms} a=0 session_ttl_ms=30000",
        *(f"-> DATA index={i} value={values[i]}" for i in range(3)),
        f"-> FINAL index=3 checksum={session_checksum(seed, 4).hex()}",
    ]


@pytest.mark.anyio
async def test_server_formats_no_frame_when_debug_is_off(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off, the number frames cost a test of None: the trace is never asked to log one."""
    caplog.set_level(logging.INFO, logger="reference.server")

    def never(*args: object) -> None:
        raise AssertionError("a number frame was logged with debug off")

    monkeypatch.setattr(ConnectionTrace, "data", never)
    monkeypatch.setattr(ConnectionTrace, "final", never)
    for interval in (0.0, 0.06):
        async with running_server(ServerConfig(interval=interval)) as (server, port):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(stateless_hello(3))
                with anyio.fail_after(10):
                    while await RawReader(stream).next() is not None:
                        pass
            assert server.stats.streams_completed == 1


def test_number_frames_are_rate_limited_apart_from_the_other_frames() -> None:
    now = [0.0]
    logger, records = _kept_records("test.connlog.frames", logging.DEBUG)
    trace = ConnectionLog(logger, clock=lambda: now[0]).open(
        "c-1", anyio.abc.ByteStream.__new__(_Bare)
    )
    frames = trace.frames()
    assert frames is trace
    wide = 23 << 5000  # formatted by its size, not in 1,500 decimal digits
    for index in range(10 * DEBUG_BURST):  # a fast stream within one instant
        frames.data(index, wide)
    data = [r for r in records if "-> DATA" in r.getMessage()]
    assert len(data) == DEBUG_BURST
    assert (
        data[0]
        .getMessage()
        .endswith(f"value=0x{wide >> (wide.bit_length() - 32):x}... ({wide.bit_length()} bits)")
    )
    trace.refused(ErrorCode.SHUTTING_DOWN, "bye")  # the frames that decide a course still pass
    assert records[-1].getMessage().endswith('-> ERROR SHUTTING_DOWN "bye"')
    now[0] += 60.0
    frames.data(0, 1)
    assert records[-2].getMessage().startswith(f"{9 * DEBUG_BURST} connection log lines dropped")
    logger.setLevel(logging.INFO)
    assert trace.frames() is None


def test_server_json_log_format() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "reference.server", "--port", str(port), "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        async def one_stream() -> None:
            await wait_until_listening(port, within=20)
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(stateful_hello(str(uuid.uuid4()), 2))
                with anyio.fail_after(10):
                    while await RawReader(stream).next() is not None:
                        pass

        anyio.run(one_stream)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    docs = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    events = [doc.get("event") for doc in docs]
    assert events.count("accepted") == 2  # the readiness probe and the stream
    hello = next(doc for doc in docs if doc.get("event") == "hello")
    assert (hello["mode"], hello["n"], hello["resume"]) == ("stateful", 2, False)
    assert any(doc.get("reason") == "completed" for doc in docs if doc.get("event") == "ended")


# --- first run: --version, trio missing or too old -----------------------------------------------


SCRIPTS = {
    "numstream-server": "reference.server",
    "numstream-client": "reference.client",
    "numstream-proxy": "proxy",
    "numstream-chaos": "harness.chaos",
    "numstream-conformance": "harness.conformance",
}


@pytest.mark.parametrize("module", SCRIPTS.values())
def test_version(module: str) -> None:
    done = run(module, "--version")
    assert done.returncode == 0
    assert done.stdout.startswith(f"python -m {module} (numstream) "), done.stdout
    assert re.search(r"\d+\.\d+", done.stdout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_names_itself_as_typed(script: str) -> None:
    """``numstream-chaos --version`` says numstream-chaos, not python -m harness.chaos; and so
    do its usage lines and errors."""
    path = Path(sys.executable).parent / script
    if not path.exists():
        pytest.skip(f"{script} is not installed (python -m pip install -e .)")
    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith(f"{script} (numstream) "), done.stdout
    bad = subprocess.run([path, "--no-such-option"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1].startswith(f"{script}: error:"), bad.stderr
    assert "python -m" not in bad.stderr


@pytest.mark.parametrize("trio_version", [None, "0.22.0"])
@pytest.mark.parametrize(
    "argv",
    [
        ["reference.server", "--port", "0"],
        ["reference.client", "--port", "9", "--mode", "stateless", "-n", "3"],
    ],
    ids=["server", "client"],
)
def test_backend_trio_without_a_usable_trio_says_how_to_install_it(
    argv: list[str],
    trio_version: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = importlib.metadata.version

    def fake(name: str) -> str:
        if name == "trio":
            if trio_version is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return trio_version
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", fake)
    main = server.main if argv[0] == "reference.server" else client.main
    assert main([*argv[1:], "--backend", "trio"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "pip install" in lines[0]
    assert "[trio]" in lines[0]
