"""Redis session store: one hash per session, each operation one Lua script or one command.

Why coredis and not redis-py
----------------------------
The project runs (and tests) its servers on both anyio backends, asyncio and trio. coredis 6 is
built on anyio, so the same client works under either; redis-py's ``redis.asyncio`` client is
asyncio-only and has had cancellation bugs (a request cancelled mid-flight could leave a
connection out of step with its replies). A store a trio server cannot use would be no store.

How the client is hosted
------------------------
A coredis 6 client must be used as ``async with client:``: entering it opens a task group that
owns the connection-reader tasks. The ``SessionStore`` interface instead has a ``connect()`` that
returns a ready store and an ``aclose()`` that may run anywhere later (another task, outside the
``fail_after`` that bounded ``connect``). Entering the client's task group inside ``connect`` and
leaving it in ``aclose`` would corrupt the caller's cancel-scope stack as soon as those two calls
are not perfectly nested (trio raises ``TrioInternalError``). So the client lives in a host task
of its own, detached from the caller's scopes (an asyncio task, or a trio *system* task), which
enters ``async with client:`` and waits for ``aclose``. If the caller never calls ``aclose``, the
event loop's shutdown cancels the host task and the client still closes cleanly. Structured
callers can instead write ``async with await RedisStore.connect(url) as store:``.

Atomicity and failures
----------------------
Every operation is a single server-side step (a Lua script run by EVALSHA, falling back to SCRIPT
LOAD when the server's script cache is empty, or a single HMGET/SCAN); nothing is read and then
written from Python. The scripts, the key layout and the field encodings are in
``spec/STORE-REDIS.md`` verbatim, so a server in another language can share the store.

Every call is bounded by ``op_timeout`` seconds (connect, pool wait and reply alike) and is tried
once: the scripts' *replies* are not idempotent (a retried ``complete`` after a lost reply would
answer False), so a failure is reported, not retried. Every backend failure becomes
:class:`~reference.store.base.StoreError`.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import urlsplit

import anyio
import coredis
from anyio.abc import TaskStatus
from coredis.commands.script import Script
from coredis.connection import (
    BaseConnection,
    ClusterConnection,
    TCPConnection,
    TCPLocation,
    UnixDomainSocketConnection,
)
from coredis.retry import NoRetryPolicy

from .base import Lease, SessionRecord, StoreError, check_leases, check_owner_and_duration

__all__ = ["CLUSTER_SCHEMES", "DEFAULT_OP_TIMEOUT", "DEFAULT_PREFIX", "SCRIPTS", "RedisStore"]

T = TypeVar("T")

DEFAULT_PREFIX: Final = "nsp:v1:"
DEFAULT_OP_TIMEOUT: Final = 2.0
_CLOSE_TIMEOUT: Final = 5.0
_SCAN_COUNT: Final = 1000

# The scripts check their arguments before writing anything: Redis does not roll a script back
# when a later command in it fails, and a failed PEXPIRE after the HSET that creates a session
# would leave a key that never expires. Durations are 0..999_999_999_999 ms (at most 12 digits).

# KEYS[1] = session key; ARGV = seed, n, owner, lease_ms. Returns {seed, n, created(1|0)}.
OPEN_SESSION: Final = """\
if ARGV[3] == '' or #ARGV[4] > 12 or not string.find(ARGV[4], '^%d+$') then
  return redis.error_reply('ERR open_session: empty owner or bad lease_ms')
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'owner', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  local record = redis.call('HMGET', KEYS[1], 'seed', 'n')
  return {record[1], record[2], 0}
end
redis.call('HSET', KEYS[1], 'seed', ARGV[1], 'n', ARGV[2], 'owner', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {ARGV[1], ARGV[2], 1}
"""

# KEYS[1] = session key; ARGV = owner, lease_ms. Returns {seed, n}, or nil if absent.
CLAIM: Final = """\
if ARGV[1] == '' or #ARGV[2] > 12 or not string.find(ARGV[2], '^%d+$') then
  return redis.error_reply('ERR claim: empty owner or bad lease_ms')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HMGET', KEYS[1], 'seed', 'n')
"""

# KEYS[1] = session key; ARGV = owner, lease_ms. Returns 1 if owner holds it (lease extended).
REFRESH: Final = """\
if #ARGV[2] > 12 or not string.find(ARGV[2], '^%d+$') then
  return redis.error_reply('ERR refresh: bad lease_ms')
end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] = session key; ARGV = owner, ttl_ms. Returns 1 if owner held it (now disconnected).
RELEASE: Final = """\
if #ARGV[2] > 12 or not string.find(ARGV[2], '^%d+$') then
  return redis.error_reply('ERR release: bad ttl_ms')
end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', '')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] = session key; ARGV = owner. Returns 1 if owner held it (now deleted).
COMPLETE: Final = """\
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS = session keys (one slot each on a cluster: see refresh_many); ARGV = lease_ms, then
# the owner for each key in order. Returns one 1 (held, lease extended) or 0 per key.
REFRESH_MANY: Final = """\
if #ARGV[1] > 12 or not string.find(ARGV[1], '^%d+$') or #ARGV ~= #KEYS + 1 then
  return redis.error_reply('ERR refresh_many: bad lease_ms or not one owner per key')
end
local held = {}
for i, key in ipairs(KEYS) do
  held[i] = 0
  if ARGV[i + 1] ~= '' and redis.call('HGET', key, 'owner') == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    held[i] = 1
  end
end
return held
"""

#: Leases per REFRESH_MANY call: bounds how long one call keeps Redis busy (about a millisecond).
REFRESH_MANY_CHUNK: Final = 1000

#: Leases per pipeline on a cluster (one command each), each pipeline under its own deadline.
CLUSTER_REFRESH_CHUNK: Final = 500

#: Every script by operation name, in the order spec/STORE-REDIS.md lists them.
SCRIPTS: Final = {
    "open_session": OPEN_SESSION,
    "claim": CLAIM,
    "refresh": REFRESH,
    "release": RELEASE,
    "complete": COMPLETE,
    "refresh_many": REFRESH_MANY,
}

#: Canonical decimal as writers produce it (STORE-REDIS.md §2): no leading zero, no sign.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}", re.ASCII)


def record_from_fields(seed: object, n: object) -> SessionRecord:
    """The record for a hash's ``seed`` and ``n`` fields; ValueError unless both are canonical.

    STORE-REDIS.md §2: readers accept exactly what writers produce (``"0123"``, ``"050"``,
    ``"+5"``, a missing field or a value out of range are all refused, never repaired).
    """
    if not (
        isinstance(seed, str)
        and isinstance(n, str)
        and _DECIMAL.fullmatch(seed)
        and _DECIMAL.fullmatch(n)
    ):
        raise ValueError(f"corrupt record seed={seed!r} n={n!r}")
    return SessionRecord(seed=int(seed), n=int(n))  # ValueError when out of range


_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


async def _run_closing_buffers(
    connection: BaseConnection, run: Callable[..., Awaitable[None]], task_status: TaskStatus[None]
) -> None:
    """Work around coredis 6.9 leaking a connection's six in-memory buffers (closed only by a
    successful ``run``): a failed connect otherwise leaves them to the garbage collector, which
    warns ``ResourceWarning: Unclosed <MemoryObjectSendStream>`` -- an error in our test suite
    (``filterwarnings = error``), raised in whatever test happens to trigger the collection."""
    try:
        await run(task_status=task_status)
    finally:
        for buffer in (
            connection._push_message_buffer_in,
            connection._push_message_buffer_out,
            connection._streamed_message_buffer_in,
            connection._streamed_message_buffer_out,
            connection._write_buffer_in,
            connection._write_buffer_out,
        ):
            buffer.close()  # idempotent: after a normal run they are closed already


class _TCPConnection(TCPConnection):
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await _run_closing_buffers(self, super().run, task_status)


class _UnixConnection(UnixDomainSocketConnection):
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await _run_closing_buffers(self, super().run, task_status)


def _running_trio() -> bool:
    """True inside trio; trio cannot be running unless it has been imported."""
    if "trio" not in sys.modules:
        return False
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class _ClusterConnection(ClusterConnection):
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await _run_closing_buffers(self, super().run, task_status)


class _NoCoredisTracebacks(logging.Filter):
    """coredis logs a failed connection attempt with ``logger.exception``: a full traceback in
    the server's log whenever Redis accepts TCP but does not answer (frozen, or not Redis) and
    our deadline cancels its handshake. That failure already reaches the caller as one
    StoreError, which the server reports; so a cancellation is dropped here, and any other
    coredis record keeps its message with the exception summarised on the same line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return self._noscript_at_debug(record)
        exc = record.exc_info[1]
        record.exc_info = None
        record.exc_text = None
        if exc is None:
            return True
        if _only_cancellations(exc):
            return False
        first_line = (str(exc).splitlines() or [""])[0]
        record.msg = f"{record.getMessage()} ({type(exc).__name__}: {first_line})"
        record.args = None
        return True

    @staticmethod
    def _noscript_at_debug(record: logging.LogRecord) -> bool:
        """coredis retries a script after NOSCRIPT (an emptied script cache: a restarted or
        flushed Redis) and logs that at info; the retry is the normal path of STORE-REDIS §4,
        so it is said at debug, in our words."""
        if "No matching script" not in record.getMessage():
            return True
        if not _log.isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, record.args = (
            "Redis's script cache was empty (NOSCRIPT): script loaded again",
            None,
        )
        return True


def _only_cancellations(exc: BaseException) -> bool:
    """True for a cancellation (asyncio's or trio's), or a group holding nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancellations(inner) for inner in exc.exceptions)
    return type(exc).__name__ in ("CancelledError", "Cancelled")  # asyncio's, trio's


_log = logging.getLogger("reference.store.redis")
logging.getLogger("coredis").addFilter(_NoCoredisTracebacks())


#: A client for one Redis server or for a Redis Cluster: the store uses what both offer.
_Client = coredis.Redis[str] | coredis.RedisCluster[str]

#: Cluster URL schemes and the plain scheme of the node URL each stands for.
CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _single_client(url: str, op_timeout: float) -> coredis.Redis[str]:
    # Typed loosely: the connection class is swapped for a leak-free subclass below.
    pool: coredis.ConnectionPool[Any] = coredis.ConnectionPool.from_url(
        url,
        decode_responses=True,
        stream_timeout=op_timeout,
        connect_timeout=op_timeout,
        timeout=op_timeout,
    )
    if pool.connection_class is TCPConnection:
        pool.connection_class = _TCPConnection
    elif pool.connection_class is UnixDomainSocketConnection:
        pool.connection_class = _UnixConnection
    return coredis.Redis(connection_pool=pool, decode_responses=True, retry_policy=NoRetryPolicy())


def _cluster_client(url: str, scheme: str, op_timeout: float) -> coredis.RedisCluster[str]:
    """A cluster client from one node's address; it follows MOVED/ASK redirections itself
    (safe: a redirected command was not run), and is otherwise never retried, as above."""
    node_url = CLUSTER_SCHEMES[scheme] + url[len(scheme) :]
    parts = urlsplit(node_url)
    if not parts.hostname:
        raise ValueError("a cluster URL names one node: redis+cluster://HOST:PORT")
    pool = coredis.ClusterConnectionPool.from_url(
        node_url,
        startup_nodes=[TCPLocation(parts.hostname, parts.port or 6379)],
        decode_responses=True,
        stream_timeout=op_timeout,
        connect_timeout=op_timeout,
        timeout=op_timeout,
    )
    if pool.connection_class is ClusterConnection:
        pool.connection_class = _ClusterConnection
    return coredis.RedisCluster(
        connection_pool=pool, decode_responses=True, retry_policy=NoRetryPolicy()
    )


async def _check_cluster_entry(url: str, scheme: str, where: str, op_timeout: float) -> None:
    """Ask the entry node alone whether it serves a healthy cluster, before discovery.

    A clear error for a node that is down or not in cluster mode; and coredis's discovery leaks
    its connection buffers when the node is unreachable (see _run_closing_buffers), so an
    unreachable node is found here, with a leak-free connection, instead.
    """
    node_url = CLUSTER_SCHEMES[scheme] + url[len(scheme) :]
    try:
        if not urlsplit(node_url).hostname:
            raise ValueError("a cluster URL names one node: redis+cluster://HOST:PORT")
        client = _single_client(node_url, op_timeout)
    except Exception as exc:
        raise StoreError(f"bad redis URL {where}: {exc}") from exc
    try:
        with anyio.fail_after(op_timeout):
            async with client:
                info = await client.cluster_info()
    except TimeoutError as exc:
        raise StoreError(f"redis connect on {where}: no reply within {op_timeout} s") from exc
    except Exception as exc:
        raise StoreError(f"redis connect on {where} failed: {_first_leaf(exc)}") from exc
    if info.get("cluster_state") != "ok":
        state = info.get("cluster_state")
        raise StoreError(f"redis connect on {where}: the cluster is not serving ({state=})")


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: what a message should name."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _ClientHost:
    """Keeps ``async with client:`` open in a task of its own until :meth:`stop`."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self._entered = anyio.Event()
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._task: object = None  # an asyncio task must be referenced while it runs
        self._started = False
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._entered.is_set() and not self._done.is_set()

    async def start(self) -> None:
        self._started = True
        if _running_trio():
            import trio

            trio.lowlevel.spawn_system_task(self._run, name="coredis client host")
        else:
            import asyncio

            self._task = asyncio.get_running_loop().create_task(self._run())
        await self._entered.wait()

    async def _run(self) -> None:
        try:
            async with self._client:
                self._entered.set()
                await self._stop.wait()
        except Exception as exc:  # a system task must not raise; the store reports it instead
            self.error = exc
        finally:
            self._entered.set()
            self._done.set()

    async def stop(self) -> None:
        self._stop.set()
        if not self._started:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
            await self._done.wait()


class RedisStore:
    """:class:`~reference.store.base.SessionStore` on Redis; see spec/STORE-REDIS.md."""

    def __init__(self, client: _Client, *, where: str, prefix: str, op_timeout: float) -> None:
        """Use :meth:`connect`; this wraps a client that is not yet entered."""
        if not prefix:
            raise ValueError("the key prefix must not be empty")
        if not (op_timeout > 0 and math.isfinite(op_timeout)):
            raise ValueError(f"op_timeout must be positive seconds, not {op_timeout!r}")
        self._client = client
        self._where = where
        self._prefix = prefix
        self._op_timeout = op_timeout
        self._host = _ClientHost(client)
        self._closed = False
        self._scripts: dict[str, Script[str]] = {
            name: client.register_script(text) for name, text in SCRIPTS.items()
        }

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, op_timeout: float = DEFAULT_OP_TIMEOUT
    ) -> Self:
        """Open a store on ``url`` and check it.

        ``redis://``, ``rediss://`` or ``unix://`` name one Redis server; ``redis+cluster://HOST:PORT``
        (or ``rediss+cluster://``) names any one node of a Redis Cluster, from which the client
        discovers the others and which slots each serves (spec/STORE-REDIS.md §1).

        Each later operation is bounded by ``op_timeout`` seconds (connect, pool wait and reply
        together). Raises StoreError if Redis does not answer PING and load the scripts within
        ``op_timeout``; nothing is left open then.
        """
        where = _redacted(url)
        scheme = urlsplit(url).scheme
        if scheme in CLUSTER_SCHEMES:
            if "{" in prefix:  # a hash tag would pin every session to one slot
                raise ValueError(f"a cluster key prefix must not contain '{{': {prefix!r}")
            await _check_cluster_entry(url, scheme, where, op_timeout)
        try:
            if scheme in CLUSTER_SCHEMES:
                client: _Client = _cluster_client(url, scheme, op_timeout)
            else:
                client = _single_client(url, op_timeout)
        except Exception as exc:
            raise StoreError(f"bad redis URL {where}: {exc}") from exc
        store = cls(client, where=where, prefix=prefix, op_timeout=op_timeout)
        try:
            await store._host.start()
            await store._call("connect", store._check)
        except BaseException:
            await store.aclose()
            raise
        return store

    async def _check(self) -> None:
        await self._client.ping()
        for script in self._scripts.values():
            await self._client.script_load(script.script)

    async def aclose(self) -> None:
        """Close every connection; idempotent. Later calls raise StoreError."""
        if self._closed:
            return
        self._closed = True
        await self._host.stop()
        if isinstance(self._client, coredis.RedisCluster):
            # coredis 6.9 never closes the cluster layout's error channel either (see
            # _run_closing_buffers for why an unclosed buffer is an error here).
            for buffer in self._client.connection_pool.cluster_layout._error_stream:
                buffer.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RedisStore {self._where} prefix={self._prefix!r} {state}>"

    # -- plumbing --------------------------------------------------------------------------

    def _key(self, client_id: str) -> str:
        return f"{self._prefix}session:{client_id}"

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis step under the deadline; every failure comes out as StoreError."""
        if self._closed:
            raise StoreError(f"redis store {self._where} is closed")
        if not self._host.running:
            raise StoreError(f"redis client for {self._where} stopped: {self._host.error!r}")
        try:
            with anyio.fail_after(self._op_timeout):
                return await fn()
        except TimeoutError as exc:
            raise StoreError(
                f"redis {what} on {self._where}: no reply within {self._op_timeout} s"
            ) from exc
        except Exception as exc:  # every backend failure maps to StoreError, cause attached
            raise StoreError(f"redis {what} on {self._where} failed: {exc}") from exc

    async def _run(self, name: str, client_id: str, *args: str | int) -> object:
        script = self._scripts[name]
        reply: object = await self._call(
            name, lambda: script([self._key(client_id)], [str(a) for a in args])
        )
        return reply

    def _record(self, what: str, seed: object, n: object) -> SessionRecord:
        try:
            return record_from_fields(seed, n)
        except ValueError as exc:
            raise StoreError(f"redis {what} on {self._where}: {exc}") from exc

    def _flag(self, what: str, reply: object) -> bool:
        if reply in (0, 1) and isinstance(reply, int):
            return reply == 1
        raise StoreError(f"redis {what} on {self._where}: unexpected reply {reply!r}")

    # -- SessionStore ----------------------------------------------------------------------

    async def open_session(
        self, client_id: str, fresh: SessionRecord, owner: str, lease_ms: int
    ) -> tuple[SessionRecord, bool]:
        _check_owner(owner)
        reply = await self._run(
            "open_session", client_id, fresh.seed, fresh.n, owner, _ms(lease_ms)
        )
        if not (isinstance(reply, list | tuple) and len(reply) == 3):
            raise StoreError(f"redis open_session on {self._where}: unexpected reply {reply!r}")
        seed, n, created = reply
        return self._record("open_session", seed, n), self._flag("open_session", created)

    async def claim(self, client_id: str, owner: str, lease_ms: int) -> SessionRecord | None:
        _check_owner(owner)
        reply = await self._run("claim", client_id, owner, _ms(lease_ms))
        if reply is None:
            return None
        if not (isinstance(reply, list | tuple) and len(reply) == 2):
            raise StoreError(f"redis claim on {self._where}: unexpected reply {reply!r}")
        return self._record("claim", reply[0], reply[1])

    async def refresh(self, client_id: str, owner: str, lease_ms: int) -> bool:
        _check_owner(owner)
        return self._flag("refresh", await self._run("refresh", client_id, owner, _ms(lease_ms)))

    async def refresh_many(self, leases: Sequence[Lease], lease_ms: int) -> list[bool]:
        """One Redis: one pipeline of REFRESH_MANY per 1,000 leases. A cluster: REFRESH per
        lease, in pipelines of 500 leases sent one after another, each under its own deadline.

        A script may only name keys of one slot on a cluster, and sessions are spread over all
        slots, so there each lease costs a command of its own, and coredis's per-command CPU
        (0.1 to 0.4 ms here) would keep one pipeline of thousands past the deadline and the
        event loop busy for as long.
        """
        check_leases(leases, lease_ms)
        if not leases:
            return []
        argv_ms = str(lease_ms)
        replies: list[object] = []
        if isinstance(self._client, coredis.RedisCluster):
            script = self._scripts["refresh"]
            for chunk in _chunks(leases, CLUSTER_REFRESH_CHUNK):

                async def pipelined(chunk: Sequence[Lease] = chunk) -> list[object]:
                    async with self._client.pipeline(transaction=False) as pipe:
                        requests: list[Awaitable[object]] = [
                            script([self._key(client_id)], [owner, argv_ms], client=pipe)
                            for client_id, owner in chunk
                        ]
                    return [await request for request in requests]

                replies += await self._call("refresh_many", pipelined)
        else:
            script = self._scripts["refresh_many"]

            async def scripted() -> list[object]:
                async with self._client.pipeline(transaction=False) as pipe:
                    requests: list[Awaitable[object]] = [
                        script(
                            [self._key(client_id) for client_id, _ in chunk],
                            [argv_ms, *(owner for _, owner in chunk)],
                            client=pipe,
                        )
                        for chunk in _chunks(leases, REFRESH_MANY_CHUNK)
                    ]
                flat: list[object] = []
                for request in requests:
                    reply = await request
                    if not isinstance(reply, list | tuple):
                        raise StoreError(f"redis refresh_many: bad reply {reply!r}")
                    flat.extend(reply)
                return flat

            replies = await self._call("refresh_many", scripted)
        if len(replies) != len(leases):
            raise StoreError(f"redis refresh_many on {self._where}: {len(replies)} replies")
        return [self._flag("refresh_many", reply) for reply in replies]

    async def release(self, client_id: str, owner: str, ttl_ms: int) -> bool:
        _check_owner(owner)
        return self._flag("release", await self._run("release", client_id, owner, _ms(ttl_ms)))

    async def complete(self, client_id: str, owner: str) -> bool:
        _check_owner(owner)
        return self._flag("complete", await self._run("complete", client_id, owner))

    async def get(self, client_id: str) -> SessionRecord | None:
        key = self._key(client_id)
        seed, n = await self._call("get", lambda: self._client.hmget(key, ["seed", "n"]))
        if seed is None and n is None:
            return None
        return self._record("get", seed, n)

    async def count(self) -> int:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self._prefix) + "session:*"

        async def scan() -> int:
            found = 0
            async for _ in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
                found += 1
            return found

        return await self._call("count", scan)


def _chunks(leases: Sequence[Lease], size: int) -> list[Sequence[Lease]]:
    return [leases[start : start + size] for start in range(0, len(leases), size)]


def _check_owner(owner: str) -> None:
    check_owner_and_duration(owner)


def _ms(value: int) -> int:
    check_owner_and_duration("-", value)
    return value


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return parts._replace(netloc=user + netloc).geturl()
    except ValueError:
        return "<unparsable redis URL>"
