"""Loopback ports for servers that are told their port on the command line.

A port from ``bind(port 0)`` is an *ephemeral* port: the kernel draws the local port of every
outgoing connection on the machine from the same range (``net.ipv4.ip_local_port_range``), so
between choosing it and the server binding it any ``connect()`` (a client, a Redis connection,
another test) may take it, and the server fails with "Address already in use". Ports below that
range are never handed out implicitly: only a process that asks for one by number can hold it.
:func:`free_ports` therefore chooses there, and checks each with a bind.
"""

from __future__ import annotations

import contextlib
import random
import socket

#: Lowest port chosen: clear of the registered ports most services use by default.
LOWEST = 20000
#: Linux's default ephemeral range, when /proc cannot say.
DEFAULT_EPHEMERAL = (32768, 60999)
_TRIES = 200


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range, inclusive (Linux's default where /proc is absent)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as file:
            low, high = (int(part) for part in file.read().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return low, high


def free_ports(count: int, host: str = "127.0.0.1", rng: random.Random | None = None) -> list[int]:
    """``count`` distinct TCP ports on ``host`` that nothing holds right now, chosen outside
    the ephemeral range (so no outgoing connection can take one before the server binds it);
    if that range leaves too little room, ports from ``bind(0)``. All are held open together
    while choosing, so they are distinct. Raises OSError if ``host`` cannot be bound at all."""
    rng = rng or random.Random()
    low, high = ephemeral_range()
    spans = [(LOWEST, low - 1), (high + 1, 65535)]
    spans = [(first, last) for first, last in spans if last - first >= 1000]
    ports: list[int] = []
    with contextlib.ExitStack() as held:
        tries = 0
        while len(ports) < count:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            if spans and tries < _TRIES:
                tries += 1
                first, last = rng.choice(spans)
                try:
                    sock.bind((host, rng.randint(first, last)))
                except OSError:
                    continue
            else:
                sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
    return ports
