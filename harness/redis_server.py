"""A throwaway ``redis-server`` for ``--store redis``: loopback only, no persistence, own dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

_STARTUP_TIMEOUT = 10.0


class RedisUnavailableError(OSError):
    """No redis-server binary, or it would not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _answers_ping(port: int) -> bool:
    try:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"PING\r\n")
            return (await stream.receive()).startswith(b"+PONG")
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
        return False


@asynccontextmanager
async def throwaway_redis() -> AsyncIterator[str]:
    """Start redis-server on a free port; yield its URL; stop it (and its data) afterwards."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisUnavailableError(
            "--store redis needs redis-server on PATH (apt-get install redis-server), "
            "or give --redis-url"
        )
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="chaos-redis-") as workdir:
        command = [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ]
        process = await anyio.open_process(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            with anyio.fail_after(_STARTUP_TIMEOUT):
                # redis-server announces readiness only in its log: poll until it answers PING.
                while not await _answers_ping(port):
                    if process.returncode is not None:
                        raise RedisUnavailableError(f"redis-server exited ({process.returncode})")
                    await anyio.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            with anyio.CancelScope(shield=True):
                process.terminate()
                with anyio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
