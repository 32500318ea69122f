"""A hostile user of the command-line tools (helper "clibreak"): closed pipes, full disks,
lying clients, impossible sizes. Each test names the finding it caught (C1.. in the project's
notes); each failed before its fix. Command lines that reproduce them by hand are in the
docstrings."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.chaos import run_chaos
from harness.model import ChaosOptions, ClientPhase
from harness.streams import shape_of
from harness.verify import WireEvidence, verify_stateful
from reference.protocol import Mode

from .oracle import session_checksum, session_values

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
#: spec/PROTOCOL.md §7: DATA (type 3) and FINAL (type 4) of the stateful variant: header
#: (type u8, payload length u16), index u32, value u32, and FINAL's 32-byte checksum.
DATA, FINAL = 3, 4


def _chaos(*argv: str, stdout: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.chaos", "--ui", "plain", "--seed", "5", *argv],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


# --- C1: the chaos verdict to a stdout that cannot take it --------------------------------------


def test_chaos_verdict_to_a_reader_that_left_keeps_the_runs_status() -> None:
    """C1: ``python -m harness.chaos --clients 1 -n 3 | head -c0`` ended in a BrokenPipeError
    traceback and status 1 although every client verified. Now: no traceback, the run's own
    status (0), as the reference client does (breaker F5)."""
    process = _chaos("--clients", "1", "-n", "3", "--interval", "0", stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()  # the reader leaves before the verdict is written
    _, err = process.communicate(timeout=120)
    text = err.decode()
    assert "Traceback" not in text, text
    assert process.returncode == 0, text


@pytest.mark.parametrize("report", [None, "-"], ids=["verdict", "report-to-stdout"])
def test_chaos_verdict_to_a_full_device_is_one_line_and_status_1(report: str | None) -> None:
    """C1: ``python -m harness.chaos ... > /dev/full`` (and ``--report - > /dev/full``) ended in
    an OSError traceback. Now one line on stderr and status 1, as for a report file that cannot
    be written (a verified run nobody received is no success)."""
    extra = ["--report", report] if report else []
    with open("/dev/full", "wb") as full:
        process = _chaos("--clients", "1", "-n", "3", "--interval", "0", *extra, stdout=full)
        _, err = process.communicate(timeout=120)
    text = err.decode()
    assert "Traceback" not in text, text
    assert text.count("cannot write to stdout: No space left on device") == 1, text
    assert process.returncode == 1, text


# --- C2: a stateful checksum checked against the FINAL frame the proxy handed on ----------------

LYING_CLIENT = """\
import json, subprocess, sys
args = sys.argv[1:]
done = subprocess.run([sys.executable, "-m", "reference.client", *args, "--json"],
                      stdout=subprocess.PIPE, check=False)
doc = json.loads(done.stdout.decode().splitlines()[-1])
if doc.get("ok"):  # received and verified the whole stream: now claim other checksums
    doc["checksum_expected"] = doc["checksum_computed"] = "ab" * 32
print(json.dumps(doc))
sys.exit(done.returncode)
"""


async def test_chaos_fails_a_made_up_checksum_the_server_never_sent(tmp_path: Path) -> None:
    """C2: with ``--server-cmd`` and memory:// stores the harness cannot read the seed, so a
    stateful client that took the whole stream and then printed two equal checksums of its own
    was "verified" (only agreement was checked). The proxy handed FINAL on and keeps its last
    bytes: checksum_expected must be the one the server sent.

    Repro: ``python -m harness.chaos --mode stateful --server-cmd "python -m reference.server
    --port {port} --interval {interval}" --client-cmd "python liar.py --port {port} ..."``."""
    liar = tmp_path / "liar.py"
    liar.write_text(LYING_CLIENT)
    python = shlex.quote(sys.executable)
    client = (
        f"{python} {liar} --port {{port}} --mode {{mode}} -n {{n}} --client-id {{client_id}}"
        " --backoff-initial 0.05 --min-silence 1"
    )
    server = f"{python} -m reference.server --port {{port}} --interval {{interval}}"
    options = ChaosOptions(
        clients=1, mode="stateful", n=20, interval=0.0, seed=3, timeout=60,
        client_cmd=client, server_cmd=(server,),
    )  # fmt: skip
    report = await run_chaos(options)
    assert not report.ok
    (state,) = report.clients
    assert state.phase is ClientPhase.FALSE_SUCCESS, state.to_json()
    assert state.reason is not None
    assert "not the one in the FINAL frame" in state.reason


def _stateful_wire(seed: int, n: int, *, forwarded_extra: int = 0) -> tuple[WireEvidence, str]:
    """The wire evidence of one stateful connection that carried a whole stream of ``n``
    numbers of ``seed`` (frames built here from the spec, not by the proxy), and its checksum."""
    checksum = session_checksum(seed, n)
    values = session_values(seed, n)
    frames = b"".join(struct.pack(">BHII", DATA, 8, i, v) for i, v in enumerate(values[:-1]))
    frames += struct.pack(">BHII", FINAL, 40, n - 1, values[-1]) + checksum
    shape = shape_of(Mode.STATEFUL, n, 0, 0)
    assert shape.size == 26 + len(frames)  # the WELCOME, then every frame
    tail = (frames + b"\x00" * forwarded_extra)[-64:]
    wire = WireEvidence.of([(shape, shape.size + forwarded_extra, tail)])
    return wire, checksum.hex()


@pytest.mark.parametrize("extra", [0, 5], ids=["exact", "bytes-after-final"])
def test_a_stateful_checksum_must_be_the_one_final_carried(extra: int) -> None:
    """C2: the checksum the server's FINAL carried (SHA-256 over the PRNG, spec §8) is the only
    ``checksum_expected`` a verified client can report, whatever followed FINAL on the wire."""
    wire, truth = _stateful_wire(12345, 7, forwarded_extra=extra)
    honest = {"checksum_expected": truth, "checksum_computed": truth}
    assert verify_stateful(honest, n=7, seed=None, wire=wire).ok
    made_up = {"checksum_expected": "ab" * 32, "checksum_computed": "ab" * 32}
    verdict = verify_stateful(made_up, n=7, seed=None, wire=wire)
    assert not verdict.ok
    assert verdict.reason is not None
    assert truth in verdict.reason


def test_final_checksum_unknown_without_the_final_bytes() -> None:
    """Evidence without the FINAL bytes (shape and count only) checks as before: agreement and
    coverage, no made-up failure."""
    wire, truth = _stateful_wire(99, 3)
    bare = WireEvidence.of([(shape_of(Mode.STATEFUL, 3, 0, 0), 10_000)])
    assert bare.final_checksums(n=3) == frozenset()
    assert wire.final_checksums(n=3) == frozenset({truth})
    same = {"checksum_expected": "cd" * 32, "checksum_computed": "cd" * 32}
    assert verify_stateful(same, n=3, seed=None, wire=bare).ok


# --- C4: more clients than the open-file limit allows; a server start that times out -----------


def _limited(soft: int, hard: int) -> Any:
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return limit


def test_chaos_raises_a_low_soft_open_file_limit_instead_of_failing_clients() -> None:
    """C4: with a low soft ``ulimit -n`` (1,024 is a common default; 48 here, for 12 clients)
    the harness ran out of descriptors and blamed the clients: "FAILED: cannot start ...: Too
    many open files", "accept failed (Too many open files)" warnings, status 1. The soft limit
    is now raised to the hard one first (servers and clients inherit it).

    Repro: ``(ulimit -Sn 256; python -m harness.chaos --clients 100 -n 3 --interval 0)``."""
    process = subprocess.run(
        [sys.executable, "-m", "harness.chaos", "--ui", "plain", "--clients", "12", "-n", "2",
         "--interval", "0", "--seed", "5"],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
        preexec_fn=_limited(48, 4096), check=False,
    )  # fmt: skip
    assert "Too many open files" not in process.stderr, process.stderr[-2000:]
    assert process.returncode == 0, process.stderr[-2000:]
    assert "12/12 clients verified" in process.stdout


def test_chaos_refuses_more_clients_than_the_hard_open_file_limit_allows() -> None:
    """C4: beyond the hard limit no run can work: one line naming the limit, status 2, before
    anything starts (was: every client FAILED, or "the harness's server did not start (status
    -9): no output")."""
    process = subprocess.run(
        [sys.executable, "-m", "harness.chaos", "--clients", "100", "-n", "2"],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        preexec_fn=_limited(64, 128), check=False,
    )  # fmt: skip
    assert process.returncode == 2
    last = process.stderr.strip().splitlines()[-1]
    assert "needs about" in last
    assert "open files" in last
    assert "ulimit -Hn: 128" in last
    assert "Traceback" not in process.stderr
    assert process.stdout == ""


async def test_own_server_that_does_not_listen_in_time_is_named_as_such() -> None:
    """C4: ``--clients 30000`` (or 5,000 on a loaded machine: its own server opens one port per
    client, 8,000 took 28 s here) ended "the harness's server did not start (status -9): no
    output": the -9 was the harness's own SIGKILL after its 10 s start bound. Now the message
    says it did not listen in time, and the bound grows with the number of ports."""
    report = await run_chaos(ChaosOptions(clients=1, n=2, seed=1, server_start_timeout=0.0))
    assert not report.ok
    assert report.error is not None
    assert "did not listen on its 2 ports" in report.error
    assert "status -9" not in report.error


# --- C5: a client that leaves a background process behind --------------------------------------

FORKING_CLIENT = """\
import os, subprocess, sys
pid_file, new_session, args = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
done = subprocess.run([sys.executable, "-m", "reference.client", *args, "--json"],
                      stdout=subprocess.PIPE, check=False)
helper = subprocess.Popen(["sleep", "120"], start_new_session=new_session)  # holds our stdout
with open(pid_file, "w") as f:
    f.write(str(helper.pid))
sys.stdout.write(done.stdout.decode())
sys.stdout.flush()
sys.exit(done.returncode)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("new_session", [False, True], ids=["same-group", "own-session"])
async def test_chaos_judges_a_client_that_left_a_process_holding_its_output(
    tmp_path: Path, new_session: bool
) -> None:
    """C5: a client that exits with a right result but leaves a background process holding
    its stdout (a wrapper script starting a helper) kept the harness waiting for EOF until
    the run's timeout: "FAILED: run timed out (exit 0 ...)", and the helper outlived the run
    (the group was killed only while the client was unreaped). Now what is left of its group
    is killed when it exits, and a helper in a session of its own (out of the harness's
    reach) holds up the verdict for OUTPUT_GRACE seconds only.

    Repro: ``--client-cmd "python forker.py --port {port} --mode {mode} -n {n}"``."""
    script = tmp_path / "forker.py"
    script.write_text(FORKING_CLIENT)
    pid_file = tmp_path / "helper.pid"
    python = shlex.quote(sys.executable)
    flag = "1" if new_session else "0"
    client = f"{python} {script} {pid_file} {flag} --port {{port}} --mode {{mode}} -n {{n}}"
    options = ChaosOptions(
        clients=1, mode="stateless", n=3, interval=0.0, seed=3, timeout=20, client_cmd=client
    )
    try:
        report = await run_chaos(options)
        assert report.ok, report.to_json()
        assert not report.timed_out
        helper = int(pid_file.read_text())
        assert _alive(helper) is new_session  # a session of its own escapes any process group
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


# --- C6: the live dashboard on a terminal too small for every client's cell ---------------------


@pytest.mark.parametrize(
    ("width", "height", "clients"), [(80, 24, 200), (120, 30, 1000), (60, 15, 60), (40, 24, 100)]
)
def test_dashboard_with_more_clients_than_the_screen_holds_keeps_its_status_lines(
    width: int, height: int, clients: int
) -> None:
    """C6: with more clients than grid cells fit (200 on 80 x 24: 50 grid lines), the
    dashboard was 56 lines high; the live display crops at the bottom, so the proxy and server
    lines and most clients were never seen. Now it fits: the failed clients and those at work
    first, then a line counting the rest by state."""
    from harness.model import ClientPhase as Phase

    from .test_dashboard import make_view, render

    view = make_view(clients)
    lines = render(view, width, height)
    assert len(lines) <= height - 1, "\n".join(lines)
    assert any(line.startswith("proxy ") for line in lines), "\n".join(lines)
    assert any(line.startswith("server ") for line in lines), "\n".join(lines)
    more = [line for line in lines if line.startswith("+ ")]
    assert len(more) == 1, "\n".join(lines)
    hidden = int(more[0].split()[1])
    cells = [cell for line in lines for cell in re.findall(r"(?<!\S)(\d+) [LF] ", line)]
    assert len(cells) + hidden == clients  # every client shown or counted, once
    failed = [c for c in view.clients if c.phase in (Phase.FAILED, Phase.FALSE_SUCCESS)]
    if len(failed) <= len(cells):
        for client in failed:  # the clients that matter most are the ones shown
            assert str(client.spec.id) in cells


@pytest.mark.parametrize("width", [40, 60])
def test_final_verdict_on_a_narrow_terminal_names_each_client_whole(width: int) -> None:
    """C6: on a 40-column pane the final table clipped every cell: "stat…" (stateless or
    stateful?), "ver…", and dropped the exit and time columns. Now each client's plain line
    stands in for the table, wrapped, nothing clipped."""
    from harness.dashboard import summary_table
    from harness.model import ChaosReport

    from .test_dashboard import make_view

    view = make_view(6)
    report = ChaosReport(
        ok=False, seed=7, proxy_seed=8, duration_s=3.0, options=view.options,
        clients=view.clients, proxy={}, server={},
    )  # fmt: skip
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(summary_table(report, width))
    text = console.export_text()
    assert "…" not in text, text
    flat = " ".join(text.split())
    for state in view.clients:
        assert f"client {state.spec.id} ({state.spec.mode}, n=65535)" in flat, text


# --- C8: the harness's own server's start-up error, quoted as its raw JSON log line ------------


async def test_own_server_start_error_quotes_the_message_not_its_json() -> None:
    """C8: ``--redis-url redis://127.0.0.1:1/0`` (nothing listens) ended "did not start (status
    1): {"time": 1795983700.9, "level": "error", "logger": "harness.server_process", "message":
    "cannot open session store ..."}": the server's JSON log line, verbatim, in the error, in
    every client's line and in the summary. Now the message alone."""
    from harness.model import StoreOption

    report = await run_chaos(
        ChaosOptions(clients=1, n=2, seed=1, store=StoreOption("redis://127.0.0.1:1/0"))
    )
    assert report.error is not None
    assert "cannot open session store redis://127.0.0.1:1/0" in report.error
    assert '"level"' not in report.error
    assert "{" not in report.error


# --- C9: --report that names a directory ---------------------------------------------------------


def test_chaos_report_path_that_is_a_directory_is_refused_before_the_run(tmp_path: Path) -> None:
    """C9: ``--report /tmp`` ran the whole run, then "cannot write report /tmp: [Errno 21] Is a
    directory", status 1 (F11 checked only that the directory of the path exists). Now a usage
    error, status 2, before anything starts."""
    process = subprocess.run(
        [sys.executable, "-m", "harness.chaos", "--clients", "1", "-n", "2",
         "--report", str(tmp_path)],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert process.returncode == 2, process.stderr
    assert f"--report: {tmp_path} is a directory" in process.stderr.strip().splitlines()[-1]
    assert process.stdout == ""


# --- C10: a success that needs frames the client only ever got corrupted ------------------------

LAX_CLIENT = """\
import json, socket, struct, sys
from reference.protocol.frames import decode_welcome
port, n = int(sys.argv[1]), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", port)) as s:
    payload = struct.pack(">BBBIII", 1, 1, 0, n, 0, 0)
    s.sendall(struct.pack(">BH", 1, len(payload)) + payload)
    f = s.makefile("rb")
    length = struct.unpack(">BH", f.read(3))[1]
    a = decode_welcome(f.read(length)).a
    while True:  # every frame up to FINAL, none checked
        head = f.read(3)
        if len(head) < 3:
            break
        kind, length = struct.unpack(">BH", head)
        f.read(length)
        if kind == 4:
            break
doc = {"mode": "stateless", "n": n, "ok": True, "reconnects": 0, "error": None,
       "first": str(a), "sum": str(a * (2**n - 1))}
print(json.dumps(doc))
"""


async def test_chaos_fails_a_success_that_needs_a_frame_it_only_got_corrupted(
    tmp_path: Path,
) -> None:
    """C10: a stateless client that takes every frame up to FINAL but checks none and prints
    a·(2^n - 1) by formula was "verified" under ``--corrupt-rate 1`` (8/8 here), although a
    frame reached it only with a byte changed and never again: a client that summed what it
    received would have another sum, one that checked each value (spec §10) fails loudly.
    README: "--corrupt-rate 0.2 # never a false success". Now the frames a corrupt fault hit
    do not count as handed on: FALSE SUCCESS.

    Repro: ``python -m harness.chaos --mode stateless --clients 8 -n 50 --interval 0
    --corrupt-rate 1 --client-cmd "python lax.py {port} {n}"``."""
    from proxy import FaultConfig

    lax = tmp_path / "lax.py"
    lax.write_text(LAX_CLIENT)
    options = ChaosOptions(
        clients=2, mode="stateless", n=30, interval=0.0, seed=4, timeout=60,
        client_cmd=f"{shlex.quote(sys.executable)} {lax} {{port}} {{n}}",
        faults=FaultConfig(corrupt_rate=1.0),
    )  # fmt: skip
    report = await run_chaos(options)
    assert not report.ok
    for state in report.clients:
        assert state.phase is ClientPhase.FALSE_SUCCESS, state.to_json()
        assert state.reason is not None
        assert "reached it only as a corrupt fault left it" in state.reason


def test_a_corrupted_frame_delivered_again_intact_counts() -> None:
    """The other side of C10: a client that noticed the corrupt frame (a violation is a drop,
    spec §14.1) and resumed from it got the frame intact on its next connection: covered."""
    from harness.verify import Carried

    first = Carried("stateless", 10, 3, 0, 10, None, 4)  # frame 4 changed, all handed on
    again = Carried("stateless", 10, 3, 4, 10)  # resumed at 4
    assert WireEvidence(connections=(first,)).unsent(mode="stateless", n=10, a=3) is not None
    both = WireEvidence(connections=(first, again))
    assert both.unsent(mode="stateless", n=10, a=3) is None


# --- C11: no progress on stderr for the whole first wave of a long plain run --------------------


def test_plain_display_says_how_far_a_long_run_is() -> None:
    """C11: without a terminal (CI, pipes) the harness printed one line per finished client,
    so ``--interval 1 -n 30`` (the README's "real pace") printed nothing for 30 s, and a long
    first wave looks hung. Now a progress line every PROGRESS_EVERY seconds of the run (the
    run's clock, injected here through the view: no sleeping)."""
    from harness.dashboard import PROGRESS_EVERY, LogUI

    from .test_dashboard import make_view

    view = make_view(4)
    out = io.StringIO()
    ui = LogUI(out)
    view.now = view.started_at
    ui.start(view)
    ui.refresh()  # at 0 s: nothing yet
    assert len(out.getvalue().splitlines()) == 1  # the run's description only
    view.now = view.started_at + PROGRESS_EVERY + 0.5
    ui.refresh()
    ui.refresh()  # once per period, however often it is refreshed
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    total = sum(c.spec.n for c in view.clients)
    done = sum(c.phase.finished for c in view.clients)
    assert lines[1].startswith(f"chaos: {PROGRESS_EVERY + 0.5:.0f} s: {done}/4 clients done")
    assert f"/{total:,} numbers" in lines[1]
    view.now = view.started_at + 3.2 * PROGRESS_EVERY  # a slow refresh skips, never repeats
    ui.refresh()
    assert len(out.getvalue().splitlines()) == 3


# --- C12: the proxy's event log on a full disk ---------------------------------------------------


def test_proxy_event_log_that_fills_up_is_one_line_and_status_1_not_a_crash() -> None:
    """C12: ``python -m proxy ... --event-log /dev/full`` (a disk that fills up during a run)
    died with an OSError traceback at its first fault, dropping every connection it relayed;
    closing the file at exit raised it again. Now one ERROR line, the proxy goes on relaying
    (here: refusing, as asked), and its exit status after SIGTERM is 1, not 0."""
    with subprocess.Popen(
        [sys.executable, "-m", "proxy", "--listen", "0", "--upstream", "127.0.0.1:1",
         "--event-log", "/dev/full", "--refuse-rate", "1", "--seed", "1"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    ) as process:  # fmt: skip
        try:
            assert process.stderr is not None
            line = process.stderr.readline()  # "listening on 127.0.0.1:PORT"
            port = int(line.rsplit(":", 1)[1])
            for _ in range(2):  # the first fault's log write fails; the proxy must still serve
                with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                    assert conn.recv(16) == b""  # accepted and closed: a refuse period
            process.send_signal(signal.SIGTERM)
            err = process.stderr.read()
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert "Traceback" not in err, err
    assert err.count("cannot write the event log (No space left on device)") == 1, err
    assert status == 1, err


# --- C13: the default run bound with --concurrency ------------------------------------------------


@pytest.mark.parametrize(
    ("clients", "concurrency", "n", "interval", "bound"),
    [
        (20, None, 200, 0.01, 30 + 4 * 200 * 0.01),  # the default run: one wave, unchanged
        (40, 1, 5, 0.0, 40 * 30.0),  # 40 waves at interval 0: 30 s each, not 30 s in all
        (10, 4, 100, 0.5, 3 * (30 + 4 * 100 * 0.5)),  # 3 waves
    ],
)
def test_default_timeout_grows_with_every_wave_of_clients(
    clients: int, concurrency: int | None, n: int, interval: float, bound: float
) -> None:
    """C13: ``python -m harness.chaos --clients 40 --concurrency 1 -n 5 --interval 0`` ended
    "19/40 clients verified ... TIMED OUT after 30 s", exit 1, with nothing wrong: the default
    bound, documented as "30 + 4·n·interval per wave", multiplied only the interval term by the
    waves, so at --interval 0 every wave shared one 30 s."""
    options = ChaosOptions(clients=clients, concurrency=concurrency, n=n, interval=interval)
    assert options.effective_timeout == pytest.approx(bound)


# --- C14: a usage error of the chaos harness or the proxy is argparse's whole usage block --------


@pytest.mark.parametrize(
    ("module", "argv", "says"),
    [
        ("harness.chaos", ["--clients", "0"], "argument --clients: invalid value '0'"),
        (
            "harness.chaos",
            ["--drop-rate", "0.6", "--reset-rate", "0.6"],
            "--drop-rate + --reset-rate + --blackhole-rate + --partition-rate + --corrupt-rate "
            "must not exceed 1",
        ),
        (
            "proxy",
            [
                "--listen",
                "9",
                "--upstream",
                "127.0.0.1:1",
                "--corrupt-rate",
                "1",
                "--drop-rate",
                "1",
            ],
            "--drop-rate + --reset-rate",
        ),
        ("harness.chaos", ["--replay", "/nonexistent.json"], "--replay: cannot read"),
        ("proxy", ["--listen", "x", "--upstream", "127.0.0.1:1"], "invalid value 'x'"),
        ("proxy", ["--listen", "9"], "required: --upstream"),
    ],
)
def test_chaos_and_proxy_usage_errors_are_one_line(module: str, argv: list[str], says: str) -> None:
    """C14: a bad value printed argparse's usage block first (20 lines for the chaos harness,
    10 for the proxy) with the error last; the house rule, and the reference server and client
    since specread S4, is one line. Now ``PROG: error: MESSAGE (see --help)``, status 2."""
    process = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert process.returncode == 2
    lines = process.stderr.splitlines()
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith(f"python -m {module}: error: ")
    assert says in lines[0]
    assert lines[0].endswith("(see --help)")
    assert process.stdout == ""
