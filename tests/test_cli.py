"""The command lines as users run them: output channels, exit statuses, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from .oracle import doubling_sum
from .redis_fixture import free_port
from .support import RawReader, listening_process, stateful_hello

PYTHON = sys.executable


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@contextmanager
def server(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    argv = [PYTHON, "-m", "reference.server", "--port", str(port), *args]
    with listening_process(argv, port) as proc:
        yield proc, port


@pytest.mark.parametrize("module", ["reference.server", "reference.client"])
def test_help_explains_and_exits_zero(module: str) -> None:
    done = run(module, "--help")
    assert done.returncode == 0
    assert "Exit status" in done.stdout
    assert "--port" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["reference.client", "--port", "9", "--mode", "stateless"],  # stateless needs -n
        ["reference.client", "--port", "9", "--mode", "stateless", "-n", "0"],
        ["reference.client", "--port", "9", "--mode", "stateless", "-n", "65536"],
        ["reference.client", "--port", "9", "--mode", "stateful", "--client-id", "nope"],
        ["reference.client", "--port", "70000", "--mode", "stateless", "-n", "3"],
        ["reference.server", "--port", "9000", "--interval", "-1"],
        ["reference.server"],
        # Spec 1.1: every numeric option is range-checked at start-up (§13.1, Appendices A, B).
        ["reference.server", "--port", "9000", "--interval", "5000000"],  # 5e9 ms > u32
        ["reference.server", "--port", "9000", "--session-ttl", "inf"],
        ["reference.server", "--port", "9000", "--max-connections", "0"],
        ["reference.client", "--port", "9", "--mode", "stateless", "-n", "0x10"],
        ["reference.client", "--port", "9", "--mode", "stateful", "--backoff-initial", "2500000"],
        ["reference.client", "--port", "9", "--mode", "stateful", "--connect-timeout", "0.0004"],
    ],
)
def test_bad_arguments_exit_2_with_a_message(args: list[str]) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert "error:" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_stateless_client_prints_exact_sum_on_stdout() -> None:
    with server("--interval", "0") as (_, port):
        # Spec 1.1 Appendix A.1: --client-id is accepted and ignored in stateless mode, and -n
        # is decimal digits (leading zeros allowed).
        done = run(
            "reference.client", "--port", str(port), "--mode", "stateless", "-n", "0300",
            "--client-id", str(uuid.uuid4()),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    total = int(done.stdout.strip())
    first = total // ((1 << 300) - 1)
    assert 1 <= first <= 255
    assert total == doubling_sum(first, 300)


def test_stateful_client_json_and_text() -> None:
    with server("--interval", "0") as (_, port):
        cid = str(uuid.uuid4())
        done = run(
            "reference.client", "--port", str(port), "--mode", "stateful", "-n", "50",
            "--client-id", cid, "--json",
        )  # fmt: skip
        text = run("reference.client", "--port", str(port), "--mode", "stateful", "-n", "7")
    doc = json.loads(done.stdout)
    assert done.returncode == 0
    assert doc["ok"] is True
    assert doc["mode"] == "stateful"
    assert doc["n"] == 50
    assert doc["client_id"] == cid
    assert doc["reconnects"] == 0
    assert doc["checksum_expected"] == doc["checksum_computed"]
    assert len(doc["checksum_computed"]) == 64
    lines = text.stdout.splitlines()
    assert text.returncode == 0
    assert lines[-1] == "SUCCESS"
    expected = lines[1].split()[1]
    assert lines[2].split() == ["checksum_computed", expected]


def test_rejected_request_exits_3() -> None:
    with server("--mode", "stateless", "--interval", "0") as (_, port):
        done = run("reference.client", "--port", str(port), "--mode", "stateful", "-n", "5")
    assert done.returncode == 3
    assert "UNSUPPORTED_MODE" in done.stderr
    assert done.stdout.splitlines()[-1].startswith("FAILURE")


def test_client_gives_up_with_exit_4_when_nothing_listens() -> None:
    port = free_port()
    done = run(
        "reference.client", "--port", str(port), "--mode", "stateless", "-n", "3",
        "--backoff-initial", "0.01", "--max-retries", "3", "--json",
    )  # fmt: skip
    assert done.returncode == 4
    assert json.loads(done.stdout)["error"] == "GAVE_UP"
    assert done.stderr.count("reconnecting in") == 2  # attempts 1 and 2 retried, 3 gave up
    assert "Traceback" not in done.stderr


def test_server_port_in_use_exits_1_without_traceback() -> None:
    with server() as (_, port):
        done = run("reference.server", "--port", str(port))
    assert done.returncode == 1
    assert "cannot listen" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_server_shuts_down_cleanly_and_tells_clients(signum: signal.Signals) -> None:
    async def connect_and_stop(port: int, proc: subprocess.Popen[str]) -> int:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(stateful_hello(str(uuid.uuid4()), 100))
            reader = RawReader(stream)
            welcome = await reader.next()
            assert welcome is not None
            assert welcome.type == 0x02
            proc.send_signal(signum)
            last = None
            with anyio.fail_after(10):
                while (frame := await reader.next()) is not None:
                    last = frame
            assert last is not None
            return last.error_code

    with server("--interval", "0.5") as (proc, port):
        code = anyio.run(connect_and_stop, port, proc)
        _, stderr = proc.communicate(timeout=10)
    assert code == 32  # SHUTTING_DOWN
    assert proc.returncode == 0
    assert "Traceback" not in stderr
