"""A harness killed with SIGKILL leaves none of its children running (breaker F15: a server
started by ``--server-cmd`` kept listening for ever after the harness was killed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.processes import child_env

#: Starts two children the way every harness runner does (processes.start; the second under a
#: shell, so that its group holds a grandchild too), prints their pids, then waits to be killed.
SCRIPT = """
import sys, anyio
from harness import processes

async def main() -> None:
    sleeper = await processes.start(["sleep", "300"])
    shell = await processes.start(["sh", "-c", "sleep 300 & echo $!; wait"])
    grandchild = (await shell.stdout.receive()).split()[0].decode()
    print(sleeper.pid, shell.pid, grandchild, flush=True)
    await anyio.sleep_forever()

anyio.run(main, backend=sys.argv[1])
"""


def _alive(pid: int) -> bool:
    """Running or stopped: not gone and not a zombie waiting for its reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_children_die_with_a_harness_killed_by_sigkill(backend: str) -> None:
    harness = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, backend],
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    pids: list[int] = []
    try:
        assert harness.stdout is not None
        pids = [int(word) for word in harness.stdout.readline().split()]
        assert len(pids) == 3
        assert all(_alive(pid) for pid in pids)
        harness.send_signal(signal.SIGKILL)
        harness.wait()
        deadline = time.monotonic() + 30  # a bound for a failure, not a timing assertion
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if _alive(pid)]
    finally:
        harness.kill()
        harness.wait()
        if harness.stdout is not None:
            harness.stdout.close()
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
