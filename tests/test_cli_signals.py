"""A signal at any moment of start-up or shutdown: a clean exit, the documented status, no
traceback (issue 11, points 3 and 4), for the server, the client and the proxy.

Statuses (each program's --help): server and proxy 0 on SIGINT or SIGTERM (spec Appendix B);
client 130 on SIGINT (spec A.5) and 143 on SIGTERM, with nothing on stdout.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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
