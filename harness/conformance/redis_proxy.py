"""A Redis proxy that makes chosen commands fail, for the cases of a store that fails one
operation while the others work (spec §16.6: a failed ``complete``).

It sits between the server under test and the suite's Redis, forwards every byte, and reads
the server's requests (RESP arrays of bulk strings, STORE-REDIS.md §4). A request the
``sabotage`` predicate picks is replaced by a command Redis does not know, so Redis itself
answers it with an error reply, in its place among the replies of a pipeline: the proxy never
needs to parse a reply. Anything that is not a RESP array (an inline command) passes as is.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import anyio
from anyio.abc import SocketStream, TaskGroup

#: SHA-1 of the COMPLETE script (STORE-REDIS.md §4).
COMPLETE_SHA1 = b"54ae819571aef35dbce2d03f3ff0ce241f91e92b"
#: What a sabotaged request becomes: Redis answers "-ERR unknown command ...".
FAILING_COMMAND = b"*1\r\n$32\r\nCONFORMANCE-SUITE-FAILS-THIS-OP!\r\n"


def is_complete(args: list[bytes]) -> bool:
    """The COMPLETE script, run as EVALSHA (its SHA-1) or EVAL (its text)."""
    name = args[0].upper()
    if name == b"EVALSHA" and len(args) > 1:
        return args[1].lower() == COMPLETE_SHA1
    if name == b"EVAL" and len(args) > 1:
        return hashlib.sha1(args[1]).hexdigest().encode() == COMPLETE_SHA1 or (  # noqa: S324 - the script's name in STORE-REDIS.md, not security
            b"'DEL'" in args[1]
        )
    return False


class Requests:
    """Splits a client's byte stream into requests: ``(args, raw)``, args None if inline."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def next(self) -> tuple[list[bytes] | None, bytes] | None:
        if not self.data:
            return None
        if self.data[:1] != b"*":
            end = self.data.find(b"\n")
            if end < 0:
                return None
            return None, self._take(end + 1)
        at = 0
        line, at = self._line(at)
        if line is None:
            return None
        args: list[bytes] = []
        for _ in range(int(line[1:])):
            header, at = self._line(at)
            if header is None:
                return None
            size = int(header[1:])
            if len(self.data) < at + size + 2:
                return None
            args.append(bytes(self.data[at : at + size]))
            at += size + 2
        return (args or None), self._take(at)

    def _line(self, at: int) -> tuple[bytes | None, int]:
        end = self.data.find(b"\r\n", at)
        if end < 0:
            return None, at
        return bytes(self.data[at:end]), end + 2

    def _take(self, size: int) -> bytes:
        raw = bytes(self.data[:size])
        del self.data[:size]
        return raw


@dataclass
class RedisProxy:
    upstream: tuple[str, int]
    sabotage: Callable[[list[bytes]], bool]
    #: how many more picked requests fail; after that they pass (None: all of them fail)
    failures_left: int | None = None
    picked: int = 0  # requests the predicate picked, failed or not
    failed: int = 0
    port: int = 0
    url: str = ""
    first_pick: anyio.Event = field(default_factory=anyio.Event)

    async def handle(self, client: SocketStream) -> None:
        try:
            upstream = await anyio.connect_tcp(*self.upstream)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, anyio.create_task_group() as tg:
            tg.start_soon(self._down, upstream, client, tg)
            requests = Requests()
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                async for chunk in client:
                    requests.feed(chunk)
                    out = []
                    while (found := requests.next()) is not None:
                        args, raw = found
                        if args is not None and self.sabotage(args):
                            self.picked += 1
                            self.first_pick.set()
                            if self.failures_left is None or self.failures_left > 0:
                                self.failed += 1
                                if self.failures_left is not None:
                                    self.failures_left -= 1
                                raw = FAILING_COMMAND
                        out.append(raw)
                    await upstream.send(b"".join(out))
            tg.cancel_scope.cancel()

    @staticmethod
    async def _down(upstream: SocketStream, client: SocketStream, tg: TaskGroup) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            async for chunk in upstream:
                await client.send(chunk)
        tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def redis_proxy(
    redis_url: str, sabotage: Callable[[list[bytes]], bool], failures: int | None = None
) -> AsyncIterator[RedisProxy]:
    """A proxy in front of ``redis_url``; ``proxy.url`` is the same URL (database, query)
    pointing at the proxy."""
    parts = urlsplit(redis_url)
    proxy = RedisProxy((parts.hostname or "127.0.0.1", parts.port or 6379), sabotage, failures)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    netloc = f"127.0.0.1:{proxy.port}"
    if parts.username or parts.password:
        netloc = f"{parts.netloc.rpartition('@')[0]}@{netloc}"
    proxy.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
