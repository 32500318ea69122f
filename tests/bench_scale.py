"""Scale benchmark: ``nox -s bench-scale`` (or ``python -m tests.bench_scale``). Asserts nothing.

Many 1 Hz sessions against one server process, the way issue 10 measures them:

* the server runs as its own process (``python -m reference.server`` by default, or any command
  given with ``--server-cmd``, such as the Go server), on the backend and store asked for;
* the load comes from this module's own generator: worker processes that speak the protocol over
  raw non-blocking sockets (one epoll loop each, thousands of sessions per process), half of the
  sessions stateless and half stateful;
* lateness is taken from *kernel receive timestamps* (SO_TIMESTAMPNS), against the schedule the
  WELCOME announces (number j due ``j x interval`` after the WELCOME arrived), so a busy generator
  does not count its own delays against the server;
* every session runs to its FINAL frame and is verified (stateless: every value is ``a << i``;
  stateful: SHA-256 over the values equals the FINAL checksum);
* server CPU over the steady window from /proc; RSS per session as (RSS with every session
  streaming - RSS before the first connect) / sessions, both read the same way (VmRSS), with
  nothing done to the allocator in between (no ``malloc_trim``, no collection): what the
  ramp-up left allocated counts; the peak (VmHWM, the ramp's high-water mark) the same way;
  the cyclic collector's pauses from the server's own shutdown summary.
* and the marginal cost of a session: the RSS growth from half to all of the sessions open,
  over the growth in open descriptors (so memory the start-up left free, which the first
  sessions reuse, does not flatter it);
* the server may hold sessions + 1,024 descriptors (its soft limit is raised where it can be),
  so a limit of the machine's shell is not mistaken for the server's.

Prints one table row per (backend, sessions) and writes a plot of p99 lateness against sessions
per backend (``--plot``). Bounded in time: every run has a hard deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import itertools
import json
import os
import re
import secrets
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from reference.protocol import stateful_value

from .redis_fixture import RedisServerMissingError, free_port, redis_server

_HEADER = struct.Struct(">BH")
_U32 = struct.Struct(">I")
_TIMESPEC = struct.Struct("@ll")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
#: Linux's value; the socket module exports it only on some builds.
_SO_TIMESTAMPNS = int(getattr(socket, "SO_TIMESTAMPNS", 35))
_WELCOME, _DATA, _FINAL, _ERROR = 0x02, 0x03, 0x04, 0x05
_STATELESS, _STATEFUL = 1, 2


# --- the load generator (one worker process) -----------------------------------------------------


@dataclass(slots=True, eq=False)
class _Session:
    sock: socket.socket
    stateful: bool
    n: int
    hello: bytes
    buffer: bytearray = field(default_factory=bytearray)
    welcome_at: float = -1.0
    interval: float = 0.0
    a: int = 0
    index: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    ok: bool | None = None
    why: str = ""
    opened_at: float = 0.0


def _hello(stateful: bool, n: int) -> bytes:
    if stateful:
        payload = struct.pack(">BBBII", 1, _STATEFUL, 0, n, 0) + str(uuid.uuid4()).encode()
    else:
        payload = struct.pack(">BBBIII", 1, _STATELESS, 0, n, 0, 0)
    return _HEADER.pack(0x01, len(payload)) + payload


def _kernel_time(ancdata: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
            seconds, nanos = _TIMESPEC.unpack_from(data)
            return float(seconds + nanos / 1e9)
    return time.time()


def _consume(session: _Session, stamp: float, lateness: list[float], steady_from: float) -> None:  # noqa: C901 (a frame parser in a benchmark: one branch per frame type)
    """Parse whole frames from the session's buffer; record lateness; verify at FINAL.

    The kernel stamps a read with the arrival of its *last* segment, so only the last frame
    of a read has a known arrival time: when the generator itself fell behind and one read
    holds two numbers, the earlier one is not counted (its lateness would be the generator's).
    """
    buffer = session.buffer
    while len(buffer) >= 3:
        kind, length = _HEADER.unpack_from(buffer)
        if len(buffer) < 3 + length:
            return
        payload = bytes(buffer[3 : 3 + length])
        del buffer[: 3 + length]
        if kind == _WELCOME:
            _, _, _, _, next_index, interval_ms, a, _ = struct.unpack(">BBBIIIII", payload)
            session.welcome_at = stamp
            session.interval = interval_ms / 1000
            session.a = a
            session.index = next_index
        elif kind in (_DATA, _FINAL):
            (index,) = _U32.unpack_from(payload)
            if index != session.index:
                session.ok, session.why = False, f"index {index} where {session.index} was due"
                return
            if stamp >= steady_from and len(buffer) == 0:
                lateness.append(stamp - (session.welcome_at + index * session.interval))
            if session.stateful:
                value = _U32.unpack_from(payload, 4)[0]
                session.digest.update(_U32.pack(value))
                if kind == _FINAL:
                    session.ok = session.digest.digest() == payload[8:40]
                    session.why = "" if session.ok else "checksum mismatch"
            else:
                value = int.from_bytes(payload[4:], "big")
                if value != session.a << index:
                    session.ok, session.why = False, f"value at {index} is not a << {index}"
                    return
                if kind == _FINAL:
                    session.ok = index == session.n - 1
            session.index = index + 1
        elif kind == _ERROR:
            code = struct.unpack_from(">H", payload)[0]
            session.ok, session.why = False, f"ERROR {code}: {payload[2:].decode(errors='replace')}"
            return


def run_worker(  # noqa: C901 (benchmark worker: connect, pace, read and report in one readable loop)
    port: int, sessions: int, rate: float, n: int, stateful_every: int
) -> dict[str, Any]:
    """Open ``sessions`` sessions at ``rate`` per second, read them to the end; a JSON report."""
    selector = selectors.DefaultSelector()
    lateness: list[float] = []
    done: list[_Session] = []
    live: dict[int, _Session] = {}
    connect_failures = 0
    started = time.monotonic()
    ramp = sessions / rate
    steady_from = time.time() + ramp + 1.0  # count lateness once every session is streaming
    deadline = started + ramp + n * 1.0 + 30.0
    opened = 0
    hello_delays: list[float] = []  # connect() to HELLO sent: the generator's or the kernel's
    busiest = 0.0  # the generator's longest turn (its own lateness, not the server's)
    while (opened < sessions or live) and time.monotonic() < deadline:
        turn_start = time.monotonic()
        due = min(sessions, int((turn_start - started) * rate) + 1)
        while opened < due:
            stateful = opened % stateful_every == 0
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            sock.setblocking(False)
            session = _Session(sock, stateful, n, _hello(stateful, n), opened_at=time.monotonic())
            opened += 1
            code = sock.connect_ex(("127.0.0.1", port))
            if code not in (0, errno.EINPROGRESS):
                connect_failures += 1
                sock.close()
                continue
            live[sock.fileno()] = session
            selector.register(sock, selectors.EVENT_WRITE, session)
        ready = selector.select(timeout=0.01)
        turn_start = time.monotonic()  # the wait is not the generator's lateness
        for key, events in ready:
            session = key.data
            sock = session.sock
            if events & selectors.EVENT_WRITE:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    connect_failures += 1
                    session.ok, session.why = False, "connect failed"
                else:
                    try:
                        sock.send(session.hello)  # 31 or 51 bytes: always taken whole
                        hello_delays.append(time.monotonic() - session.opened_at)
                    except OSError as exc:
                        session.ok, session.why = False, f"HELLO not sent: {exc}"
                if session.ok is None:
                    selector.modify(sock, selectors.EVENT_READ, session)
                    continue
            else:
                try:
                    data, ancdata, _, _ = sock.recvmsg(65536, _CMSG_SPACE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data, ancdata = b"", []
                    session.why = str(exc)
                if data:
                    session.buffer += data
                    _consume(session, _kernel_time(ancdata), lateness, steady_from)
                elif session.ok is None:
                    session.ok = False
                    session.why = session.why or f"closed after {session.index}/{n} numbers"
                if session.ok is None:
                    continue
            selector.unregister(sock)
            del live[sock.fileno()]
            sock.close()
            done.append(session)
        busiest = max(busiest, time.monotonic() - turn_start)
    for session in live.values():
        _drain(session, lateness, steady_from)  # what arrived before the deadline counts
        if session.ok is None:
            got = "no WELCOME" if session.welcome_at < 0 else f"{session.index}/{n} numbers"
            session.ok, session.why = False, f"unfinished at the deadline ({got})"
        done.append(session)
        session.sock.close()
    failures: dict[str, int] = {}
    for session in done:
        if not session.ok:
            reason = re.sub(r"\d+", "#", session.why)
            failures[reason] = failures.get(reason, 0) + 1
    return {
        "sessions": sessions,
        "verified": sum(1 for s in done if s.ok),
        "connect_failures": connect_failures,
        "failures": failures,
        "lateness_ms": [round(x * 1000, 2) for x in lateness],
        "hello_delay_max_s": round(max(hello_delays, default=0.0), 3),
        "hellos_after_1s": sum(1 for x in hello_delays if x > 1.0),
        "generator_busiest_s": round(busiest, 3),
    }


def _drain(session: _Session, lateness: list[float], steady_from: float) -> None:
    """Read what the kernel already holds for a session, without waiting."""
    while session.ok is None:
        try:
            data, ancdata, _, _ = session.sock.recvmsg(65536, _CMSG_SPACE)
        except OSError:
            return
        if not data:
            return
        session.buffer += data
        _consume(session, _kernel_time(ancdata), lateness, steady_from)


# --- the floor: a bare asyncio server writing the same frames ------------------------------------


class _BareSession(asyncio.Protocol):
    """The least a server can do per session: one timer and one write per number."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) < 3 or self.transport is None:
            return
        _, mode, _, n, _ = struct.unpack_from(">BBBII", self.buffer, 3)
        loop = asyncio.get_running_loop()
        self.n = n
        self.stateful = mode == _STATEFUL
        self.a = 0 if self.stateful else secrets.randbelow(255) + 1
        self.seed = secrets.randbits(64)
        self.digest = hashlib.sha256()
        welcome = struct.pack(
            ">BBBIIIII", 1, mode, 0, n, 0, 1000, self.a, 30000 if self.stateful else 0
        )
        self.transport.write(_HEADER.pack(_WELCOME, len(welcome)) + welcome)
        self.t0 = loop.time()
        self.send(0)

    def send(self, index: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        final = index == self.n - 1
        kind = _FINAL if final else _DATA
        if self.stateful:
            value = stateful_value(self.seed, index)
            self.digest.update(_U32.pack(value))
            tail = self.digest.digest() if final else b""
            payload = struct.pack(">II", index, value) + tail
        else:
            value = self.a << index
            payload = _U32.pack(index) + value.to_bytes((value.bit_length() + 7) // 8, "big")
        transport.write(_HEADER.pack(kind, len(payload)) + payload)
        if final:
            transport.close()
        else:
            asyncio.get_running_loop().call_at(self.t0 + index + 1, self.send, index + 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _bare_server(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_BareSession, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


# --- interval 0: full-length streams against a bare writer/reader moving the same bytes ---------


def _bare_writer(port: int, stateful: bool, n: int) -> None:
    """Accept one connection, read its HELLO, write WELCOME and the n frames in 64 KB batches."""
    with socket.create_server(("127.0.0.1", port)) as server:
        print("ready", flush=True)
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            a = 255
            mode = _STATEFUL if stateful else _STATELESS
            welcome = struct.pack(">BBBIIIII", 1, mode, 0, n, 0, 0, 0 if stateful else a, 0)
            batch = [_HEADER.pack(_WELCOME, len(welcome)) + welcome]
            size = 0
            digest = hashlib.sha256()
            seed = 0x0123456789ABCDEF
            for index in range(n):
                kind = _FINAL if index == n - 1 else _DATA
                if stateful:
                    value = stateful_value(seed, index)
                    digest.update(_U32.pack(value))
                    tail = digest.digest() if kind == _FINAL else b""
                    payload = struct.pack(">II", index, value) + tail
                else:
                    value = a << index
                    payload = _U32.pack(index) + value.to_bytes((value.bit_length() + 7) // 8)
                frame = _HEADER.pack(kind, len(payload)) + payload
                batch.append(frame)
                size += len(frame)
                if size >= 65536:
                    conn.sendall(b"".join(batch))
                    batch, size = [], 0
            conn.sendall(b"".join(batch))


def _bare_reader(port: int, stateful: bool, n: int) -> None:
    """Send a HELLO, then read to EOF and discard: the least a client can do."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_hello(stateful, n))
        while sock.recv(1 << 20):
            pass


def _timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def _with_reference_server(backend: str, client_argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (server + client) of one client run against a fresh server."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reference.server",
            "--port",
            str(port),
            "--interval",
            "0",
            "--backend",
            backend,
            "--log-level",
            "error",
        ],
    )
    try:
        _wait_listening(port, 15)
        cpu0 = _proc_cpu_seconds(server.pid)
        wall, cpu = _timed([arg.replace("{port}", str(port)) for arg in client_argv])
        return wall, cpu + _proc_cpu_seconds(server.pid) - cpu0
    finally:
        server.terminate()
        server.wait()


def interval_zero(repeat: int, backend: str, console: Console) -> None:
    """Best of ``repeat`` interleaved runs per variant, each as two processes: the reference
    server with the reference client, the reference server with the bare reader, and the bare
    writer with the bare reader (the floor) moving the same bytes."""
    table = Table(title=f"Interval 0, n = 65535, two processes, best of {repeat} ({backend})")
    for name in ("variant", "pair", "wall s", "CPU s", "wall / floor", "CPU / floor", "load"):
        table.add_column(name, justify="left" if name in ("variant", "pair") else "right")
    n = 65535
    for stateful in (False, True):
        mode = "stateful" if stateful else "stateless"
        reader = [
            sys.executable,
            "-m",
            "tests.bench_scale",
            "--bare-reader",
            "{port}",
            mode,
            str(n),
        ]
        client = [
            sys.executable,
            "-m",
            "reference.client",
            "--port",
            "{port}",
            "--mode",
            mode,
            "-n",
            str(n),
            "--backend",
            backend,
            "--log-level",
            "warning",
        ]
        best: dict[str, tuple[float, float]] = {}
        for _ in range(repeat):
            runs = {
                "reference server + client": _with_reference_server(backend, client),
                "reference server + bare reader": _with_reference_server(backend, reader),
            }
            port = free_port()
            writer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.bench_scale",
                    "--bare-writer",
                    str(port),
                    mode,
                    str(n),
                ],
                stdout=subprocess.PIPE,
            )
            assert writer.stdout is not None
            writer.stdout.readline()  # "ready"
            cpu0 = _proc_cpu_seconds(writer.pid)
            wall, cpu = _timed([arg.replace("{port}", str(port)) for arg in reader])
            runs["bare writer + bare reader (floor)"] = (
                wall,
                cpu + _proc_cpu_seconds(writer.pid) - cpu0,
            )
            writer.wait()
            for name, figures in runs.items():
                best[name] = min(best.get(name, figures), figures)
        floor = best["bare writer + bare reader (floor)"]
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        for name, (wall, cpu) in best.items():
            table.add_row(
                mode,
                name,
                f"{wall:.2f}",
                f"{cpu:.2f}",
                f"{wall / floor[0]:.2f}",
                f"{cpu / floor[1]:.2f}",
                load,
            )
    console.print(table)


# --- the driver --------------------------------------------------------------------------------


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_kb(pid: int, field: str = "VmRSS") -> int:
    """Resident set size in KiB (``VmHWM``: its high-water mark) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _when_open(pid: int, descriptors: int, until: float) -> tuple[int, int]:
    """(open descriptors, RSS KiB) of the server once it holds ``descriptors`` (or at ``until``)."""
    while time.monotonic() < until:
        count = _open_descriptors(pid)
        if count >= descriptors:
            return count, _proc_rss_kb(pid)
        time.sleep(0.05)
    return _open_descriptors(pid), _proc_rss_kb(pid)


def _descriptors_for(sessions: int) -> Any:
    """A ``preexec_fn`` that lets the server hold ``sessions`` + 1,024 descriptors, as far as
    the process may raise its own limits (root may raise the hard one too)."""

    def raise_limit() -> None:
        import resource

        want = sessions + 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= want:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    return raise_limit


def _wait_listening(port: int, within: float) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {within:g} s")


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(slots=True)
class RunResult:
    label: str
    sessions: int
    verified: int
    connect_failures: int
    failures: dict[str, int]
    p50: float
    p99: float
    p999: float
    maximum: float
    cpu_percent: float
    rss_per_session_kb: float
    gc: str
    load_average: str
    #: WARNING lines the server logged (lease refreshes that failed, store errors...).
    server_warnings: int = 0
    #: (peak RSS - RSS before the first connect) / sessions: what the ramp-up needed at most.
    rss_peak_per_session_kb: float = 0.0
    #: RSS per connection between half and all of the sessions open (descriptors counted):
    #: what one more session costs, whatever the start-up left free for the first ones.
    rss_marginal_kb: float = float("nan")
    #: The distinct warnings (digits masked) and how often each was logged.
    warning_kinds: dict[str, int] = field(default_factory=dict)
    #: The generator's own lateness: the longest wait from connect() to HELLO sent (its turn,
    #: or the kernel finishing the TCP handshake late) and its longest turn, in seconds.
    hello_delay_max_s: float = 0.0
    hellos_after_1s: int = 0
    generator_busiest_s: float = 0.0
    #: Machine-wide TCP counters over the run (/proc/net/netstat): connections the kernel
    #: could not queue for accept() because the accept queue was full.
    listen_overflows: int = 0


def run_one(
    label: str,
    server_argv: list[str],
    port: int,
    sessions: int,
    *,
    workers: int,
    rate: float,
    window: float,
    nice: int = 0,
) -> RunResult:
    """One server process, ``sessions`` sessions; returns the figures of its steady window."""
    ramp = sessions / rate
    n = int(ramp + window + 6)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read back after the server exits
    overflows_before = _listen_overflows()
    server = subprocess.Popen(
        _niced(server_argv, nice),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        preexec_fn=_descriptors_for(sessions),  # this process runs no threads
    )
    try:
        _wait_listening(port, 15)
        time.sleep(0.5)
        rss_idle = _proc_rss_kb(server.pid)
        fds_idle = _open_descriptors(server.pid)
        share = [sessions // workers + (1 if i < sessions % workers else 0) for i in range(workers)]
        procs = [
            subprocess.Popen(
                _niced(
                    [
                        sys.executable,
                        "-m",
                        "tests.bench_scale",
                        "--worker",
                        str(port),
                        str(count),
                        str(rate / workers),
                        str(n),
                    ],
                    nice,
                ),
                stdout=subprocess.PIPE,
            )
            for count in share
            if count
        ]
        ramp_end = time.monotonic() + ramp + 1.5
        half = _when_open(server.pid, fds_idle + sessions // 2, ramp_end)
        time.sleep(max(0.0, ramp_end - time.monotonic()))
        cpu0, t0 = _proc_cpu_seconds(server.pid), time.monotonic()
        time.sleep(window / 2)
        rss_load = _proc_rss_kb(server.pid)
        fds_load = _open_descriptors(server.pid)
        time.sleep(window / 2)
        cpu1, t1 = _proc_cpu_seconds(server.pid), time.monotonic()
        rss_peak = _proc_rss_kb(server.pid, "VmHWM")
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=ramp + n + 60)
            reports.append(json.loads(out))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    stderr.seek(0)
    log_text = stderr.read().decode(errors="replace")
    stderr.close()
    match = re.search(r"gc: .*", log_text)
    lateness = sorted(x for report in reports for x in report["lateness_ms"])
    failures: dict[str, int] = {}
    for report in reports:
        for reason, count in report["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    return RunResult(
        label=label,
        sessions=sessions,
        verified=sum(r["verified"] for r in reports),
        connect_failures=sum(r["connect_failures"] for r in reports),
        failures=failures,
        p50=_percentile(lateness, 0.5),
        p99=_percentile(lateness, 0.99),
        p999=_percentile(lateness, 0.999),
        maximum=lateness[-1] if lateness else float("nan"),
        cpu_percent=100 * (cpu1 - cpu0) / (t1 - t0),
        rss_per_session_kb=(rss_load - rss_idle) / sessions,
        gc=match.group(0)[4:] if match else "not reported",
        load_average=load,
        server_warnings=log_text.count(" WARNING "),
        rss_peak_per_session_kb=(rss_peak - rss_idle) / sessions,
        rss_marginal_kb=(
            (rss_load - half[1]) / (fds_load - half[0]) if fds_load > half[0] else float("nan")
        ),
        warning_kinds=_warning_kinds(log_text),
        hello_delay_max_s=max(r["hello_delay_max_s"] for r in reports),
        hellos_after_1s=sum(r["hellos_after_1s"] for r in reports),
        generator_busiest_s=max(r["generator_busiest_s"] for r in reports),
        listen_overflows=_listen_overflows() - overflows_before,
    )


def _listen_overflows() -> int:
    """TcpExt ListenOverflows (Linux, machine-wide); 0 where it cannot be read."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for names, values in itertools.pairwise(lines):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return 0


def _warning_kinds(log_text: str) -> dict[str, int]:
    """Each distinct WARNING message of a server log (numbers masked), with its count."""
    kinds: dict[str, int] = {}
    for line in log_text.splitlines():
        if " WARNING " in line:
            text = re.sub(r"\d+", "#", line.split(" WARNING ", 1)[1].strip())[:120]
            kinds[text] = kinds.get(text, 0) + 1
    return kinds


def _niced(argv: list[str], nice: int) -> list[str]:
    """``argv`` run ``nice`` steps above normal scheduling priority (0: unchanged)."""
    return ["nice", "-n", str(-nice), *argv] if nice else argv


def _server_argv(
    template: str | None, backend: str, port: int, store: str, sessions: int
) -> list[str]:
    if template:
        return template.format(port=port, store=store, max=sessions + 100).split()
    if backend == "bare":
        return [sys.executable, "-m", "tests.bench_scale", "--bare-server", str(port)]
    return [
        sys.executable,
        "-m",
        "reference.server",
        "--port",
        str(port),
        "--backend",
        backend,
        "--store",
        store,
        "--max-connections",
        str(sessions + 100),
        "--log-level",
        "info",
    ]


def _plot(results: list[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(r.label for r in results):
        rows = [r for r in results if r.label == label]
        axes.plot([r.sessions for r in rows], [r.p99 for r in rows], marker="o", label=label)
    axes.axhline(50, color="grey", linestyle="--", linewidth=1, label="target p99 50 ms")
    axes.set_xlabel("concurrent 1 Hz sessions (half stateful)")
    axes.set_ylabel("p99 lateness (ms)")
    axes.set_yscale("log")
    axes.set_title("NSP server: p99 lateness against sessions, one process")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:  # noqa: C901 (benchmark CLI glue: one branch per option)
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--worker", nargs=4, metavar=("PORT", "SESSIONS", "RATE", "N"), help=argparse.SUPPRESS
    )
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--bare-writer", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--bare-reader", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--interval0",
        type=int,
        metavar="REPEAT",
        help="instead: full-length streams at interval 0 against the bare floor, best of "
        "REPEAT interleaved runs per variant (on the last of --backends)",
    )
    parser.add_argument(
        "--sessions",
        default="1000,5000,10000",
        help="comma-separated session counts (default 1000,5000,10000)",
    )
    parser.add_argument(
        "--backends",
        default="bare,asyncio,trio",
        help="comma-separated anyio backends, and 'bare' for the floor: a plain asyncio server "
        "writing the same frames (default bare,asyncio,trio)",
    )
    parser.add_argument(
        "--trio-max",
        type=int,
        default=5000,
        help="largest session count tried on trio (default 5000)",
    )
    parser.add_argument("--store", choices=["memory", "redis"], default="memory")
    parser.add_argument(
        "--window",
        type=float,
        default=20.0,
        help="steady seconds measured once every session streams (default 20)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="new sessions per second while ramping up (default 1000)",
    )
    parser.add_argument("--workers", type=int, default=2, help="load generator processes (2)")
    parser.add_argument(
        "--server-cmd",
        metavar="TEMPLATE",
        help="another server: a command with {port}, {store} and {max}, run "
        "instead of the Python server (the backend column then names it)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="run the server and the load generators N steps above normal priority (root "
        "only): on a machine shared with other busy work, gives each of them the CPU share "
        "an unshared machine would, for every backend alike (default 0)",
    )
    parser.add_argument("--label", default=None, help="name for --server-cmd rows")
    parser.add_argument(
        "--plot",
        type=Path,
        default=Path("bench-scale.png"),
        help="where to write the plot (default bench-scale.png)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.bare_server:
        asyncio.run(_bare_server(args.bare_server))
        return 0
    if args.bare_writer:
        _bare_writer(
            int(args.bare_writer[0]), args.bare_writer[1] == "stateful", int(args.bare_writer[2])
        )
        return 0
    if args.bare_reader:
        port, mode, n = args.bare_reader
        _bare_reader(int(port), mode == "stateful", int(n))
        return 0
    if args.interval0:
        interval_zero(args.interval0, args.backends.split(",")[-1], Console(width=200))
        return 0
    if args.worker:
        port, sessions, rate, n = args.worker
        report = run_worker(int(port), int(sessions), float(rate), int(n), stateful_every=2)
        json.dump(report, sys.stdout)
        return 0

    counts = [int(x) for x in args.sessions.split(",")]
    backends = [args.label or "custom"] if args.server_cmd else args.backends.split(",")
    results: list[RunResult] = []
    console = Console(width=200)
    with contextlib.ExitStack() as stack:
        if args.store == "redis":
            try:
                store = stack.enter_context(redis_server())
            except RedisServerMissingError:
                console.print("redis-server is not installed")
                return 1
        else:
            store = "memory://"
        for backend in backends:
            for sessions in counts:
                if backend == "trio" and sessions > args.trio_max:
                    continue
                port = free_port()
                argv_ = _server_argv(args.server_cmd, backend, port, store, sessions)
                label = f"{backend} ({args.store})"
                console.print(f"[dim]running {label} with {sessions} sessions...[/dim]")
                result = run_one(
                    label,
                    argv_,
                    port,
                    sessions,
                    workers=args.workers,
                    rate=args.rate,
                    window=args.window,
                    nice=args.nice,
                )
                results.append(result)
                console.print(_table([result]))
                for text, count in result.warning_kinds.items():
                    console.print(f"  server warning x{count}: {text}", markup=False)
                console.print(
                    f"  generator: HELLO sent up to {result.hello_delay_max_s:.2f} s after "
                    f"connect() ({result.hellos_after_1s} over 1 s), longest turn "
                    f"{result.generator_busiest_s:.2f} s; accept "
                    f"queue overflows (machine-wide) {result.listen_overflows}",
                    markup=False,
                )
    console.print(_table(results))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    try:
        _plot(results, args.plot)
        console.print(f"plot written to {args.plot}")
    except ImportError:
        console.print("matplotlib is not installed: no plot (nox -s bench-scale installs it)")
    return 0


def _table(results: list[RunResult]) -> Table:
    table = Table(
        title="1 Hz sessions against one server process (lateness from kernel "
        "receive timestamps, steady window)"
    )
    for name in (
        "server (store)",
        "sessions",
        "verified",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "server CPU %",
        "RSS/session KB: all / marginal / peak",
        "GC pauses",
        "server warnings",
        "load avg",
    ):
        table.add_column(
            name, justify="left" if name in ("server (store)", "GC pauses") else "right"
        )
    for r in results:
        verified = f"{r.verified}"
        if r.failures:
            verified += " " + ", ".join(f"{k} x{v}" for k, v in r.failures.items())
        table.add_row(
            r.label,
            str(r.sessions),
            verified,
            f"{r.p50:.1f}",
            f"{r.p99:.1f}",
            f"{r.p999:.1f}",
            f"{r.maximum:.1f}",
            f"{r.cpu_percent:.0f}",
            f"{r.rss_per_session_kb:.1f} / {r.rss_marginal_kb:.1f} / "
            f"{r.rss_peak_per_session_kb:.1f}",
            r.gc,
            str(r.server_warnings),
            r.load_average,
        )
    return table


if __name__ == "__main__":
    raise SystemExit(main())
