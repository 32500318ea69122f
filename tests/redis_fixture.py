"""Throwaway ``redis-server`` processes for tests: no persistence, loopback only, own temp dir.

* :func:`redis_server` is a plain context manager yielding ``redis://127.0.0.1:PORT/0``; it raises
  :class:`RedisServerMissingError` when no ``redis-server`` binary is on PATH.
* :func:`redis_server_or_skip` applies the test policy on top: a missing binary skips the test
  with a visible reason on a developer machine, and fails it when ``CI`` is set (CI must have it).

* :func:`redis_cluster` runs a Redis Cluster of throwaway masters (no replicas) with the slots
  split evenly among them, formed by hand (CLUSTER ADDSLOTS, CLUSTER MEET: no redis-cli needed);
  yields each master's ``(host, port)``.

A session-scoped pytest fixture is three lines::

    @pytest.fixture(scope="session")
    def redis_url() -> Iterator[str]:
        with redis_server_or_skip() as url:
            yield url
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.ports import free_ports

__all__ = [
    "RedisServerMissingError",
    "free_port",
    "redis_cluster",
    "redis_process",
    "redis_server",
    "redis_server_or_skip",
    "skip_without_redis",
]

_STARTUP_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 5


class RedisServerMissingError(RuntimeError):
    """No ``redis-server`` binary to start."""


def free_port() -> int:
    """A loopback TCP port nothing holds right now, outside the ephemeral range so that no
    outgoing connection takes it before the server binds it (another process asking for it by
    number still could)."""
    return free_ports(1)[0]


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start(
    exe: str, workdir: Path, startup_timeout: float, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], int]:
    """Start one server; retries with a new port if another process took the one we picked."""
    log = workdir / "redis.log"
    cluster = "--cluster-enabled" in extra
    for _ in range(_PORT_ATTEMPTS):
        log.unlink(missing_ok=True)
        port = _cluster_port() if cluster else free_port()
        argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        argv += ["no", "--dir", str(workdir), "--logfile", str(log), *extra]
        proc = subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + startup_timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if _pong(port):
                return proc, port
            time.sleep(0.02)
        _stop(proc)
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Address already in use" not in text:
            raise RuntimeError(
                f"redis-server on port {port} did not answer PING within {startup_timeout} s "
                f"(exit code {proc.returncode}); its log:\n{text[-2000:]}"
            )
    raise RuntimeError(f"no free port for redis-server after {_PORT_ATTEMPTS} attempts")


_CLUSTER_BUS_OFFSET = 10_000  # a cluster node also listens on port + 10000 (its cluster bus)
_SLOTS = 16_384


def _cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free as well."""
    while True:
        port = free_port()
        if port + _CLUSTER_BUS_OFFSET > 65_535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + _CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port


def _resp_command(port: int, *args: str) -> bytes:
    """Send one command as a RESP array and return its reply's first line or bulk body."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(out))
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        head, _, rest = reply.partition(b"\r\n")
        if head.startswith(b"-"):
            raise RuntimeError(f"redis on port {port}: {' '.join(args[:2])}: {head[1:].decode()}")
        if not head.startswith(b"$"):
            return head
        size = int(head[1:])
        while len(rest) < size:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return rest[:size]


@contextlib.contextmanager
def redis_cluster(
    masters: int = 3, *, startup_timeout: float = _STARTUP_TIMEOUT
) -> Iterator[list[tuple[str, int]]]:
    """Run a Redis Cluster of ``masters`` throwaway masters until the block ends.

    Slots are split into equal consecutive ranges, one per master; the block starts once every
    node reports ``cluster_state:ok`` and knows all the others. Raises RedisServerMissingError
    without a redis-server binary, RuntimeError if the cluster does not form in time.
    """
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisServerMissingError("redis-server is not on PATH")
    extra: tuple[str, ...] = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    extra += ("--cluster-node-timeout", "5000")
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for i in range(masters):
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"nsp-rc{i}-")))
            proc, port = _start(exe, workdir, startup_timeout, extra)
            stack.callback(_stop, proc)
            ports.append(port)
        for i, port in enumerate(ports):
            first, last = i * _SLOTS // masters, (i + 1) * _SLOTS // masters
            _resp_command(port, "CLUSTER", "ADDSLOTS", *map(str, range(first, last)))
        for port in ports[1:]:
            _resp_command(ports[0], "CLUSTER", "MEET", "127.0.0.1", str(port))
        deadline = time.monotonic() + startup_timeout
        while True:
            infos = [_resp_command(port, "CLUSTER", "INFO").decode() for port in ports]
            if all(
                "cluster_state:ok" in info and f"cluster_known_nodes:{masters}" in info
                for info in infos
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster on ports {ports} did not form: {infos}")
            time.sleep(0.05)
        yield [("127.0.0.1", port) for port in ports]


@contextlib.contextmanager
def redis_process(
    *, startup_timeout: float = _STARTUP_TIMEOUT
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a throwaway redis-server; yields its URL and process (to pause it, for outages)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisServerMissingError("redis-server is not on PATH")
    with tempfile.TemporaryDirectory(prefix="nsp-redis-") as tmp:
        proc, port = _start(exe, Path(tmp), startup_timeout)
        try:
            yield f"redis://127.0.0.1:{port}/0", proc
        finally:
            _stop(proc)


@contextlib.contextmanager
def redis_server(*, startup_timeout: float = _STARTUP_TIMEOUT) -> Iterator[str]:
    """Run a throwaway redis-server until the block ends; yields its ``redis://`` URL."""
    with redis_process(startup_timeout=startup_timeout) as (url, _):
        yield url


def skip_without_redis() -> None:
    """A missing binary skips the test on a developer machine and fails it under ``CI``."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the Redis-backed tests", pytrace=False)
        pytest.skip(reason)


@contextlib.contextmanager
def redis_server_or_skip(*, startup_timeout: float = _STARTUP_TIMEOUT) -> Iterator[str]:
    """:func:`redis_server`, but a missing binary skips (fails under ``CI``) the test."""
    skip_without_redis()
    with redis_server(startup_timeout=startup_timeout) as url:
        yield url
