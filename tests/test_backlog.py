"""Issue 12: a slow reader at interval 0, cut at a random point, verifies or loses only FINAL.

The server writes FINAL only once the client's TCP has acknowledged every earlier byte (spec
§16.6). The client here reads through a plain socket with a small receive buffer, a few bytes at
a time, so "acknowledged" means "read, or waiting in that small buffer". Consequences checked
against the byte count alone (no timing):

* whatever the cut, the client either verifies its checksum after resuming, or reports the
  final frame lost (and then the server really completed the session);
* a cut landing more than one receive buffer before the FINAL frame cannot be a lost FINAL: the
  server had not written it yet, so the session was released and the resume verifies.

A server that writes ahead of the client (the old behaviour) completes the session long before
such a cut, and fails the second check.
"""

from __future__ import annotations

import dataclasses
import random
import shlex
import socket
import sys
import uuid

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from harness.chaos import run_chaos
from harness.model import ChaosOptions, ClientPhase
from proxy import FaultKind, ScheduledFault
from reference.client import Backoff, ClientConfig, run_client
from reference.protocol import Mode
from reference.server import ServerConfig

from .oracle import session_checksum
from .support import FixedRandom, running_server

pytestmark = pytest.mark.anyio

N = 2000
SEED = 0x0123456789ABCDEF
WELCOME_BYTES = 3 + 23
DATA_BYTES = 3 + 8
FINAL_BYTES = 3 + 8 + 32
#: Bytes of the first connection before its FINAL frame.
BEFORE_FINAL = WELCOME_BYTES + (N - 1) * DATA_BYTES
RECEIVE_BUFFER = 2048  # asked for; the kernel doubles it and reports what it granted
CHUNK = 96  # bytes per read: a reader far slower than the server


class SlowCutSocket(anyio.abc.ByteStream):
    """A client socket read ``CHUNK`` bytes at a time, cut after ``limit`` bytes.

    A plain non-blocking socket (no transport reading ahead into user space), so unread bytes
    stay in the kernel's small receive buffer; the cut closes it with those bytes unread.
    """

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self.sock = sock
        self.remaining = limit

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.remaining <= 0:
            self.sock.close()
            raise anyio.EndOfStream
        while True:
            try:
                data = self.sock.recv(min(max_bytes, CHUNK, self.remaining))
            except BlockingIOError:
                await anyio.wait_readable(self.sock)
                continue
            if not data:
                raise anyio.EndOfStream
            self.remaining -= len(data)
            await anyio.lowlevel.checkpoint()  # one chunk per turn of the event loop
            return data

    async def send(self, item: bytes) -> None:
        self.sock.sendall(item)  # a HELLO of 51 bytes into an empty socket: never blocks

    async def send_eof(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        self.sock.close()


async def _slow_cut_connect(port: int, limit: int) -> tuple[SlowCutSocket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setblocking(False)
    try:
        sock.connect(("127.0.0.1", port))
    except BlockingIOError:
        await anyio.wait_writable(sock)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return SlowCutSocket(sock, limit), granted


async def _run(cut: int) -> None:
    config = ServerConfig(interval=0.0, session_ttl=30.0)
    async with running_server(config, random_source=FixedRandom(seeds=[SEED])) as (server, port):
        granted = 0
        first = True

        async def connect(host: str, port_: int) -> anyio.abc.ByteStream:
            nonlocal first, granted
            if not first:
                return await anyio.connect_tcp(host, port_)
            first = False
            stream, granted = await _slow_cut_connect(port_, cut)
            return stream

        client = ClientConfig(
            port=port,
            mode=Mode.STATEFUL,
            n=N,
            client_id=str(uuid.uuid4()),
            backoff=Backoff(initial=0.01, maximum=0.05, max_retries=20),
        )
        result = await run_client(client, connect=connect)
    where = f"cut after {cut} bytes, receive buffer {granted}, FINAL at byte {BEFORE_FINAL}"
    assert result.ok or result.final_frame_lost, f"{where}: {result}"
    if result.ok:
        assert result.checksum_computed == session_checksum(SEED, N), where
    else:
        assert server.stats.streams_completed == 1, f"{where}: FINAL lost but never written"
    if cut < BEFORE_FINAL - granted:
        assert result.ok, f"{where}: FINAL written before the client's TCP had the rest"


@pytest.mark.parametrize(
    "where",
    [0.05, 0.5, 0.9, "random-1", "random-2", "random-3"],
)
async def test_a_cut_slow_reader_verifies_or_loses_only_the_final_frame(where: object) -> None:
    seed = random.randrange(1 << 32)
    fraction = (
        random.Random(seed).random() if str(where).startswith("random") else float(str(where))
    )
    cut = WELCOME_BYTES + int(fraction * (BEFORE_FINAL - WELCOME_BYTES))
    print(f"reproduce with cut={cut} (seed {seed})")
    await _run(cut)


async def test_a_cut_right_before_final_verifies_or_reports_final_lost() -> None:
    """Cut within the last receive buffer: either outcome is allowed, nothing else."""
    await _run(BEFORE_FINAL - 200)
    await _run(BEFORE_FINAL)


# --- through the harness: its proxy's bounded buffering and its server's reports -----------------


@pytest.mark.parametrize(
    ("after", "outcome"),
    [(BEFORE_FINAL // 2, ClientPhase.VERIFIED), (BEFORE_FINAL + 20, ClientPhase.FINAL_LOST)],
    ids=["half-a-stream-before-final", "inside-final"],
)
async def test_a_drop_through_the_proxy_loses_final_only_within_what_the_proxy_holds(
    after: int, outcome: ClientPhase
) -> None:
    """The harness's proxy holds a few KiB of what a server wrote (harness/README.md) and its
    server writes FINAL only once every earlier byte is acknowledged: a drop 11 KB before
    FINAL leaves the session resumable and the client verifies; a drop inside the FINAL frame
    loses it, which the harness confirms from its server's report of completing the session
    (excused, unless --strict)."""
    drop = ScheduledFault(client=1, connection=1, after_bytes=after, kind=FaultKind.DROP)
    options = ChaosOptions(clients=1, mode="stateful", n=N, interval=0.0, seed=5, timeout=60)
    report = await run_chaos(options, schedule=[drop])
    (client,) = report.clients
    assert [fault.kind for fault in client.faults] == [FaultKind.DROP]
    assert client.phase is outcome, client.to_json()
    assert report.ok
    if outcome is ClientPhase.FINAL_LOST:
        assert client.reason is not None
        assert "the server completed the session" in client.reason
        strict = await run_chaos(dataclasses.replace(options, strict=True), schedule=[drop])
        assert strict.clients[0].phase is ClientPhase.FINAL_LOST
        assert not strict.ok


async def test_a_lost_final_is_confirmed_from_the_proxy_for_a_server_it_cannot_see() -> None:
    """A server subprocess with its own memory store shows the harness nothing of its sessions.
    The proxy read that server's whole stream, FINAL included, and the drop inside FINAL kept
    part of it from the client: the server wrote FINAL, so it completed the session (§16.6),
    and the loss is excused as with the harness's own server."""
    server = (
        f"{shlex.quote(sys.executable)} -m reference.server --port {{port}} "
        "--interval {interval} --session-ttl {ttl} --store {store} --log-level warning"
    )
    drop = ScheduledFault(
        client=1, connection=1, after_bytes=BEFORE_FINAL + 20, kind=FaultKind.DROP
    )
    options = ChaosOptions(
        clients=1, mode="stateful", n=N, interval=0.0, seed=5, timeout=60, server_cmd=(server,)
    )
    report = await run_chaos(options, schedule=[drop])
    (client,) = report.clients
    assert report.server["kind"] == "subprocess"
    assert client.phase is ClientPhase.FINAL_LOST, client.to_json()
    assert client.reason is not None
    assert "the server completed the session" in client.reason
    assert report.ok
