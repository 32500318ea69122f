"""Server cases that plant and inspect sessions in Redis (spec/STORE-REDIS.md), and cases
that start the server themselves (Appendix B, shutdown)."""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio

from . import wire
from .model import Case, Check, Level, Skip, shown_text
from .probe import EOF, RESET, Event, Probe, describe
from .resp import Resp, monitor, parse_redis_url, redact
from .server_role import (
    FAR,
    VECTORS,
    ServerTarget,
    Spawned,
    expect_error,
    final_checksum,
    new_id,
    read_stream,
    refused,
    resume_stateful,
)

REDIS = frozenset({"redis"})
SPAWN = frozenset({"spawn"})
#: The session of §8.2 / §20.3.
SEED = 0x0123456789ABCDEF
CHECKSUM_N3 = bytes.fromhex("fab44cfb95287b3fd9778b517874bcb5a2dbfc24d5ce017ab9d892f60096990b")


async def _plant(
    target: ServerTarget, cid: str, fields: dict[str, bytes | str], ms: int = 60000
) -> None:
    async with await target.redis() as r:
        await r.plant(target.key(cid), fields, ms)


def _fields(seed: int, n: int) -> dict[str, bytes | str]:
    return {"seed": str(seed), "n": str(n), "owner": ""}


async def _planted(seed: int, n: int, nxt: int, target: ServerTarget, check: Check) -> None:
    cid = new_id()
    await _plant(target, cid, _fields(seed, n))
    s = await resume_stateful(check, target, cid, n, nxt)
    want = [wire.element(seed, i) for i in range(nxt, n)]
    check.must(s.values == want, "values are not element(seed, i) of the planted seed")
    full = wire.checksum([wire.element(seed, i) for i in range(n)])
    check.must(final_checksum(s) == full, "FINAL checksum is not that of the planted seed")
    async with await target.redis() as r:
        gone = not await r.exists(target.key(cid))
    check.note(f"key gone after FINAL: {gone}")
    check.must(gone, "the session key still exists after FINAL")


PLANTED = [
    (
        "redis-2/planted-seed-vector",
        "the §20.3 session planted (seed 0x0123456789abcdef, n 3), resumed at 0",
        SEED,
        3,
        0,
    ),
    (
        "redis-2/planted-seed-u64-max",
        "seed 18446744073709551615 (beyond 2^53) resumed at 2 of 6",
        2**64 - 1,
        6,
        2,
    ),
    ("redis-2/planted-seed-zero", "seed 0 resumed at 0 of 4", 0, 4, 0),
    (
        "redis-2/planted-resume-late",
        "a random seed, n 60, resumed at 55",
        secrets.randbits(64),
        60,
        55,
    ),
    ("redis-2/planted-n-65535", "seed 2^63 with n 65535 resumed at 65533", 2**63, 65535, 65533),
]


async def _planted_open(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    await _plant(target, cid, _fields(SEED, 3))
    async with Probe(target.port, check) as probe:
        await probe.send(wire.hello(wire.STATEFUL, 3, client_id=cid))
        s = await read_stream(check, probe, target, wire.STATEFUL, 3, 0)
    check.must(final_checksum(s) == CHECKSUM_N3, "not the planted session's sequence")


async def _layout(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    async with Probe(target.port, check) as probe:
        await probe.send(wire.hello(wire.STATEFUL, 65535, client_id=cid))
        s = await read_stream(check, probe, target, wire.STATEFUL, 65535, 0, take=4)
        async with await target.redis() as r:
            fields = await r.hgetall(target.key(cid))
            pttl = await r.pttl(target.key(cid))
    check.note(f"hash {fields!r}, PTTL {pttl} ms")
    check.must(set(fields) == {b"seed", b"n", b"owner"}, f"fields {sorted(fields)}")
    seed = fields[b"seed"]
    check.must(seed.isdigit() and (seed == b"0" or not seed.startswith(b"0")), f"seed {seed!r}")
    check.must(int(seed) < 2**64, "seed beyond u64")
    check.must(fields[b"n"] == b"65535", f"n {fields[b'n']!r}")
    check.must(fields[b"owner"] != b"", "owner is empty while a connection holds the session")
    want = [wire.element(int(seed), i) for i in range(4)]
    check.must(s.values == want, "values are not element(stored seed, i)")
    check.must(0 < pttl <= target.ttl_ms + 1000 + 200, f"PTTL {pttl} ms while streaming")


async def _lease(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    lease = target.ttl + 1.0
    async with Probe(target.port, check) as probe:
        await probe.send(wire.hello(wire.STATEFUL, 65535, client_id=cid))
        await read_stream(check, probe, target, wire.STATEFUL, 65535, 0, take=1)
        samples = []
        started = time.monotonic()
        while time.monotonic() - started < lease + 1.5:
            await anyio.sleep(0.25)
            async with await target.redis() as r:
                samples.append(await r.pttl(target.key(cid)))
        frames = await probe.sleep_reading(0.1)
    check.note(f"PTTL samples {samples[:3]}..{samples[-3:]}, then {len(frames)} frames")
    check.must(min(samples) > 0, "the key expired while its connection was streaming")
    check.should(
        max(samples) > target.ttl_ms, f"the lease never exceeded the TTL ({max(samples)} ms)"
    )


async def _released(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    async with Probe(target.port, check) as probe:
        await probe.send(wire.hello(wire.STATEFUL, FAR, client_id=cid))
        await read_stream(check, probe, target, wire.STATEFUL, FAR, 0, take=2)
    fields: dict[bytes, bytes] = {}
    pttl = -3
    async with await target.redis() as r:
        for _ in range(20):
            await anyio.sleep(0.05)
            fields = await r.hgetall(target.key(cid))
            pttl = await r.pttl(target.key(cid))
            if fields.get(b"owner") == b"":
                break
    check.note(f"after the drop: owner {fields.get(b'owner')!r}, PTTL {pttl} ms")
    check.must(fields.get(b"owner") == b"", "owner not cleared after the drop")
    check.must(target.ttl_ms - 1500 <= pttl <= target.ttl_ms, f"PTTL {pttl}, TTL {target.ttl_ms}")


async def _owners(target: ServerTarget, check: Check) -> None:
    ids = [new_id(), new_id()]
    owners = []
    async with Probe(target.port, check) as p1, Probe(target.port, check) as p2:
        for probe, cid in zip((p1, p2), ids, strict=True):
            await probe.send(wire.hello(wire.STATEFUL, 65535, client_id=cid))
            await read_stream(check, probe, target, wire.STATEFUL, 65535, 0, take=1)
        async with await target.redis() as r:
            owners += [(await r.hgetall(target.key(cid))).get(b"owner") for cid in ids]
        # the same id again on a third connection: a new token
        async with Probe(target.port, check) as p3:
            await p3.send(
                wire.hello(wire.STATEFUL, 65535, next_index=1, resume=True, client_id=ids[0])
            )
            await read_stream(check, p3, target, wire.STATEFUL, 65535, 1, take=1)
            async with await target.redis() as r:
                owners.append((await r.hgetall(target.key(ids[0]))).get(b"owner"))
    check.note(f"owners {owners}")
    check.must(all(owners), "an empty owner token")
    check.must(len(set(owners)) == 3, "owner tokens are not unique per connection")


async def _after_data(probe: Probe, target: ServerTarget) -> Event | None:
    """The first event that is not DATA, reading for up to 1 s + 3 intervals + 3 s; the last
    DATA frame if the stream went on that long, None if nothing came at all."""
    started = time.monotonic()
    event: Event | None = None
    while time.monotonic() - started < 1.0 + 3 * target.interval + 3.0:
        event = await probe.event(1.0)
        if not (isinstance(event, wire.Frame) and event.kind == wire.DATA):
            break
    return event


async def _fenced(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    async with Probe(target.port, check) as probe:
        await probe.send(wire.hello(wire.STATEFUL, 65535, client_id=cid))
        await read_stream(check, probe, target, wire.STATEFUL, 65535, 0, take=1)
        async with await target.redis() as r:
            await r.call("HSET", target.key(cid), "owner", "conformance-intruder")
            await r.call("PEXPIRE", target.key(cid), "600000")
        event = await _after_data(probe, target)
        check.note(f"after the foreign claim: {describe(event) if event else 'nothing'}")
        check.must(
            isinstance(event, wire.Frame) or event in (EOF, RESET),
            "kept streaming after losing the lease",
        )
        check.must(
            isinstance(event, wire.Frame) and event.error_code == 22,
            f"expected ERROR SESSION_SUPERSEDED, got {describe(event) if event else 'nothing'}",
        )
    await anyio.sleep(0.3)
    async with await target.redis() as r:
        fields = await r.hgetall(target.key(cid))
        pttl = await r.pttl(target.key(cid))
    check.note(f"then owner {fields.get(b'owner')!r}, PTTL {pttl} ms")
    check.must(fields.get(b"owner") == b"conformance-intruder", "the stale server changed owner")
    check.must(pttl > 500000, f"the stale server re-armed the expiry ({pttl} ms)")


async def _deleted_under(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    async with Probe(target.port, check) as probe:
        await probe.send(wire.hello(wire.STATEFUL, 65535, client_id=cid))
        await read_stream(check, probe, target, wire.STATEFUL, 65535, 0, take=1)
        async with await target.redis() as r:
            await r.call("DEL", target.key(cid))
        event = await _after_data(probe, target)
        check.note(f"after the key vanished: {describe(event) if event else 'nothing'}")
        check.must(
            not (isinstance(event, wire.Frame) and event.kind == wire.DATA),
            "kept streaming a session that no longer exists",
        )
        check.must(
            isinstance(event, wire.Frame) and event.error_code == 30,
            "expected ERROR STORE_UNAVAILABLE (1.1 §16.4: refresh false, session absent), "
            f"got {event and describe(event)}",
        )
    async with await target.redis() as r:
        check.must(not await r.exists(target.key(cid)), "the server re-created the key")


#: Hashes a reader MUST reject with STORE_UNAVAILABLE (STORE-REDIS §2, §7).
BAD_RECORDS: list[tuple[str, str, dict[str, bytes | str]]] = [
    ("seed-not-decimal", "seed 'abc'", {"seed": "abc", "n": "5", "owner": ""}),
    ("seed-negative", "seed '-1'", {"seed": "-1", "n": "5", "owner": ""}),
    (
        "seed-2-64",
        "seed 18446744073709551616 (one past u64)",
        {"seed": str(2**64), "n": "5", "owner": ""},
    ),
    ("seed-hex", "seed '0x10'", {"seed": "0x10", "n": "5", "owner": ""}),
    ("seed-empty", "seed ''", {"seed": "", "n": "5", "owner": ""}),
    ("seed-space", "seed ' 5'", {"seed": " 5", "n": "5", "owner": ""}),
    ("seed-missing", "no seed field", {"n": "5", "owner": ""}),
    ("n-missing", "no n field", {"seed": "7", "owner": ""}),
    ("n-zero", "n '0'", {"seed": "7", "n": "0", "owner": ""}),
    ("n-65536", "n '65536'", {"seed": "7", "n": "65536", "owner": ""}),
    ("n-float", "n '5.0'", {"seed": "7", "n": "5.0", "owner": ""}),
    (
        "seed-leading-zero",
        "seed '0123' (1.1: canonical decimal only)",
        {"seed": "0123", "n": "5", "owner": ""},
    ),
    ("n-leading-zero", "n '05' (1.1)", {"seed": "7", "n": "05", "owner": ""}),
    ("seed-plus", "seed '+5' (1.1)", {"seed": "+5", "n": "5", "owner": ""}),
    ("n-plus", "n '+5' (1.1)", {"seed": "7", "n": "+5", "owner": ""}),
]


async def _bad_record(fields: dict[str, bytes | str], target: ServerTarget, check: Check) -> None:
    cid = new_id()
    await _plant(target, cid, fields)
    n = 5
    await refused(check, target, wire.hello(2, n, next_index=1, resume=True, client_id=cid), 30)


async def _neither_field(target: ServerTarget, check: Check) -> None:
    """A key holding neither seed nor n (only owner and a foreign field): the `get` reads it
    as absent, but OPEN_SESSION and CLAIM find the key and answer a record of two nils, which
    a reader rejects (STORE-REDIS §2, specread S3), with or without RESUME."""
    for resume in (False, True):
        cid = new_id()
        await _plant(target, cid, {"owner": "", "note": "x"})
        hello = wire.hello(2, 5, next_index=1 if resume else 0, resume=resume, client_id=cid)
        await refused(check, target, hello, 30)


async def _wrongtype(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    async with await target.redis() as r:
        await r.call("SET", target.key(cid), "not a hash", "PX", "60000")
    await refused(check, target, wire.hello(2, 5, next_index=1, resume=True, client_id=cid), 30)


async def _lenient_record(
    fields: dict[str, bytes | str], target: ServerTarget, check: Check
) -> None:
    cid = new_id()
    await _plant(target, cid, fields)
    seed = int(fields["seed"])
    s = await resume_stateful(check, target, cid, 5, 3)
    check.must(s.values == [wire.element(seed, i) for i in (3, 4)], "not the planted sequence")


#: Records 1.1 says a reader accepts (issue 8 point b): a missing owner means disconnected,
#: other fields are ignored.
LENIENT_RECORDS: list[tuple[str, str, dict[str, bytes | str]]] = [
    ("owner-missing", "no owner field (1.1: disconnected)", {"seed": "7", "n": "5"}),
    (
        "extra-field",
        "an extra field 'note' (1.1: ignored)",
        {"seed": "7", "n": "5", "owner": "", "note": "x"},
    ),
    ("seed-zero", "seed '0'", {"seed": "0", "n": "5", "owner": ""}),
]


async def _mismatch_planted(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    await _plant(target, cid, _fields(SEED, 5))
    await refused(check, target, wire.hello(2, 6, next_index=1, resume=True, client_id=cid), 21)
    async with await target.redis() as r:
        fields = await r.hgetall(target.key(cid))
    check.must(fields.get(b"seed") == str(SEED).encode(), "the planted record was changed")


async def _expired_planted(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    await _plant(target, cid, _fields(SEED, 5), ms=150)
    await anyio.sleep(0.4)
    await refused(check, target, wire.hello(2, 5, next_index=1, resume=True, client_id=cid), 20)


#: Redis commands one lease-refresh round may cost (the script call plus its inner commands).
REFRESH_BUDGET = 8


async def _ops_per_number(target: ServerTarget, check: Check) -> None:
    if target.interval > 0.07:
        raise Skip(
            "needs an interval of at most 0.07 s to tell per-number from per-second commands"
        )
    # Two streams, the second 40 numbers longer: one command per number would show as 40
    # more commands, one refresh per second as a few; per-connection overheads cancel out.
    # Redis counts the commands a script runs as well as the script call, so a refresh round
    # may cost up to REFRESH_BUDGET commands (one EVALSHA and its inner calls, or a pipelined
    # REFRESH and its inner calls), and a stream may see one round more than its length in
    # seconds. At 0.07 s the bound stays below the 40 commands a per-number store call adds.
    used: list[int] = []
    seconds: list[float] = []
    async with await target.redis() as r:
        for n in (20, 60):
            before = await r.command_calls()
            async with Probe(target.port, check) as probe:
                await probe.send(wire.hello(wire.STATEFUL, n, client_id=new_id()))
                s = await read_stream(check, probe, target, wire.STATEFUL, n, 0)
            await anyio.sleep(0.1)
            used.append(await r.command_calls() - before - 1)  # minus our own INFO
            seconds.append(s.times[-1] - s.welcome_at)
    extra = used[1] - used[0]
    allowed = 4 + REFRESH_BUDGET * (seconds[1] - seconds[0] + 1)
    check.note(f"Redis commands: {used[0]} for 20 numbers, {used[1]} for 60 numbers")
    check.must(
        extra <= allowed, f"{extra} more commands for 40 more numbers (allowed {allowed:.0f})"
    )


async def _refreshed_together(target: ServerTarget, check: Check) -> None:
    """STORE-REDIS §4.1: "A server holding many sessions SHOULD refresh all of their leases
    together, once per refresh period, instead of one round trip per connection." Two streams
    opened 0.5 s apart: refreshed one connection at a time, their refreshes come 0.5 s apart;
    refreshed together, in the same pipeline or script call."""
    ids = [new_id(), new_id()]
    keys = [target.key(cid).encode() for cid in ids]
    async with Probe(target.port, check) as first, Probe(target.port, check) as second:
        for probe, cid in ((first, ids[0]), (second, ids[1])):
            await probe.send(wire.hello(wire.STATEFUL, FAR, client_id=cid))
            await read_stream(check, probe, target, wire.STATEFUL, FAR, 0, take=1)
            await anyio.sleep(0.5)
        assert target.redis_url is not None
        lines = await monitor(target.redis_url, 3.2)
    times: list[list[float]] = [[], []]
    for line in lines:
        if b" lua]" in line or not (b'"EVALSHA"' in line or b'"EVAL"' in line):
            continue  # a script's own commands, or not a script
        for i, key in enumerate(keys):
            if b'"' + key + b'"' in line:
                times[i].append(float(line[1:].split(b" ", 1)[0]))
    check.note(f"refresh calls of the two leases at (Redis clock) {times[0]} and {times[1]}")
    check.must(
        len(times[0]) >= 2 and len(times[1]) >= 2,
        "fewer than two refreshes per lease in 3.2 s (refresh period 1 s, §16.4)",
    )
    gaps = sorted(min(abs(t - u) for u in times[1]) for t in times[0])
    median = gaps[len(gaps) // 2]
    check.note(
        f"each refresh of the first lease is {median * 1000:.0f} ms (median) from one of the second"
    )
    check.should(
        median <= 0.1,
        f"the two leases are refreshed {median:.2f} s apart: one round trip per connection, "
        "not one batch per period",
    )


def _not_testable(reason: str) -> Callable[[ServerTarget, Check], Awaitable[None]]:
    async def run(target: ServerTarget, check: Check) -> None:
        raise Skip(f"not testable from outside: {reason}")

    return run


def store_cases() -> list[Case]:
    cases = [
        Case(
            cid,
            title,
            "WELCOME, values element(seed, i), FINAL checksum over all n; key gone",
            Level.MUST,
            functools.partial(_planted, seed, n, nxt),
            REDIS,
        )
        for cid, title, seed, n, nxt in PLANTED
    ]
    cases += [
        Case(
            "redis-4/open-keeps-planted-seed",
            "a HELLO without RESUME for a planted session "
            "takes it over and keeps its seed (OPEN_SESSION)",
            "the §20.3 sequence and checksum",
            Level.MUST,
            _planted_open,
            REDIS,
        ),
        Case(
            "redis-2/created-layout",
            "a session the server creates is one hash {seed, n, owner} "
            "at {prefix}session:{client_id}",
            "decimal seed, n as sent, non-empty owner, an expiry; values = element(stored seed, i)",
            Level.MUST,
            _layout,
            REDIS,
            covers=("16.1",),
        ),
        Case(
            "redis-5/lease-refreshed",
            "while streaming the key never expires: the lease (TTL + refresh period) is refreshed",
            "PTTL stays > 0 (MUST) and exceeds the TTL (SHOULD)",
            Level.MUST,
            _lease,
            REDIS,
        ),
        Case(
            "redis-5/ttl-after-drop",
            "after a drop the owner is cleared and the expiry is the TTL",
            "owner '' and PTTL within 1.5 s below the TTL",
            Level.MUST,
            _released,
            REDIS,
        ),
        Case(
            "redis-3/owner-tokens-unique",
            "each connection uses its own non-empty owner token",
            "three connections, three distinct tokens",
            Level.MUST,
            _owners,
            REDIS,
            covers=("16.1",),
        ),
        Case(
            "redis-3/fencing-after-foreign-claim",
            "another server's claim (owner overwritten) "
            "makes the server stop without touching the key",
            "stream stops, ERROR SESSION_SUPERSEDED; owner and expiry left as the claimer set them",
            Level.MUST,
            _fenced,
            REDIS,
        ),
        Case(
            "redis-3/key-deleted-while-streaming",
            "the key disappears while the server "
            "streams it: the refresh fails and the server stops",
            "stream stops; ERROR STORE_UNAVAILABLE (1.1 §16.4); key not re-created",
            Level.MUST,
            _deleted_under,
            REDIS,
        ),
        Case(
            "redis-4.1/leases-refreshed-together",
            "two stateful streams opened 0.5 s apart, watched through Redis's MONITOR",
            "their leases are refreshed together, once per period: calls within 100 ms of "
            "each other (SHOULD)",
            Level.SHOULD,
            _refreshed_together,
            REDIS,
        ),
        Case(
            "redis-1.1/prefix-without-braces",
            "the key prefix contains no '{' (it would form a Redis Cluster hash tag)",
            "a rule for whoever chooses the prefix: the spec gives a server no behaviour to "
            "check (a server may refuse such a prefix or use it)",
            Level.MUST,
            _not_testable(
                "the prefix is the operator's choice; the spec gives a server no behaviour to "
                "check when it is given one with '{' (using it is correct, only slower on a "
                "cluster)"
            ),
        ),
        Case(
            "redis-7/wrongtype",
            "the key holds a string, not a hash",
            "ERROR STORE_UNAVAILABLE",
            Level.MUST,
            _wrongtype,
            REDIS,
        ),
        Case(
            "redis-2/reject-neither-field",
            "a key whose hash has neither seed nor n (only owner and a field 'note'), opened "
            "without RESUME and claimed with RESUME",
            "ERROR STORE_UNAVAILABLE both times: the script's reply of two nils is a rejected "
            "record, not an absent session",
            Level.MUST,
            _neither_field,
            REDIS,
        ),
        Case(
            "redis-2/mismatch-planted",
            "RESUME with n 6 for a planted session of n 5",
            "ERROR SESSION_MISMATCH; record unchanged",
            Level.MUST,
            _mismatch_planted,
            REDIS,
        ),
        Case(
            "redis-5/expired-is-absent",
            "a planted session whose expiry has passed",
            "ERROR SESSION_UNKNOWN",
            Level.MUST,
            _expired_planted,
            REDIS,
        ),
        Case(
            "redis-6/no-store-ops-per-number",
            "a stream costs O(1) store commands per "
            "connection plus one refresh per second, none per number",
            "commands counted by INFO commandstats within the bound",
            Level.MUST,
            _ops_per_number,
            REDIS,
            exclusive=True,
        ),
    ]
    cases += [
        Case(
            f"redis-2/reject-{name}",
            f"a planted hash with {title}",
            "ERROR STORE_UNAVAILABLE (readers MUST reject, never guess)",
            Level.MUST,
            functools.partial(_bad_record, fields),
            REDIS,
        )
        for name, title, fields in BAD_RECORDS
    ]
    cases += [
        Case(
            f"redis-2/accept-{name}",
            f"a planted hash with {title}",
            "the session streams from its seed",
            Level.MUST,
            functools.partial(_lenient_record, fields),
            REDIS,
        )
        for name, title, fields in LENIENT_RECORDS
    ]
    return cases


# -- cases that start the server themselves ------------------------------------------------------


async def _usage_error(target: ServerTarget, check: Check) -> None:
    assert target.spawner is not None
    values = target.spawner.default_values()
    values["port"] = "not-a-port"
    status, stderr = await target.spawner.run_once(values, 10.0)
    check.note(f"exit status {status}; stderr {stderr.strip()[-200:]!r}")
    check.should(status == 2, f"exit status {status} for a bad --port, expected 2")
    lines = stderr.strip().splitlines()
    check.should(len(lines) == 1, f"a usage error wrote {len(lines)} lines on stderr, not 1")


async def _abbreviated(target: ServerTarget, check: Check) -> None:
    """``--interv 0.5``: options are spelled in full, an abbreviation is an unknown option
    (Appendix B, specread S5)."""
    from .servers import ServerStartError

    assert target.spawner is not None
    try:
        server = await target.spawner.start(target.spawner.default_values(), ["--interv", "0.5"])
    except ServerStartError as exc:
        check.note(f"exit status {exc.status}")
        check.should(exc.status == 2, f"exit status {exc.status} for --interv, expected 2")
        return
    await server.kill()
    check.should(False, "the server started with --interv 0.5 (an abbreviation of --interval)")


async def _port_busy(target: ServerTarget, check: Check) -> None:
    assert target.spawner is not None
    values = target.spawner.default_values()
    values["port"] = str(target.port)  # the server under test holds it
    status, stderr = await target.spawner.run_once(values, 10.0)
    check.note(f"exit status {status}; stderr {stderr.strip()[-200:]!r}")
    check.should(status == 1, f"exit status {status} when the port is taken, expected 1")


async def _announces(
    interval: str, ttl: str, want_ms: tuple[int, int], target: ServerTarget, check: Check
) -> None:
    assert target.spawner is not None
    values = target.spawner.default_values()
    values.update(interval=interval, ttl=ttl)
    server = await target.spawner.start(values)
    try:
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, 1, client_id=new_id()))
            event = await probe.event(5.0)
        check.must(isinstance(event, wire.Frame) and event.kind == wire.WELCOME, describe(event))
        assert isinstance(event, wire.Frame)
        w = wire.Welcome.parse(event.payload)
        check.note(
            f"--interval {interval} --session-ttl {ttl}: "
            f"interval_ms {w.interval_ms}, ttl_ms {w.ttl_ms}"
        )
        check.must(
            (w.interval_ms, w.ttl_ms) == want_ms,
            f"announced {(w.interval_ms, w.ttl_ms)}, expected {want_ms}",
        )
    finally:
        await server.terminate(5.0)


async def _shutdown(target: ServerTarget, check: Check) -> None:
    assert target.spawner is not None
    server = await target.spawner.start(target.spawner.default_values())
    cid = new_id()
    status: int | None = None
    try:
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, 65535, client_id=cid))
            await read_stream(check, probe, target, wire.STATEFUL, 65535, 0, take=2)
            stopping = anyio.Event()

            async def stop() -> None:
                nonlocal status
                status = await server.terminate(10.0)
                stopping.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop)
                event = None
                while True:
                    event = await probe.event(10.0)
                    if not (isinstance(event, wire.Frame) and event.kind == wire.DATA):
                        break
                check.note(f"on SIGTERM: {describe(event)}")
                check.must(
                    isinstance(event, wire.Frame) and event.error_code == 32,
                    f"expected ERROR SHUTTING_DOWN, got {describe(event)}",
                )
                await stopping.wait()
        check.note(f"exit status {status}")
        check.should(status == 0, f"exit status {status} after SIGTERM, expected 0")
        if target.redis_url is not None:
            async with await target.redis() as r:
                fields = await r.hgetall(target.key(cid))
                pttl = await r.pttl(target.key(cid))
            check.note(f"session after shutdown: owner {fields.get(b'owner')!r}, PTTL {pttl}")
            check.must(fields.get(b"owner") == b"", "the session was not released on shutdown")
            check.must(pttl > 0, "the released session has no TTL")
            await resume_stateful(check, target, cid, 65535, 2, take=1)
    finally:
        await server.kill()


@asynccontextmanager
async def _session_under_store(
    target: ServerTarget, check: Check, store: str, what: str
) -> AsyncIterator[str | None]:
    """Run the server with ``--store store`` and open one stateful session (its first number
    read); yields the session's client id while the server runs, then kills it. Yields None if
    the server exited 1 instead, as Appendix B allows for a store URL it will not use (``what``
    names that URL in the note); another status fails the check."""
    from .servers import ServerStartError

    assert target.spawner is not None
    values = target.spawner.default_values()
    values["store"] = store
    try:
        server = await target.spawner.start(values)
    except ServerStartError as exc:
        check.note(f"{what} refused: exit status {exc.status}; {str(exc)[-200:]}")
        check.must(exc.status == 1, f"neither used {what} nor exited 1 (exit status {exc.status})")
        yield None
        return
    try:
        cid = new_id()
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, 65535, client_id=cid))
            await read_stream(check, probe, target, wire.STATEFUL, 65535, 0, take=1)
            yield cid
    finally:
        await server.kill()


async def _prefix_url(target: ServerTarget, check: Check) -> None:
    assert target.redis_url is not None
    prefix = f"conformance:{new_id()[:8]}:"
    store = f"{target.redis_url}?prefix={prefix}"
    async with _session_under_store(target, check, store, "the ?prefix=") as cid:
        if cid is None:
            return
        async with await target.redis() as r:
            under_prefix = await r.exists(f"{prefix}session:{cid}")
            under_default = await r.exists(target.key(cid))
    check.note(f"key under {prefix!r}: {under_prefix}; under the default prefix: {under_default}")
    check.must(under_prefix and not under_default, "the ?prefix= of the store URL was not used")


#: Other spellings of the memory store: Appendix B (1.2) has a server refuse them (exit 1).
MEMORY_MISSPELT = ("memory:", "memory://x", "memory")


async def _stores_refused(target: ServerTarget, check: Check, stores: Sequence[str]) -> None:
    """Each ``--store`` value makes the server exit 1 (it cannot use it, Appendix B)."""
    assert target.spawner is not None
    for store in stores:
        values = target.spawner.default_values()
        values["store"] = store
        status, stderr = await target.spawner.run_once(values, 10.0)
        shown = redact(store)
        check.note(f"--store {shown}: exit status {status}; stderr {stderr.strip()[-120:]!r}")
        check.must(status == 1, f"exit status {status} for --store {shown}, expected 1")


async def _store_database(target: ServerTarget, check: Check) -> None:
    """The /DB grammar of Appendix B (1.2) against a live Redis, so that exit status 1 means
    the URL was refused, not the Redis unreachable; then ``?db=`` winning over the path."""
    assert target.spawner is not None
    assert target.redis_url is not None
    root = urlsplit(target.redis_url)._replace(path="", query="", fragment="").geturl()
    bad = ("/abc", "/-1", "/1x", "/0/x", "/0?db=", "/0?db=x", "/0?db=1&db=2")
    await _stores_refused(target, check, [root + tail for tail in bad])
    path_db = parse_redis_url(target.redis_url).db
    query_db = 3 if path_db == 2 else 2
    prefix = quote(target.redis_prefix, safe="")
    store = f"{root}/{path_db}?db={query_db}&prefix={prefix}"
    async with _session_under_store(target, check, store, "?db=") as cid:
        if cid is None:
            return
        async with await Resp.connect(f"{root}/{query_db}") as r:
            in_query_db = await r.exists(target.key(cid))
        async with await Resp.connect(f"{root}/{path_db}") as r:
            in_path_db = await r.exists(target.key(cid))
    async with await Resp.connect(f"{root}/{query_db}") as r:
        await r.call("DEL", target.key(cid))
    check.note(f"session key in db {query_db} (?db=): {in_query_db}; in db {path_db}: {in_path_db}")
    check.must(in_query_db and not in_path_db, "the ?db= of the store URL did not win")


async def _refresh_error(target: ServerTarget, check: Check) -> None:
    cid = new_id()
    key = target.key(cid)
    async with Probe(target.port, check) as probe:
        await probe.send(wire.hello(wire.STATEFUL, 65535, client_id=cid))
        await read_stream(check, probe, target, wire.STATEFUL, 65535, 0, take=1)
        async with await target.redis() as r:
            fields = await r.hgetall(key)
            await r.call("SET", key, "store failing", "PX", "60000")  # refresh now errors
        frames = await probe.sleep_reading(2.5)
        others = [f.describe() for f in frames if f.kind != wire.DATA]
        check.note(f"during the store failure: {len(frames)} frames {others}")
        check.must(not others and not probe.closed_by_peer, f"the stream ended: {others}")
        check.must(len(frames) >= 2, "the stream stalled while refreshes failed")
        async with await target.redis() as r:
            await r.plant(key, {k.decode(): v for k, v in fields.items()}, target.ttl_ms + 1000)
        frames = await probe.sleep_reading(1.5)
        check.note(f"after recovery: {len(frames)} frames")
        check.must(
            len(frames) >= 2 and all(f.kind == wire.DATA for f in frames),
            "the stream did not go on after the store recovered",
        )


async def _optional_server(target: ServerTarget, check: Check, extra: Sequence[str]) -> Spawned:
    """Start an instance with an optional Appendix B option; skip if it is not supported."""
    from .servers import ServerStartError

    assert target.spawner is not None
    try:
        return await target.spawner.start(target.spawner.default_values(), extra)
    except ServerStartError as exc:
        raise Skip(
            f"the server does not start with the optional {' '.join(extra)} "
            f"(exit status {exc.status})"
        ) from None


async def _max_connections(target: ServerTarget, check: Check) -> None:
    server = await _optional_server(target, check, ["--max-connections", "2"])
    try:
        async with Probe(server.port, check) as idle1, Probe(server.port, check) as idle2:
            await anyio.sleep(0.2)  # two connections still waiting for their HELLO
            async with Probe(server.port, check) as third:
                await third.send(wire.hello(wire.STATELESS, 3))  # bytes the server never reads
                await expect_error(check, third, 31)
            await idle1.close()
            await anyio.sleep(0.3)
            async with Probe(server.port, check) as fourth:
                await fourth.send(wire.hello(wire.STATELESS, 2))
                await read_stream(check, fourth, target, wire.STATELESS, 2, 0)
            _ = idle2
    finally:
        await server.kill()


async def _mode_limited(target: ServerTarget, check: Check) -> None:
    server = await _optional_server(target, check, ["--mode", "stateless"])
    try:
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, 3, client_id=new_id()))
            await expect_error(check, probe, 5)
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATELESS, 2))
            await read_stream(check, probe, target, wire.STATELESS, 2, 0)
    finally:
        await server.kill()


async def _write_stall(target: ServerTarget, check: Check) -> None:
    """§14.2 SHOULD: a write blocked for about 10 s is a drop. A plain socket with a small
    receive buffer (an event-loop stream would keep reading in the background)."""
    import socket

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(wire.hello(wire.STATELESS, 65535, a=255, next_index=30000, resume=True))
        return sock

    def drain(sock: socket.socket) -> tuple[int, bool]:
        sock.settimeout(0.1)
        received = 0
        deadline = time.monotonic() + 8.0
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < deadline:
                anyio.from_thread.check_cancelled()  # the case was cancelled: stop at once
                try:
                    chunk = sock.recv(1 << 20)
                except TimeoutError:
                    if time.monotonic() - quiet_since >= 2.0:
                        return received, False
                    continue
                quiet_since = time.monotonic()
                if not chunk:
                    return received, True
                received += len(chunk)
        except ConnectionResetError:
            return received, True
        except TimeoutError:
            return received, False
        return received, False

    assert target.spawner is not None
    values = target.spawner.default_values()
    values["interval"] = "0"  # as fast as the connection accepts: the writes block at once
    server = await target.spawner.start(values)
    port = server.port
    try:
        sock = await anyio.to_thread.run_sync(connect)
        try:
            await anyio.sleep(14.0)  # never read: the server's writes block
            received, ended = await anyio.to_thread.run_sync(drain, sock)
        finally:
            sock.close()
    finally:
        await server.kill()
    check.note(f"read {received / 1e6:.1f} MB after a 14 s stall; the server closed: {ended}")
    check.should(ended, "the server kept a connection whose writes stalled for 14 s")


#: The re-anchoring case: its own server instance at 2 ms, stateless numbers of about 7 kB
#: (a = 255 from index 58,000: 3.6 MB/s, 15 s of stream), a stall of 6 s, then 3 s of reading.
REANCHOR_INTERVAL = 0.002
REANCHOR_FROM = 58000
REANCHOR_STALL = 6.0
REANCHOR_READ = 3.0
#: Bytes a server may hold in user space beyond its kernel send buffer (§16.6: bounded).
USER_SPACE_AHEAD = 1 << 20


def kernel_send_buffer_cap() -> int:
    """The most a TCP send buffer can grow to here (Linux: autotuning's tcp_wmem maximum, or
    twice wmem_max for an explicit SO_SNDBUF); 4 MiB where /proc does not say."""
    caps = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        caps.append(int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2]))
    with contextlib.suppress(OSError, ValueError):
        caps.append(2 * int(Path("/proc/sys/net/core/wmem_max").read_text()))
    return max(caps, default=4 << 20)


def _stall_then_catch_up(
    port: int, stall: float = REANCHOR_STALL, read: float = REANCHOR_READ
) -> tuple[list[tuple[float, wire.Frame]], float]:
    """A blocking socket with a small receive window: read 0.3 s, read nothing for
    ``stall`` seconds (the server's writes block once the buffers are full), then read as fast
    as possible, with a wide window, for ``read`` seconds. Every frame with its arrival time,
    and when the reading resumed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    frames: list[tuple[float, wire.Frame]] = []
    buffer = wire.FrameBuffer()

    def read_until(deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            anyio.from_thread.check_cancelled()  # the case was cancelled: stop at once
            sock.settimeout(min(left, 0.05))
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer.feed(chunk)
            while (found := buffer.next()) is not None:
                frames.append((time.monotonic(), found))

    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            wire.hello(wire.STATELESS, 65535, a=255, next_index=REANCHOR_FROM, resume=True)
        )
        read_until(time.monotonic() + 0.3)
        stall_ends = time.monotonic() + stall
        while time.monotonic() < stall_ends:
            anyio.from_thread.check_cancelled()
            time.sleep(min(0.05, max(0.0, stall_ends - time.monotonic())))
        # a wide window now, so that a backlog sent in a burst arrives as fast as it is sent
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        resumed = time.monotonic()
        read_until(resumed + read)
    finally:
        sock.close()
    return frames, resumed


async def _stalled_stream(
    target: ServerTarget, check: Check, stall: float, read: float
) -> tuple[list[tuple[float, wire.Frame]], float]:
    """_stall_then_catch_up against an instance of the server at REANCHOR_INTERVAL."""
    assert target.spawner is not None
    values = target.spawner.default_values()
    values["interval"] = f"{REANCHOR_INTERVAL:g}"  # as C's %g (Appendix B)
    server = await target.spawner.start(values)
    try:
        frames, resumed = await anyio.to_thread.run_sync(
            _stall_then_catch_up, server.port, stall, read
        )
    finally:
        await server.kill()
    check.must(
        bool(frames) and frames[0][1].kind == wire.WELCOME,
        f"expected WELCOME, got {frames[0][1].describe() if frames else 'nothing'}",
    )
    numbers = sum(f.kind == wire.DATA for _, f in frames)
    check.must(numbers >= 10, f"only {numbers} numbers came")
    return frames, resumed


def _error_after_torn_frame(tail: bytes) -> int | None:
    """The code of an ERROR frame that ends ``tail`` (the bytes after the last complete frame,
    starting inside a frame cut short), or None. Stateless values of a = 255 are 0x3f..0xff
    then zero bytes, so a well-formed ERROR ending exactly there is no accident."""
    for at in range(1, len(tail) - 4):
        if tail[at] != wire.ERROR:
            continue
        length = int.from_bytes(tail[at + 1 : at + 3], "big")
        code = int.from_bytes(tail[at + 3 : at + 5], "big")
        if at + 3 + length == len(tail) and 2 <= length <= 1026 and 1 <= code <= 33:
            return code
    return None


async def _no_error_after_cut(target: ServerTarget, check: Check) -> None:
    """§14.2 (issue 8 point h): "A server MUST NOT write an ERROR frame after a write that may
    have been cut short: the ERROR's bytes would be read as the rest of the broken frame."
    SIGTERM while a write to a client that reads nothing is blocked: shutdown cuts the write
    (§17: at most about 2 s per connection) and then writes nothing more on it."""
    assert target.spawner is not None
    values = target.spawner.default_values()
    values["interval"] = "0"  # as fast as the connection accepts: the writes block at once
    server = await target.spawner.start(values)

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(wire.hello(wire.STATELESS, 65535, a=255, next_index=60000, resume=True))
        return sock

    def read_to_eof(sock: socket.socket) -> tuple[bytes, bool]:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        data = bytearray()
        deadline = time.monotonic() + 5.0
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            anyio.from_thread.check_cancelled()
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return bytes(data), True
            if not chunk:
                return bytes(data), True
            data += chunk
        return bytes(data), False

    try:
        sock = await anyio.to_thread.run_sync(connect)
        try:
            await anyio.sleep(1.0)  # read nothing: the server's write blocks in mid-frame
            started = time.monotonic()
            status = await server.terminate(15.0)
            took = time.monotonic() - started
            data, ended = await anyio.to_thread.run_sync(read_to_eof, sock)
        finally:
            sock.close()
    finally:
        await server.kill()
    frames = wire.FrameBuffer()
    frames.feed(data)
    complete: list[wire.Frame] = []
    while (found := frames.next()) is not None:
        complete.append(found)
    tail = bytes(frames.data)
    last = complete[-1].describe() if complete else "nothing"
    check.note(
        f"SIGTERM: exit status {status} after {took:.2f} s; then {len(data)} bytes, "
        f"{len(complete)} whole frames (the last: {last[:60]}), {len(tail)} bytes of a frame "
        f"cut short, connection closed: {ended}"
    )
    check.must(ended, "the connection was not closed after the server's shutdown")
    if tail:
        code = _error_after_torn_frame(tail)
        check.must(
            code is None,
            f"an ERROR ({wire.code_name(code or 0)}) was written after a frame cut short "
            f"({len(tail)} bytes of it): its bytes read as the rest of the frame",
        )
    check.should(took <= 10.0, f"the server took {took:.1f} s to stop (§17: about 2 s)")


#: How far a server's writes may run ahead of a client that stopped reading: the suite's
#: reading of §16.6's "a small socket send buffer, no unbounded user-space queue".
AHEAD_LIMIT = 1 << 20


async def _bounded_ahead(target: ServerTarget, check: Check) -> None:
    """§16.6: a server "SHOULD bound how far its writes run ahead of the client (a small socket
    send buffer, no unbounded user-space queue)". After 3 s without reading, what arrives at
    once is what the server had written ahead (and, from a server that does not re-anchor,
    its backlog too: 13/re-anchor-after-blocked-writes tells them apart)."""
    frames, resumed = await _stalled_stream(target, check, 3.0, 1.0)
    after = [(at, f) for at, f in frames if at >= resumed and f.kind == wire.DATA]
    check.must(len(after) >= 2, f"only {len(after)} numbers after the stall")
    size = len(after[-1][1].raw)
    # Two estimates, each low rather than high: the numbers beyond those due since the reading
    # resumed (low for a server slower than its pace), and the first run of numbers that came
    # less than half an interval apart (low if our own reading paused within the run).
    paced = (after[-1][0] - resumed) / REANCHOR_INTERVAL + 1
    burst = 1
    while burst < len(after) and after[burst][0] - after[burst - 1][0] < REANCHOR_INTERVAL / 2:
        burst += 1
    ahead = max(0.0, len(after) - paced, burst - 1.0) * size
    check.note(
        f"{len(after)} numbers of {size} bytes in the {after[-1][0] - resumed:.2f} s after a "
        f"3 s stall, {paced:.0f} of them due meanwhile, the first {burst} at once: about "
        f"{ahead / 1e6:.2f} MB were written ahead"
    )
    check.should(
        ahead <= AHEAD_LIMIT,
        f"{ahead / 1e6:.2f} MB written ahead of a client that stopped reading (the suite's "
        f"bound for a small send buffer: {AHEAD_LIMIT / 1e6:.2f} MB)",
    )


async def _reanchor(target: ServerTarget, check: Check) -> None:
    """§13: "If writes block for so long that the server finds itself more than one interval
    behind the schedule, it re-anchors (t0 := now - j·interval) and carries on at the normal
    pace instead of sending the backlog in a burst."

    After the stall a re-anchoring server is behind its first schedule by about the time its
    writes were blocked: the stall less the time the kernel's buffers (and a bounded user-space
    queue) took to fill. A server that sends the backlog catches up with the schedule."""
    frames, _ = await _stalled_stream(target, check, REANCHOR_STALL, REANCHOR_READ)
    welcome_at = frames[0][0]
    numbers = [(at, f) for at, f in frames[1:] if f.kind == wire.DATA]
    last_at, last = numbers[-1]
    index = last.u32(0)
    behind = (last_at - welcome_at) - (index - REANCHOR_FROM) * REANCHOR_INTERVAL
    rate = len(last.raw) / REANCHOR_INTERVAL
    ahead = kernel_send_buffer_cap() + USER_SPACE_AHEAD + 64 * 1024
    filling = ahead / rate
    blocked = REANCHOR_STALL - filling
    check.note(
        f"after a {REANCHOR_STALL:g} s stall and {REANCHOR_READ:g} s of reading: index {index}, "
        f"{behind:.2f} s behind the first schedule; buffers of up to {ahead / 1e6:.1f} MB fill "
        f"in {filling:.2f} s at {rate / 1e6:.1f} MB/s, so the writes were blocked for at least "
        f"{blocked:.2f} s"
    )
    if blocked < 1.0:
        raise Skip(
            f"the kernel's send buffers here ({ahead / 1e6:.1f} MB) hold more than the "
            f"{REANCHOR_STALL:g} s stall: cannot tell a re-anchored schedule from a burst"
        )
    check.should(
        behind >= 0.5 * blocked,
        f"only {behind:.2f} s behind the first schedule after writes blocked for at least "
        f"{blocked:.2f} s: the backlog came in a burst instead of re-anchoring",
    )


async def _final_waits(target: ServerTarget, check: Check) -> None:
    """§16.6 (issue 8 point n): FINAL is written only once every earlier byte is acknowledged,
    so a client that stops reading and then drops still finds its session."""
    import socket
    import struct

    assert target.spawner is not None
    values = target.spawner.default_values()
    values["interval"] = "0"
    server = await target.spawner.start(values)
    cid = new_id()
    n = 3000  # 33 kB of frames: far more than the receive window we leave open

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(wire.hello(wire.STATEFUL, n, client_id=cid))
        return sock

    try:
        sock = await anyio.to_thread.run_sync(connect)
        await anyio.sleep(2.0)  # read nothing: the window closes, FINAL cannot be acknowledged
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset: nothing was received
        await anyio.sleep(0.3)
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, n, client_id=cid, resume=True))
            event = await probe.event(5.0)
        check.note(f"RESUME at 0 after the reset: {describe(event)}")
        check.should(
            isinstance(event, wire.Frame) and event.kind == wire.WELCOME,
            "the session was completed although the client acknowledged almost nothing "
            f"(got {describe(event)})",
        )
    finally:
        await server.kill()


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return doc


async def _vector_option(
    option: str, text: str, accepted: bool, ms: int | None, target: ServerTarget, check: Check
) -> None:
    """One row of cli_values.json: the server refuses the text (exit 2) or announces its ms."""
    assert target.spawner is not None
    name = {"--interval": "interval", "--session-ttl": "ttl"}[option]
    values = target.spawner.default_values()
    values[name] = text
    if not accepted:
        status, stderr = await target.spawner.run_once(values, 10.0)
        shown = shown_text(text)
        check.note(f"{option} {shown}: exit status {status}; stderr {stderr.strip()[-120:]!r}")
        check.must(status == 2, f"exit status {status} for {option} {shown}, expected 2")
        return
    server = await target.spawner.start(values)
    try:
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, 1, client_id=new_id()))
            event = await probe.event(5.0)
    finally:
        await server.kill()
    check.must(isinstance(event, wire.Frame) and event.kind == wire.WELCOME, describe(event))
    assert isinstance(event, wire.Frame)
    w = wire.Welcome.parse(event.payload)
    got = w.interval_ms if name == "interval" else w.ttl_ms
    shown = shown_text(text)
    check.note(f"{option} {shown}: announced {got} ms")
    check.must(got == ms, f"{option} {shown} announced as {got} ms, cli_values.json says {ms}")


def cli_vector_cases() -> list[Case]:
    """Every server --interval row of cli_values.json (§13.1, App. B), and the --session-ttl
    rows at the edges (the same grammar; each row costs a server start)."""
    ttl_rows = {"0.0025", "0.0005", "0.0004999", "86400", "86400.0004", "86400.0005", "-1", "inf"}
    doc = _load("cli_values.json")
    durations = {row["text"]: row["ms"] for row in doc["durations"]}
    cases = []
    for i, row in enumerate(doc["options"]):
        option = row["option"].removeprefix("server ")
        if option not in ("--interval", "--session-ttl"):
            continue
        text, accepted = row["text"], row["accepted"]
        if option == "--session-ttl" and text not in ttl_rows:
            continue
        ms = durations.get(text)
        expected = f"announced as {ms} ms" if accepted else "usage error, exit status 2"
        cases.append(
            Case(
                f"13.1/vector-{option.strip('-')}-{i:03d}",
                f"cli_values.json: the server started with {option} {shown_text(text)}",
                expected,
                Level.MUST,
                functools.partial(_vector_option, option, text, accepted, ms),
                SPAWN,
            )
        )
    return cases


async def _vector_record(
    fields: dict[str, bytes | str], outcome: str, n: int, target: ServerTarget, check: Check
) -> None:
    cid = new_id()
    if fields:
        await _plant(target, cid, {**fields, "owner": ""})
    hello = wire.hello(2, n, next_index=n - 1, resume=True, client_id=cid)
    if outcome == "stream":
        s = await resume_stateful(check, target, cid, n, n - 1)
        seed = int(fields["seed"])
        check.must(s.values == [wire.element(seed, n - 1)], "not element(seed, n-1)")
        full = wire.checksum([wire.element(seed, i) for i in range(n)])
        check.must(final_checksum(s) == full, "FINAL checksum is not that of the record's seed")
    else:
        await refused(check, target, hello, 30 if outcome == "reject" else 20)


def record_vector_cases() -> list[Case]:
    """Every record of store_records.json planted and resumed (STORE-REDIS.md §2)."""
    cases = []
    for i, row in enumerate(_load("store_records.json")["cases"]):
        fields = {k: row[k] for k in ("seed", "n") if row.get(k) is not None}
        if row.get("absent"):
            outcome, expected = "absent", "ERROR SESSION_UNKNOWN (no record at all)"
        elif row["valid"]:
            outcome, expected = "stream", "RESUME at n-1 gets element(seed, n-1) and its checksum"
        else:
            outcome, expected = "reject", "ERROR STORE_UNAVAILABLE"
        n = int(row["n"]) if outcome == "stream" else 5
        shown = ", ".join(f"{k} {v!r}" for k, v in fields.items()) or "no fields"
        cases.append(
            Case(
                f"redis-2/vector-record-{i:02d}",
                f"store_records.json: a hash with {shown}",
                expected,
                Level.MUST,
                functools.partial(_vector_record, fields, outcome, n),
                REDIS,
            )
        )
    return cases


def process_cases() -> list[Case]:
    return [
        *cli_vector_cases(),
        Case(
            "B/store-url-prefix",
            "--store redis://…?prefix=P (issue 8 point m)",
            "sessions live under P (or the server refuses the URL with exit status 1)",
            Level.MUST,
            _prefix_url,
            SPAWN | REDIS,
        ),
        Case(
            "B/store-memory-spelling",
            f"--store {', '.join(MEMORY_MISSPELT)} (other spellings of memory://)",
            "each refused: exit status 1 (1.2: memory:// is the only spelling)",
            Level.MUST,
            functools.partial(_stores_refused, stores=MEMORY_MISSPELT),
            SPAWN,
        ),
        Case(
            "B/store-url-database",
            "--store redis://…/abc, /-1, /1x, /0/x, ?db=, ?db=x, ?db=1&db=2; then /D?db=E",
            "each malformed database refused with exit status 1; with ?db=E sessions live in "
            "database E, not D (or the server refuses ?db= with exit status 1)",
            Level.MUST,
            _store_database,
            SPAWN | REDIS,
        ),
        Case(
            "17/max-connections",
            "--max-connections 2 (optional option): two connections wait for their HELLO, a "
            "third arrives (issue 8 point i)",
            "the third gets SERVER_BUSY even though it sent a HELLO (read back despite unread "
            "bytes, §10); once one closes, a new one is served",
            Level.MUST,
            _max_connections,
            SPAWN,
        ),
        Case(
            "5.3/step15-mode-not-served",
            "--mode stateless (optional option) and a stateful HELLO",
            "ERROR UNSUPPORTED_MODE; stateless still served",
            Level.MUST,
            _mode_limited,
            SPAWN,
        ),
        Case(
            "14.2/write-stall-is-a-drop",
            "a client that stops reading a big stateless stream for 14 s",
            "the server gives up on the blocked write after about 10 s and closes (SHOULD)",
            Level.SHOULD,
            _write_stall,
            SPAWN,
        ),
        Case(
            "13/re-anchor-after-blocked-writes",
            "a client that reads nothing for 6 s while the server (its own instance at 2 ms) "
            "streams 7 kB numbers, then reads as fast as it can",
            "once its writes block the server re-anchors its schedule and goes on at the normal "
            "pace: no burst of the backlog (§13 states it without a key word: graded SHOULD)",
            Level.SHOULD,
            _reanchor,
            SPAWN,
        ),
        Case(
            "16.6/writes-bounded-ahead",
            "a client that reads nothing for 3 s while the server (its own instance at 2 ms) "
            "streams 7 kB numbers",
            "what was written ahead of the client arrives at once after the stall: at most "
            "1 MiB (SHOULD: a small send buffer, no unbounded user-space queue)",
            Level.SHOULD,
            _bounded_ahead,
            SPAWN,
        ),
        Case(
            "14.2/no-error-after-cut-write",
            "SIGTERM while the server's write to a client that reads nothing is blocked in "
            "mid-frame (its own instance at interval 0; issue 8 point h)",
            "the write is cut (within about 2 s, §17) and nothing follows the frame cut "
            "short: no ERROR (MUST); the connection closes",
            Level.MUST,
            _no_error_after_cut,
            SPAWN,
        ),
        Case(
            "16.6/final-waits-for-ack",
            "a stateful client that never reads (server at interval 0), then resets "
            "(issue 8 point n)",
            "FINAL is not written while earlier bytes are unacknowledged: the session is "
            "still there for a RESUME (SHOULD)",
            Level.SHOULD,
            _final_waits,
            SPAWN,
        ),
        Case(
            "16.4/refresh-error-keeps-streaming",
            "the store fails (WRONGTYPE) during two refresh periods, then recovers "
            "(issue 8 point d)",
            "the stream goes on throughout, no ERROR",
            Level.MUST,
            _refresh_error,
            REDIS,
        ),
        Case(
            "B/usage-error-exit-2",
            "the server started with --port not-a-port",
            "exit status 2, no traceback needed",
            Level.SHOULD,
            _usage_error,
            SPAWN,
        ),
        Case(
            "B/abbreviated-option",
            "the server started with --interv 0.5 appended (an abbreviation of --interval)",
            "usage error, exit status 2: options are spelled in full",
            Level.SHOULD,
            _abbreviated,
            SPAWN,
        ),
        Case(
            "B/port-taken-exit-1",
            "the server started on a port already in use",
            "exit status 1",
            Level.SHOULD,
            _port_busy,
            SPAWN,
        ),
        Case(
            "B/announces-interval-and-ttl",
            "--interval 0.25 --session-ttl 7 are announced",
            "interval_ms 250, session_ttl_ms 7000",
            Level.MUST,
            functools.partial(_announces, "0.25", "7", (250, 7000)),
            SPAWN,
        ),
        Case(
            "B/exponent-notation",
            "--interval 2.5e-01 --session-ttl 1e+01 (C's %g)",
            "interval_ms 250, session_ttl_ms 10000",
            Level.SHOULD,
            functools.partial(_announces, "2.5e-01", "1e+01", (250, 10000)),
            SPAWN,
        ),
        Case(
            "17/shutdown",
            "SIGTERM while a stateful stream runs",
            "ERROR SHUTTING_DOWN, exit 0 "
            "(SHOULD); with Redis the session is released and resumable",
            Level.MUST,
            _shutdown,
            SPAWN,
        ),
    ]
