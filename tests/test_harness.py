"""The chaos harness: verification rejects forgeries, runs pass under faults, the CLI holds."""

from __future__ import annotations

import json
import random
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness import processes
from harness.chaos import build_parser, client_specs, options_from_args, run_chaos
from harness.model import (
    ChaosOptions,
    ClientPhase,
    ClientSpec,
    ClientState,
    Mode,
    RunView,
    SessionEvidence,
    StoreOption,
)
from harness.recording import RecordingStore
from harness.servers import SubprocessServers, _Instance, server_argv
from harness.verify import parse_result, verify_result, verify_stateful, verify_stateless
from proxy.faults import TERMINAL_KINDS, ConnectionKey, ConnectionPlan, FaultConfig, plan_connection
from reference.store import DelegatingStore, MemoryStore, SessionRecord, StoreError

from .oracle import decimal, doubling_sum, session_checksum
from .redis_fixture import skip_without_redis

ROOT = Path(__file__).resolve().parents[1]
SEED = 0x5EED
#: The harness saw the server hand out SEED for the session.
KNOWN = SessionEvidence(seed=SEED, seed_known=True)
CLIENT_ID = "3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a90"


# --- verification -------------------------------------------------------------------------------


def stateless_doc(a: int, count: int, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "mode": "stateless",
        "n": count,
        "ok": True,
        "reconnects": 0,
        "first": str(a),
        "sum": decimal(doubling_sum(a, count)),
    }
    doc.update(overrides)
    return doc


def stateful_doc(seed: int, count: int, **overrides: Any) -> dict[str, Any]:
    digest = session_checksum(seed, count).hex()
    doc: dict[str, Any] = {
        "mode": "stateful",
        "n": count,
        "ok": True,
        "reconnects": 0,
        "client_id": CLIENT_ID,
        "checksum_expected": digest,
        "checksum_computed": digest,
    }
    doc.update(overrides)
    return doc


def test_stateless_sum_verified_beyond_python_int_text_limit() -> None:
    # 19,730 digits: int(str) would refuse it; the harness compares decimal text instead.
    doc = stateless_doc(255, 0xFFFF)
    assert len(doc["sum"]) > 4300
    assert verify_stateless(doc, n=0xFFFF).ok
    assert verify_result(doc, mode="stateless", n=0xFFFF, exit_code=0).ok


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"sum": "1234"}, "sum is wrong"),
        ({"sum": decimal(doubling_sum(23, 30) + 1)}, "sum is wrong"),
        ({"first": "0", "sum": "0"}, "outside 1..255"),
        ({"first": "256", "sum": decimal(doubling_sum(256, 30))}, "outside 1..255"),
        ({"first": "-1"}, "decimal string"),
        ({"first": None}, "decimal string"),
        ({"sum": doubling_sum(23, 30)}, "decimal string"),
    ],
)
def test_forged_stateless_results_fail(overrides: dict[str, Any], fragment: str) -> None:
    verdict = verify_result(stateless_doc(23, 30, **overrides), mode="stateless", n=30, exit_code=0)
    assert not verdict.ok
    assert verdict.reason is not None
    assert fragment in verdict.reason


def test_stateless_sum_is_checked_against_the_requested_n() -> None:
    # A correct sum for another n (the client asked for fewer numbers) is still wrong.
    doc = stateless_doc(23, 29, n=30)
    assert not verify_result(doc, mode="stateless", n=30, exit_code=0).ok


def test_stateful_checksums_must_agree() -> None:
    other = session_checksum(SEED + 1, 30).hex()
    verdict = verify_stateful(stateful_doc(SEED, 30, checksum_computed=other), n=30, seed=None)
    assert not verdict.ok
    assert verdict.reason is not None
    assert "differ" in verdict.reason


def test_stateful_checksum_must_match_the_seed_the_server_chose() -> None:
    # Both checksums agree with each other, but not with the session's real seed.
    forged = stateful_doc(SEED + 1, 30)
    verdict = verify_result(forged, mode="stateful", n=30, exit_code=0, evidence=KNOWN)
    assert not verdict.ok
    assert verdict.reason is not None
    assert "seed" in verdict.reason

    honest = verify_result(
        stateful_doc(SEED, 30), mode="stateful", n=30, exit_code=0, evidence=KNOWN
    )
    assert honest.ok
    assert honest.seed_checked


@pytest.mark.parametrize(
    ("doc", "kwargs", "fragment"),
    [
        (stateful_doc(SEED, 30, checksum_computed="zz"), {}, "64 hex digits"),
        (
            stateful_doc(SEED, 30),
            {"evidence": SessionEvidence(seed_known=True)},
            "never opened a session",
        ),
        (
            stateful_doc(SEED, 30),
            {"evidence": SessionEvidence(seed=SEED, changed_seed=7)},
            "session seed changed",
        ),
        (stateful_doc(SEED, 30), {"client_id": "another"}, "was given"),
        (stateful_doc(SEED, 30), {"exit_code": 1}, "exit code 1"),
        (stateful_doc(SEED, 30, ok=False), {}, "ok = False"),
        (stateful_doc(SEED, 30, n=31), {}, "n is 31"),
        (stateful_doc(SEED, 30, mode="stateless"), {}, "mode is"),
        (None, {}, "no JSON result"),
    ],
)
def test_forged_or_failed_stateful_results_fail(
    doc: dict[str, Any] | None, kwargs: dict[str, Any], fragment: str
) -> None:
    args: dict[str, Any] = {"exit_code": 0, **kwargs}
    verdict = verify_result(doc, mode="stateful", n=30, **args)
    assert not verdict.ok
    assert verdict.reason is not None
    assert fragment in verdict.reason


def test_final_frame_loss_is_excused_only_when_the_server_completed_the_session() -> None:
    lost = stateful_doc(
        SEED,
        30,
        ok=False,
        error="SESSION_UNKNOWN",
        final_frame_lost=True,
        checksum_expected=None,
        checksum_computed=None,
    )
    common: dict[str, Any] = {"mode": "stateful", "n": 30, "exit_code": 3}

    def evidence(completed: bool | None) -> SessionEvidence:
        return SessionEvidence(seed=SEED, completed=completed)

    confirmed = verify_result(lost, evidence=evidence(True), **common)
    assert not confirmed.ok
    assert confirmed.final_frame_lost
    assert not verify_result(lost, evidence=evidence(False), **common).final_frame_lost
    assert not verify_result(lost, evidence=evidence(None), **common).final_frame_lost
    claims_success = verify_result({**lost, "ok": True}, evidence=evidence(True), **common)
    assert not claims_success.final_frame_lost


def test_parse_result_takes_the_last_json_line_and_survives_garbage() -> None:
    assert parse_result(b'noise\n{"ok": true}\n') == {"ok": True}
    assert parse_result(b"") is None
    assert parse_result(b"not json") is None
    assert parse_result(b"[1, 2]") is None
    # An integer too long for Python 3.11 to convert must not crash the harness.
    assert parse_result(b'{"sum": ' + b"9" * 5000 + b"}") is None


def test_client_state_reads_events_and_keeps_other_lines() -> None:
    spec = ClientSpec(id=1, mode="stateless", n=30, seed=1, client_id=CLIENT_ID)
    state = ClientState(spec)
    state.feed_line('{"event": "attempt", "attempt": 2}')
    state.feed_line('{"event": "phase", "phase": "streaming", "detail": "x", "received": 7}')
    state.feed_line('{"event": "progress", "received": 12}')
    state.feed_line("WARNING reference.client: connection lost")
    state.feed_line("{broken json")
    assert state.phase is ClientPhase.CONNECTED
    assert (state.received, state.reconnects) == (12, 1)
    assert list(state.diagnostics) == ["WARNING reference.client: connection lost", "{broken json"]


@pytest.mark.anyio
async def test_recording_store_remembers_seeds_and_completions() -> None:
    store = RecordingStore(MemoryStore())
    record = SessionRecord(seed=SEED, n=30)
    await store.open_session(CLIENT_ID, record, "owner", 1000)
    # Re-opening keeps the seed in force, not the new candidate's.
    await store.open_session(CLIENT_ID, SessionRecord(seed=1, n=30), "owner2", 1000)
    assert store.sessions[CLIENT_ID] == record
    assert await store.complete(CLIENT_ID, "owner2")
    assert CLIENT_ID in store.completed
    assert await store.get(CLIENT_ID) is None
    await store.aclose()


class FailingGets(DelegatingStore):
    """A store whose reads fail while ``failing`` is set, as a Redis outage makes them."""

    failing = False

    def _observe(self, operation: str) -> None:
        if self.failing and operation == "get":
            raise StoreError("store down")


def running(client_id: str, mode: Mode = "stateful", *, started: bool = True) -> ClientState:
    state = ClientState(ClientSpec(id=1, mode=mode, n=30, seed=1, client_id=client_id))
    state.started_at = 0.0 if started else None
    return state


@pytest.mark.anyio
async def test_seed_watcher_reads_running_stateful_sessions_only() -> None:
    store = FailingGets(MemoryStore())
    servers = SubprocessServers(
        ChaosOptions(servers=2, store=StoreOption("redis://shared")), [], store
    )
    first, later, finished = running("first"), running("later"), running("finished")
    finished.ended_at = 1.0
    clients = [
        first,
        later,
        finished,
        running("stateless", "stateless"),
        running("queued", started=False),
    ]
    for state in clients:
        if state is not later:
            await store.open_session(state.spec.client_id, SessionRecord(seed=11, n=30), "o", 1000)

    await servers.read_seeds(clients)
    assert servers.seeds == {"first": SessionRecord(seed=11, n=30)}

    # A client whose session opens after the first read is seen by a later one.
    await store.open_session("later", SessionRecord(seed=12, n=30), "o", 1000)
    store.failing = True
    await servers.read_seeds(clients)  # a store error is logged; the watcher goes on
    store.failing = False
    await servers.read_seeds(clients)
    assert servers.seeds == {
        "first": SessionRecord(seed=11, n=30),
        "later": SessionRecord(seed=12, n=30),
    }

    # The first seed stays the truth; a different one later is kept to fail the client.
    assert await store.complete("first", "o")
    await store.open_session("first", SessionRecord(seed=13, n=30), "o", 1000)
    await servers.read_seeds(clients)
    assert servers.seeds["first"].seed == 11
    evidence = await servers.evidence("first", started_at=anyio.current_time())
    assert evidence.seed == 11
    assert evidence.changed_seed == 13
    assert not evidence.seed_known
    later_evidence = await servers.evidence("later", started_at=anyio.current_time())
    assert later_evidence.changed_seed is None


@pytest.mark.anyio
async def test_a_session_gone_before_its_ttl_was_completed() -> None:
    store = MemoryStore()
    options = ChaosOptions(servers=2, store=StoreOption("redis://shared"), session_ttl=30)
    servers = SubprocessServers(options, [], store)
    state = running("gone")
    state.started_at = anyio.current_time()
    await store.open_session("gone", SessionRecord(seed=5, n=30), "o", 1000)
    await servers.read_seeds([state])
    # Still there: not completed (a "final frame lost" claim is then false).
    assert (await servers.evidence("gone", started_at=state.started_at)).completed is False
    assert await store.complete("gone", "o")
    await servers.read_seeds([state])
    evidence = await servers.evidence("gone", started_at=state.started_at)
    assert evidence.completed is True
    assert evidence.seed == 5
    # Gone, but found gone more than a TTL after the client started: could have expired.
    late = await servers.evidence("gone", started_at=state.started_at - 31)
    assert late.completed is None
    # Never seen: nothing to say.
    assert (await servers.evidence("unseen", started_at=state.started_at)).completed is None


def test_seeds_are_unobservable_without_a_shared_store_or_known_ids() -> None:
    store = MemoryStore()
    assert SubprocessServers(ChaosOptions(servers=2), [], None).seeds is None
    no_ids = ChaosOptions(servers=2, client_cmd="client --port {port} --mode {mode}")
    assert SubprocessServers(no_ids, [], store).seeds is None


# --- runs ---------------------------------------------------------------------------------------


def first_connection_plans(options: ChaosOptions, seed: int, clients: int) -> list[ConnectionPlan]:
    """What the proxy plans for the first connection of clients 1..``clients`` in run ``seed``."""
    config = options.faults
    proxy_seed, _ = client_specs(options, seed)
    return [
        plan_connection(
            ConnectionKey(index=0, client=client, number=1),
            config=config,
            schedule=(),
            seed=proxy_seed,
        )
        for client in range(1, clients + 1)
    ]


def seed_with_early_faults(options: ChaosOptions, clients: int, at_least: int) -> int:
    """A run seed where at least ``at_least`` clients' first connections draw a terminal fault:
    it strikes a byte of the stream before its last, so it surely fires. (Draws are spread
    evenly over the clients, so "every client" is not possible below a rate of about 1.)"""
    for seed in range(10_000):
        plans = first_connection_plans(options, seed, clients)
        drawn = [plan.drawn for plan in plans if plan.drawn is not None]
        if sum(fault.kind in TERMINAL_KINDS for fault in drawn) >= at_least:
            return seed
    raise AssertionError("no suitable seed")


SMALL = ChaosOptions(
    clients=4, n=30, interval=0.002, faults=FaultConfig(drop_rate=0.3, reset_rate=0.2), timeout=30
)


@pytest.mark.anyio
async def test_small_chaos_run_verifies_every_client() -> None:
    seed = seed_with_early_faults(SMALL, SMALL.clients, 2)
    options = ChaosOptions(**{**_fields(SMALL), "seed": seed})
    report = await run_chaos(options)
    assert report.ok, [c.to_json() for c in report.clients]
    assert report.error is None
    assert set(report.fault_counts) <= {"drop", "reset"}
    assert sum(report.fault_counts.values()) >= 2
    assert sum(c.reconnects for c in report.clients) >= 2
    for client in report.clients:
        # A confirmed final-frame loss (spec §16.6) is the only excused outcome, stateful only.
        assert client.ok or (client.final_frame_lost and client.spec.mode == "stateful")
        assert client.exit_code == 0 or client.final_frame_lost
        if client.ok and client.spec.mode == "stateful":
            assert client.seed_checked
    doc = report.to_json()
    json.dumps(doc)
    assert doc["seed"] == seed
    assert doc["server"]["sessions_held"] == 0
    assert {c["mode"] for c in doc["clients"]} == {"stateless", "stateful"}


@pytest.mark.anyio
async def test_timeout_kills_clients_and_fails_them() -> None:
    options = ChaosOptions(clients=2, n=5000, interval=0.01, timeout=0.5, seed=1)
    report = await run_chaos(options)
    assert not report.ok
    assert report.timed_out
    for client in report.clients:
        assert not client.ok
        assert client.exit_code is not None  # killed and reaped, not orphaned
        assert client.reason is not None
        assert "timed out" in client.reason


class StopOnProgress:
    """A UI that ends the run as soon as any client has received a number."""

    def __init__(self, stop: anyio.Event) -> None:
        self.stop_event = stop
        self.view: RunView | None = None
        self.finished: list[int] = []

    def start(self, view: RunView) -> None:
        self.view = view

    def refresh(self) -> None:
        assert self.view is not None
        if any(client.received > 0 for client in self.view.clients):
            self.stop_event.set()

    def client_finished(self, client: ClientState) -> None:
        self.finished.append(client.spec.id)

    def stop(self) -> None:
        pass


@pytest.mark.anyio
async def test_stop_ends_the_run_with_a_partial_report() -> None:
    stop = anyio.Event()
    ui = StopOnProgress(stop)
    options = ChaosOptions(clients=3, n=5000, interval=0.01, seed=2)
    report = await run_chaos(options, ui=ui, stop=stop)
    assert report.interrupted
    assert not report.ok
    assert sorted(ui.finished) == [1, 2, 3]
    assert all(c.reason == "interrupted (killed by signal 9)" for c in report.clients)


@pytest.mark.anyio
async def test_server_subprocesses_with_kills() -> None:
    python = shlex.quote(sys.executable)
    server = f"{python} -m reference.server --port {{port}} --interval {{interval}}"
    options = ChaosOptions(
        clients=2,
        mode="stateless",
        n=60,
        interval=0.01,
        servers=2,
        server_cmd=(server,),
        kill_interval=0.6,  # restarts take a while on a busy machine: leave the servers up
        seed=3,
        timeout=30,
    )
    report = await run_chaos(options)
    assert report.ok, [c.to_json() for c in report.clients]
    assert report.server["kind"] == "subprocess"
    assert report.servers_killed >= 1
    assert all(not c.seed_checked for c in report.clients)


@pytest.mark.anyio
async def test_kills_wait_until_every_server_is_back() -> None:
    """--kill-interval counts from the last restart: while a killed instance is still down (a
    restart takes seconds on a busy machine), no other is killed; once it is back, one is."""
    sleeper = ["sleep", "60"]  # stands in for a server process: only its life matters here
    instances = [
        _Instance(port=0, argv=[], process=await processes.start(sleeper), up=True)
        for _ in range(2)
    ]
    servers = SubprocessServers(ChaosOptions(), instances)
    down: list[_Instance] = []
    changed = anyio.Event()

    async def supervise(instance: _Instance) -> None:  # the part of supervise() that matters
        assert instance.process is not None
        await instance.process.wait()
        instance.up = False
        down.append(instance)
        changed.set()

    try:
        async with anyio.create_task_group() as tg:
            for instance in instances:
                tg.start_soon(supervise, instance)
            tg.start_soon(servers.kill_loop, 0.001, random.Random(1))
            await changed.wait()
            [first] = down
            [other] = [i for i in instances if i is not first]
            await anyio.sleep(0.1)  # a hundred kill intervals in which nothing may happen
            assert not other.killing
            assert other.process is not None
            assert other.process.returncode is None
            changed = anyio.Event()
            first.process = await processes.start(sleeper)
            first.killing = False
            first.up = True
            servers._announce_up()  # as supervise() does once the port accepts again
            tg.start_soon(supervise, first)
            await changed.wait()  # every instance was back: the next kill came
            assert len(down) == 2
            tg.cancel_scope.cancel()
    finally:
        for instance in instances:
            if instance.process is not None:
                await processes.stop(instance.process, grace=0)


def test_server_commands_are_used_in_turn() -> None:
    options = ChaosOptions(server_cmd=("a --port {port}", "b --port {port} --ttl {ttl}"), servers=3)
    assert options.server_subprocess
    assert options.server_count == 3
    argvs = [server_argv(options, 9000 + i, i) for i in range(3)]
    assert argvs == [
        ["a", "--port", "9000"],
        ["b", "--port", "9001", "--ttl", "30"],
        ["a", "--port", "9002"],
    ]
    # Without --servers, one instance per command.
    assert ChaosOptions(server_cmd=("a", "b")).server_count == 2
    assert ChaosOptions().server_count == 1
    assert not ChaosOptions().server_subprocess


@pytest.mark.anyio
async def test_mixed_server_pool_runs_every_command() -> None:
    python = shlex.quote(sys.executable)
    base = f"{python} -m reference.server --port {{port}} --interval {{interval}}"
    options = ChaosOptions(
        clients=4,
        mode="stateless",
        n=40,
        server_cmd=(base + " --log-level warning", base + " --log-level error"),
        faults=FaultConfig(drop_rate=0.5),
        seed=5,
        timeout=30,
    )
    report = await run_chaos(options)
    assert report.ok, [c.to_json() for c in report.clients]
    commands = report.server["commands"]
    assert len(commands) == 2
    assert commands[0].endswith("warning")
    assert commands[1].endswith("error")
    assert report.to_json()["config"]["server_cmd"] == list(options.server_cmd)


@pytest.mark.redis
@pytest.mark.anyio
async def test_server_subprocesses_with_a_shared_store_check_seeds() -> None:
    skip_without_redis()
    # Seed 8 cuts two or three of the first connections (which clients they are is timing).
    options = ChaosOptions(
        clients=4,
        n=100,
        servers=2,
        store=StoreOption.parse("redis"),
        faults=FaultConfig(drop_rate=0.3),
        seed=8,
        timeout=30,
    )
    report = await run_chaos(options)
    assert report.ok, [c.to_json() for c in report.clients]
    assert report.server["kind"] == "subprocess"
    assert sum(c.reconnects for c in report.clients) >= 1
    stateful = [c for c in report.clients if c.spec.mode == "stateful"]
    assert len(stateful) == 2
    # At n = 100 and the default interval a stream lasts a second: the watcher, reading the
    # store every 50 ms, sees every session.
    assert all(c.seed_checked for c in stateful), [c.to_json() for c in stateful]
    assert report.server["sessions_held"] == 0


def _fields(options: ChaosOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


# --- command line -------------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.chaos", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_help() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    assert "--drop-rate" in done.stdout
    assert "--client-cmd" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--drop-rate", "2"],
        ["--drop-rate", "0.6", "--reset-rate", "0.6"],
        ["--clients", "0"],
        ["-n", "70000"],
        ["--client-cmd", "client --port {nope}"],
        ["--store", "bogus://"],
        ["--no-such-flag"],
    ],
)
def test_cli_bad_arguments_exit_2(args: list[str]) -> None:
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    assert "error" in done.stderr


def test_cli_run_writes_report(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    events_path = tmp_path / "events.jsonl"
    options = ChaosOptions(
        clients=4, mode="stateless", n=30, interval=0.002, faults=FaultConfig(drop_rate=0.5)
    )
    seed = seed_with_early_faults(options, 4, 2)
    done = run_cli(
        *("--clients", "4", "--mode", "stateless", "-n", "30", "--interval", "0.002"),
        *("--drop-rate", "0.5", "--seed", str(seed), "--timeout", "30"),
        *("--report", str(report_path), "--event-log", str(events_path)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("chaos: 4/4 clients verified"), done.stdout
    assert f"seed {seed}" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert report["seed"] == seed
    assert report["proxy"]["faults"]["drop"] >= 2
    assert [c["id"] for c in report["clients"]] == [1, 2, 3, 4]
    for client in report["clients"]:
        assert client["ok"] is True
        assert client["exit_code"] == 0
        assert client["result"]["mode"] == "stateless"
        assert "reason" not in client
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert len(events) == report["proxy"]["faults"]["drop"]
    # Non-tty: one stderr line per client, then nothing but the summary on stdout.
    assert done.stderr.count("verified:") == 4


def test_cli_options_carry_every_fault_option_of_the_proxy() -> None:
    """A fault option the proxy learns reaches the harness's FaultConfig, never dropped."""
    args = build_parser().parse_args(
        [
            *("--drop-rate", "0.1", "--reset-rate", "0.05", "--blackhole-rate", "0.05"),
            *("--partition-rate", "0.1", "--corrupt-rate", "0.2", "--refuse-rate", "0.3"),
            *("--refuse-duration", "0.25", "--limit-data", "900", "--latency", "0.5"),
            *("--jitter", "0.125", "--bandwidth", "5000", "--slice", "7", "--slice-delay", "0.002"),
        ]
    )
    options = options_from_args(args)
    assert options.faults == FaultConfig(
        drop_rate=0.1,
        reset_rate=0.05,
        blackhole_rate=0.05,
        partition_rate=0.1,
        corrupt_rate=0.2,
        refuse_rate=0.3,
        refuse_duration=0.25,
        limit_data=900,
        latency=0.5,
        jitter=0.125,
        bandwidth=5000,
        slice_size=7,
        slice_delay=0.002,
    )
    assert options.sized_faults
    windowed = options_from_args(build_parser().parse_args(["--fault-window", "300"]))
    assert (windowed.sized_faults, windowed.faults.fault_window) == (False, 300)


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("memory", "memory://"),
        ("memory://", "memory://"),
        ("redis", None),
        ("redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/2"),
        ("redis+cluster://127.0.0.1:7000", "redis+cluster://127.0.0.1:7000"),
    ],
)
def test_store_option_is_parsed_once(text: str, url: str | None) -> None:
    options = options_from_args(build_parser().parse_args(["--store", text]))
    assert options.store == StoreOption(url)
    assert ChaosOptions.from_json(options.options_json()).store == options.store


def test_cli_refuses_an_unknown_store() -> None:
    done = run_cli("--store", "postgres://x")
    assert done.returncode == 2
    assert "--store" in done.stderr
    assert "redis://HOST:PORT/DB" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_harness_data_does_not_import_the_argparse_layer() -> None:
    code = "import sys, harness.model; print('proxy.cli' in sys.modules, 'argparse' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.split() == ["False", "False"], done.stderr
