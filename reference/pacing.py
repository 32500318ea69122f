"""Pacing for many slow streams: one timer wheel per server, and what the kernel tells us.

At one number per second a server's job is to hold thousands of streams that each need a few
bytes now and then. Giving each stream its own timer (and a cancel scope around each write)
costs objects per number that the garbage collector then has to chase; here one task wakes once
per *tick*, reads the clock once, and calls every entry that has come due. An entry stays in its
wheel slot from one period to the next, so a steady stream allocates nothing to be scheduled.

A stream on the wheel needs no task of its own either: ``ClientWatch`` keeps the sockets of
all such streams in one epoll set, which the wheel polls (without waiting) once per tick, and
says which clients have sent bytes or left. A task per connection costs several kilobytes
(the task, its cancel scope and completion event, the chain of suspended coroutines, the
read it waits in); at 10,000 sessions that was most of the server's memory.

The module also holds the socket-level helpers the write path needs on Linux: the descriptor
behind an anyio stream, a non-blocking write that never waits, and ``unacked_bytes`` (SIOCOUTQ),
which says how much of what was written the peer's TCP has not acknowledged yet (spec §16.6:
FINAL is written only once that is zero).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import select
import socket
import struct
import termios
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import anyio
import anyio.abc

#: Seconds per wheel tick: the pacing resolution. A number is written at the first tick at or
#: after its deadline, so this bounds the lateness pacing itself adds.
DEFAULT_TICK = 0.004
#: Slots in the wheel; a deadline further out than slots x tick just waits another round.
DEFAULT_SLOTS = 1024
#: Seconds of work one wake-up of the wheel may do before it lets the event loop run the rest
#: (accepts, handshakes, connections that end): a wheel that fell behind, because the process
#: did not get the CPU, catches up in slices of about this length instead of holding the loop
#: for the whole backlog (seconds of it on a machine busy enough, with 20,000 streams, during
#: which no connection was accepted and no HELLO read).
DEFAULT_SLICE = 0.004

_INT = struct.Struct("i")


class Paced(Protocol):
    """Something the wheel calls when due; it keeps its own deadlines."""

    #: Set by the wheel: the tick this entry is filed under.
    due_tick: int

    def on_due(self, now: float) -> float | None:
        """Do what was due at ``now``; return the next deadline, or None to leave the wheel."""
        ...


class TimerWheel:
    """A hashed timer wheel driven by one task (``run``); entries are called in deadline order
    to within one tick, never before their deadline.

    Not thread-safe; everything runs on the event loop that runs ``run``.
    """

    def __init__(
        self,
        tick: float = DEFAULT_TICK,
        slots: int = DEFAULT_SLOTS,
        *,
        on_tick: Callable[[], None] | None = None,
        time_slice: float = DEFAULT_SLICE,
    ) -> None:
        """``on_tick`` (if given) is called once per wake-up, before the entries that are due.
        ``time_slice``: seconds of catching up (whole ticks) between two yields to the loop."""
        if tick <= 0 or slots < 2 or time_slice < 0:
            raise ValueError(
                "a wheel needs a positive tick, at least two slots and a time slice >= 0"
            )
        self._tick = tick
        self._slice = time_slice
        self._on_tick = on_tick
        self._slots: list[list[Paced]] = [[] for _ in range(slots)]
        self._origin = 0.0
        self._cursor = 0  # the next tick to process
        self._entries = 0
        self._running = False
        self._idle: anyio.Event | None = None
        #: Ticks processed and the largest number of entries one tick called (for benchmarks).
        self.ticks = 0
        self.busiest_tick = 0
        #: Wake-ups that left due ticks for the next one, to let the loop run other work.
        self.yields = 0

    @property
    def running(self) -> bool:
        return self._running

    def __len__(self) -> int:
        return self._entries

    def add(self, entry: Paced, deadline: float) -> None:
        """File ``entry`` to be called at ``deadline`` (anyio clock seconds). Needs ``run``."""
        if not self._running:
            raise RuntimeError("the wheel is not running")
        if self._idle is not None:
            # Idle, the cursor stood still: bring it to now first. Filed behind the cursor
            # that ``run`` would reach on waking, a past deadline would wait a whole round.
            now_tick = int((anyio.current_time() - self._origin) / self._tick)
            self._cursor = max(self._cursor, now_tick)
        self._file(entry, deadline, self._cursor)
        self._entries += 1
        if self._idle is not None:
            self._idle.set()
            self._idle = None

    def _file(self, entry: Paced, deadline: float, earliest: int) -> None:
        due = math.ceil((deadline - self._origin) / self._tick)
        due = max(due, earliest)
        entry.due_tick = due
        self._slots[due % len(self._slots)].append(entry)

    async def run(self) -> None:
        """Drive the wheel until cancelled; one clock read and at most one sleep per tick.

        A wake-up that finds several ticks due (the process was not scheduled in time) works
        through them in order, but yields to the event loop after each ``time_slice`` of it;
        the next wake-up, at once, reads the clock again and goes on where this one stopped.
        """
        tick = self._tick
        slots = self._slots
        size = len(slots)
        time_slice = self._slice
        self._origin = anyio.current_time()
        self._cursor = 0
        self._running = True
        try:
            while True:
                if self._entries == 0:
                    self._idle = anyio.Event()
                    await self._idle.wait()  # ``add`` brought the cursor to its time
                await anyio.sleep_until(self._origin + self._cursor * tick)
                now = anyio.current_time()
                if self._on_tick is not None:
                    self._on_tick()
                last = int((now - self._origin) / tick)
                yield_at = now + time_slice
                while self._cursor <= last:
                    cursor = self._cursor
                    index = cursor % size
                    bucket = slots[index]
                    slots[index] = []
                    called = 0
                    for entry in bucket:
                        if entry.due_tick > cursor:  # a later round of the wheel
                            slots[index].append(entry)
                            continue
                        called += 1
                        deadline = entry.on_due(now)
                        if deadline is None:
                            self._entries -= 1
                        else:
                            self._file(entry, deadline, cursor + 1)
                    self.busiest_tick = max(self.busiest_tick, called)
                    self._cursor = cursor + 1
                    self.ticks += 1
                    if self._cursor <= last and anyio.current_time() >= yield_at:
                        self.yields += 1
                        break  # the sleep above returns at once, after the loop's turn
        finally:
            self._running = False


_Entry = TypeVar("_Entry")


class ClientWatch(Generic[_Entry]):
    """Many sockets whose peers should send nothing: one epoll set, polled without waiting.

    ``poll`` returns each watched socket whose peer has sent a byte (True) or closed or reset
    the connection (False), with the entry it was added with, and stops watching it. The byte
    read to tell the two apart is consumed. Linux only (``available``). Not thread-safe.
    """

    available = hasattr(select, "epoll")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._entries: dict[int, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, fd: int, entry: _Entry) -> None:
        """Watch ``fd`` (a non-blocking stream socket) for ``entry``. Raises OSError if closed."""
        self._epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        self._entries[fd] = entry

    def discard(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed, so a reused number is not mistaken)."""
        if self._entries.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def entries(self) -> list[_Entry]:
        """Every entry still watched."""
        return list(self._entries.values())

    def poll(self) -> list[tuple[_Entry, bool]]:
        """The entries whose peer sent a byte (True) or left (False) since the last poll."""
        heard: list[tuple[_Entry, bool]] = []
        for fd, _ in self._epoll.poll(0):
            entry = self._entries.get(fd)
            if entry is None:
                continue
            try:
                sent = bool(os.read(fd, 1))
            except BlockingIOError:
                continue  # nothing after all
            except OSError:
                sent = False  # reset
            self.discard(fd)
            heard.append((entry, sent))
        return heard

    def close(self) -> None:
        self._entries.clear()
        self._epoll.close()


# --- the socket underneath -------------------------------------------------------------------


def socket_fd(stream: anyio.abc.ByteStream) -> int | None:
    """The descriptor of a TCP stream, or None for anything else (test doubles, TLS...)."""
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if raw is None or raw.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return int(raw.fileno())


def limit_send_buffer(stream: anyio.abc.ByteStream, size: int) -> None:
    """Cap the kernel's send buffer, so writes cannot run far ahead of what the peer takes."""
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if raw is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def write_now(fd: int, data: bytes | memoryview) -> int:
    """Write what the kernel takes without waiting; returns the count (0 if its buffer is full).

    Raises OSError when the connection is broken (EPIPE, ECONNRESET...).
    """
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


def unacked_bytes(fd: int) -> int:
    """Bytes written to the socket that the peer's TCP has not acknowledged (Linux SIOCOUTQ).

    0 where the kernel cannot say (the caller then cannot wait for acknowledgement).
    """
    try:
        buffer = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(_INT.unpack(buffer)[0])
