"""Preparing the server under test: start it (or find it), learn its interval and TTL."""

from __future__ import annotations

import argparse
import logging
import uuid
from contextlib import AsyncExitStack
from typing import Any

import anyio

from harness.redis_server import RedisUnavailableError, throwaway_redis

from . import wire
from .cli import TargetError
from .resp import Resp, RespError, parse_redis_url, redact
from .server_role import ServerTarget
from .servers import DEFAULT_SERVER_CMD, ServerStartError, TemplateSpawner

log = logging.getLogger("harness.conformance")


async def _welcome(port: int, hello: bytes) -> wire.Welcome:
    buffer = wire.FrameBuffer()
    with anyio.fail_after(10):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(hello)
            while (found := buffer.next()) is None:
                buffer.feed(await stream.receive())
    if found.kind != wire.WELCOME:
        raise TargetError(f"the server answered a valid HELLO with {found.describe()}")
    return wire.Welcome.parse(found.payload)


async def discover(port: int) -> tuple[int, int]:
    """(interval_ms, session_ttl_ms) as the server announces them (§4.2)."""
    try:
        stateless = await _welcome(port, wire.hello(wire.STATELESS, 1))
        stateful = await _welcome(port, wire.hello(wire.STATEFUL, 1, client_id=str(uuid.uuid4())))
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, ValueError) as exc:
        raise TargetError(
            f"no NSP server answers on 127.0.0.1:{port}: {exc or type(exc).__name__}"
        ) from exc
    return stateless.interval_ms, stateful.ttl_ms


async def _check_redis(
    redis_url: str, given_prefix: str | None, parser: argparse.ArgumentParser
) -> str:
    """The key prefix to use with ``redis_url`` (the URL's ``?prefix=``, else ``--redis-prefix``,
    else ``nsp:v1:``) once Redis answers a PING there; a usage error for a URL that cannot be
    read or a prefix given twice differently, TargetError when Redis does not answer."""
    try:
        address = parse_redis_url(redis_url)
    except ValueError as exc:
        parser.error(f"--redis-url: {exc}")
    if address.prefix is not None and given_prefix not in (None, address.prefix):
        parser.error(
            f"--redis-prefix {given_prefix!r} differs from the URL's prefix "
            f"{address.prefix!r}: give one"
        )
    try:
        async with await Resp.connect(redis_url) as r:
            await r.call("PING")
    except (OSError, TimeoutError, RespError, ValueError) as exc:
        raise TargetError(f"cannot reach Redis at {redact(redis_url)}: {exc}") from exc
    return address.prefix or given_prefix or "nsp:v1:"


async def prepare_server(
    args: argparse.Namespace, parser: argparse.ArgumentParser, stack: AsyncExitStack
) -> tuple[ServerTarget, set[str], dict[str, Any]]:
    if args.port is not None and args.server_cmd is not None:
        parser.error(
            "give --port (a running server) or --server-cmd (the suite starts it), not both"
        )
    if args.redis and args.redis_url:
        parser.error("give --redis (a throwaway redis-server) or --redis-url, not both")
    capabilities: set[str] = set()
    redis_url: str | None = args.redis_url
    if args.redis:
        try:
            redis_url = await stack.enter_async_context(throwaway_redis())
        except RedisUnavailableError as exc:
            raise TargetError(str(exc)) from exc
    prefix = args.redis_prefix or "nsp:v1:"
    if redis_url is not None:
        prefix = await _check_redis(redis_url, args.redis_prefix, parser)
        capabilities.add("redis")
    spawner: TemplateSpawner | None = None
    if args.port is not None:
        port = int(args.port)
        command = None
    else:
        command = args.server_cmd or DEFAULT_SERVER_CMD
        try:
            spawner = TemplateSpawner(command, args.interval, args.ttl, redis_url or "memory://")
        except ValueError as exc:
            parser.error(f"--server-cmd: {exc}")
        group = await stack.enter_async_context(anyio.create_task_group())
        spawner.bind(group)
        stack.callback(group.cancel_scope.cancel)
        try:
            server = await spawner.start(spawner.default_values())
        except ServerStartError as exc:
            raise TargetError(str(exc)) from exc
        stack.push_async_callback(server.kill)
        port = server.port
        capabilities.add("spawn")
    interval_ms, ttl_ms = await discover(port)
    log.info("server on port %d: interval %d ms, TTL %d ms", port, interval_ms, ttl_ms)
    target = ServerTarget(
        port=port,
        interval_ms=interval_ms,
        ttl_ms=ttl_ms,
        redis_url=redis_url,
        redis_prefix=prefix,
        handshake_timeout=args.handshake_timeout,
        spawner=spawner,
        capabilities=capabilities,
    )
    meta = {
        "target": {
            "port": port,
            "command": command,
            "interval_ms": interval_ms,
            "ttl_ms": ttl_ms,
            "redis": None if redis_url is None else redact(redis_url),
        },
    }
    return target, capabilities, meta
