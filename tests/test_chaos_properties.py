"""Property tests: Hypothesis draws the fault schedule, the proxy applies it exactly.

Server, proxy and client run in-process on loopback sockets. The schedule ("cut connection i after
B downstream bytes with fault F") is data drawn by Hypothesis, not randomness inside the proxy, so
a failure shrinks to a minimal schedule and replays from Hypothesis's database.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from dataclasses import dataclass

import anyio
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from proxy import ChaosProxy, FaultKind, ScheduledFault
from reference.client import Backoff, ClientConfig, ClientResult, run_client
from reference.protocol import Mode
from reference.server import NumberServer, ServerConfig
from reference.store import MemoryStore

from .oracle import doubling_sum, session_checksum, session_values
from .support import FixedRandom
from .test_e2e import WELCOME_BYTES, Recorder

pytestmark = pytest.mark.anyio

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "30"))
BACKOFF = Backoff(initial=0.01, multiplier=1.6, jitter=0.2, maximum=0.05, max_retries=25)
SILENCE = 0.2  # how fast a blackholed connection is given up
#: Every fault a schedule can hold but refuse (which only delays a connection): partitions
#: (nothing read either way) and corruption (one byte XORed) included.
FAULTS = [
    FaultKind.DROP,
    FaultKind.RESET,
    FaultKind.BLACKHOLE,
    FaultKind.PARTITION,
    FaultKind.CORRUPT,
    FaultKind.SLICE,
]
#: How a client may fail loudly on a corrupted stream: a failed value check (stateless) or
#: checksum (stateful). A protocol violation is not among them: the client resumes after it.
LOUD_ERRORS = {"VERIFY_FAILED", "CHECKSUM_MISMATCH"}
#: A corrupt byte in an ERROR frame's code gives another code, and a client ends on every code
#: spec §12.1 marks not retryable, and on every unassigned one ("a client MUST treat an unknown
#: code as final"; the reference client names it ``ERROR_<code>``): loud failures too.
FINAL_CODES = {
    *("MALFORMED_FRAME", "FRAME_TOO_LARGE", "UNEXPECTED_FRAME", "UNSUPPORTED_VERSION"),
    *("UNSUPPORTED_MODE", "INVALID_N", "INVALID_A", "INVALID_INDEX", "INVALID_CLIENT_ID"),
    *("SESSION_UNKNOWN", "SESSION_MISMATCH", "SESSION_SUPERSEDED"),
}
UNASSIGNED_CODES = {*range(11, 20), *range(23, 30), *range(34, 65536)}


def loud(error: str | None) -> bool:
    """Whether a corrupted run's failure is one the corruption explains."""
    if error in LOUD_ERRORS or error in FINAL_CODES:
        return True
    code = error.removeprefix("ERROR_") if error else ""
    return code.isdigit() and int(code) in UNASSIGNED_CODES


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def stream_bytes(mode: Mode, n: int, a: int) -> int:
    """Downstream bytes of one uncut connection, WELCOME to FINAL, per the spec's layouts."""
    if mode is Mode.STATEFUL:
        return WELCOME_BYTES + 11 * (n - 1) + 43
    return WELCOME_BYTES + sum(7 + ((a << k).bit_length() + 7) // 8 for k in range(n))


@st.composite
def scenarios(draw: st.DrawFn, mode: Mode) -> tuple[int, int, list[ScheduledFault]]:
    n = draw(st.integers(1, 20 if mode is Mode.STATEFUL else 40))
    a = draw(st.integers(1, 255))
    total = stream_bytes(mode, n, a)
    count = draw(st.integers(0, 4))
    schedule = [
        ScheduledFault(
            connection=i,
            after_bytes=draw(st.integers(0, total)),
            kind=draw(st.sampled_from(FAULTS)),
            xor=draw(st.integers(1, 255)),
        )
        for i in range(count)
    ]
    return n, a, schedule


@dataclass
class Run:
    result: ClientResult
    recorder: Recorder
    completed_streams: int
    sessions_left: int
    seed: int
    corrupted: bool  # a CORRUPT fault altered a byte the client was sent


async def run_scenario(mode: Mode, n: int, a: int, schedule: list[ScheduledFault]) -> Run:
    seed = random.Random(f"{n}:{a}").getrandbits(64)
    store = MemoryStore()
    # Stateless runs at interval 0. Stateful needs a small interval: at interval 0 the server
    # writes FINAL (and deletes the session) before any cut lands, and nearly every schedule
    # would end in the spec's final-frame-lost outcome instead of exercising resumption.
    interval = 0.005 if mode is Mode.STATEFUL else 0.0
    server = NumberServer(
        ServerConfig(interval=interval, session_ttl=5.0, lease_refresh=0.05),
        store,
        random_source=FixedRandom(a=a, seeds=[seed]),
    )
    recorder = Recorder()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            server_port = await tg.start(server.serve)
            proxy = ChaosProxy([("127.0.0.1", server_port)], schedule=schedule)
            proxy_port = await tg.start(proxy.serve)
            config = ClientConfig(
                port=proxy_port,
                mode=mode,
                n=n,
                client_id=str(uuid.UUID(int=seed, version=4)) if mode is Mode.STATEFUL else "",
                backoff=BACKOFF,
                silence_timeout=SILENCE,
                # A blackhole before WELCOME costs the handshake timeout; keep every run far
                # inside the 5 s TTL, or an expiry would be a correct (but different) outcome.
                handshake_timeout=SILENCE,
            )
            result = await run_client(config, observer=recorder, rng=random.Random(seed))
            await server.wait_active(0)
            sessions_left = await store.count()
            corrupted = any(e.kind is FaultKind.CORRUPT for e in proxy.recent_events(100))
            tg.cancel_scope.cancel()
    return Run(result, recorder, server.stats.streams_completed, sessions_left, seed, corrupted)


def check_common(run: Run, n: int) -> None:
    """No gap, repeat or reorder; no busy loop; no session kept after the stream ended; a
    corrupted stream ends in success only if the result is right anyway (checked by the
    callers), else in a loud failure."""
    indices = [index for index, _ in run.recorder.numbers]
    assert indices == list(range(len(indices)))
    gaps = [later - earlier for earlier, later in itertools.pairwise(run.recorder.attempts)]
    assert all(gap >= BACKOFF.initial * (1 - BACKOFF.jitter) * 0.99 for gap in gaps), gaps
    assert run.sessions_left == 0
    if run.result.ok:
        assert len(indices) == n
    elif run.corrupted and not run.result.final_frame_lost:
        assert loud(run.result.error), run.result


@hyp_settings(max_examples=EXAMPLES)
@given(scenario=scenarios(Mode.STATELESS))
async def test_stateless_sum_survives_any_schedule(
    scenario: tuple[int, int, list[ScheduledFault]],
) -> None:
    n, a, schedule = scenario
    run = await run_scenario(Mode.STATELESS, n, a, schedule)
    check_common(run, n)
    if run.corrupted and not run.result.ok:
        return  # caught: a failed value check (check_common), never a wrong sum
    # Never a false success: a sum is claimed only when it is the right one.
    assert run.result.ok, run.result
    assert run.result.total == doubling_sum(a, n)
    assert run.recorder.numbers == [(k, a << k) for k in range(n)]


@hyp_settings(max_examples=EXAMPLES)
@given(scenario=scenarios(Mode.STATEFUL))
async def test_stateful_checksum_survives_any_schedule(
    scenario: tuple[int, int, list[ScheduledFault]],
) -> None:
    n, a, schedule = scenario
    run = await run_scenario(Mode.STATEFUL, n, a, schedule)
    check_common(run, n)
    accepted = [value for _, value in run.recorder.numbers]
    if not run.corrupted:
        assert accepted == session_values(run.seed, n)[: len(accepted)]
    if run.corrupted and not run.result.ok and not run.result.final_frame_lost:
        return  # caught: a checksum mismatch (check_common), never a wrong checksum accepted
    if run.result.ok:  # never a false success: the checksum is the session's
        assert run.result.checksum_expected == session_checksum(run.seed, n)
        assert run.result.checksum_computed == run.result.checksum_expected
        return
    # The one permitted non-success: the server wrote FINAL, then a fault lost it in flight.
    assert schedule, "a run without faults must succeed"
    assert run.result.error == "SESSION_UNKNOWN"
    assert run.result.final_frame_lost
    # At least one server connection wrote FINAL (more than one when the client never saw the
    # first WELCOME and its fresh HELLO started the stream again).
    assert run.completed_streams >= 1
    assert len(accepted) < n
