"""Child-process plumbing shared by client and server runners.

Every child starts in its own session (process group): a terminal's Ctrl-C reaches only the
harness, which then ends its children itself, and killing the group also ends anything a
wrapper command (``npm start``, a shell script) started underneath.
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
    return await anyio.open_process(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=child_env(),
        start_new_session=True,
    )


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
