"""A throwaway ``redis-server`` for ``--store redis``: loopback only, its own directory, and
persistence only when the run restarts it (``--store-restart-interval``)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import Process

from harness import processes
from harness.keyevents import NOTIFY_FLAGS
from harness.ports import free_ports

_STARTUP_TIMEOUT = 10.0


class RedisUnavailableError(OSError):
    """No redis-server binary, or it would not start."""


async def _answers_ping(port: int) -> bool:
    try:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"PING\r\n")
            return (await stream.receive()).startswith(b"+PONG")
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
        return False


class ManagedRedis:
    """A redis-server the harness owns: it can freeze it (SIGSTOP/SIGCONT) and restart it. It
    publishes keyspace events for deletions and expiries (``harness.keyevents``).

    With ``persistent`` every write is appended to an AOF and fsynced before Redis answers
    (``appendfsync always``), so a restart (SIGTERM, then start again on the same port and
    directory) loses no session.
    """

    def __init__(self, exe: str, port: int, workdir: str, *, persistent: bool) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.pauses = 0
        self.restarts = 0
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else []
        self._command = [
            exe,
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir),
            *(persistence or ["--appendonly", "no"]),
            # Deletions published, so the harness hears every completed session (keyevents).
            *("--notify-keyspace-events", NOTIFY_FLAGS),
        ]
        self._process: Process | None = None

    async def start(self) -> None:
        self._process = process = await anyio.open_process(
            self._command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # stopped by us, after the servers that use it
        )
        processes.watch(process)
        with anyio.fail_after(_STARTUP_TIMEOUT):
            # redis-server announces readiness only in its log: poll until it answers PING.
            while not await _answers_ping(self.port):
                if process.returncode is not None:
                    raise RedisUnavailableError(f"redis-server exited ({process.returncode})")
                await anyio.sleep(0.05)

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGCONT)  # a frozen Redis cannot act on SIGTERM
                process.terminate()
                with anyio.move_on_after(5):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        processes.forget(process)
        self._process = None

    async def pause(self, seconds: float) -> None:
        """Freeze the server for ``seconds`` (SIGSTOP, then SIGCONT, even if cancelled)."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGSTOP)
        self.pauses += 1
        try:
            await anyio.sleep(seconds)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGCONT)

    async def restart(self) -> None:
        """Stop it (it flushes its AOF on SIGTERM) and start it again on the same port."""
        await self.stop()
        await self.start()
        self.restarts += 1


@asynccontextmanager
async def managed_redis(*, persistent: bool = False) -> AsyncIterator[ManagedRedis]:
    """Start redis-server on a free port; yield it; stop it (and drop its data) afterwards."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisUnavailableError(
            "--store redis needs redis-server on PATH (apt-get install redis-server), "
            "or give --redis-url"
        )
    with tempfile.TemporaryDirectory(prefix="chaos-redis-") as workdir:
        redis = ManagedRedis(exe, free_ports(1)[0], workdir, persistent=persistent)
        try:
            await redis.start()
            yield redis
        finally:
            await redis.stop()


@asynccontextmanager
async def throwaway_redis() -> AsyncIterator[str]:
    """Start redis-server on a free port; yield its URL; stop it (and its data) afterwards."""
    async with managed_redis() as redis:
        yield redis.url
