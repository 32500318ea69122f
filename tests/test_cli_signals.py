"""A signal at any moment of start-up or shutdown: a clean exit, the documented status, no
traceback (issue 11, points 3 and 4), for the server, the client, the proxy, the chaos harness
and the conformance suite.

Statuses (each program's --help): server and proxy 0 on SIGINT or SIGTERM (spec Appendix B);
client 130 on SIGINT (spec A.5) and 143 on SIGTERM, with nothing on stdout; chaos and
conformance 130 on SIGINT and 143 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from .redis_fixture import free_port
from .support import RawReader

PYTHON = sys.executable
SHUTTING_DOWN = 32  # spec §12.1
SIGNALS = [signal.SIGTERM, signal.SIGINT]


def _start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> str:
    """Read stderr until a line containing ``text`` (the moment the test wants to signal at)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never logged; stderr: {''.join(seen)}")


def _finish(proc: subprocess.Popen[str], seen: str) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, seen + err


@contextmanager
def _frozen_redis() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: Redis stopped with SIGSTOP."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("signum", SIGNALS)
def test_server_signal_while_opening_a_frozen_store(signum: signal.Signals) -> None:
    with _frozen_redis() as redis_port:
        proc = _start(
            "reference.server", "--port", "0", "--store", f"redis://127.0.0.1:{redis_port}/0"
        )
        seen = _wait_for_line(proc, "opening session store")
        proc.send_signal(signum)
        status, _, err = _finish(proc, seen)
    assert "Traceback" not in err
    assert status == 0, err


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_server_signal_twice_shuts_down_once_and_tells_every_connection(backend: str) -> None:
    """Five connections that never sent a HELLO all get SHUTTING_DOWN; a second SIGTERM during
    the shutdown does not cut it short."""
    port = free_port()
    proc = _start("reference.server", "--port", str(port), "--backend", backend)
    seen = _wait_for_line(proc, "listening on")

    async def connect_and_stop() -> list[int | None]:
        nonlocal seen
        streams = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(5)]
        try:
            for _ in streams:  # accepted by the server, not just queued in the kernel's backlog
                seen += _wait_for_line(proc, "accepted from")
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGTERM)
            codes: list[int | None] = []
            for stream in streams:
                last = None
                with anyio.fail_after(15):
                    while (frame := await RawReader(stream).next()) is not None:
                        last = frame
                codes.append(None if last is None else last.error_code)
            return codes
        finally:
            for stream in streams:
                await stream.aclose()

    codes = anyio.run(connect_and_stop)
    status, _, err = _finish(proc, seen)
    assert codes == [SHUTTING_DOWN] * 5
    assert "Traceback" not in err
    assert status == 0, err


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("signum", SIGNALS)
def test_client_signal_while_reconnecting(signum: signal.Signals, backend: str) -> None:
    port = free_port()  # nothing listens: the client is between attempts
    proc = _start(
        "reference.client", "--port", str(port), "--mode", "stateless", "-n", "3",
        "--backend", backend,
    )  # fmt: skip
    seen = _wait_for_line(proc, "reconnecting in")
    proc.send_signal(signum)
    status, out, err = _finish(proc, seen)
    assert "Traceback" not in err
    assert out == ""
    assert status == (130 if signum == signal.SIGINT else 143)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("signum", SIGNALS)
def test_client_signal_in_handshake(signum: signal.Signals, backend: str) -> None:
    with socket.socket() as silent_server:  # accepts (backlog), never answers the HELLO
        silent_server.bind(("127.0.0.1", 0))
        silent_server.listen(4)
        port = silent_server.getsockname()[1]
        proc = _start(
            "reference.client", "--port", str(port), "--mode", "stateless", "-n", "3",
            "--backend", backend, "--log-level", "debug",
        )  # fmt: skip
        seen = _wait_for_line(proc, "HELLO sent")
        proc.send_signal(signum)
        status, out, err = _finish(proc, seen)
    assert "Traceback" not in err
    assert out == ""
    assert status == (130 if signum == signal.SIGINT else 143)


@pytest.mark.parametrize("signum", SIGNALS)
def test_proxy_signal_twice(signum: signal.Signals) -> None:
    proc = _start("proxy", "--listen", "0", "--upstream", "127.0.0.1:9")
    seen = _wait_for_line(proc, "listening on")
    proc.send_signal(signum)
    proc.send_signal(signum)
    status, _, err = _finish(proc, seen)
    assert "Traceback" not in err
    assert status == 0, err


# --- the chaos harness and the conformance suite --------------------------------------------------
# Status 130 on SIGINT, 143 on SIGTERM (each one's --help), whatever the moment.


def _status(signum: signal.Signals) -> int:
    return 130 if signum == signal.SIGINT else 143


@contextmanager
def _silent_server(tmp_path: Path) -> Iterator[tuple[str, Callable[[], int]]]:
    """A ``--server-cmd`` template for a server that starts and never listens, and a call that
    blocks until it has started and returns its pid (it writes it into a FIFO: no polling)."""
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
    template = f"{shlex.quote(PYTHON)} -c {shlex.quote(code)} {shlex.quote(str(fifo))} {{port}}"

    def started() -> int:
        with open(fifo, encoding="ascii") as reader:  # blocks until the server opens it
            return int(reader.read())

    yield template, started


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie is gone too


@pytest.mark.parametrize("signum", SIGNALS)
def test_chaos_signal_while_its_server_starts(signum: signal.Signals, tmp_path: Path) -> None:
    with _silent_server(tmp_path) as (template, started):
        proc = _start(
            "harness.chaos", "--clients", "2", "--server-cmd", template, "--ui", "plain",
            "--report", str(tmp_path / "report.json"),
        )  # fmt: skip
        pid = started()
        proc.send_signal(signum)
        status, _, err = _finish(proc, "")
    assert "Traceback" not in err
    assert status == _status(signum), err
    assert _gone(pid)  # the harness stopped the server it started
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["interrupted"] is True
    assert [c["reason"] for c in report["clients"]] == ["interrupted (never started)"] * 2


@pytest.mark.parametrize("signum", SIGNALS)
def test_chaos_signal_mid_run_writes_the_partial_report(
    signum: signal.Signals, tmp_path: Path
) -> None:
    path = tmp_path / "report.json"
    proc = _start(
        "harness.chaos", "--clients", "2", "-n", "2000", "--interval", "0.01", "--ui", "plain",
        "--report", str(path),
    )  # fmt: skip
    seen = _wait_for_line(proc, "chaos: seed")  # the clients are being started
    proc.send_signal(signum)
    status, out, err = _finish(proc, seen)
    assert "Traceback" not in err
    assert status == _status(signum), err
    report = json.loads(path.read_text())
    assert report["interrupted"] is True
    assert not report["ok"]
    assert len(report["clients"]) == 2
    assert out.startswith("chaos: 0/2 clients verified"), out


@pytest.mark.parametrize("signum", SIGNALS)
def test_chaos_second_signal_while_stopping_aborts_cleanly(signum: signal.Signals) -> None:
    proc = _start(
        "harness.chaos", "--clients", "2", "-n", "2000", "--interval", "0.01", "--ui", "plain",
    )  # fmt: skip
    seen = _wait_for_line(proc, "chaos: seed")
    proc.send_signal(signum)
    seen += _wait_for_line(proc, "stopping clients")
    proc.send_signal(signum)
    status, _, err = _finish(proc, seen)
    assert "Traceback" not in err
    assert status == _status(signum), err


@pytest.mark.parametrize("signum", SIGNALS)
def test_conformance_signal_while_its_server_starts(signum: signal.Signals, tmp_path: Path) -> None:
    with _silent_server(tmp_path) as (template, started):
        proc = _start("harness.conformance", "server", "--server-cmd", template)
        pid = started()
        proc.send_signal(signum)
        status, _, err = _finish(proc, "")
    assert "Traceback" not in err
    assert status == _status(signum), err
    assert _gone(pid)


@pytest.mark.parametrize("signum", SIGNALS)
def test_conformance_signal_mid_run_stops_the_server_it_started(signum: signal.Signals) -> None:
    proc = _start("harness.conformance", "server", "--log-level", "info")
    seen = _wait_for_line(proc, "server on port")
    port = int(re.search(r"server on port (\d+)", seen).group(1))  # type: ignore[union-attr]
    proc.send_signal(signum)
    status, _, err = _finish(proc, seen)
    assert "Traceback" not in err
    assert status == _status(signum), err
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
