"""Which sessions a shared Redis store completed, heard from Redis itself (keyspace notifications).

Only COMPLETE deletes a session key with DEL (spec/STORE-REDIS.md §4 and §5: an expiry is an
``expired`` event), so a ``del`` of ``{prefix}session:{client_id}`` shows that some server wrote
that client's FINAL and completed its session (spec/PROTOCOL.md §16.6). One exception: Redis
also reports ``del`` when PEXPIRE is given 0 ms, which RELEASE (or OPEN_SESSION, CLAIM) does
with a TTL (or lease) of 0; those scripts HSET the key just before, while COMPLETE follows a
PEXPIRE of a positive lease (an ``expire`` event) or nothing. A script runs without interleaving,
and Redis delivers one connection's messages in order, so a ``del`` whose key's last event was
``hset`` was an expiry, not a completion.

Polling the store misses a session that opens and completes between two reads; a subscription
misses nothing while it is up, and a PING on the subscribing connection is a barrier: Redis
answers it only after every notification of a command it ran before.

Redis publishes these events only when its ``notify-keyspace-events`` setting has ``E``
(keyevent channels), ``g`` (generic commands: DEL, PEXPIRE) and ``h`` (hash commands), or ``A``
for both. The harness's own redis-server is started with them; a Redis the user names is left as
it is configured, and without them :meth:`SessionDeletions.run` reports ``False`` and the
harness falls back to polling.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque

import anyio
from anyio.abc import TaskStatus

from reference.store.redis import DEFAULT_PREFIX

from .conformance.resp import Resp, RespError, parse_redis_url, redact

log = logging.getLogger("harness.keyevents")

#: Flags the harness's own redis-server is started with: keyevent channels (E) for generic
#: commands (g: DEL, PEXPIRE), hash commands (h: HSET) and expiries (x).
NOTIFY_FLAGS = "Eghx"
#: The keyevent channels listened to (the event names Redis publishes).
EVENTS = ("del", "expire", "hset", "expired")
#: Longest wait for a barrier's answer: a Redis frozen by ``--store-pause-*`` answers late.
SYNC_TIMEOUT = 10.0
#: Pause before subscribing again after the connection broke (a restarted Redis, say).
RECONNECT_PAUSE = 0.05


def publishes_deletions(flags: str) -> bool:
    """Whether a ``notify-keyspace-events`` value publishes DEL, PEXPIRE and HSET on the
    keyevent channels."""
    every = "A" in flags
    return "E" in flags and (every or "g" in flags) and (every or "h" in flags)


class SessionDeletions:
    """Subscribes to ``__keyevent@DB__:del`` on the store at ``url`` and remembers which session
    keys were deleted, and since when the subscription has been up without a break.

    ``url``: the servers' ``redis://`` store URL (its ``?prefix=`` names the key prefix,
    ``nsp:v1:`` by default, PROTOCOL.md Appendix B). Times are ``anyio.current_time()`` seconds.
    """

    def __init__(self, url: str) -> None:
        address = parse_redis_url(url)
        self._url = url
        self._channels = [f"__keyevent@{address.db}__:{event}" for event in EVENTS]
        self._key_prefix = f"{address.prefix or DEFAULT_PREFIX}session:"
        #: Client ids whose session was completed (its key deleted by DEL), with the time each
        #: deletion was heard.
        self.deleted: dict[str, float] = {}
        #: The last event heard for each session key still in the store.
        self._last: dict[str, bytes] = {}
        #: When the current subscription was confirmed; None while there is none.
        self._up_since: float | None = None
        self._resp: Resp | None = None
        self._pongs: deque[anyio.Event] = deque()
        self._send_lock = anyio.Lock()
        self._subscribed = anyio.Event()

    @property
    def up_since(self) -> float | None:
        """When the current subscription was confirmed (None while there is none)."""
        return self._up_since

    async def wait_subscribed(self) -> float:
        """Wait until subscribed (at once if already); returns :attr:`up_since`."""
        while self._up_since is None:
            await self._subscribed.wait()
        return self._up_since

    async def run(self, *, task_status: TaskStatus[bool] = anyio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled, stay subscribed (subscribing again after a broken connection).

        Reports ``True`` to ``task_status`` once subscribed, or ``False`` (and returns) if the
        store cannot be reached or does not publish deletions: the caller then has no events.
        """
        try:
            await self._subscribe()
        except (RespError, OSError, TimeoutError, ValueError) as exc:
            log.warning(
                "cannot watch %s for completed sessions (%s): a lost FINAL is confirmed only "
                "if a poll of the store sees its session",
                redact(self._url),
                exc,
            )
            task_status.started(False)
            return
        task_status.started(True)
        try:
            while True:
                with contextlib.suppress(
                    RespError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError
                ):
                    await self._listen()
                await self._drop_connection()
                log.debug("keyspace events from %s broke; subscribing again", redact(self._url))
                while True:
                    await anyio.sleep(RECONNECT_PAUSE)
                    try:
                        await self._subscribe()
                        break
                    except (RespError, OSError, TimeoutError):
                        continue
        finally:
            await self._drop_connection()

    async def _subscribe(self) -> None:
        resp = await Resp.connect(self._url)
        try:
            config = await resp.call("CONFIG", "GET", "notify-keyspace-events")
            flags = ""
            if isinstance(config, list) and len(config) == 2 and isinstance(config[1], bytes):
                flags = config[1].decode(errors="replace")
            if not publishes_deletions(flags):
                raise RespError(
                    f"its notify-keyspace-events is {flags!r}; `CONFIG SET "
                    f"notify-keyspace-events {NOTIFY_FLAGS}` would let the harness confirm each"
                )
            await resp.send("SUBSCRIBE", *self._channels)
            with anyio.fail_after(5):
                for _ in self._channels:
                    await resp.reply()  # one confirmation per channel
        except BaseException:
            with anyio.CancelScope(shield=True):
                await resp.aclose()
            raise
        self._resp = resp
        self._up_since = anyio.current_time()
        self._subscribed.set()

    async def _listen(self) -> None:
        resp = self._resp
        assert resp is not None
        while True:
            message = await resp.reply()
            if not isinstance(message, list) or not message:
                continue
            kind = message[0]
            if kind == b"message" and len(message) == 3:
                channel, key = message[1], message[2]
                if isinstance(channel, bytes) and isinstance(key, bytes):
                    self._heard(channel.rpartition(b":")[2], key)
            elif kind == b"pong" and self._pongs:
                self._pongs.popleft().set()

    def _heard(self, event: bytes, raw_key: bytes) -> None:
        key = raw_key.decode(errors="surrogateescape")
        if not key.startswith(self._key_prefix):
            return
        if event == b"expired":
            self._last.pop(key, None)
        elif event != b"del":
            self._last[key] = event
        elif self._last.pop(key, None) != b"hset":  # after HSET: PEXPIRE of 0 ms, an expiry
            self.deleted.setdefault(key[len(self._key_prefix) :], anyio.current_time())

    async def _drop_connection(self) -> None:
        self._up_since = None
        self._last.clear()  # events missed while down: start afresh
        self._subscribed = anyio.Event()
        resp, self._resp = self._resp, None
        while self._pongs:  # nobody will answer them: wake their waiters (sync sees the break)
            self._pongs.popleft().set()
        if resp is not None:
            with anyio.CancelScope(shield=True):
                await resp.aclose()

    async def sync(self) -> float | None:
        """Barrier: wait until every deletion Redis made before now has been heard.

        Returns the time since which the subscription has been up without a break, or None
        if it is down, broke during the wait, or Redis did not answer in ``SYNC_TIMEOUT``.
        """
        resp, up_since = self._resp, self._up_since
        if resp is None or up_since is None:
            return None
        answered = anyio.Event()
        with anyio.move_on_after(SYNC_TIMEOUT):
            try:
                async with self._send_lock:
                    self._pongs.append(answered)
                    await resp.send("PING")
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            await answered.wait()
        if not answered.is_set() or self._up_since != up_since:
            return None
        return up_since

    async def completed(self, client_id: str, *, started_at: float | None) -> bool | None:
        """Whether the session of ``client_id`` was completed: True if its key was deleted;
        False if not although the subscription was up, without a break, from before the
        client started until now; None if that cannot be told."""
        up_since = await self.sync()
        if client_id in self.deleted:
            return True
        if up_since is not None and started_at is not None and up_since <= started_at:
            return False
        return None
