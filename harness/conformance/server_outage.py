"""Server cases of a failing session store: one operation failing (a ``complete`` that errors,
through :mod:`.redis_proxy`), and a Redis that the suite starts, stops and freezes itself
(STORE_UNAVAILABLE with the store really down, §16.3, §16.4, STORE-REDIS.md §7)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from harness.redis_server import ManagedRedis, RedisUnavailableError, managed_redis

from . import wire
from .model import Case, Check, Level, Skip
from .probe import EOF, RESET, Event, Probe, describe
from .redis_proxy import is_complete, redis_proxy
from .server_role import (
    FAR,
    ServerTarget,
    Spawned,
    expect_error,
    new_id,
    read_stream,
)

SPAWN = frozenset({"spawn"})
SPAWN_REDIS = frozenset({"spawn", "redis"})


@asynccontextmanager
async def spawned(target: ServerTarget, store: str) -> AsyncIterator[Spawned]:
    """An instance of the server under test on ``store``, killed on every way out."""
    assert target.spawner is not None
    values = target.spawner.default_values()
    values["store"] = store
    server = await target.spawner.start(values)
    try:
        yield server
    finally:
        await server.kill()


@asynccontextmanager
async def own_redis() -> AsyncIterator[ManagedRedis]:
    """A redis-server of the suite's own, which the case may stop, restart and freeze."""
    try:
        async with managed_redis() as redis:
            yield redis
    except RedisUnavailableError as exc:
        raise Skip(f"needs redis-server on PATH to stop a store of its own: {exc}") from None


async def _complete_fails(target: ServerTarget, check: Check) -> None:
    """§16.6 (1.1, issue 8 point e): "If complete fails ..., the server logs it, does not
    retry it and does not release the session ...: it closes the connection as after any
    FINAL. The session, still leased to this connection's owner token, expires when its lease
    runs out ... A RESUME at n-1 in that window claims it and receives the same FINAL"."""
    assert target.redis_url is not None
    n = 6
    cid = new_id()
    async with (
        redis_proxy(target.redis_url, is_complete, failures=1) as proxy,
        spawned(target, proxy.url) as server,
    ):
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, n, client_id=cid))
            first = await read_stream(check, probe, target, wire.STATEFUL, n, 0)
        assert first.final is not None
        with anyio.move_on_after(3.0):
            await proxy.first_pick.wait()
        check.note(f"COMPLETE calls after FINAL: {proxy.picked} (the first one failed)")
        check.must(proxy.picked >= 1, "the server never called COMPLETE after writing FINAL")
        await anyio.sleep(0.5)  # time for a release or a retry that must not come
        async with await target.redis() as r:
            fields = await r.hgetall(target.key(cid))
            pttl = await r.pttl(target.key(cid))
        check.note(
            f"then: owner {fields.get(b'owner')!r}, PTTL {pttl} ms, COMPLETE calls {proxy.picked}"
        )
        check.must(bool(fields), "the session is gone although its COMPLETE failed")
        check.must(
            fields.get(b"owner", b"") != b"",
            "the session was released after the failed COMPLETE (owner cleared)",
        )
        check.must(
            0 < pttl <= target.ttl_ms + 1000 + 200,
            f"PTTL {pttl} ms: not the lease (TTL + 1 s) the session was left with",
        )
        check.should(proxy.picked == 1, f"COMPLETE was retried ({proxy.picked} calls)")
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(2, n, next_index=n - 1, resume=True, client_id=cid))
            again = await read_stream(check, probe, target, wire.STATEFUL, n, n - 1)
        assert again.final is not None
        check.must(
            again.final.raw == first.final.raw,
            "the RESUME at n-1 got another FINAL (value or checksum differ)",
        )
        async with await target.redis() as r:
            gone = not await r.exists(target.key(cid))
        check.must(gone, "the session key still exists after the second FINAL")


async def _store_down(target: ServerTarget, check: Check) -> None:
    async with own_redis() as redis, spawned(target, redis.url) as server:
        cid = new_id()
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, FAR, client_id=cid))
            await read_stream(check, probe, target, wire.STATEFUL, FAR, 0, take=1)
        await redis.stop()
        check.note("Redis stopped")
        for hello in (
            wire.hello(wire.STATEFUL, 5, client_id=new_id()),
            wire.hello(wire.STATEFUL, FAR, next_index=1, resume=True, client_id=cid),
        ):
            async with Probe(server.port, check) as probe:
                await probe.send(hello)
                started = time.monotonic()
                await expect_error(check, probe, 30, within=10.0)
                check.note(f"after {time.monotonic() - started:.2f} s")
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATELESS, 3))
            await read_stream(check, probe, target, wire.STATELESS, 3, 0)
        await redis.start()
        check.note("Redis started again (empty)")
        recovered: Event = EOF
        for _ in range(10):  # the server finds its store again, at once or after a retry
            async with Probe(server.port, check) as probe:
                await probe.send(wire.hello(wire.STATEFUL, 2, client_id=new_id()))
                recovered = await probe.event(10.0)
            if isinstance(recovered, wire.Frame) and recovered.kind == wire.WELCOME:
                break
            await anyio.sleep(0.5)
        check.must(
            isinstance(recovered, wire.Frame) and recovered.kind == wire.WELCOME,
            f"once Redis was back a new session got {describe(recovered)}, not WELCOME",
        )


async def _down_while_streaming(target: ServerTarget, check: Check) -> None:
    async with (
        own_redis() as redis,
        spawned(target, redis.url) as server,
        Probe(server.port, check) as probe,
    ):
        await probe.send(wire.hello(wire.STATEFUL, FAR, client_id=new_id()))
        await read_stream(check, probe, target, wire.STATEFUL, FAR, 0, take=2)
        await redis.stop()
        frames = await probe.sleep_reading(2.5)
        others = [f.describe() for f in frames if f.kind != wire.DATA]
        check.note(f"Redis down 2.5 s: {len(frames)} frames {others}")
        check.must(
            not others and not probe.closed_by_peer,
            f"the stream ended while the store was down: {others or 'closed'}",
        )
        check.must(len(frames) >= 2, "the stream stalled while the store was down")
        await redis.start()  # empty: the lease can no longer be refreshed
        started = time.monotonic()
        event: Event = EOF
        while time.monotonic() - started < 2.0 + 3 * target.interval + 3.0:
            event = await probe.event(1.0)
            if not (isinstance(event, wire.Frame) and event.kind == wire.DATA):
                break
        check.note(f"Redis back, empty: {describe(event)} after {time.monotonic() - started:.2f} s")
        check.must(
            isinstance(event, wire.Frame) and event.error_code == 30,
            "expected ERROR STORE_UNAVAILABLE once a refresh found the session gone "
            f"(§16.4), got {describe(event)}",
        )
        after = await probe.event(2.0)
        check.must(after in (EOF, RESET), f"not closed after the ERROR: {describe(after)}")


async def _frozen(target: ServerTarget, check: Check) -> None:
    async with own_redis() as redis, spawned(target, redis.url) as server:
        async with Probe(server.port, check) as probe:
            await probe.send(wire.hello(wire.STATEFUL, 2, client_id=new_id()))
            await read_stream(check, probe, target, wire.STATEFUL, 2, 0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(redis.pause, 9.0)
            await anyio.sleep(0.1)
            async with Probe(server.port, check) as probe:
                await probe.send(wire.hello(wire.STATEFUL, 5, client_id=new_id()))
                started = time.monotonic()
                event = await probe.event(8.0)
            took = time.monotonic() - started
            tg.cancel_scope.cancel()  # SIGCONT
        check.note(f"Redis frozen: {describe(event)} after {took:.2f} s")
        check.should(
            isinstance(event, wire.Frame) and event.error_code == 30 and took <= 5.0,
            f"no ERROR STORE_UNAVAILABLE within 5 s of a HELLO while Redis was frozen "
            f"(got {describe(event)} after {took:.2f} s): store operations are not bounded "
            "by a timeout",
        )


def outage_cases() -> list[Case]:
    return [
        Case(
            "16.6/complete-fails",
            "COMPLETE fails (a proxy in front of Redis turns it into an error reply) after "
            "FINAL (issue 8 point e)",
            "the connection closes as after any FINAL; no release and no retry (the session "
            "keeps owner and lease); a RESUME at n-1 gets the same FINAL, then the key is gone",
            Level.MUST,
            _complete_fails,
            SPAWN_REDIS,
        ),
        Case(
            "16.3/store-down",
            "the server's Redis (the suite's own) is stopped, then started again empty",
            "stateful HELLOs (new and RESUME) get ERROR STORE_UNAVAILABLE, stateless ones are "
            "served; once Redis is back a new session is served",
            Level.MUST,
            _store_down,
            SPAWN,
        ),
        Case(
            "16.4/store-down-while-streaming",
            "Redis stopped for 2.5 s under a stateful stream, then started again empty",
            "the stream goes on while refreshes fail; once a refresh finds the session gone: "
            "ERROR STORE_UNAVAILABLE, close",
            Level.MUST,
            _down_while_streaming,
            SPAWN,
        ),
        Case(
            "redis-7/operations-time-out",
            "the server's Redis is frozen (SIGSTOP) when a stateful HELLO arrives",
            "ERROR STORE_UNAVAILABLE within 5 s: every store operation is bounded by a timeout "
            "(SHOULD; the reference: 2 s)",
            Level.SHOULD,
            _frozen,
            SPAWN,
        ),
    ]
