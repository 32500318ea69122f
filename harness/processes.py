"""Child-process plumbing shared by client and server runners.

Every child starts in its own session (process group): a terminal's Ctrl-C reaches only the
harness, which then ends its children itself, and killing the group also ends anything a
wrapper command (``npm start``, a shell script) started underneath.

A harness killed with SIGKILL can clean nothing up, so its children would be left running (a
server listening for ever). A watchdog process started with the first child holds the read end
of a pipe only the harness can write to, learns each child's process group from it, and kills
the groups still registered when the pipe reaches end of file: when the harness exits, however
it exits. (A clean exit has already ended and unregistered every child.)
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import string
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

import reference

#: A stderr line longer than this is cut: a misbehaving child cannot exhaust our memory.
MAX_LINE = 64 * 1024
#: How long a child asked to stop (SIGTERM) gets before SIGKILL.
TERMINATE_GRACE = 3.0


def child_env() -> dict[str, str]:
    """Our environment, with the directory holding ``reference`` importable by ``python -m``.

    The harness may run from a checkout that is not installed; its children must import the
    very same ``reference`` package it does.
    """
    env = dict(os.environ)
    root = str(Path(reference.__file__).resolve().parents[1])
    paths = [root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


#: The watchdog's program (``python -S -c``: no site import): read ``+PGID`` / ``-PGID`` lines
#: until end of file, then SIGKILL the groups left.
_WATCHDOG = """import os, signal, sys
groups = set()
for line in sys.stdin:
    sign, pgid = line[0], int(line[1:])
    (groups.add if sign == "+" else groups.discard)(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class _Watchdog:
    """The harness's end of the watchdog's pipe (one per harness process, started lazily)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0

    def _pipe(self) -> subprocess.Popen[bytes] | None:
        if self._process is None or self._owner != os.getpid():
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-S", "-c", _WATCHDOG],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # a terminal's Ctrl-C must not end it first
                )
            except OSError:
                self._process = None  # no watchdog: children are still ended on a clean exit
            self._owner = os.getpid()
        return self._process

    def _send(self, line: str) -> None:
        process = self._pipe()
        if process is None or process.stdin is None:
            return
        with contextlib.suppress(OSError):  # the watchdog is gone: nothing more to do
            process.stdin.write(line.encode())
            process.stdin.flush()

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        if self._process is not None:
            self._send(f"-{pgid}\n")


_watchdog = _Watchdog()


def python_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def template_fields(template: str) -> set[str]:
    """Placeholder names in a command template; raises ValueError if it is malformed."""
    names: set[str] = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            if not name.isidentifier():
                raise ValueError(f"bad placeholder {{{name}}} in {template!r}")
            names.add(name)
    return names


def check_template(template: str, allowed: Sequence[str]) -> None:
    """Reject unknown placeholders and unbalanced quotes before anything starts."""
    unknown = template_fields(template) - set(allowed)
    if unknown:
        known = ", ".join("{" + name + "}" for name in allowed)
        raise ValueError(
            f"unknown placeholder(s) {', '.join(sorted(unknown))} in {template!r}; use {known}"
        )
    if not shlex.split(template):
        raise ValueError("the command template is empty")


def render_template(template: str, values: Mapping[str, object]) -> list[str]:
    """Split first, then fill each word, so a value never splits into several arguments."""
    return [word.format_map(values) for word in shlex.split(template)]


async def start(
    argv: Sequence[str], *, stdout: int = subprocess.PIPE, stdin: int = subprocess.DEVNULL
) -> Process:
    """stdin is /dev/null unless asked for (a pipe): children must not read the harness's
    terminal."""
    process = await anyio.open_process(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=child_env(),
        start_new_session=True,
    )
    watch(process)
    return process


def watch(process: Process) -> None:
    """Have the watchdog kill ``process``'s group (it must lead one) if we die first."""
    _watchdog.watch(process.pid)


def forget(process: Process) -> None:
    """Tell the watchdog a reaped child's group needs no killing (its id may be reused)."""
    _watchdog.forget(process.pid)


def kill_group(process: Process, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal the child's whole process group, only while the child itself is unreaped.

    Once reaped, its pid (and so the group id) may belong to someone else.
    """
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def stop(process: Process, *, grace: float = TERMINATE_GRACE) -> None:
    """SIGTERM, then SIGKILL after ``grace``; always reaps and closes. Safe to call twice."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None and grace > 0:
            kill_group(process, signal.SIGTERM)
            with anyio.move_on_after(grace):
                await process.wait()
        kill_group(process)
        await process.aclose()
        forget(process)


async def read_all(stream: ByteReceiveStream | None, limit: int) -> bytes:
    """Everything until EOF; bytes beyond ``limit`` are read and dropped so the child never
    blocks on a full pipe."""
    data = bytearray()
    if stream is None:
        return b""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        async for chunk in stream:
            if len(data) < limit:
                data += chunk[: limit - len(data)]
    return bytes(data)


async def read_lines(stream: ByteReceiveStream | None, on_line: Callable[[str], None]) -> None:
    """Call ``on_line`` for each line until EOF, however the chunks split them."""
    if stream is None:
        return
    pending = bytearray()
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        async for chunk in stream:
            pending += chunk
            *lines, rest = pending.split(b"\n")
            for line in lines:
                on_line(line.decode("utf-8", errors="replace"))
            pending = rest
            if len(pending) > MAX_LINE:
                on_line(pending[:MAX_LINE].decode("utf-8", errors="replace"))
                pending = bytearray()
    if pending:
        on_line(pending.decode("utf-8", errors="replace"))
