"""``python -m harness.server_process``: the chaos harness's own reference server, run apart.

The harness starts it (``harness.servers.own_server``); it is not meant to be run by hand. It
is the reference server with two additions the harness needs and ``python -m reference.server``
must not have: randomness drawn from the run seed (each client's ``a`` and session seeds, so
``--replay`` sees the same numbers), and a store that reports every session it opens and
completes (so the harness recomputes every stateful checksum and confirms every "final frame
lost", spec/PROTOCOL.md §16.6). Besides its own port it listens on one port per client, so it
knows whose connection it serves.

It runs in a process of its own so that a server writing at full speed (``--interval 0``) and
the harness's proxy and supervision cannot starve one another on one event loop, and with the
reference server's collector policy (no automatic full collection).

Pipes, one JSON object per line:

* stdout: first ``{"port": P, "client_ports": {"1": P1, ...}}`` once every port listens; then
  ``{"opened": CLIENT_ID, "seed": SEED}`` for each session opened (the record in force: its seed
  is the truth) and ``{"completed": CLIENT_ID}`` for each session completed (FINAL written);
  and ``{"reply": TOKEN, "held": N, "stats": {...}}`` for each request. Lines are written in
  the order things happened, so a reply follows every event that came before its request.
* stdin: one request per line, its token (any text). EOF ends the server (exit status 0).
* stderr: the server's log, one JSON object per line (``reference.logs``).

Exit status 1 if the store cannot be opened, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextvars
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from reference.cli import non_negative_float, positive_int, run_program
from reference.gc_policy import run_server_gc_policy
from reference.logs import configure_logging
from reference.server import NumberServer, ServerConfig
from reference.store import StoreError, open_store, redacted_url

from .model import seeded_draw, seeded_stateless_a
from .recording import RecordingStore

log = logging.getLogger("harness.server_process")

HOST = "127.0.0.1"
_READ_SIZE = 4096

#: The client whose connection the server is handling: its own listener's client.
_CLIENT: contextvars.ContextVar[int] = contextvars.ContextVar("chaos_client", default=0)


class SeededRandomSource:
    """The harness server's randomness, drawn from the run seed, the client and how many draws
    that client's connections made: the same run seed gives every client the same ``a`` and
    session seeds, which is what makes ``--replay`` exact. ``python -m reference.server``
    keeps its cryptographic source."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._draws: dict[tuple[str, int], int] = {}

    def _next(self, what: str) -> tuple[int, int]:
        """The client of this connection and how many draws of ``what`` it made before."""
        key = (what, _CLIENT.get())
        count = self._draws.get(key, 0)
        self._draws[key] = count + 1
        return key[1], count

    def stateless_a(self) -> int:
        return seeded_stateless_a(self._seed, *self._next("a"))

    def session_seed(self) -> int:
        return seeded_draw(self._seed, "seed", *self._next("seed")).getrandbits(64)


def emit(doc: dict[str, Any]) -> None:
    """One line on stdout, flushed: the harness reads each as soon as it is written."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


class _ReportingStore(RecordingStore):
    """A recording store that also tells the harness (``emit``) what it records."""

    def opened(self, client_id: str, seed: int) -> None:
        emit({"opened": client_id, "seed": seed})

    def completed_session(self, client_id: str) -> None:
        emit({"completed": client_id})


async def _serve_client(
    server: NumberServer, client: int, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Client ``client``'s own port: its connections are handled with ``_CLIENT`` set."""

    async def handle(stream: SocketStream) -> None:
        _CLIENT.set(client)  # this connection's own task: its context is its own
        await server.handle(stream)

    async with await anyio.create_tcp_listener(local_host=HOST) as listener:
        task_status.started(int(listener.extra(SocketAttribute.local_port)))
        await listener.serve(handle)


async def _answer_requests(server: NumberServer, store: RecordingStore) -> None:
    """Answer each stdin line with the sessions held and the server's stats; return at EOF."""
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)
    pending = b""
    while True:
        await anyio.wait_readable(fd)
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            continue
        if not data:
            return
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            try:
                held: int | None = await store.count()
            except StoreError:
                held = None
            stats = dataclasses.asdict(server.stats)
            emit({"reply": line.decode("utf-8", "replace"), "held": held, "stats": stats})


async def _run(args: argparse.Namespace) -> int:
    try:
        inner = await open_store(args.store)
    except (StoreError, ValueError) as exc:
        log.error("cannot open session store %s: %s", redacted_url(args.store), exc)
        return 1
    store = _ReportingStore(inner)
    config = ServerConfig(host=HOST, interval=args.interval, session_ttl=args.session_ttl)
    server = NumberServer(config, store, random_source=SeededRandomSource(args.seed))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(run_server_gc_policy)
            port: int = await tg.start(server.serve)
            client_ports = {}
            for client in range(1, args.clients + 1):
                client_ports[str(client)] = await tg.start(_serve_client, server, client)
            emit({"port": port, "client_ports": client_ports})
            await _answer_requests(server, store)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness.server_process",
        description="The chaos harness's own reference server (started by the harness).",
    )
    parser.add_argument("--seed", type=int, required=True, help="run seed")
    parser.add_argument("--clients", type=positive_int, default=1, help="clients 1..K")
    parser.add_argument("--interval", type=non_negative_float, default=0.01, metavar="S")
    parser.add_argument("--session-ttl", type=non_negative_float, default=30.0, metavar="S")
    parser.add_argument("--store", default="memory://", metavar="STORE")
    parser.add_argument("--log-level", default="warning")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, log_format="json")
    return run_program(
        _run, args, prog="harness.server_process", backend="asyncio", on_signal=lambda _: 0
    )


if __name__ == "__main__":
    sys.exit(main())
