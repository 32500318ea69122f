"""Chaos faults end to end: stream sizing, honest rates, verdicts under corruption, replay, CLI.

The sizer is checked against streams laid out here from spec/PROTOCOL.md's frame tables (not
with the reference encoders); the runs check the harness's verdicts against what the faults it
reports must have done.
"""

from __future__ import annotations

import json
import shlex
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.chaos import (
    check_options,
    load_replay,
    replay_differences,
    run_chaos,
)
from harness.model import (
    ChaosOptions,
    ChaosReport,
    ClientPhase,
    ClientSpec,
    ClientState,
    StoreOption,
    fault_json,
    fault_rates,
)
from harness.streams import NoStream, nsp_shape
from proxy import ConnectionKey, ConnectionRecord, FaultEvent, FaultKind
from proxy.faults import DRAWN_KINDS, FaultConfig
from reference.protocol import Mode

from .redis_fixture import skip_without_redis
from .test_harness import first_connection_plans

ROOT = Path(__file__).resolve().parents[1]


# --- the sizer, against streams laid out from the spec's tables ---------------------------------


def spec_stream(mode: Mode, n: int, next_index: int, a: int) -> list[tuple[str, int, bytes]]:
    """(frame, index, bytes) of one connection: WELCOME (type 2, 23-byte payload), then DATA
    (type 3) / FINAL (type 4) frames; stateful payload index:u32 value:u32 (+ 32-byte checksum
    in FINAL); stateless payload index:u32 then the value a*2^i in minimal big-endian bytes."""
    # A stateless WELCOME carries a and TTL 0; a stateful one a = 0 and the TTL.
    ttl, a_field = (30_000, 0) if mode is Mode.STATEFUL else (0, a)
    welcome_payload = struct.pack(">BBBIIIII", 1, int(mode), 0, n, next_index, 10, a_field, ttl)
    frames = [("welcome", next_index, struct.pack(">BH", 2, 23) + welcome_payload)]
    for index in range(next_index, n):
        final = index == n - 1
        if mode is Mode.STATEFUL:
            payload = struct.pack(">II", index, 12345) + (bytes(32) if final else b"")
        else:
            value = a << index
            payload = struct.pack(">I", index) + value.to_bytes((value.bit_length() + 7) // 8)
        header = struct.pack(">BH", 4 if final else 3, len(payload))
        frames.append(("final" if final else "data", index, header + payload))
    return frames


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from([Mode.STATELESS, Mode.STATEFUL]),
    n=st.integers(1, 300),
    a=st.integers(1, 255),
    data=st.data(),
)
def test_sizer_knows_every_frame_of_a_connection(mode: Mode, n: int, a: int, data: Any) -> None:
    next_index = data.draw(st.integers(0, n - 1))
    frames = spec_stream(mode, n, next_index, a)
    stream = b"".join(raw for _, _, raw in frames)
    assert nsp_shape(stream[:25]) is None  # the WELCOME is 26 bytes: wait for all of it
    shape = nsp_shape(stream[:26])
    assert shape is not None
    assert shape.size == len(stream)
    assert shape.label == mode.name.lower()
    offset = 0
    for frame, index, raw in frames:
        for byte in {offset, offset + len(raw) - 1}:
            position = shape.locate(byte)
            assert (position.frame, position.frame_index) == (frame, index)
        offset += len(raw)


def test_sizer_sees_no_stream_behind_an_error_frame() -> None:
    error = struct.pack(">BHH", 5, 2 + 5, 0x0103) + b"gone!"
    assert isinstance(nsp_shape(error), NoStream)
    assert nsp_shape(b"\x02\x00") is None


# --- rates as the report gives them ---------------------------------------------------------------


def record(label: str, size: int, kind: FaultKind | None, *, forwarded: int) -> ConnectionRecord:
    rec = ConnectionRecord(key=ConnectionKey(index=0), label=label, size=size, point=0.5)
    rec.forwarded = forwarded
    if kind is not None:
        rec.drawn = kind
        rec.fault = FaultEvent(
            t=0.0,
            connection=0,
            kind=kind,
            direction=None,
            offset_downstream=forwarded,
            offset_upstream=0,
            upstream=None,
        )
    return rec


def test_fault_rates_count_only_connections_that_reached_their_point() -> None:
    records = [
        record("stateless", 100, FaultKind.DROP, forwarded=50),
        record("stateless", 100, None, forwarded=100),
        record("stateless", 100, None, forwarded=10),  # cut short before its point (50)
        record("stateful", 100, FaultKind.CORRUPT, forwarded=100),
        record("stateful", 0, None, forwarded=30),  # an ERROR, no stream
    ]
    rates = fault_rates({"drop": 0.25, "corrupt": 0.5}, records)
    assert rates == {
        "stateful": {
            "connections": 1,
            "cut_short": 0,
            "rates": {"drop": 0.25, "corrupt": 0.5},
            "expected": {"drop": 0.25, "corrupt": 0.5},
            "injected": {"drop": 0, "corrupt": 1},
        },
        "stateless": {
            "connections": 2,
            "cut_short": 1,
            "rates": {"drop": 0.25, "corrupt": 0.5},
            "expected": {"drop": 0.5, "corrupt": 1.0},
            "injected": {"drop": 1, "corrupt": 0},
        },
    }


# --- verdicts under corruption --------------------------------------------------------------------


@pytest.mark.anyio
async def test_corruption_is_never_a_success() -> None:
    options = ChaosOptions(
        clients=6, n=40, interval=0.002, faults=FaultConfig(corrupt_rate=0.8), seed=4, timeout=60
    )
    report = await run_chaos(options)
    assert report.ok, [c.to_json() for c in report.clients]
    hit = [c for c in report.clients if c.corrupted]
    assert len(hit) >= 3
    for client in report.clients:
        assert client.phase in (
            ClientPhase.VERIFIED,
            ClientPhase.CORRUPTION_DETECTED,
            ClientPhase.FINAL_LOST,
        )
        if client.phase is ClientPhase.CORRUPTION_DETECTED:
            assert client.corrupted
    assert report.false_successes == 0
    assert report.corruptions_detected == sum(
        c.phase is ClientPhase.CORRUPTION_DETECTED for c in report.clients
    )


FORGER = """\
import json, sys
mode, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({"mode": mode, "n": n, "ok": True, "reconnects": 0, "first": "1",
                  "sum": str(2 ** n), "error": None}))
"""


@pytest.mark.anyio
async def test_a_wrong_result_claimed_as_success_is_a_false_success(tmp_path: Path) -> None:
    forger = tmp_path / "forger.py"
    forger.write_text(FORGER)
    options = ChaosOptions(
        clients=1,
        mode="stateless",
        n=10,
        client_cmd=f"{shlex.quote(sys.executable)} {forger} {{mode}} {{n}}",
        seed=1,
        timeout=30,
    )
    report = await run_chaos(options)
    assert not report.ok
    [client] = report.clients
    assert client.phase is ClientPhase.FALSE_SUCCESS
    assert client.reason is not None
    assert client.reason.startswith("claimed a result that is wrong")
    assert report.to_json()["false_successes"] == 1


# --- store faults --------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_store_pauses_and_restarts_keep_verdicts_exact() -> None:
    skip_without_redis()
    options = ChaosOptions(
        clients=4,
        n=250,
        store=StoreOption.parse("redis"),
        store_pause_interval=0.6,
        store_restart_interval=0.9,
        faults=FaultConfig(drop_rate=0.2),
        seed=6,
        timeout=90,
    )
    report = await run_chaos(options)
    assert report.ok, [c.to_json() for c in report.clients]
    assert report.store_events["pauses"] >= 1
    assert report.store_events["restarts"] >= 1
    assert report.verified + report.final_frames_lost == options.clients
    for client in report.clients:
        if client.ok and client.spec.mode == "stateful":
            assert client.seed_checked  # recomputed from the seed the server handed out


def test_store_faults_need_the_harness_own_redis() -> None:
    with pytest.raises(ValueError, match="needs --store redis"):
        check_options(ChaosOptions(store_pause_interval=1.0))


# --- exact replay ---------------------------------------------------------------------------------

EVERY_KIND = ChaosOptions(
    clients=8,
    n=40,
    interval=0.005,
    faults=FaultConfig(
        drop_rate=0.2,
        reset_rate=0.15,
        blackhole_rate=0.15,
        partition_rate=0.15,
        corrupt_rate=0.15,
        refuse_rate=0.1,
    ),
    timeout=90,
    # Patient timers, so a busy machine does not add connections of its own (a slow WELCOME,
    # a stalled stream) that the original run did not make.
    client_args=("--connect-timeout", "5", "--min-silence", "1"),
)


def seed_with_every_kind(options: ChaosOptions) -> int:
    """A run seed whose clients' first connections draw every drawn kind, one of them refused
    (its next connection draws again)."""
    for seed in range(20_000):
        plans = first_connection_plans(options, seed, options.clients)
        kinds = {p.drawn.kind for p in plans if p.drawn is not None and not p.starts_refuse}
        if kinds == set(DRAWN_KINDS) and any(p.starts_refuse for p in plans):
            return seed
    raise AssertionError("no suitable seed")


@pytest.mark.anyio
async def test_replay_reproduces_a_run_with_every_fault_kind(tmp_path: Path) -> None:
    seed = seed_with_every_kind(EVERY_KIND)
    original = await run_chaos(ChaosOptions(**{**_fields(EVERY_KIND), "seed": seed}))
    doc = original.to_json()
    assert {fault["kind"] for fault in doc["faults"]} >= {*map(str, DRAWN_KINDS), "refuse"}
    assert original.ok, [c.to_json() for c in original.clients]
    for fault in doc["faults"]:
        assert fault["client"] in range(1, EVERY_KIND.clients + 1)
        assert fault["connection"] >= 1
        if fault["kind"] != "refuse":
            assert fault["frame_index"] in range(EVERY_KIND.n)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(doc))

    options, schedule, loaded = load_replay(str(path))
    assert (
        options.faults.drop_rate == options.faults.corrupt_rate == options.faults.refuse_rate == 0
    )
    assert len(schedule) == len(doc["faults"])
    replay = await run_chaos(options, schedule=schedule, replay_of=str(path))
    assert replay_differences(loaded, replay) == []
    keys = ("client", "connection", "kind", "offset", "frame_index")
    assert [[f[k] for k in keys] for f in replay.fault_list()] == [
        [f[k] for k in keys] for f in doc["faults"]
    ]  # every fault again, at the same byte
    struck_final = {fault["client"] for fault in doc["faults"] if fault["frame"] == "final"}
    for before, after in zip(doc["clients"], replay.clients, strict=True):
        if after.outcome == before["outcome"]:
            assert after.to_json()["result"] == before["result"]
        else:  # the one race a replay does not decide (harness/README.md, "Replay")
            assert before["id"] in struck_final, (before, after.to_json())
            assert {before["outcome"], after.outcome} == {"verified", "final_lost"}
    assert replay.to_json()["replay_of"] == str(path)


def _replayed(outcomes: dict[int, ClientPhase], faults: list[FaultEvent]) -> ChaosReport:
    clients = []
    for client, phase in outcomes.items():
        spec = ClientSpec(id=client, mode="stateful", n=40, seed=0, client_id="")
        mine = [event for event in faults if event.client == client]
        clients.append(ClientState(spec=spec, phase=phase, faults=mine))
    return ChaosReport(
        ok=True,
        seed=0,
        proxy_seed=0,
        duration_s=0.0,
        options=ChaosOptions(),
        clients=clients,
        proxy={},
        server={},
    )


def _drop(client: int, frame_index: int) -> FaultEvent:
    return FaultEvent(
        t=0.0,
        connection=client,
        kind=FaultKind.DROP,
        direction=None,
        offset_downstream=0,
        offset_upstream=0,
        upstream=None,
        client=client,
        client_connection=1,
        frame_index=frame_index,
        frame="final" if frame_index == 39 else "data",
    )


def test_replay_excuses_only_the_final_frame_race() -> None:
    """verified <-> final_lost is no difference for a client whose fault struck FINAL (39 of
    n = 40) and only for it; every other change of verdict, or of fault, is one."""
    faults = [_drop(1, 39), _drop(2, 12), _drop(3, 39)]
    original = {
        "faults": [fault_json(event) for event in faults],
        "clients": [
            {"id": 1, "outcome": "final_lost"},
            {"id": 2, "outcome": "final_lost"},
            {"id": 3, "outcome": "verified"},
            {"id": 4, "outcome": "verified"},
        ],
    }
    phases = {
        1: ClientPhase.VERIFIED,
        2: ClientPhase.VERIFIED,
        3: ClientPhase.FAILED,
        4: ClientPhase.FINAL_LOST,
    }
    assert replay_differences(original, _replayed(phases, faults)) == [
        "client 2: final_lost, now verified",
        "client 3: verified, now failed",
        "client 4: verified, now final_lost",
    ]
    same = {1: ClientPhase.FINAL_LOST, 2: ClientPhase.FINAL_LOST, 3: ClientPhase.VERIFIED}
    assert replay_differences(original, _replayed({**same, 4: ClientPhase.VERIFIED}, faults)) == []
    moved = [_drop(1, 38), *faults[1:]]
    assert replay_differences(original, _replayed({**same, 4: ClientPhase.VERIFIED}, moved)) == [
        "client 1 connection 1: drop at frame 39 not reproduced",
        "client 1 connection 1: drop at frame 38 is new",
    ]


def test_replay_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"schema_version": 1}')
    with pytest.raises(ValueError, match="schema version"):
        load_replay(str(path))


def _fields(options: ChaosOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


# --- command line -------------------------------------------------------------------------------


def chaos_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.chaos", *args]


def test_report_dash_goes_to_stdout_and_the_verdict_to_stderr() -> None:
    done = subprocess.run(
        chaos_cli(
            "--clients", "2", "-n", "20", "--interval", "0.002", "--seed", "3", "--report", "-"
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema_version"] == 3
    assert doc["verified"] == 2
    assert "chaos: 2/2 clients verified" in done.stderr
    assert not Path(ROOT / "-").exists()


def test_interrupt_exits_130_and_writes_the_partial_report(tmp_path: Path) -> None:
    report = tmp_path / "partial.json"
    process = subprocess.Popen(
        chaos_cli(
            *("--clients", "2", "-n", "5000", "--interval", "0.01", "--ui", "plain"),
            *("--report", str(report)),
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the run's description: the run has started
        assert first.startswith("chaos: seed"), first
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "INTERRUPTED" in stdout
    doc = json.loads(report.read_text())
    assert doc["interrupted"] is True
    assert len(doc["clients"]) == 2
