"""Shutdown tells every connection, whatever it is doing (issue 11, point 3; spec §17).

On SIGTERM the trio backend used to give connections still in their handshake, or waiting on a
store call, a bare EOF: the handlers saw the cancellation before the server had set its
shutdown flag. Every open connection gets ERROR SHUTTING_DOWN (code 32, §12.1), on both
backends.
"""

from __future__ import annotations

import uuid

import anyio
import anyio.abc
import pytest

from reference.server import NumberServer, ServerConfig
from reference.store import DelegatingStore, MemoryStore, SessionRecord

from .support import RawReader, stateful_hello

pytestmark = pytest.mark.anyio

SHUTTING_DOWN = 32  # spec §12.1


class _FrozenStore(DelegatingStore):
    """A store whose every session lookup hangs, as a frozen Redis does (until the timeout)."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())
        self.waiting = 0
        self.changed = anyio.Event()

    async def get(self, client_id: str) -> SessionRecord | None:
        self.waiting += 1
        self.changed.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def wait_for(self, count: int) -> None:
        while self.waiting < count:
            self.changed = anyio.Event()
            await self.changed.wait()


async def _last_frame_code(stream: anyio.abc.ByteStream) -> int | None:
    reader = RawReader(stream)
    last = None
    with anyio.fail_after(10):
        while (frame := await reader.next()) is not None:
            last = frame
    return None if last is None else last.error_code


@pytest.mark.parametrize("silent", [5])
async def test_shutdown_tells_connections_in_handshake_and_in_store_calls(silent: int) -> None:
    store = _FrozenStore()
    server = NumberServer(ServerConfig(interval=1.0, handshake_timeout=60.0), store)
    streams: list[anyio.abc.ByteStream] = []
    try:
        async with anyio.create_task_group() as tg:
            port = await tg.start(server.serve)
            for _ in range(silent):  # never send a HELLO
                silent_stream = await anyio.connect_tcp("127.0.0.1", port)
                streams.append(silent_stream)
            for _ in range(2):  # HELLO sent, store lookup in flight
                hello = await anyio.connect_tcp("127.0.0.1", port)
                await hello.send(stateful_hello(str(uuid.uuid4()), 10))
                streams.append(hello)
            with anyio.fail_after(10):
                await server.wait_active(len(streams))
                await store.wait_for(2)
            tg.cancel_scope.cancel()  # what SIGTERM does to the server's task group
        codes = [await _last_frame_code(stream) for stream in streams]
    finally:
        for stream in streams:
            await stream.aclose()
    assert codes == [SHUTTING_DOWN] * len(streams)
