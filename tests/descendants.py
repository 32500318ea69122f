"""Finding what a command left behind, however deep: servers from a ``--server-cmd``, the Redis
it started, a wrapper's children, even those that rename themselves (redis-server rewrites
its command line and environment, so neither can identify it).

``python -m tests.descendants --report FILE -- COMMAND...`` runs COMMAND as a child of a
Linux *child subreaper* (prctl PR_SET_CHILD_SUBREAPER): a process COMMAND started and did not
stop is re-parented to the reaper when COMMAND exits, wherever it was in the tree. The reaper
forwards SIGINT and SIGTERM to COMMAND, waits for it, then kills and reaps whatever is still
its child, writes those processes' command lines to FILE (a JSON list) and exits with
COMMAND's status.

``run_reaped`` runs a command that way from a test: at a timeout the command is asked to stop
(SIGTERM, so that it can stop its own children) before it is killed, and the test gets the
list of what was left running (already killed), so a failing test leaves nothing behind either.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def parents() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies excluded)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":
            found[int(entry.name)] = int(fields[1])
    return found


def descendants(root: int) -> list[int]:
    """Live processes below ``root`` in the process tree."""
    tree = parents()
    below = []
    for pid in tree:
        up = tree.get(pid)
        while up is not None and up != root and up > 1:
            up = tree.get(up)
        if up == root:
            below.append(pid)
    return below


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _reap(argv: Sequence[str], report: Path) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    child = subprocess.Popen(list(argv))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda s, _f: child.send_signal(s))
    status = child.wait()
    me = os.getpid()
    left = [pid for pid, parent in parents().items() if parent == me]
    report.write_text(json.dumps([f"{pid}: {command_line(pid)}" for pid in left]))
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    return 128 - status if status < 0 else status


@dataclass
class Finished:
    status: int
    stdout: str
    stderr: str
    leftovers: list[str]  # "pid: command line" of what was still running after the command

    def assert_nothing_left(self) -> None:
        assert not self.leftovers, f"left running: {self.leftovers}"


class Reaped:
    """``argv`` started under the reaper; ``finish`` waits for it and collects leftovers."""

    def __init__(self, argv: Sequence[str], *, cwd: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="reaper-")
        self.report = Path(self._dir.name) / "left.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.descendants", "--report", str(self.report), "--", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )

    def descendants(self) -> list[int]:
        """What the command runs now (the command itself included)."""
        return descendants(self.proc.pid)

    def finish(self, timeout: float, grace: float = 30.0) -> Finished:
        """Wait up to ``timeout``; then SIGTERM, and SIGKILL ``grace`` seconds later."""
        try:
            try:
                out, err = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    out, err = self.proc.communicate(timeout=grace)
                except subprocess.TimeoutExpired:
                    for pid in self.descendants():
                        os.kill(pid, signal.SIGKILL)
                    self.proc.kill()
                    out, err = self.proc.communicate()
                err += f"\n[stopped after {timeout:g} s]"
            left = json.loads(self.report.read_text()) if self.report.exists() else []
            return Finished(self.proc.returncode, out, err, left)
        finally:
            if self.proc.poll() is None:  # an exception here (pytest-timeout): stop it all
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._dir.cleanup()


def run_reaped(argv: Sequence[str], *, timeout: float, cwd: Path | None = None) -> Finished:
    return Reaped(argv, cwd=cwd).finish(timeout)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.descendants", description=__doc__)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    return _reap(command, args.report)


if __name__ == "__main__":
    sys.exit(main())
