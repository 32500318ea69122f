"""The conformance suite (``python -m harness.conformance``) against our implementations, and
against deliberately broken ones so that the suite itself is shown able to fail.

Each run goes through the real command line and reads the ``--json`` report. Our Python server
and client must have no FAIL and no NON-STRICT case, the Node client no FAIL, except the cases
listed in PENDING (empty now). A pending case may pass or fail; any other FAIL breaks the
test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.conformance import audit
from harness.conformance.client_role import client_cases
from harness.conformance.server_role import server_cases

from .descendants import Reaped, command_line, run_reaped
from .redis_fixture import redis_server_or_skip

ROOT = Path(__file__).resolve().parent.parent
NODE_CLIENT = ROOT / "interop" / "node-client" / "client.js"
TIMING = (
    "--backoff-initial {backoff_initial} --backoff-max {backoff_max} --max-retries {max_retries} "
    "--connect-timeout {connect_timeout} --min-silence {min_silence}"
)

#: Cases allowed to FAIL for a known reason (case id -> why), e.g. a spec change the reference
#: has not caught up with yet. Empty: since spec 1.1 landed, our implementations pass every case.
PENDING: dict[str, str] = {}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server_or_skip() as url:
        yield url


def conformance(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the suite; (exit status, the --json report). Fails if the run left a process
    behind (a server, a client, a Redis), which is then killed."""
    report = tmp_path / "report.json"
    done = run_reaped(
        [sys.executable, "-m", "harness.conformance", *args, "--json", str(report)],
        cwd=ROOT,
        timeout=280,
    )
    done.assert_nothing_left()
    assert report.exists(), f"no report (exit {done.status}): {done.stderr[-2000:]}"
    return done.status, json.loads(report.read_text())


def outcomes(report: dict[str, Any], *wanted: str) -> dict[str, str]:
    return {
        case["id"]: "; ".join(case["failures"]) or case["observed"]
        for case in report["cases"]
        if case["outcome"] in wanted
    }


def assert_conforms(status: int, report: dict[str, Any], *, strict: bool) -> None:
    failed = {k: v for k, v in outcomes(report, "FAIL").items() if k not in PENDING}
    assert not failed, f"FAIL: {json.dumps(failed, indent=1)}"
    if strict:
        lax = outcomes(report, "NON-STRICT")
        assert not lax, f"NON-STRICT: {json.dumps(lax, indent=1)}"
    pending = set(outcomes(report, "FAIL")) & set(PENDING)
    assert status == (1 if pending else 0)
    assert len(report["cases"]) >= 150


@pytest.mark.timeout(300)  # a whole suite; the machine is shared and slow
def test_server_suite_against_the_reference(tmp_path: Path, redis_url: str) -> None:
    status, report = conformance(tmp_path, "server", "--redis-url", redis_url)
    assert_conforms(status, report, strict=True)
    skipped = outcomes(report, "SKIPPED")
    # with Redis and a started server only the rules no suite can observe are skipped
    assert all(why.startswith("not testable from outside") for why in skipped.values()), skipped


@pytest.mark.timeout(300)  # a whole suite; the machine is shared and slow
def test_client_suite_against_the_reference(tmp_path: Path) -> None:
    status, report = conformance(tmp_path, "client")
    assert_conforms(status, report, strict=True)


@pytest.mark.timeout(300)  # a whole suite; the machine is shared and slow
def test_client_suite_against_the_node_client(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed; CI must run the interop tests", pytrace=False)
        pytest.skip("node is not installed")
    command = f"{node} {NODE_CLIENT} --port {{port}} --mode {{mode}} -n {{n}} {{json}} {TIMING}"
    status, report = conformance(tmp_path, "client", "--client-cmd", command)
    assert_conforms(status, report, strict=False)


def test_server_suite_catches_a_broken_server(tmp_path: Path, redis_url: str) -> None:
    command = (
        f"{sys.executable} -m tests.conformance_fakes.broken_server --port {{port}} "
        "--interval {interval} --session-ttl {ttl} --store {store} --log-level warning"
    )
    status, report = conformance(
        tmp_path,
        "server",
        "7.2",
        "11.2",
        "redis-2/planted",
        "--server-cmd",
        command,
        "--redis-url",
        redis_url,
    )
    failed = outcomes(report, "FAIL")
    assert status == 1
    for case_id in (
        "11.2/resume-continues-same-values",  # FINAL's checksum is not over the values sent
        "redis-2/planted-seed-u64-max",
        "redis-2/planted-seed-vector",  # values differ from element(seed, i)
    ):
        assert case_id in failed, f"{case_id} did not catch the flipped bits"
    assert "6.1/new-stream-n-6" not in failed  # stateless is untouched and not selected


def test_client_suite_catches_a_naive_client(tmp_path: Path) -> None:
    command = (
        f"{sys.executable} -m tests.conformance_fakes.naive_client --port {{port}} "
        "--mode {mode} -n {n}"
    )
    status, report = conformance(
        tmp_path,
        "client",
        "11/",
        "5.4/stateful-welcome-version-2",
        "12.1/server-busy",
        "12.1/session-unknown-stream",
        "20.1",
        "--client-cmd",
        command,
    )
    failed = outcomes(report, "FAIL")
    passed = outcomes(report, "PASS")
    assert status == 1
    assert "20.1/stateless-text" in passed  # the happy path is right
    assert "11/stateful-cut-after-two-numbers-fin" in failed  # never reconnects
    assert "5.4/stateful-welcome-version-2" in failed  # accepts any WELCOME
    assert "12.1/server-busy-hello-stateless" in failed  # a retryable code is not retried
    assert "12.1/session-unknown-stream-stateful" in failed  # exit 0 after a final ERROR


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    for args, needle in [
        (["server", "--ttl", "0"], "--ttl"),
        (["server", "--port", "70000"], "--port"),
        (["client", "--max-retries", "1"], "--max-retries"),
        (["server", "--concurrency", "x"], "--concurrency"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.conformance", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert needle in lines[0], proc.stderr
        assert "allowed" in lines[0], proc.stderr
        assert proc.stdout == ""


def test_unknown_section_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.conformance", "server", "99.9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "99.9" in proc.stderr


def test_outputs_junit_and_html(tmp_path: Path) -> None:
    junit, page = tmp_path / "r.xml", tmp_path / "r.html"
    status, report = conformance(
        tmp_path, "server", "5.3/step9", "--junit", str(junit), "--html", str(page)
    )
    assert status == 0
    ids = {case["id"] for case in report["cases"]}
    assert ids
    assert all(i.startswith("5.3/step9") for i in ids)
    for case in report["cases"]:
        assert set(case) >= {"id", "outcome", "expected", "observed", "duration"}
    xml = junit.read_text()
    assert xml.count("<testcase") == len(ids)
    html = page.read_text()
    assert "5.3/step9-n-65537-u32" in html
    assert "01 00 0f 01 01 00 00 01 00 01" in html  # the HELLO with n = 0x10001, in hex


# -- the suite leaves nothing running, however it ends -------------------------------------------


def _started(argv: list[str], program: str, count: int) -> Reaped:
    """The suite under the reaper, once ``count`` of its descendants run ``program``."""
    run = Reaped(argv, cwd=ROOT)
    deadline = time.monotonic() + 60
    while sum(program in command_line(pid) for pid in run.descendants()) < count:
        assert run.proc.poll() is None, run.finish(0)
        assert time.monotonic() < deadline, f"the suite never ran {count} x {program}"
        time.sleep(0.05)  # polling /proc for a condition, not a timed assertion
    return run


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize(
    ("role", "args", "program", "count"),
    [
        # the server under test, then a server of each case (two of them with a Redis of
        # their own), all alive together after about 2 s
        (
            "server",
            [
                "--redis",
                "13/re-anchor",
                "14.2/write-stall",
                "16.4/store-down",
                "redis-7/operations-time-out",
            ],
            "reference.server",
            5,
        ),
        # clients waiting on a black hole for 10 s
        ("client", ["14.1/connect-timeout", "15/backoff-and-give-up"], "reference.client", 2),
    ],
)
def test_a_signal_mid_run_leaves_no_process_behind(
    role: str, args: list[str], program: str, count: int, signum: signal.Signals
) -> None:
    run = _started([sys.executable, "-m", "harness.conformance", role, *args], program, count)
    run.proc.send_signal(signum)  # the reaper hands it to the suite
    done = run.finish(60)
    assert done.status == (130 if signum == signal.SIGINT else 143), done.stderr
    assert "Traceback" not in done.stderr
    done.assert_nothing_left()


def test_cases_cut_by_their_timeout_leave_no_process_behind(tmp_path: Path) -> None:
    """--case-timeout 3 cancels cases while they use servers (and a Redis) of their own: the
    run reports them FAIL and stops every one of them (``conformance`` checks that)."""
    status, report = conformance(
        tmp_path, "server", "--case-timeout", "3", "13/re-anchor", "14.2/write-stall",
        "16.4/store-down", "redis-7/operations-time-out",
    )  # fmt: skip
    assert status == 1
    cut = {c["id"] for c in report["cases"] if "did not finish within 3 s" in str(c["failures"])}
    # 9 s and 14 s of socket work in threads, cancelled from the event loop
    assert {"13/re-anchor-after-blocked-writes", "14.2/write-stall-is-a-drop"} <= cut, cut


# -- the audit: every section with a MUST or SHOULD has a case ------------------------------------


def _keywords_in_prose(text: str) -> int:
    """MUST/SHOULD occurrences in the audited prose of a spec document, counted on the raw
    text: code blocks, headings, the text before §1 and the changelog (§22) left out."""
    count, in_code, skipping = 0, False, True
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if line.startswith("## "):
            skipping = not line[3:4].isdigit() and not line.startswith("## Appendix")
            skipping = skipping or line.startswith("## 22.")
        if in_code or skipping or line.startswith("#"):
            continue
        count += len(audit.KEYWORDS.findall(line))
    return count


def test_every_section_with_a_must_or_should_has_a_case() -> None:
    sections = audit.spec_sections()
    server, client = server_cases(), client_cases()
    rows = audit.coverage(sections, server, client)
    assert not [row.section.name for row in rows if row.gap]
    assert not audit.unknown_sections(sections, [*server, *client])
    # no sentence is lost on the way: the keywords of the sentences found are those of the text
    for name, prefix in (("PROTOCOL.md", ""), ("STORE-REDIS.md", "redis-")):
        found = audit.parse(audit.SPEC / name, prefix)
        in_sentences = sum(len(audit.KEYWORDS.findall(t)) for s in found for t in s.sentences)
        assert in_sentences == _keywords_in_prose((audit.SPEC / name).read_text()), name
    by_name = {s.name: s for s in sections}
    assert any("apply these checks in this order" in t for t in by_name["5.3"].sentences)
    assert any("refresh all of their leases" in t for t in by_name["redis-4.1"].sentences)
    assert "22" not in by_name


def test_audit_command_lists_no_gap() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.conformance.audit", "--gaps"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 gap(s)" in proc.stdout


def test_an_error_after_a_frame_cut_short_is_found() -> None:
    """14.2/no-error-after-cut-write's verdict on the bytes after the last whole frame."""
    from harness.conformance import wire
    from harness.conformance.server_store import _error_after_torn_frame

    cut = wire.stateless_number(255, 65535, 60000)[:4738]  # 3f c0 then zeros: no 0x05 inside
    shutting_down = wire.error(32, "server shutting down")
    assert _error_after_torn_frame(cut) is None
    assert _error_after_torn_frame(cut + shutting_down) == 32
    assert _error_after_torn_frame(cut + wire.error(30)) == 30  # empty message too
    assert _error_after_torn_frame(cut + shutting_down[:-1]) is None  # not a whole ERROR


def test_server_suite_catches_a_release_after_a_failed_complete(
    tmp_path: Path, redis_url: str
) -> None:
    command = (
        f"{sys.executable} -m tests.conformance_fakes.releasing_server --port {{port}} "
        "--interval {interval} --session-ttl {ttl} --store {store} --log-level error"
    )
    status, report = conformance(
        tmp_path, "server", "16.6/complete-fails", "--server-cmd", command, "--redis-url", redis_url
    )
    assert status == 1
    assert "released after the failed COMPLETE" in outcomes(report, "FAIL")["16.6/complete-fails"]


def test_server_suite_catches_a_burst_after_blocked_writes(tmp_path: Path) -> None:
    command = (
        f"{sys.executable} -m tests.conformance_fakes.bursty_server --port {{port}} "
        "--interval {interval} --session-ttl {ttl} --store {store}"
    )
    status, report = conformance(
        tmp_path, "server", "13/re-anchor", "--strict", "--server-cmd", command
    )
    assert status == 1
    assert "burst" in outcomes(report, "NON-STRICT")["13/re-anchor-after-blocked-writes"]
