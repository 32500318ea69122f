"""Client processes: what users run is what is tested, so every client is a real subprocess."""

from __future__ import annotations

import logging
import shlex

import anyio

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


async def run_client_process(argv: list[str], state: ClientState) -> None:
    """Run to exit, feeding stderr lines to ``state`` and keeping stdout for the result.

    On cancellation (run timeout, Ctrl-C) the client's process group is killed and reaped
    before this returns, so no client outlives the run.
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
    stdout = b""
    try:

        async def collect_stdout() -> None:
            nonlocal stdout
            stdout = await processes.read_all(process.stdout, MAX_RESULT_BYTES)

        async with anyio.create_task_group() as tg:
            tg.start_soon(collect_stdout)
            tg.start_soon(processes.read_lines, process.stderr, state.feed_line)
        await process.wait()
    finally:
        state.ended_at = anyio.current_time()
        await processes.stop(process, grace=0)
        state.exit_code = process.returncode
    state.result = parse_result(stdout)
    if state.result is not None:
        received = state.result.get("received")
        if isinstance(received, int) and not isinstance(received, bool):
            state.received = max(0, min(received, state.spec.n))
    state.phase = ClientPhase.EXITED
