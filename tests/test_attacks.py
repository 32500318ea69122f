"""Attacks from the outside world: hostile peers, odd command lines, broken pipes, stores that
answer nothing. Each test names the defect it caught (it failed before the fix) and the command
line that reproduces it by hand."""

from __future__ import annotations

import errno
import io
import logging
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from harness import server_process
from harness.chaos import run_chaos
from harness.dashboard import client_line
from harness.model import ChaosOptions, ChaosReport, ClientPhase, seeded_stateless_a
from harness.streams import NspShape, shape_of
from harness.verify import WireEvidence
from reference import client, server
from reference.client import Backoff, ClientConfig, run_client
from reference.protocol import Mode
from reference.protocol.constants import MAX_DURATION_MS
from reference.protocol.durations import seconds_text_to_ms
from reference.server import ServerConfig
from reference.store import open_store
from reference.store.base import StoreError
from reference.store.redis import RedisStore

from .support import frame, running_server

pytestmark = pytest.mark.anyio


async def test_unanswering_redis_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """``--store redis://`` on a port that accepts TCP but never answers (a frozen Redis, or
    not Redis at all): the deadline cancels coredis's handshake, and coredis used to log that
    as "Connection attempt failed unexpectedly!" with a full traceback (server start-up and
    every reconnection during an outage). Now: one StoreError, no traceback in the log.

    Repro: ``python -m reference.server --port 0 --store redis://127.0.0.1:P/0`` with a bare
    listener on P."""
    caplog.set_level(logging.DEBUG)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with pytest.raises(StoreError):
            await RedisStore.connect(f"redis://127.0.0.1:{port}/0", op_timeout=0.2)
    with_traceback = [r for r in caplog.records if r.exc_info or r.exc_text]
    assert not with_traceback, [f"{r.name}: {r.getMessage()}" for r in with_traceback]


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        # Exponents beyond what Python's decimal can hold: exact values, 0 ms and far too long.
        ("1e-99999999999999999999", 0),
        ("0e99999999999999999999", 0),
        ("1e99999999999999999999", None),
        # 0.111... s with 100,000 digits is 111 ms (an int() of every digit used to fail).
        ("0." + "1" * 100_000, 111),
        ("0.0005" + "0" * 100_000, 1),  # a tie, however many zeros follow: rounds up
        ("0.0004" + "9" * 100_000, 0),
    ],
    ids=lambda v: v[:24] + "..." if isinstance(v, str) and len(v) > 24 else str(v),
)
def test_extreme_duration_texts_follow_the_spec_rule(text: str, ms: int | None) -> None:
    """§13.1: the exact decimal value times 1000, nearest, ties up; a text in the grammar is
    never a crash. ``--interval 1e99999999999999999999`` used to end the server (and the
    client, the proxy, the harness) with a decimal.InvalidOperation traceback and status 1."""
    got = seconds_text_to_ms(text)
    if ms is None:
        assert got > MAX_DURATION_MS
    else:
        assert got == ms


@pytest.mark.parametrize("value", ["1e99999999999999999999", "1e-99999999999999999999"])
def test_server_cli_extreme_exponent_is_a_usage_decision_not_a_traceback(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = server.build_parser()
    if value.startswith("1e-"):  # 0 ms: a valid interval
        assert server.config_from_args(parser.parse_args(["--port", "0", "--interval", value]))
        return
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--port", "0", "--interval", value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "error:" in line and "--interval" in line]


def test_server_store_url_that_urlsplit_refuses_is_exit_1_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--store 'redis://[::1'`` (an unclosed IPv6 bracket) used to end in a traceback from
    urlsplit in the start-up log line; Appendix B: every unusable --store value is status 1."""
    status = server.main(["--port", "0", "--store", "redis://[::1"])
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    assert any("redis://[::1" in line for line in err.splitlines())


@pytest.mark.parametrize("url", ["redis://user:s3cr3t-pw@127.0.0.1:1/0", "redis://:s3cr3t-pw@[::1"])
def test_server_never_logs_the_store_password(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A store that cannot be opened used to be logged with its URL verbatim, password
    included: ``cannot open session store redis://user:PASSWORD@...``."""
    status = server.main(["--port", "0", "--store", url])
    err = capsys.readouterr().err
    assert status == 1
    assert "s3cr3t-pw" not in err
    assert "cannot open session store" in err


class _BrokenStdout(io.StringIO):
    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [(BrokenPipeError(errno.EPIPE, "Broken pipe"), 4), (OSError(errno.ENOSPC, "full"), 4)],
    ids=["EPIPE", "ENOSPC"],
)
def test_client_failure_is_not_turned_into_success_by_a_closed_stdout(
    error: OSError, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``numstream-client ... | head -c0`` against a dead server used to exit 0 (its
    BrokenPipeError handler returned EXIT_OK whatever the run's outcome), and ``> /dev/full``
    ended in a traceback. Now the run's own status (4, gave up) comes out either way."""
    with socket.socket() as unused:  # a port nothing listens on: refused at once
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setattr(sys, "stdout", _BrokenStdout(error))
    argv = ["--port", str(port), "--mode", "stateless", "-n", "3", "--max-retries", "1"]
    assert client.main(argv) == status


def test_client_success_that_cannot_be_written_is_not_status_0(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A verified result that could not be written (a full disk) is not reported as success:
    §12.4 gives status 0 only with the result on stdout."""

    async def serve_and_run() -> int:
        async with running_server(ServerConfig(interval=0.0)) as (_, port):
            monkeypatch.setattr(sys, "stdout", _BrokenStdout(OSError(errno.ENOSPC, "full")))
            args = client.build_parser().parse_args(
                ["--port", str(port), "--mode", "stateless", "-n", "3"]
            )
            args.console = None
            return await client._run(args)

    assert anyio.run(serve_and_run) == 1
    assert any("cannot write the result" in r.getMessage() for r in caplog.records)


async def test_client_names_the_reset_that_broke_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that sends WELCOME and then resets the connection: the client's log said
    ``connection broken: `` and nothing more (``f"{exc or ...}"`` is never the fallback, an
    exception object is always true, and anyio's BrokenResourceError has no text). Now it
    names the reset."""
    caplog.set_level(logging.INFO)

    async def reset_after_welcome(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()  # the HELLO (18 bytes, one segment on loopback)
            await stream.send(
                frame(0x02, struct.pack(">BBBIIIII", 1, 1, 0, 3, 0, 0, 23, 0))  # WELCOME n=3
            )
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.serve, reset_after_welcome)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        config = ClientConfig(
            port=port,
            mode=Mode.STATELESS,
            n=3,
            backoff=Backoff(initial=0.01, maximum=0.01, max_retries=1),
        )
        result = await run_client(config)
        tg.cancel_scope.cancel()
    assert result.exit_code == 4
    broken = [r.getMessage() for r in caplog.records if "connection broken" in r.getMessage()]
    assert broken, [r.getMessage() for r in caplog.records]
    assert all("reset" in line.lower() for line in broken), broken


@pytest.mark.parametrize(
    "path",
    ["/abc", "/1x", "/0/extra", "/-1", "/+1", "/0?db=", "/0?db=x", "/0?db=-1", "/0?db=1&db=2"],
)
async def test_store_url_with_a_database_that_is_no_number_is_refused(path: str) -> None:
    """``--store redis://127.0.0.1:6379/abc`` used to start a server on database 0 (the Redis
    client reads an unparsable path as no database): a typo silently split a shared store.
    Refused before any connection is tried (the port here has nothing listening), and so is
    a ``db=`` parameter that is empty, not decimal digits or given twice (Appendix B, 1.2)."""
    with pytest.raises(ValueError, match="database"):
        await open_store(f"redis://127.0.0.1:1{path}")


@pytest.mark.parametrize("path", ["", "/", "/0", "/15", "/007", "/0?db=5", "?db=3"])
async def test_store_url_database_forms_that_stay_accepted(path: str) -> None:
    """The forms of Appendix B (``/DB`` optional, default 0; one ``db=DB`` wins over it) get as
    far as connecting."""
    with pytest.raises(StoreError):  # nothing listens on port 1: the URL itself was accepted
        await open_store(f"redis://127.0.0.1:1{path}")


@pytest.mark.parametrize("url", ["memory:", "memory://x", "MEMORY://", "memory:///"])
async def test_other_spellings_of_the_memory_store_are_refused(url: str) -> None:
    """breaker A1: Appendix B (1.2) names one spelling, ``memory://``; the reference used to
    take any ``memory:`` URL for it."""
    with pytest.raises(ValueError, match="memory://"):
        await open_store(url)


def test_harness_server_process_never_logs_the_store_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The chaos harness's own server process (``--redis-url`` with a password) had the same
    verbatim ``cannot open session store redis://user:PASSWORD@...`` line."""
    status = server_process.main(["--seed", "1", "--store", "redis://user:s3cr3t-pw@127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert status == 1
    assert "s3cr3t-pw" not in err
    assert "cannot open session store" in err


# --- F13: the chaos harness checks a success against what the client was sent -------------------

LIAR = """\
import json, socket, struct, sys
from reference.protocol.frames import decode_welcome
how, port, mode, client_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[5]
n = int(sys.argv[4])
a = 0
if how != "silent":
    with socket.create_connection(("127.0.0.1", port)) as s:
        if mode == "stateful":
            payload = struct.pack(">BBBII", 1, 2, 0, n, 0) + client_id.encode()
        elif how.startswith("resume="):  # RESUME at index 0 with an a of its own choosing
            payload = struct.pack(">BBBIII", 1, 1, 1, n, 0, int(how[7:]))
        else:
            payload = struct.pack(">BBBIII", 1, 1, 0, n, 0, 0)
        s.sendall(struct.pack(">BH", 1, len(payload)) + payload)
        f = s.makefile("rb")
        head = f.read(3)
        welcome = decode_welcome(f.read(struct.unpack(">BH", head)[1]))
        a = welcome.a
        while how.startswith("resume="):  # takes the whole stream, up to FINAL
            kind, length = struct.unpack(">BH", f.read(3))
            f.read(length)
            if kind != 3:
                break
    # "formula": hung up right after the WELCOME, then claims what it never received
first = a or 7
doc = {"mode": mode, "n": n, "ok": True, "reconnects": 0, "received": n, "error": None}
if mode == "stateless":
    doc.update(first=str(first), sum=str(first * (2**n - 1)))
else:
    doc.update(client_id=client_id, checksum_expected="ab" * 32, checksum_computed="ab" * 32)
print(json.dumps(doc))
"""


def _liar_run(tmp_path: Path, how: str, **options: Any) -> ChaosOptions:
    liar = tmp_path / "liar.py"
    liar.write_text(LIAR)
    command = f"{shlex.quote(sys.executable)} {liar} {how} {{port}} {{mode}} {{n}} {{client_id}}"
    return ChaosOptions(client_cmd=command, seed=11, timeout=60, **options)


def _only_false_successes(report: ChaosReport, because: str) -> None:
    assert not report.ok
    assert report.verified == 0
    for state in report.clients:
        assert state.phase is ClientPhase.FALSE_SUCCESS, state.to_json()
        assert state.reason is not None
        assert because in state.reason, state.reason
        line = client_line(state)
        assert "FALSE SUCCESS: claimed" in line
        assert "FALSE SUCCESS: FALSE SUCCESS" not in line


async def test_chaos_fails_a_stateless_success_from_a_client_that_never_connected(
    tmp_path: Path,
) -> None:
    """breaker F13: a client that prints first = 7 and 7·(2^n - 1) without connecting was
    "verified" (the harness trusted the client's own ``first``). No WELCOME reached it through
    its proxy listener: FALSE SUCCESS (named once in its line, not "FALSE SUCCESS: FALSE
    SUCCESS")."""
    report = await run_chaos(_liar_run(tmp_path, "silent", clients=1, mode="stateless", n=5))
    _only_false_successes(report, "no WELCOME reached the client")


async def test_chaos_fails_a_success_computed_from_the_welcome_without_the_stream(
    tmp_path: Path,
) -> None:
    """breaker F13: a client that reads the WELCOME, hangs up and prints a·(2^n - 1) from its
    ``a`` (stateless), or two equal checksums it never received (stateful, against a
    ``--server-cmd`` server with per-server memory:// stores, where the harness cannot read
    the seed) passed. The proxy saw the frames it handed on stop far short of FINAL (the
    server needs n x interval = 10 s to pace 1,000 numbers; the client hangs up at once)."""
    stateless = await run_chaos(_liar_run(tmp_path, "formula", clients=2, mode="stateless", n=1000))
    _only_false_successes(stateless, "not the whole stream up to FINAL")
    python = shlex.quote(sys.executable)
    server = f"{python} -m reference.server --port {{port}} --interval {{interval}}"
    stateful = await run_chaos(
        _liar_run(tmp_path, "formula", clients=1, mode="stateful", n=1000, server_cmd=(server,))
    )
    _only_false_successes(stateful, "not the whole stream up to FINAL")


async def test_chaos_fails_a_stateless_success_for_an_a_the_server_never_drew(
    tmp_path: Path,
) -> None:
    """breaker F13: a client that RESUMEs at index 0 with an ``a`` of its own and takes the
    whole stream has a true sum for an ``a`` the harness's server never handed out (its draws
    come from the run seed): the proxy saw every frame, the server's draws refute it."""
    drawn = seeded_stateless_a(11, 1, 0)  # the one draw a single connection can cause
    mine = drawn % 255 + 1
    report = await run_chaos(
        _liar_run(tmp_path, f"resume={mine}", clients=1, mode="stateless", n=20, interval=0)
    )
    _only_false_successes(report, f"never drew a = {mine}")


def test_wire_evidence_covers_a_stream_only_up_to_final_without_gaps() -> None:
    """The coverage rule on its own, against frame sizes computed by hand (spec §4.3: header
    3 + index 4 + the value's minimal big-endian bytes; a = 1: frame k carries 2^k, k//8 + 1
    bytes): connections of a stream of n = 20 that together reach FINAL verify, a gap or a
    last frame cut short does not."""
    welcome = 26
    sizes = [3 + 4 + k // 8 + 1 for k in range(20)]

    def conn(first: int, whole: int, extra: int = 0) -> tuple[NspShape, int]:
        shape = shape_of(Mode.STATELESS, 20, first, 1)
        return shape, welcome + sum(sizes[first : first + whole]) + extra

    complete = WireEvidence.of([conn(0, 12, extra=5), conn(12, 8)], drawn_a=frozenset({1}))
    assert complete.unsent(mode="stateless", n=20, a=1) is None
    gap = WireEvidence.of([conn(0, 11), conn(12, 8)])
    assert "0..10" in (gap.unsent(mode="stateless", n=20, a=1) or "")
    short = WireEvidence.of([conn(0, 19, extra=sizes[19] - 1)])  # FINAL one byte short
    assert "frame 19 never whole" in (short.unsent(mode="stateless", n=20, a=1) or "")
    undrawn = WireEvidence(connections=complete.connections)  # a --server-cmd server's
    assert "n=20 a=2" in (undrawn.unsent(mode="stateless", n=20, a=2) or "")
    assert "n=21" in (undrawn.unsent(mode="stateless", n=21, a=1) or "")
    assert "never drew" in (complete.unsent(mode="stateless", n=20, a=3) or "")
    assert "no WELCOME" in (WireEvidence.of([(None, 100)]).unsent(mode="stateful", n=20) or "")


# --- F7: a signal while a program is still loading its modules ----------------------------------

#: Each program, arguments that would start it, and its documented status per signal (as in
#: tests/test_cli_signals.py): server and proxy 0, the others 130 (SIGINT) and 143 (SIGTERM).
_LOADING = [
    (("reference.server", "--port", "0"), (0, 0)),
    (("reference.client", "--port", "1", "--mode", "stateless", "-n", "3"), (130, 143)),
    (("proxy", "--listen", "0", "--upstream", "127.0.0.1:1"), (0, 0)),
    (("harness.chaos", "--clients", "1", "-n", "1", "--ui", "plain"), (130, 143)),
    (("harness.conformance", "server", "--port", "1"), (130, 143)),
]


def _default_sigint() -> None:
    """In the child: SIGINT as an interactive shell leaves it (a non-interactive shell's
    background job inherits it ignored, which would hide the defect)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_while_loading(command: list[str], signum: signal.Signals) -> tuple[int, str, str]:
    """Run ``command`` under ``-X importtime`` (its imports reported as each completes) and
    send ``signum`` at the first report of an anyio module, i.e. while the program's heavy
    imports are under way, before it could have installed any handler of its own. Its exit
    status, stdout and stderr (without the import reports)."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
        preexec_fn=_default_sigint,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if "anyio" in line:
                break
        else:
            pytest.fail("the program never imported anyio")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    messages = "\n".join(line for line in err.splitlines() if not line.startswith("import time:"))
    return proc.returncode, out, messages


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize(("argv", "statuses"), _LOADING, ids=[a[0] for a, _ in _LOADING])
def test_a_signal_while_the_program_loads_gets_the_documented_status(
    argv: tuple[str, ...], statuses: tuple[int, int], signum: signal.Signals
) -> None:
    """breaker F7: SIGINT while ``python -m reference.server`` (or the client, proxy, chaos,
    conformance) was still importing its modules gave a KeyboardInterrupt traceback from
    inside an import, SIGTERM death by the signal (-15). Now the documented status, no
    traceback, nothing started."""
    status, out, err = _signal_while_loading([sys.executable, "-m", *argv], signum)
    assert "Traceback" not in err, err
    assert status == statuses[signum == signal.SIGTERM], err
    assert out == ""
    assert "listening" not in err  # it never started


@pytest.mark.parametrize(
    ("script", "argv", "statuses"),
    [
        ("numstream-" + program.split(".")[-1], argv, statuses)
        for (program, *argv), statuses in _LOADING
    ],
    ids=[a[0] for a, _ in _LOADING],
)
def test_a_signal_while_a_console_script_loads_gets_the_documented_status(
    script: str, argv: list[str], statuses: tuple[int, int]
) -> None:
    """The same for the console scripts (pyproject.toml), which used to import their whole
    program before any of its code ran: now ``reference.early`` guards first. SIGTERM, the
    signal that killed them outright."""
    path = Path(sys.executable).parent / script
    if not path.exists():
        pytest.skip(f"{script} is not installed next to {sys.executable}")
    status, out, err = _signal_while_loading([str(path), *argv], signal.SIGTERM)
    assert "Traceback" not in err, err
    assert status == statuses[1], err
    assert out == ""


@pytest.mark.parametrize("path", ["/proc/nope", "/proc/self/status"])
def test_chaos_event_log_that_cannot_be_written_is_a_usage_error(path: str) -> None:
    """breaker F11: ``python -m harness.chaos --event-log /proc/nope`` started the run and then
    ended "run aborted: No such file or directory", status 1; ``python -m proxy`` refuses the
    same path up front. Now the chaos CLI does too: status 2, one line, nothing started."""
    done = subprocess.run(
        [sys.executable, "-m", "harness.chaos", "--clients", "1", "--event-log", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"--event-log: cannot write {path}" in done.stderr
    assert "run aborted" not in done.stderr


@pytest.mark.parametrize(
    "upstream",
    ["127.0.0.1:{port}", "localhost:{port}", "0.0.0.0:{port}", "[::ffff:127.0.0.1]:{port}"],
)
def test_proxy_refuses_to_relay_to_its_own_listen_address(upstream: str) -> None:
    """breaker F8: ``python -m proxy --listen P --upstream 127.0.0.1:P`` connected to itself in
    a chain on the first connection (2,436 descriptors after 3 s, until EMFILE). Now a usage
    error before it listens: status 2, one line."""
    port = 19050
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "--listen",
            str(port),
            "--upstream",
            upstream.format(port=port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "it would relay to itself" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("upstream", ["[::1", "::1]:9000", "[]:9000"])
def test_proxy_upstream_with_unbalanced_brackets_is_a_usage_error(upstream: str) -> None:
    """breaker F8: ``--upstream '[::1'`` was accepted (host ':' port 1) and every connection
    then failed. Now: status 2, the usual one-line message for a bad value."""
    from proxy.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--listen", "0", "--upstream", upstream])
    assert exit_info.value.code == 2


async def test_a_write_stall_is_logged_as_the_server_closing_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """breaker F9: a client that stopped reading was logged "client stopped reading for 10 s;
    closing" without its [conn id], then "[id] ended after 10.9 s: client closed the connection
    before FINAL", though the server closed it. Now both lines carry the connection's id and
    the ending says the server closed it for a write stall (stall bound shortened here)."""
    monkeypatch.setattr(server, "_WRITE_STALL_TIMEOUT", 0.3)
    ended = anyio.Event()
    records: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            if "ended after" in record.getMessage():
                ended.set()

    handler = Catch(logging.INFO)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        async with running_server(ServerConfig(interval=0.0)) as (_, port):
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(frame(0x01, struct.pack(">BBBIII", 1, 1, 0, 65535, 0, 0)))
                with anyio.fail_after(30):
                    await ended.wait()  # never reading: the server's writes stall
    finally:
        logging.getLogger().removeHandler(handler)
    messages = [r.getMessage() for r in records if r.name.startswith("reference")]
    stall = [m for m in messages if "stopped reading" in m]
    end = [m for m in messages if "ended after" in m]
    assert stall, messages
    assert all(m.startswith("[") for m in stall), stall
    assert end, messages
    assert "write stall" in end[0], end
    assert "client closed the connection" not in end[0], end


def _conformance(*argv: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.conformance", "server", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )


def test_conformance_list_to_a_full_device_is_one_line() -> None:
    """breaker F6: ``python -m harness.conformance server --list > /dev/full`` ended in an
    OSError traceback through rich's Console. Now one line, status 1."""
    with open("/dev/full", "w") as full:
        done = _conformance("--list", stdout=full)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == "cannot write to stdout: No space left on device"


def test_conformance_server_command_that_cannot_start_is_one_line() -> None:
    """breaker F10: ``--server-cmd "/nonexistent --port {port}"`` gave a FileNotFoundError
    traceback in an exception group, status 1. Now one line, status 3 (the target could not
    be started, as --help documents)."""
    done = _conformance("--server-cmd", "/nonexistent --port {port}", "3/")
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot start /nonexistent: No such file or directory" in done.stderr


@pytest.mark.parametrize("flag", ["--html", "--json", "--junit"])
def test_conformance_report_path_that_cannot_be_created_is_refused_before_the_run(
    flag: str,
) -> None:
    """breaker F10: ``--html /proc/x.html`` ran every case, then a FileNotFoundError traceback.
    Now a usage error up front (status 2, one line), as harness.chaos does; nothing ran (the
    target on port 1 would have been status 3)."""
    done = _conformance("--port", "1", flag, "/proc/x.report", "3/")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith(
        f"{flag}: cannot write /proc/x.report: No such file or directory"
    )
    assert len(done.stderr.strip().splitlines()) == 1


def test_conformance_report_write_failing_at_the_end_is_one_line() -> None:
    """breaker F10: ``--json /dev/full`` (creatable, but full) ended in an OSError traceback
    after the run. Now the table, then one line, status 1."""
    done = _conformance("--json", "/dev/full", "3/eof-after-two-bytes")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot write report /dev/full: No space left on device" in done.stderr
