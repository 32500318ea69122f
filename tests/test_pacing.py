"""The timer wheel, the client watch, and streams that the wheel paces without a task (issue 10).

A slow stream on the wheel has no task of its own: the wheel writes its numbers, one epoll set
(``ClientWatch``) hears its client, and the server finishes the connection when it ends. These
tests check what that must keep: calls in deadline order and never early, a client's byte or
EOF noticed, no task per stream, and every end of such a stream (client gone, shutdown) ending
its connection the way a connection's own task did.
"""

from __future__ import annotations

import itertools
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from anyio import wait_all_tasks_blocked

from reference.pacing import ClientWatch, TimerWheel
from reference.server import NumberServer, ServerConfig
from reference.store import MemoryStore

from .support import FixedRandom, RawReader, stateful_hello, stateless_hello

WELCOME, DATA, ERROR = 0x02, 0x03, 0x05
SHUTTING_DOWN = 32  # spec §12.1

pytestmark = pytest.mark.anyio

needs_epoll = pytest.mark.skipif(not ClientWatch.available, reason="epoll is Linux only")


# --- the client watch ------------------------------------------------------------------------


@needs_epoll
def test_client_watch_tells_a_byte_from_a_close_and_forgets_what_it_reported() -> None:
    watch: ClientWatch[str] = ClientWatch()
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        for name, (ours, _) in zip("abc", pairs, strict=True):
            ours.setblocking(False)
            watch.add(ours.fileno(), name)
        assert watch.poll() == []  # nobody said anything yet
        pairs[0][1].send(b"\x01")  # a sends a byte: a protocol violation
        pairs[1][1].close()  # b leaves
        assert sorted(watch.poll()) == [("a", True), ("b", False)]
        assert watch.entries() == ["c"]
        pairs[0][1].send(b"\x02")  # a is no longer watched: nothing more about it
        assert watch.poll() == []
        watch.discard(pairs[2][0].fileno())  # c is closed by its owner, not by its peer
        pairs[2][1].close()
        assert watch.poll() == []
        assert len(watch) == 0
    finally:
        watch.close()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


# --- the wheel -------------------------------------------------------------------------------


class _Entry:
    def __init__(
        self,
        name: str,
        deadlines: list[float],
        calls: list[tuple[str, float, float]],
        done: anyio.Event | None = None,
    ) -> None:
        self.name = name
        self.deadlines = deadlines
        self.calls = calls
        self.done = done
        self.due_tick = 0

    def on_due(self, now: float) -> float | None:
        self.calls.append((self.name, self.deadlines[0], now))
        self.deadlines.pop(0)
        if self.deadlines:
            return self.deadlines[0]
        if self.done is not None:
            self.done.set()
        return None


async def test_wheel_calls_each_entry_in_deadline_order_and_never_before_its_deadline() -> None:
    calls: list[tuple[str, float, float]] = []
    ticks = 0

    def on_tick() -> None:
        nonlocal ticks
        ticks += 1

    wheel = TimerWheel(tick=0.002, slots=4, on_tick=on_tick)  # 4 slots: entries wrap around
    async with anyio.create_task_group() as tg:
        tg.start_soon(wheel.run)
        await wait_all_tasks_blocked()
        t0 = anyio.current_time()
        steps = {"a": [0.0, 0.011, 0.013, 0.030], "b": [0.005, 0.012], "c": [0.001, 0.029]}
        done = {name: anyio.Event() for name in steps}
        for name, offsets in steps.items():
            deadlines = [t0 + x for x in offsets]
            wheel.add(_Entry(name, deadlines, calls, done[name]), deadlines[0])
        with anyio.fail_after(10):
            for event in done.values():
                await event.wait()
        assert len(wheel) == 0
        tg.cancel_scope.cancel()
    assert sorted(name for name, _, _ in calls) == sorted(n for n, o in steps.items() for _ in o)
    assert all(now >= deadline for _, deadline, now in calls)
    # Within one tick of each other, deadlines come out in order (the wheel's resolution).
    assert all(later[1] >= earlier[1] - 0.002 for earlier, later in itertools.pairwise(calls))
    assert ticks > 0


async def test_a_wheel_that_fell_behind_lets_other_tasks_run_while_it_catches_up() -> None:
    """A process not scheduled for a while finds many ticks due at once: the wheel works
    through them in slices and lets the event loop run between them (accepts and handshakes
    were held up for the whole backlog), still in deadline order and never early."""
    calls: list[tuple[str, float, float]] = []
    turns = 0  # how many times the other task got the loop
    seen: list[int] = []

    class _Seeing(_Entry):
        def on_due(self, now: float) -> float | None:
            seen.append(turns)
            return super().on_due(now)

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    wheel = TimerWheel(tick=0.001, slots=64, time_slice=0.0)  # yield after every due tick
    async with anyio.create_task_group() as tg:
        tg.start_soon(wheel.run)
        await wait_all_tasks_blocked()
        t0 = anyio.current_time()
        done = anyio.Event()
        names = [f"e{i}" for i in range(10)]
        for i, name in enumerate(names):
            deadline = t0 + 0.002 * (i + 1)
            wheel.add(_Seeing(name, [deadline], calls, done if i == 9 else None), deadline)
        time.sleep(0.05)  # noqa: ASYNC251 (the process is not scheduled: every entry is due)
        tg.start_soon(other_task)
        with anyio.fail_after(10):
            await done.wait()
        tg.cancel_scope.cancel()
    assert [name for name, _, _ in calls] == names  # deadline order
    assert all(now >= deadline for _, deadline, now in calls)
    assert len(set(seen)) > 1, "the whole backlog ran in one turn of the loop"
    assert wheel.yields > 0


async def test_an_entry_added_to_an_idle_wheel_is_called_on_its_first_tick() -> None:
    """An idle wheel's cursor stands still. An entry added after the clock moved on, with its
    deadline already past (a late loop), is due at once: on the first tick the wheel works
    through when it wakes, not a whole round of its slots later."""
    ticks_at_call: list[int] = []

    class _Counting(_Entry):
        def on_due(self, now: float) -> float | None:
            ticks_at_call.append(wheel.ticks)
            return super().on_due(now)

    wheel = TimerWheel(tick=0.001, slots=64)
    async with anyio.create_task_group() as tg:
        tg.start_soon(wheel.run)
        await wait_all_tasks_blocked()  # idle: no entries
        time.sleep(0.02)  # noqa: ASYNC251 (the loop not scheduled: 20 ticks pass)
        deadline = anyio.current_time() - 0.015
        done = anyio.Event()
        wheel.add(_Counting("late", [deadline], [], done), deadline)
        with anyio.fail_after(10):
            await done.wait()
        tg.cancel_scope.cancel()
    assert ticks_at_call == [0]


async def test_wheel_refuses_entries_while_not_running() -> None:
    with pytest.raises(RuntimeError):
        TimerWheel().add(_Entry("a", [0.0], []), 0.0)


# --- streams on the wheel --------------------------------------------------------------------


@asynccontextmanager
async def _server(store: MemoryStore) -> AsyncIterator[tuple[NumberServer, int, anyio.CancelScope]]:
    server = NumberServer(
        ServerConfig(interval=1.0), store, random_source=FixedRandom(), instance_id="t"
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        yield server, port, tg.cancel_scope
        tg.cancel_scope.cancel()


async def _open(port: int, hello: bytes) -> tuple[anyio.abc.SocketStream, RawReader]:
    """A stream whose WELCOME and first number have arrived."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.send(hello)
    reader = RawReader(stream)
    for expected in (WELCOME, DATA):
        frame = await reader.next()
        assert frame is not None
        assert frame.type == expected
    return stream, reader


@needs_epoll
async def test_streams_on_the_wheel_have_no_task_of_their_own() -> None:
    streams = []
    async with _server(MemoryStore()) as (_, port, _):
        streams.append(await _open(port, stateless_hello(100)))
        await wait_all_tasks_blocked()
        tasks_with_one = len(anyio.get_running_tasks())
        for k in range(20):
            hello = stateless_hello(100) if k % 2 else stateful_hello(str(uuid.uuid4()), 100)
            streams.append(await _open(port, hello))
        await wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == tasks_with_one
        for stream, _ in streams:
            await stream.aclose()


@needs_epoll
async def test_a_client_leaving_a_stream_on_the_wheel_releases_its_session() -> None:
    store = MemoryStore()
    client_id = str(uuid.uuid4())
    async with _server(store) as (server, port, _):
        stream, _ = await _open(port, stateful_hello(client_id, 100))
        assert await store.refresh(client_id, "t-1", 5000)  # held by connection t-1
        await stream.aclose()
        with anyio.fail_after(10):
            await server.wait_active(0)
        assert not await store.refresh(client_id, "t-1", 5000)  # released...
        assert await store.get(client_id) is not None  # ...and kept for a resume
        assert server.stats.streams_completed == 0


@needs_epoll
async def test_a_byte_from_the_client_of_a_stream_on_the_wheel_is_unexpected_frame() -> None:
    async with _server(MemoryStore()) as (_, port, _):
        stream, reader = await _open(port, stateless_hello(100))
        async with stream:
            await stream.send(b"\x03")
            with anyio.fail_after(10):
                while (frame := await reader.next()) is not None and frame.type == DATA:
                    pass
        assert frame is not None
        assert frame.type == ERROR
        assert frame.error_code == 3  # UNEXPECTED_FRAME, spec §12.1


@needs_epoll
async def test_shutdown_tells_streams_on_the_wheel_and_keeps_their_sessions() -> None:
    store = MemoryStore()
    client_ids = [str(uuid.uuid4()) for _ in range(2)]
    hellos = [stateful_hello(cid, 100) for cid in client_ids] + [stateless_hello(100)]
    streams = []
    try:
        async with _server(store) as (_, port, scope):
            streams = [await _open(port, hello) for hello in hellos]
            scope.cancel()  # what SIGTERM does to the server's task group
        codes = []
        for _, reader in streams:
            last = None
            with anyio.fail_after(10):
                while (frame := await reader.next()) is not None:
                    last = frame
            codes.append(None if last is None else last.error_code)
    finally:
        for stream, _ in streams:
            await stream.aclose()
    assert codes == [SHUTTING_DOWN] * len(hellos)
    for client_id in client_ids:
        assert await store.get(client_id) is not None  # released for a resume, not completed
