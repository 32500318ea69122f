"""``python -m harness.chaos``: real clients through a fault-injecting proxy, every result checked.

A run starts the server(s) and the proxy, runs the clients as subprocesses, verifies each
client's reported result independently, and exits 0 only if every client verified.
``run_chaos`` is the same run as an API, for tests.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the heavy imports below (reference/early.py)
    from reference import early

    early.guard()

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import random
import resource
import secrets
import shlex
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
from rich.console import Console
from rich.logging import RichHandler

from proxy import ChaosProxy, ConnectionRecord, FaultEvent, FaultKind, ScheduledFault
from proxy.cli import add_fault_arguments, close_quietly, fault_config_from_args
from proxy.faults import DEFAULT_FAULT_WINDOW
from reference.accept import raise_open_file_limit
from reference.cli import (
    OneLineErrorParser,
    add_common_arguments,
    add_version,
    discard_stdout,
    non_negative_float,
    positive_float,
    positive_int,
    program_name,
    run_program,
    stream_length,
)
from reference.protocol import MAX_N
from reference.store import StoreError

from . import processes
from .clients import CLIENT_PLACEHOLDERS, client_argv, passes_client_id, run_client_process
from .dashboard import ChaosUI, LiveDashboard, LogUI, NullUI, summary_line, summary_table
from .model import (
    SCHEMA_VERSION,
    ChaosOptions,
    ChaosReport,
    ClientPhase,
    ClientSpec,
    ClientState,
    RunView,
    SessionEvidence,
    StoreOption,
    fault_rates,
    seeded_stateless_a,
)
from .redis_server import ManagedRedis, managed_redis
from .servers import (
    HOST,
    SERVER_PLACEHOLDERS,
    Servers,
    ServerStartError,
    own_server,
    subprocess_servers,
)
from .streams import NspShape, nsp_shape
from .verify import WireEvidence, carried, verify_result

log = logging.getLogger("harness.chaos")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Interrupted by SIGINT (Ctrl-C) or SIGTERM: 128 + the signal's number, as shells report it.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: Dashboard redraws per second.
REFRESH_RATE = 8


def check_options(options: ChaosOptions) -> None:  # noqa: C901 (one independent check per option combination, a flat list of ifs)
    """Raise ValueError for a run that cannot make sense, before anything starts."""
    if options.clients < 1:
        raise ValueError("--clients must be at least 1")
    if not 1 <= options.n <= MAX_N:
        raise ValueError(f"-n must be in 1..{MAX_N}")
    if options.concurrency is not None and options.concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    if options.interval < 0 or options.session_ttl < 0:
        raise ValueError("--interval and --session-ttl must be >= 0")
    if options.timeout is not None and options.timeout <= 0:
        raise ValueError("--timeout must be > 0")
    if options.servers is not None and options.servers < 1:
        raise ValueError("--servers must be at least 1")
    if options.kill_interval is not None and options.kill_interval <= 0:
        raise ValueError("--kill-interval must be > 0")
    for name, value in (
        ("--store-pause-interval", options.store_pause_interval),
        ("--store-restart-interval", options.store_restart_interval),
    ):
        if value is None:
            continue
        if value <= 0:
            raise ValueError(f"{name} must be > 0")
        if not options.store.managed:
            raise ValueError(f"{name} needs --store redis (a redis-server the harness runs)")
    if options.client_cmd is not None:
        processes.check_template(options.client_cmd, CLIENT_PLACEHOLDERS)
    for template in options.server_cmd:
        processes.check_template(template, SERVER_PLACEHOLDERS)


#: Open files a run costs the harness process besides its clients: the proxy's own listener,
#: the server processes' and redis-server's pipes, store connections, the event log, Python's.
FILES_BASE = 64
#: Open files each running client costs it at most: its stdout and stderr pipes and, in the
#: proxy, both sockets of its connection and of the next one while it reconnects.
FILES_PER_RUNNING_CLIENT = 6


def open_files_needed(options: ChaosOptions) -> int:
    """Descriptors the harness process needs at once: one proxy listener per client (all
    opened up front; the harness's own server opens as many ports), plus what each of at most
    ``--concurrency`` running clients holds."""
    running = min(options.clients, options.effective_concurrency)
    return FILES_BASE + options.clients + FILES_PER_RUNNING_CLIENT * running


def ensure_open_files(options: ChaosOptions) -> None:
    """Raise this process's soft limit on open files (RLIMIT_NOFILE; inherited by the servers
    and clients it starts) to its hard limit when the run needs more than the soft one, as a
    run that runs out fails clients for the harness's own lack ("Too many open files").
    Raises ValueError when even the hard limit is too low (``ulimit -Hn``)."""
    need = open_files_needed(options)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return
    running = min(options.clients, options.effective_concurrency)
    too_many = ValueError(
        f"--clients {options.clients} with {running} at once needs about {need} open files, "
        f"more than this system allows (ulimit -Hn: {hard}); use fewer clients or a smaller "
        "--concurrency"
    )
    # Up to the hard limit, not just ``need``: the servers and clients inherit it.
    if raise_open_file_limit(need if hard == resource.RLIM_INFINITY else hard) < need:
        raise too_many


def client_specs(options: ChaosOptions, seed: int) -> tuple[int, list[ClientSpec]]:
    """The proxy seed and every client's parameters, all drawn from the run seed."""
    rng = random.Random(seed)
    proxy_seed = rng.getrandbits(32)
    modes = options.modes
    specs = [
        ClientSpec(
            id=index + 1,
            mode=modes[index % len(modes)],
            n=options.n,
            seed=rng.getrandbits(32),
            client_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        )
        for index in range(options.clients)
    ]
    return proxy_seed, specs


async def run_chaos(
    options: ChaosOptions,
    *,
    ui: ChaosUI | None = None,
    stop: anyio.Event | None = None,
    schedule: Sequence[ScheduledFault] = (),
    replay_of: str | None = None,
) -> ChaosReport:
    """Run every client through the proxy and verify each; never raises for a failed client.

    ``stop`` ends the run early (as Ctrl-C does): running clients are killed and count as
    failed, and the report is still complete. ``schedule``: exact faults for the proxy (a
    replay's; see ``replay_schedule``). Raises ValueError for impossible options.
    """
    check_options(options)
    ensure_open_files(options)
    requested = options
    display = ui or NullUI()
    seed = options.seed if options.seed is not None else secrets.randbits(32)
    proxy_seed, specs = client_specs(options, seed)
    states = [ClientState(spec) for spec in specs]
    now = anyio.current_time()
    view = RunView(
        options=options,
        seed=seed,
        proxy_seed=proxy_seed,
        clients=states,
        started_at=now,
        now=now,
    )
    report = ChaosReport(
        ok=False,
        seed=seed,
        proxy_seed=proxy_seed,
        duration_s=0.0,
        options=options,
        clients=states,
        proxy={},
        server={},
        requested=requested,
        replay_of=replay_of,
    )
    started = anyio.Event()
    try:
        async with _start_up_interruptible(stop, started, report):
            with contextlib.ExitStack() as files:
                event_log: TextIO | None = None
                if options.event_log is not None:
                    # A small local file the proxy writes line by line: blocking I/O is fine here.
                    event_log = open(options.event_log, "w", encoding="utf-8")  # noqa: ASYNC230, SIM115 (closed by the stack, quietly)
                    files.callback(close_quietly, event_log)
                async with contextlib.AsyncExitStack() as services:
                    redis = None
                    if options.store.managed:
                        persistent = options.store_restart_interval is not None
                        redis = await services.enter_async_context(
                            managed_redis(persistent=persistent)
                        )
                        log.info("started a throwaway redis-server at %s", redis.url)
                        options = dataclasses.replace(options, store=StoreOption(redis.url))
                        view.options = report.options = options
                    try:
                        async with anyio.create_task_group() as store_chaos:
                            if redis is not None:
                                _start_store_chaos(store_chaos, options, redis, seed, started)
                            await _run(
                                options,
                                view,
                                report,
                                display,
                                stop,
                                event_log,
                                seed,
                                schedule,
                                started,
                            )
                            store_chaos.cancel_scope.cancel()
                    finally:
                        if redis is not None:
                            report.store_events = {
                                "pauses": redis.pauses,
                                "restarts": redis.restarts,
                            }
    except* (ServerStartError, StoreError, OSError) as group:
        report.error = "; ".join(str(exc) for exc in _leaves(group))
        log.error("run aborted: %s", report.error)
    view.now = anyio.current_time()
    report.duration_s = view.elapsed
    for state in states:
        if not state.phase.finished:
            _abandon(state, report)
            display.client_finished(state)
    report.ok = (
        report.error is None
        and not report.interrupted
        and not report.timed_out
        and all(state.ok or _excused(options, state) for state in states)
    )
    if report.false_successes:
        log.error(
            "%d client(s) claimed success with a wrong result (FALSE SUCCESS)",
            report.false_successes,
        )
    return report


@asynccontextmanager
async def _start_up_interruptible(
    stop: anyio.Event | None, started: anyio.Event, report: ChaosReport
) -> AsyncIterator[None]:
    """Until ``started`` (the clients run, and ``_run_clients`` watches ``stop`` itself),
    ``stop`` abandons the start-up: a server that never answers, a frozen store."""

    async def watch(scope: anyio.CancelScope) -> None:
        assert stop is not None
        async with anyio.create_task_group() as either:

            async def first(event: anyio.Event) -> None:
                await event.wait()
                either.cancel_scope.cancel()

            either.start_soon(first, stop)
            either.start_soon(first, started)
        if stop.is_set() and not started.is_set():
            report.interrupted = True
            scope.cancel()

    async with anyio.create_task_group() as tg:
        if stop is not None:
            tg.start_soon(watch, tg.cancel_scope)
        yield
        tg.cancel_scope.cancel()


async def _run(
    options: ChaosOptions,
    view: RunView,
    report: ChaosReport,
    display: ChaosUI,
    stop: anyio.Event | None,
    event_log: TextIO | None,
    seed: int,
    schedule: Sequence[ScheduledFault],
    started: anyio.Event,
) -> None:
    async with _servers(options, seed, view.clients) as servers:
        proxy = ChaosProxy(
            [(HOST, port) for port in servers.ports],
            config=options.faults,
            schedule=schedule,
            seed=view.proxy_seed,
            event_log=event_log,
            # The sizer also reads every WELCOME for the verdicts (``wire_evidence``), so it
            # runs with --fault-window too, only observing then.
            sizer=nsp_shape,
            sized_faults=options.sized_faults,
        )
        async with anyio.create_task_group() as tg:
            port: int = await tg.start(functools.partial(proxy.serve, host=HOST))
            # One listener per client: every connection is known to be that client's, its
            # faults are drawn from (seed, client, connection number) whatever the timing.
            for state in view.clients:
                own = servers.port_for(state.spec.id)
                state.port = await tg.start(
                    functools.partial(
                        proxy.serve,
                        host=HOST,
                        client=state.spec.id,
                        upstreams=None if own is None else [(HOST, own)],
                    )
                )
            view.proxy, view.proxy_port, view.servers = proxy, port, servers
            started.set()
            display.start(view)
            try:
                tg.start_soon(_refresh_loop, view, servers, display)
                await _run_clients(options, view, report, servers, proxy, display, stop)
            finally:
                view.now = anyio.current_time()
                display.stop()
            report.proxy = proxy.counters.snapshot()
            report.fault_rates = fault_rates(options.rates(), proxy.connections)
            _attach_faults(view.clients, proxy)
            held = None
            with anyio.move_on_after(2):
                held = await servers.sessions_held()  # also brings the harness server's stats
            report.server = servers.stats()
            report.server["sessions_held"] = held
            report.servers_killed = servers.kills
            tg.cancel_scope.cancel()


def _start_store_chaos(
    tg: anyio.abc.TaskGroup,
    options: ChaosOptions,
    redis: ManagedRedis,
    seed: int,
    started: anyio.Event,
) -> None:
    """Store faults at random moments about every S seconds (uniform in 0.5 S .. 1.5 S), once
    the run has ``started``: they strike the run, not the servers' start-up."""
    rng = random.Random(f"{seed}:store")

    async def pauses(interval: float) -> None:
        await started.wait()
        while True:
            await anyio.sleep(rng.uniform(0.5, 1.5) * interval)
            seconds = rng.uniform(0.5, 3.0)
            log.info("store: freezing redis-server for %.1f s (SIGSTOP)", seconds)
            await redis.pause(seconds)

    async def restarts(interval: float) -> None:
        await started.wait()
        while True:
            await anyio.sleep(rng.uniform(0.5, 1.5) * interval)
            log.info("store: restarting redis-server (AOF persistence on)")
            await redis.restart()

    if options.store_pause_interval is not None:
        tg.start_soon(pauses, options.store_pause_interval)
    if options.store_restart_interval is not None:
        tg.start_soon(restarts, options.store_restart_interval)


def _attach_faults(clients: Sequence[ClientState], proxy: ChaosProxy) -> None:
    """Give each client the faults that struck its connections, in connection order."""
    by_client: dict[int, list[FaultEvent]] = {}
    for record in proxy.connections:
        if record.key.client is not None and record.fault is not None:
            by_client.setdefault(record.key.client, []).append(record.fault)
    for state in clients:
        state.faults = by_client.get(state.spec.id, [])


@asynccontextmanager
async def _servers(
    options: ChaosOptions, seed: int, clients: Sequence[ClientState]
) -> AsyncIterator[Servers]:
    if options.server_subprocess:
        kills = random.Random(f"{seed}:kills")
        async with subprocess_servers(options, kills, clients) as running:
            yield running
    else:
        async with own_server(options, seed, len(clients)) as own:
            yield own


async def _refresh_loop(view: RunView, servers: Servers, display: ChaosUI) -> None:
    while True:
        view.now = anyio.current_time()
        with anyio.move_on_after(1):
            view.sessions_held = await servers.sessions_held()
        display.refresh()
        await anyio.sleep(1 / REFRESH_RATE)


async def _run_clients(
    options: ChaosOptions,
    view: RunView,
    report: ChaosReport,
    servers: Servers,
    proxy: ChaosProxy,
    display: ChaosUI,
    stop: anyio.Event | None,
) -> None:
    """At most ``concurrency`` clients at once; the timeout and ``stop`` kill the rest."""
    limiter = anyio.CapacityLimiter(options.effective_concurrency)
    with anyio.move_on_after(options.effective_timeout) as deadline:
        async with anyio.create_task_group() as run:

            async def watch_stop(event: anyio.Event) -> None:
                await event.wait()
                report.interrupted = True
                run.cancel_scope.cancel()

            if stop is not None:
                run.start_soon(watch_stop, stop)
            async with anyio.create_task_group() as clients:
                for state in view.clients:
                    clients.start_soon(
                        _one_client, options, view.seed, state, limiter, servers, proxy, display
                    )
            run.cancel_scope.cancel()
    report.timed_out = deadline.cancelled_caught and not report.interrupted


async def _one_client(
    options: ChaosOptions,
    seed: int,
    state: ClientState,
    limiter: anyio.CapacityLimiter,
    servers: Servers,
    proxy: ChaosProxy,
    display: ChaosUI,
) -> None:
    assert state.port is not None
    async with limiter:
        await run_client_process(client_argv(options, state.spec, state.port), state)
    _attach_faults([state], proxy)
    if state.reason is None:  # the process ran (a failed start has its reason already)
        await _judge(options, state, servers, wire_evidence(options, seed, state, proxy))
    else:
        state.phase = ClientPhase.FAILED
    display.client_finished(state)


def wire_evidence(
    options: ChaosOptions, seed: int, state: ClientState, proxy: ChaosProxy
) -> WireEvidence:
    """What the client was sent, as the proxy saw it on the client's own listener: each
    connection's WELCOME and the downstream bytes handed on so far (an upper bound on what the
    client can have received). With the harness's own server also every ``a`` it can have
    drawn for the client: one draw at most per connection (spec §6.1)."""
    records = [r for r in proxy.connections if r.key.client == state.spec.id]
    drawn_a = None
    if not options.server_subprocess:
        drawn_a = frozenset(
            seeded_stateless_a(seed, state.spec.id, count) for count in range(len(records))
        )
    connections = tuple(
        carried(r.shape, r.forwarded, r.tail, _corrupted_frame(r))
        for r in records
        if isinstance(r.shape, NspShape)
    )
    final_cut = any(
        isinstance(r.shape, NspShape)
        and r.shape.label == "stateful"
        and r.received >= r.shape.size > r.forwarded
        for r in records
    )
    return WireEvidence(connections=connections, drawn_a=drawn_a, final_cut=final_cut)


def _corrupted_frame(record: ConnectionRecord) -> int | None:
    """The number frame a corrupt fault changed on this connection, if one did (a WELCOME
    changed is another matter: the proxy read its announced stream before the fault)."""
    fault = record.fault
    if fault is None or fault.kind is not FaultKind.CORRUPT or fault.frame not in ("data", "final"):
        return None
    return fault.frame_index


async def _judge(
    options: ChaosOptions, state: ClientState, servers: Servers, wire: WireEvidence
) -> None:
    """Verify off the event loop: recomputing a checksum at n = 65535 takes a while.

    The verdict: verified; final frame lost (confirmed by the server's evidence); corruption
    caught (a corrupt fault hit the client and it failed loudly rather than claim a result);
    FALSE SUCCESS (it claimed success with a wrong result: the worst there is); or failed.
    """
    spec = state.spec
    evidence = SessionEvidence()
    reported_id = state.result.get("client_id") if state.result is not None else None
    if spec.mode == "stateful" and isinstance(reported_id, str):
        evidence = await servers.evidence(reported_id, started_at=state.started_at)
        if evidence.completed is None and wire.final_cut:
            # The proxy read a whole FINAL from the server and did not hand it all on: with
            # any store (per-server memory ones too) that session was completed.
            evidence = dataclasses.replace(evidence, completed=True)
    verdict = await anyio.to_thread.run_sync(
        functools.partial(
            verify_result,
            state.result,
            mode=spec.mode,
            n=spec.n,
            exit_code=state.exit_code,
            client_id=spec.client_id if passes_client_id(options) else None,
            evidence=evidence,
            wire=wire,
        )
    )
    state.seed_checked = verdict.seed_checked
    state.reason = verdict.reason
    claimed = state.result is not None and state.result.get("ok") is True
    if verdict.ok:
        state.phase = ClientPhase.VERIFIED
    elif verdict.final_frame_lost:
        state.phase = ClientPhase.FINAL_LOST
    elif claimed and state.exit_code == 0:
        state.phase = ClientPhase.FALSE_SUCCESS
        # The verdict's name is shown with the reason (the dashboard, the plain lines).
        state.reason = f"claimed a result that is wrong: {verdict.reason}"
    elif state.corrupted:
        state.phase = ClientPhase.CORRUPTION_DETECTED
        error = state.result.get("error") if state.result is not None else None
        state.reason = (
            f"corruption caught: failed loudly ({error or f'exit code {state.exit_code}'}) "
            "after a corrupt fault"
        )
    else:
        state.phase = ClientPhase.FAILED


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    """The exceptions inside nested task-group errors, for a one-line reason."""
    found: list[Exception] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        else:
            found.append(exc)
    return found


def _excused(options: ChaosOptions, state: ClientState) -> bool:
    """A confirmed final-frame loss is the protocol's documented limit, not a defect; a
    corruption caught is what a client must do with a corrupted stream."""
    if state.phase is ClientPhase.CORRUPTION_DETECTED:
        return True
    return state.final_frame_lost and not options.strict


def _abandon(state: ClientState, report: ChaosReport) -> None:
    """A client the run ended before it finished: failed, saying why."""
    if report.error is not None:
        why = f"run aborted: {report.error}"
    elif report.interrupted:
        why = "interrupted"
    elif report.timed_out:
        why = f"run timed out after {report.options.effective_timeout:g} s"
    else:
        why = "did not finish"
    if state.started_at is None:
        why += " (never started)"
    elif state.exit_code is not None and state.exit_code < 0:
        why += f" (killed by signal {-state.exit_code})"
    state.reason = why
    state.phase = ClientPhase.FAILED


# --- command line ---------------------------------------------------------------------------------

DESCRIPTION = """\
Chaos run: start a reference server (the harness's own, or any via --server-cmd), put the
fault-injecting proxy in front of it, run --clients real client processes through the proxy,
and verify every client's result independently: a stateless sum against a*(2^n - 1), a
stateful checksum against the client's own and against the one recomputed from the seed the
server handed out. Exit 0 iff every client verified (a stateful client whose final frame a
fault ate after the server completed its session, spec/PROTOCOL.md §16.6, is excused unless
--strict).

Each client has its own proxy listener; a fault rate R is the probability that a connection
carrying stream data is struck by that fault at a point uniform over what it carries, and
every fault is named by client, connection (1 = first) and frame index. --replay REPORT runs a
report's clients against its faults again.

On a terminal a live dashboard shows every client, the proxy's counters and faults, and the
server; otherwise one line per client, and a progress line every 10 s, go to stderr. The
verdict (table or summary line) goes to stdout."""

EPILOG = """\
examples:
  python -m harness.chaos --drop-rate 0.2
  python -m harness.chaos --clients 20 --reset-rate 0.1 --blackhole-rate 0.05 --seed 7
  python -m harness.chaos --client-cmd "node client.js --port {port} --mode {mode} -n {n} --json"
  python -m harness.chaos --servers 3 --store redis --kill-interval 2 --drop-rate 0.2
  python -m harness.chaos --partition-rate 0.1 --corrupt-rate 0.1 --report run.json
  python -m harness.chaos --replay run.json

exit status: 0 every client verified (or lost its final frame in a way the server confirms,
unless --strict, or caught a corrupted stream by failing loudly); 1 any client failed or
claimed a false success, the run timed out or could not start, or a replay differed; 2 bad
arguments; 130 on SIGINT (Ctrl-C), 143 on SIGTERM, at any moment: once the run has started
the partial report is still written (a second signal abandons it).
The client-result contract for --client-cmd is in harness/README.md."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=program_name("python -m harness.chaos"),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("the run")
    run.add_argument(
        "--clients",
        type=positive_int,
        default=20,
        metavar="C",
        help="client processes (default 20); each has its own proxy listener, so a run needs "
        "about 64 + C + 6 x (clients at once) open files: beyond ulimit -Hn it is refused",
    )
    run.add_argument(
        "--mode",
        choices=["stateless", "stateful", "both"],
        default="both",
        help="variant; both alternates, starting with stateless (default both)",
    )
    run.add_argument("-n", type=stream_length, default=200, help="numbers per client (default 200)")
    run.add_argument(
        "--seed",
        type=int,
        default=None,
        help="run seed: derives the proxy's faults and every client's --seed and id "
        "(default random, printed so the run can be replayed)",
    )
    run.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="K",
        help="at most K clients at once (default: all)",
    )
    run.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help="bound on the whole run; clients still running are killed and fail "
        "(default (30 + 4 x n x interval) x waves of --concurrency clients)",
    )
    run.add_argument(
        "--strict",
        action="store_true",
        help="fail a run for a stateful client whose FINAL a fault ate after the server "
        "completed the session (spec/PROTOCOL.md §16.6); by default such a confirmed "
        "loss is reported but excused, as the protocol cannot avoid it",
    )
    run.add_argument(
        "--report",
        metavar="FILE",
        help="write the JSON report to FILE (- for stdout; the verdict then goes to stderr)",
    )
    run.add_argument(
        "--replay",
        metavar="REPORT",
        help="run again exactly what the --report file REPORT describes: the same clients "
        "against the same faults (the harness's own server only); exit 1 if the faults or the "
        "verdicts differ. Other run options are ignored",
    )
    run.add_argument("--event-log", metavar="FILE", help="write proxy faults as JSON lines")
    run.add_argument(
        "--ui",
        choices=["auto", "live", "plain"],
        default="auto",
        help="live dashboard or plain lines (default auto: live when stdout is a terminal)",
    )
    add_common_arguments(
        run,
        log_level_default="warning",
        log_level_help="stderr logging of the harness's server and proxy (default warning)",
        backend=False,
    )

    server = parser.add_argument_group("server")
    server.add_argument(
        "--interval",
        type=non_negative_float,
        default=0.01,
        metavar="S",
        help="seconds between numbers (default 0.01)",
    )
    server.add_argument(
        "--session-ttl",
        type=non_negative_float,
        default=30.0,
        metavar="S",
        help="how long a disconnected stateful session is kept (default 30)",
    )
    server.add_argument(
        "--store",
        type=_store_option,
        default=StoreOption(),
        metavar="STORE",
        help="session store: memory (or memory://), redis (the harness starts a throwaway "
        "redis-server) or redis://HOST:PORT/DB (default memory://)",
    )
    server.add_argument(
        "--redis-url",
        type=_store_option,
        default=None,
        metavar="URL",
        help="use this Redis instead of a throwaway one (implies --store URL)",
    )
    server.add_argument(
        "--server-cmd",
        metavar="TEMPLATE",
        action="append",
        default=[],
        help="run this server instead of the harness's own reference; placeholders {port} "
        "{interval} {ttl} {store}; repeat for a mixed pool: instance i runs the "
        "(i mod count)-th command",
    )
    server.add_argument(
        "--servers",
        type=positive_int,
        default=None,
        metavar="K",
        help="K server subprocesses behind the proxy's round-robin (default: one per "
        "--server-cmd, else the harness's own one)",
    )
    server.add_argument(
        "--store-pause-interval",
        type=positive_float,
        default=None,
        metavar="S",
        help="with --store redis: freeze the redis-server (SIGSTOP/SIGCONT) for 0.5 to 3 s at "
        "random moments about every S seconds",
    )
    server.add_argument(
        "--store-restart-interval",
        type=positive_float,
        default=None,
        metavar="S",
        help="with --store redis: restart the redis-server about every S seconds; it runs "
        "with persistence on (AOF, fsync always), so no session is lost",
    )
    server.add_argument(
        "--kill-interval",
        type=positive_float,
        default=None,
        metavar="S",
        help="S seconds after every server is up, SIGKILL a random server subprocess and "
        "restart it on its port",
    )

    client = parser.add_argument_group("clients")
    client.add_argument(
        "--client-cmd",
        metavar="TEMPLATE",
        help="run this client instead of python -m reference.client; placeholders {port} "
        "{mode} {n} {client_id} {seed}; it must print the JSON result of harness/README.md",
    )
    client.add_argument(
        "--client-args",
        default="",
        metavar="ARGS",
        help='extra arguments appended to every client command, e.g. --client-args="--log-level '
        'debug"',
    )

    add_fault_arguments(
        parser,
        fault_window_default=None,
        fault_window_help="draw fault offsets uniformly below BYTES, as the standalone proxy "
        "does (default: uniformly over what each connection carries, read off its WELCOME, "
        "so a rate R is the chance that a connection carrying stream data is struck)",
    )
    add_version(parser)
    return parser


def _store_option(text: str) -> StoreOption:
    try:
        return StoreOption.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--store {text!r}: ")) from None


def options_from_args(args: argparse.Namespace) -> ChaosOptions:
    """Raises ValueError for fault settings no single option's type rejects (rates above 1)."""
    window = args.fault_window
    return ChaosOptions(
        clients=args.clients,
        mode=args.mode,
        n=args.n,
        seed=args.seed,
        interval=args.interval,
        session_ttl=args.session_ttl,
        store=args.redis_url or args.store,
        concurrency=args.concurrency,
        timeout=args.timeout,
        faults=fault_config_from_args(args, fault_window=window or DEFAULT_FAULT_WINDOW),
        sized_faults=window is None,
        client_cmd=args.client_cmd,
        client_args=tuple(shlex.split(args.client_args)),
        server_cmd=tuple(args.server_cmd),
        servers=args.servers,
        kill_interval=args.kill_interval,
        store_pause_interval=args.store_pause_interval,
        store_restart_interval=args.store_restart_interval,
        event_log=args.event_log,
        strict=args.strict,
    )


async def _watch_signals(
    signals: AsyncIterator[int], stop: anyio.Event, scope: anyio.CancelScope, received: list[int]
) -> None:
    """First Ctrl-C: stop clients and report what happened. Second: abandon the report."""
    async for signum in signals:
        received.append(signum)
        if stop.is_set():
            log.error("%s again: aborting", signal.Signals(signum).name)
            scope.cancel()
            return
        log.warning(
            "%s: stopping clients, then summarising (again to abort)",
            signal.Signals(signum).name,
        )
        stop.set()


def _interrupted(signum: int) -> int:
    """The status for a run a signal ended: 128 + its number, as shells report it."""
    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED


async def _main(
    options: ChaosOptions,
    ui: ChaosUI,
    schedule: Sequence[ScheduledFault],
    replay_of: str | None,
    finish: Callable[[ChaosReport], int],
) -> int:
    """The run, then ``finish(report)`` (writing it, printing the verdict) with the signals
    handled throughout: a signal during ``finish`` waits for it (it is quick, and the report
    is what the user asked for); ``run_program`` covers the moments before and after."""
    stop = anyio.Event()
    received: list[int] = []
    report = None
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, signals, stop, tg.cancel_scope, received)
            report = await run_chaos(
                options, ui=ui, stop=stop, schedule=schedule, replay_of=replay_of
            )
            tg.cancel_scope.cancel()
        if report is None:
            print("chaos: aborted", file=sys.stderr)
            return _interrupted(received[-1])
        status = finish(report)
    if report.interrupted:
        return _interrupted(received[0] if received else signal.SIGINT)
    return status


def _configure_logging(level: str, handler: logging.Handler) -> None:
    rich = isinstance(handler, RichHandler)  # it shows the level itself
    handler.setFormatter(
        logging.Formatter(
            "%(name)s: %(message)s" if rich else "%(levelname)s %(name)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    harness = logging.getLogger("harness")
    harness.setLevel(min(logging.INFO, root.level))


def _write_report(path: str, report: ChaosReport) -> bool:
    """``-``: to stdout (the verdict then goes to stderr)."""
    text = json.dumps(report.to_json(), indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return True
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"chaos: cannot write report {path}: {exc}", file=sys.stderr)
        return False
    return True


def _stdout_failed(exc: OSError, status: int) -> int:
    """The verdict (or ``--report -``) could not be written to stdout. A reader that left
    (``| head -1``: EPIPE) leaves the exit status to tell the run's outcome; any other write
    error (``> /dev/full``) is one line on stderr and status 1, as for a report file that
    cannot be written. What is left in stdout's buffer goes nowhere, not to an error at exit."""
    discard_stdout()
    if isinstance(exc, BrokenPipeError):
        return status
    with contextlib.suppress(OSError):
        print(f"chaos: cannot write to stdout: {exc.strerror or exc}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def _warn_about(options: ChaosOptions) -> None:
    shared = options.store.shared
    if "stateful" in options.modes and options.server_subprocess and not shared:
        if options.server_count > 1:
            log.warning(
                "%d servers with a memory:// store: a stateful resume that lands on another "
                "server fails (use --store redis://...)",
                options.server_count,
            )
        if options.kill_interval is not None:
            log.warning("killed servers lose memory:// sessions: stateful clients may fail")


def load_replay(path: str) -> tuple[ChaosOptions, list[ScheduledFault], dict[str, Any]]:
    """The options and exact fault schedule that replay the run a ``--report`` file describes.

    The same run seed gives the same clients (mode, n, client id, client seed) and the same
    harness server's randomness (each client's ``a`` and session seeds); the random faults are
    switched off and every recorded fault (client, connection, kind, byte offset, XOR mask) is
    scheduled instead. Raises ValueError for a file that is no such report.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path} is not a chaos report of schema version {SCHEMA_VERSION}")
    try:
        original = ChaosOptions.from_json(doc["options"])
        seed = int(doc["seed"])
        schedule = [
            ScheduledFault(
                client=int(fault["client"]),
                connection=int(fault["connection"]),
                after_bytes=int(fault["offset"]),
                kind=FaultKind(fault["kind"]),
                xor=int(fault.get("xor", 0xFF)),
            )
            for fault in doc["faults"]
            if fault["kind"] != FaultKind.LIMIT_DATA  # the options cut those again
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed report ({exc})") from None
    if original.server_subprocess:
        raise ValueError("--replay reproduces runs with the harness's own server only")
    quiet = dataclasses.replace(
        original.faults,
        drop_rate=0.0,
        reset_rate=0.0,
        blackhole_rate=0.0,
        partition_rate=0.0,
        corrupt_rate=0.0,
        refuse_rate=0.0,
    )
    options = dataclasses.replace(original, seed=seed, event_log=None, faults=quiet)
    return options, schedule, doc


#: The two verdicts a replay may swap for a client whose fault struck its FINAL frame.
FINAL_RACE_OUTCOMES = frozenset(
    {ClientPhase.VERIFIED.name.lower(), ClientPhase.FINAL_LOST.name.lower()}
)


def replay_differences(original: dict[str, Any], replay: ChaosReport) -> list[str]:
    """How a replay differs from the run it replayed: its faults (compared on client,
    connection, kind and frame_index) and its verdicts. Empty when it reproduced the run.

    One difference is not one: a client whose fault struck its FINAL frame may come out
    ``verified`` in one run and ``final_lost`` in the other. Whether the server had written
    FINAL (and deleted the session, spec/PROTOCOL.md §16.6) before the cut reached it, or saw
    the cut first and kept the session for the client's resume, is a race between the server
    and the proxy that no schedule of byte offsets decides; both verdicts are correct.
    """

    def faults(listing: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        keys = ("client", "connection", "kind", "frame_index")
        return [tuple(fault.get(key) for key in keys) for fault in listing]

    before, after = faults(original.get("faults", [])), faults(replay.fault_list())
    differences = [_fault_text(fault) + " not reproduced" for fault in before if fault not in after]
    differences += [_fault_text(fault) + " is new" for fault in after if fault not in before]
    outcomes = {client.get("id"): client.get("outcome") for client in original.get("clients", [])}
    struck_final = {
        fault.get("client") for fault in original.get("faults", []) if fault.get("frame") == "final"
    }
    for client in replay.clients:
        was = outcomes.get(client.spec.id)
        raced = client.spec.id in struck_final and {was, client.outcome} == FINAL_RACE_OUTCOMES
        if was != client.outcome and not raced:
            differences.append(f"client {client.spec.id}: {was}, now {client.outcome}")
    return differences


def _fault_text(fault: tuple[Any, ...]) -> str:
    client, connection, kind, frame_index = fault
    return f"client {client} connection {connection}: {kind} at frame {frame_index}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options, schedule, original = _options(parser, args)
    to_stdout = args.report == "-"
    live = args.ui == "live" or (args.ui == "auto" and sys.stdout.isatty() and not to_stdout)
    console = Console(stderr=to_stdout)
    ui = _display(console, live, args.log_level)
    _warn_about(options)

    def finish(report: ChaosReport) -> int:
        status = EXIT_OK if report.ok else EXIT_FAILED
        try:
            written = args.report is None or _write_report(args.report, report)
        except OSError as exc:  # --report - only: a file's errors are one line already
            status, written = _stdout_failed(exc, status), True
        if not written:
            status = EXIT_FAILED
        verdict_stream = sys.stderr if to_stdout else sys.stdout
        try:
            if live:
                console.print(summary_table(report, console.width))
                console.print(summary_line(report), highlight=False)
            else:
                print(summary_line(report), file=verdict_stream, flush=True)
            if original is not None and _replay_differs(
                args.replay, original, report, verdict_stream
            ):
                status = EXIT_FAILED
        except OSError as exc:
            return _stdout_failed(exc, status)
        return status

    async def entry(_: argparse.Namespace) -> int:
        return await _main(options, ui, schedule, args.replay, finish)

    return run_program(entry, args, prog=parser.prog, backend="asyncio", on_signal=_aborted)


def _options(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[ChaosOptions, list[ScheduledFault], dict[str, Any] | None]:
    """The run's options, a replay's fault schedule and the report it replays (None unless
    ``--replay``); anything unusable is a usage error (exit 2, one line)."""
    schedule: list[ScheduledFault] = []
    original: dict[str, Any] | None = None
    try:
        if args.replay is not None:
            options, schedule, original = load_replay(args.replay)
        else:
            options = options_from_args(args)
        check_options(options)
        ensure_open_files(options)
    except ValueError as exc:
        parser.error(f"--replay: {exc}" if args.replay is not None else str(exc))
    for path, flag in ((args.report, "--report"), (args.event_log, "--event-log")):
        if path not in (None, "-") and not Path(path).resolve().parent.is_dir():
            parser.error(f"{flag}: directory of {path} does not exist")
        if path not in (None, "-") and Path(path).is_dir():
            parser.error(f"{flag}: {path} is a directory")
    if args.report not in (None, "-"):
        # Written only at the end: a report that cannot be would cost the whole run first.
        report_path = Path(args.report)
        target = report_path if report_path.exists() else report_path.resolve().parent
        if not os.access(target, os.W_OK):
            parser.error(f"--report: cannot write {args.report}: permission denied")
    if args.event_log is not None:
        # The run truncates and writes it line by line anyway: find out now (as python -m
        # proxy does) that it cannot be written, not once the servers run.
        try:
            open(args.event_log, "a").close()  # opened only to be checked
        except OSError as exc:
            parser.error(f"--event-log: cannot write {args.event_log}: {exc.strerror or exc}")
    return options, schedule, original


def _display(console: Console, live: bool, log_level: str) -> ChaosUI:
    """The live dashboard or plain lines, with logging through the same console (so no log
    line prints over a live frame)."""
    if live:
        dashboard = LiveDashboard(console)
        _configure_logging(log_level, dashboard.log_handler())
        return dashboard
    _configure_logging(log_level, logging.StreamHandler(sys.stderr))
    return LogUI()


def _aborted(signum: int) -> int:
    """A signal before the run could start or after it reported: nothing more to say."""
    print(f"chaos: {signal.Signals(signum).name}: aborted", file=sys.stderr)
    return _interrupted(signum)


def _replay_differs(
    path: str, original: dict[str, Any], report: ChaosReport, stream: TextIO
) -> bool:
    """Say whether the replay reproduced the run it replayed, and how it differs if not."""
    differences = replay_differences(original, report)
    for line in differences:
        print(f"chaos: replay differs: {line}", file=stream)
    same = "differs" if differences else "reproduced the same"
    print(
        f"chaos: replay of {path} {same} {len(report.fault_list())} faults and "
        f"{len(report.clients)} verdicts",
        file=stream,
        flush=True,
    )
    return bool(differences)


if __name__ == "__main__":
    sys.exit(main())
