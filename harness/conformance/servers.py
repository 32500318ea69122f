"""Starting servers from a ``--server-cmd`` template (Appendix B placeholders)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence

import anyio
from anyio.abc import Process

from harness import processes
from harness.ports import free_ports

from .server_role import Spawned, Spawner

SERVER_PLACEHOLDERS = ("port", "interval", "ttl", "store")
DEFAULT_SERVER_CMD = (
    f"{sys.executable} -m reference.server --port {{port}} --interval {{interval}} "
    "--session-ttl {ttl} --store {store} --log-level warning"
)
READY_TIMEOUT = 20.0
#: Servers starting at once: starting many on a busy machine makes each miss its deadline.
STARTING_AT_ONCE = 3


def free_port() -> int:
    """A loopback port no outgoing connection can take before the server binds it."""
    return free_ports(1)[0]


def format_seconds(value: float) -> str:
    """Seconds as C's ``%g`` writes them (Appendix B)."""
    return f"{value:g}"


class ServerStartError(Exception):
    """The server did not accept connections in time; ``status`` is its exit status, if it
    exited."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class RunningServer(Spawned):
    def __init__(self, process: Process, port: int, log: list[str]) -> None:
        self.process = process
        self.port = port
        self.log = log

    async def terminate(self, within: float) -> int | None:
        """SIGTERM; wait up to ``within`` seconds for the exit; the exit status, None if it hung."""
        processes.kill_group(self.process, signal.SIGTERM)
        with anyio.move_on_after(within):
            await self.process.wait()
        status = self.process.returncode
        await self.kill()
        return status

    async def kill(self) -> None:
        await processes.stop(self.process, grace=0)


class TemplateSpawner(Spawner):
    def __init__(self, template: str, interval: float, ttl: float, store: str) -> None:
        processes.check_template(template, SERVER_PLACEHOLDERS)
        self.template = template
        self.interval = interval
        self.ttl = ttl
        self.store = store
        self._group: anyio.abc.TaskGroup | None = None
        self._starting = anyio.Semaphore(STARTING_AT_ONCE)

    def default_values(self) -> dict[str, str]:
        return {
            "port": str(free_port()),
            "interval": format_seconds(self.interval),
            "ttl": format_seconds(self.ttl),
            "store": self.store,
        }

    def argv(self, values: dict[str, str]) -> list[str]:
        return processes.render_template(self.template, values)

    async def run_once(self, values: dict[str, str], within: float) -> tuple[int | None, str]:
        async with self._starting:
            return await self._run_once(values, within)

    async def _run_once(self, values: dict[str, str], within: float) -> tuple[int | None, str]:
        process = await processes.start(self.argv(values))
        try:
            with anyio.move_on_after(within):
                async with anyio.create_task_group() as tg:
                    out: list[bytes] = []

                    async def drain() -> None:
                        out.append(await processes.read_all(process.stderr, 64 * 1024))

                    tg.start_soon(drain)
                    await processes.read_all(process.stdout, 64 * 1024)
                    await process.wait()
            return process.returncode, b"".join(out).decode(errors="replace")
        finally:
            await processes.stop(process, grace=0)

    async def start(self, values: dict[str, str], extra: Sequence[str] = ()) -> RunningServer:
        async with self._starting:
            return await self._start(values, extra)

    async def _start(self, values: dict[str, str], extra: Sequence[str]) -> RunningServer:
        port = int(values["port"])
        argv = [*self.argv(values), *extra]
        try:
            process = await processes.start(argv)
        except OSError as exc:  # no such program, not executable
            raise ServerStartError(f"cannot start {argv[0]}: {exc.strerror or exc}", None) from None
        log: list[str] = []
        server = RunningServer(process, port, log)

        async def drain(stream: anyio.abc.ByteReceiveStream | None) -> None:
            await processes.read_lines(
                stream, lambda line: log.append(line) if len(log) < 200 else None
            )

        # The drains end with the process's pipes; they must not outlive the suite, so they run
        # in a system-less way: we start them on the caller's task group via start_soon below.
        if self._group is None:
            raise RuntimeError("TemplateSpawner.start needs bind() first")
        self._group.start_soon(drain, process.stderr)
        self._group.start_soon(drain, process.stdout)
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    break
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                await stream.aclose()
                return server
        except BaseException:  # cancelled (Ctrl-C, SIGTERM) before the caller could own it
            await server.kill()
            raise
        await server.kill()
        tail = "\n".join(log[-10:])
        raise ServerStartError(
            f"server {' '.join([*self.argv(values), *extra])!r} did not accept connections on "
            f"port {port} within {READY_TIMEOUT:g} s (exit status {process.returncode}); "
            f"its stderr:\n{tail}",
            process.returncode,
        )

    def bind(self, group: anyio.abc.TaskGroup) -> None:
        """The task group in which the log drains of started servers run."""
        self._group = group
