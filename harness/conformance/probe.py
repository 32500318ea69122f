"""A suite-side TCP connection to the server under test, recording every byte both ways."""

from __future__ import annotations

import socket
import struct
import time

import anyio
from anyio.abc import SocketAttribute, SocketStream

from . import wire
from .model import Check

HOST = "127.0.0.1"

#: What :meth:`Probe.event` can return besides a frame.
EOF = "EOF"
RESET = "RESET"
TIMEOUT = "TIMEOUT"

Event = wire.Frame | str


def describe(event: Event) -> str:
    return event.describe() if isinstance(event, wire.Frame) else event


class Probe:
    """One connection from the suite to the server under test."""

    def __init__(self, port: int, check: Check) -> None:
        self.port = port
        self.check = check
        self.conn = 0
        self.stream: SocketStream | None = None
        self.buffer = wire.FrameBuffer()
        self.closed_by_peer = False

    async def __aenter__(self) -> Probe:
        with anyio.fail_after(5):
            self.stream = await anyio.connect_tcp(HOST, self.port)
        self.conn = self.check.new_connection()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.stream is not None:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()
            self.stream = None

    async def reset(self) -> None:
        """Abort the connection with an RST (SO_LINGER 0) instead of a FIN."""
        if self.stream is None:
            return
        raw: socket.socket = self.stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.close()

    async def send(self, data: bytes) -> None:
        assert self.stream is not None
        self.check.record(self.conn, "sent", data)
        await self.stream.send(data)

    async def send_eof(self) -> None:
        assert self.stream is not None
        await self.stream.send_eof()

    async def event(self, within: float) -> Event:
        """The next complete frame, or EOF / RESET / TIMEOUT (or a text saying the connection
        ended inside a frame). A header announcing more than MAX_PAYLOAD raises
        :class:`wire.OversizedFrameError`."""
        assert self.stream is not None
        deadline = time.monotonic() + within
        while True:
            found = self.buffer.next()
            if found is not None:
                return found
            if self.closed_by_peer:
                return EOF
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return TIMEOUT
            try:
                with anyio.fail_after(remaining):
                    chunk = await self.stream.receive()
            except TimeoutError:
                return TIMEOUT
            except anyio.EndOfStream:
                self.closed_by_peer = True
                if self.buffer.data:
                    return f"EOF inside a frame ({len(self.buffer.data)} bytes buffered)"
                return EOF
            except (anyio.BrokenResourceError, OSError):
                self.closed_by_peer = True
                return RESET
            self.check.record(self.conn, "received", chunk)
            self.buffer.feed(chunk)

    async def sleep_reading(self, seconds: float) -> list[wire.Frame]:
        """Keep reading for ``seconds``; return the frames that came."""
        frames: list[wire.Frame] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            event = await self.event(remaining)
            if isinstance(event, wire.Frame):
                frames.append(event)
            elif event != TIMEOUT:
                break
        return frames
