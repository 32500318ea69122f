"""A minimal RESP2 client for planting and inspecting sessions in Redis (STORE-REDIS.md).

The suite needs a handful of plain commands (HSET, HGETALL, PEXPIRE, PTTL, EXISTS, DEL, SET,
INFO) with raw byte values, including values no server would write (``seed "0123"``); it keeps
its view of the store independent of the reference's store code.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import anyio
from anyio.abc import SocketStream

RespValue = bytes | int | list["RespValue"] | None


class RespError(Exception):
    """Redis answered an error reply, or the connection broke."""


@dataclass(frozen=True)
class RedisAddress:
    """What a ``redis://[USER:PASSWORD@]HOST[:PORT][/DB][?db=N&prefix=P]`` URL names
    (PROTOCOL.md Appendix B): port 6379 and database 0 by default; ``prefix`` is None when the
    URL carries none."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    prefix: str | None


def parse_redis_url(url: str) -> RedisAddress:
    """Split a store URL the way Appendix B reads it. Raises ValueError (naming the part) for
    another scheme, a bad port, or a database that is not a number."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"only redis://HOST:PORT/DB URLs are supported, not {redact(url)!r}")
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise ValueError(f"bad port in {redact(url)!r}") from exc
    query = parse_qs(parts.query, keep_blank_values=True)
    db_text = query["db"][-1] if "db" in query else parts.path.lstrip("/") or "0"
    if not db_text.isdigit():
        raise ValueError(f"database {db_text!r} in {redact(url)!r} is not a number")
    prefix = query["prefix"][-1] if "prefix" in query else None
    return RedisAddress(
        host=parts.hostname or "127.0.0.1",
        port=port,
        db=int(db_text),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        prefix=prefix,
    )


def redact(url: str) -> str:
    """``url`` with the password of its userinfo replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


class Resp:
    """One connection; use :meth:`connect` as an async context manager."""

    def __init__(self, stream: SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, url: str) -> Resp:
        address = parse_redis_url(url)
        with anyio.fail_after(5):
            stream = await anyio.connect_tcp(address.host, address.port)
        client = cls(stream)
        try:
            if address.password is not None:
                credentials = [address.username] if address.username else []
                await client.call("AUTH", *credentials, address.password)
            if address.db:
                await client.call("SELECT", str(address.db))
        except BaseException:
            await client.aclose()
            raise
        return client

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> Resp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, *args: str | bytes) -> RespValue:
        """Send one command and read its reply, within 5 s (TimeoutError otherwise)."""
        with anyio.fail_after(5):
            await self.send(*args)
            return await self._reply()

    async def send(self, *args: str | bytes) -> None:
        """Send one command without reading its reply (for a subscribed connection, whose
        replies and pushed messages :meth:`reply` reads in order)."""
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            raw = arg.encode() if isinstance(arg, str) else arg
            parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
        await self._stream.send(b"".join(parts))

    async def reply(self) -> RespValue:
        """The next reply or pushed message, however long it takes. Raises RespError for an
        error reply or a closed connection."""
        return await self._reply()

    async def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            try:
                self._buffer += await self._stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                raise RespError("redis closed the connection") from exc

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size + 2:
            try:
                self._buffer += await self._stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                raise RespError("redis closed the connection") from exc
        data = bytes(self._buffer[:size])
        del self._buffer[: size + 2]
        return data

    async def _reply(self) -> RespValue:
        line = await self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else await self._exactly(size)
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [await self._reply() for _ in range(count)]
        raise RespError(f"unexpected reply {line[:40]!r}")

    # -- typed helpers ---------------------------------------------------------------------

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        reply = await self.call("HGETALL", key)
        assert isinstance(reply, list)
        items = [item for item in reply if isinstance(item, bytes)]
        return dict(zip(items[::2], items[1::2], strict=True))

    async def pttl(self, key: str) -> int:
        reply = await self.call("PTTL", key)
        assert isinstance(reply, int)
        return reply

    async def exists(self, key: str) -> bool:
        return await self.call("EXISTS", key) == 1

    async def plant(self, key: str, fields: dict[str, bytes | str], expire_ms: int) -> None:
        """Replace ``key`` with a hash of ``fields`` expiring in ``expire_ms``."""
        await self.call("DEL", key)
        args: list[str | bytes] = []
        for name, value in fields.items():
            args += [name, value]
        await self.call("HSET", key, *args)
        await self.call("PEXPIRE", key, str(expire_ms))

    async def command_calls(self) -> int:
        """Total calls of every command so far (``INFO commandstats``)."""
        reply = await self.call("INFO", "commandstats")
        assert isinstance(reply, bytes)
        total = 0
        for line in reply.decode().splitlines():
            if line.startswith("cmdstat_") and "calls=" in line:
                total += int(line.split("calls=", 1)[1].split(",", 1)[0])
        return total


async def monitor(url: str, seconds: float) -> list[bytes]:
    """The lines of Redis's MONITOR stream for ``seconds`` (every command any client sends,
    with Redis's own timestamp: ``+1700000000.123456 [0 127.0.0.1:5000] "EVALSHA" ...``)."""
    lines: list[bytes] = []
    pending = bytearray()
    async with await Resp.connect(url) as client:
        stream = client._stream
        await stream.send(b"MONITOR\r\n")
        with anyio.move_on_after(seconds):
            async for chunk in stream:
                pending += chunk
                *done, rest = pending.split(b"\r\n")
                lines += [bytes(line) for line in done]
                pending = bytearray(rest)
    return [line for line in lines if line.startswith(b"+") and line != b"+OK"]
