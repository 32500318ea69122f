"""Client processes: what users run is what is tested, so every client is a real subprocess."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal

import anyio
from anyio.abc import Process

from . import processes
from .model import ChaosOptions, ClientPhase, ClientSpec, ClientState
from .verify import MAX_RESULT_BYTES, parse_result

log = logging.getLogger("harness.clients")

CLIENT_PLACEHOLDERS = ("port", "mode", "n", "client_id", "seed")


def client_argv(options: ChaosOptions, spec: ClientSpec, port: int) -> list[str]:
    """The reference client with chaos-friendly timing, or the ``--client-cmd`` template."""
    if options.client_cmd is not None:
        values = {
            "port": port,
            "mode": spec.mode,
            "n": spec.n,
            "client_id": spec.client_id,
            "seed": spec.seed,
        }
        return [*processes.render_template(options.client_cmd, values), *options.client_args]
    argv = processes.python_command(
        "reference.client",
        "--port",
        str(port),
        "--mode",
        spec.mode,
        "-n",
        str(spec.n),
        "--seed",
        str(spec.seed),
        "--json",
        "--events",
        *options.client_timing().args(),
    )
    if spec.mode == "stateful":
        argv += ["--client-id", spec.client_id]
    return [*argv, *options.client_args]


def passes_client_id(options: ChaosOptions) -> bool:
    """Whether the client was told its id, so a result naming another id is a lie."""
    if options.client_cmd is None:
        return "--client-id" not in options.client_args
    return "client_id" in processes.template_fields(options.client_cmd)


#: Seconds the harness waits, once a client has exited, for its stdout and stderr to close:
#: a process it left behind in a session of its own may hold them open indefinitely.
OUTPUT_GRACE = 2.0


def _kill_leftovers(process: Process) -> None:
    """SIGKILL what is left of a client's process group right after the client (its leader)
    was reaped: background processes it started would otherwise hold its pipes open and
    outlive the run. Safe at this moment: while any member lives, the kernel does not hand the
    group's id to a new process, and none has been started since the reaping."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_client_process(argv: list[str], state: ClientState) -> None:
    """Run to exit, feeding stderr lines to ``state`` and keeping stdout for the result.

    On cancellation (run timeout, Ctrl-C) the client's process group is killed and reaped
    before this returns, so no client outlives the run; so is what is left of its group once
    it exits (background processes it started), and its output is judged as it stands at most
    OUTPUT_GRACE seconds after its exit, whoever else still holds its pipes.
    """
    state.phase = ClientPhase.STARTING
    state.started_at = anyio.current_time()
    state.argv = list(argv)
    log.debug("client %d: %s", state.spec.id, shlex.join(argv))
    try:
        process = await processes.start(argv)
    except OSError as exc:
        state.ended_at = anyio.current_time()
        state.reason = f"cannot start {argv[0]}: {exc}"
        return
    stdout = bytearray()
    try:

        async def collect_stdout() -> None:
            if process.stdout is None:
                return
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                async for chunk in process.stdout:  # beyond the limit: read and dropped
                    stdout.extend(chunk[: MAX_RESULT_BYTES - len(stdout)])

        async def read_output(done: anyio.Event) -> None:
            try:
                async with anyio.create_task_group() as readers:
                    readers.start_soon(collect_stdout)
                    readers.start_soon(processes.read_lines, process.stderr, state.feed_line)
            finally:
                done.set()

        async with anyio.create_task_group() as tg:
            output_closed = anyio.Event()
            tg.start_soon(read_output, output_closed)
            await process.wait()
            _kill_leftovers(process)
            with anyio.move_on_after(OUTPUT_GRACE):
                await output_closed.wait()
            if not output_closed.is_set():
                state.feed_line(
                    f"(the client exited, but a process it left behind in a session of its own "
                    f"still held its output {OUTPUT_GRACE:g} s later: judged on what it wrote)"
                )
            tg.cancel_scope.cancel()
    finally:
        state.ended_at = anyio.current_time()
        await processes.stop(process, grace=0)
        state.exit_code = process.returncode
    state.result = parse_result(bytes(stdout))
    if state.result is not None:
        received = state.result.get("received")
        if isinstance(received, int) and not isinstance(received, bool):
            state.received = max(0, min(received, state.spec.n))
    state.phase = ClientPhase.EXITED
