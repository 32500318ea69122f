"""Ports for servers told their port: never from the range the kernel hands to outgoing
connections (harness/ports.py), so a connect() elsewhere cannot take one before the bind."""

from __future__ import annotations

import random
import socket

import pytest

from harness import ports


def test_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    low, high = ports.ephemeral_range()
    chosen = ports.free_ports(40, rng=random.Random(1))
    assert len(set(chosen)) == 40
    for port in chosen:
        assert not low <= port <= high
        assert port >= ports.LOWEST
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


class _TriesFirst(random.Random):
    """Proposes ``first`` for the first ``times`` draws, then draws as usual."""

    def __init__(self, first: int, times: int) -> None:
        super().__init__(3)
        self._queue = [first] * times

    def randint(self, a: int, b: int) -> int:
        return self._queue.pop() if self._queue else super().randint(a, b)


def test_a_port_in_use_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        taken.listen()
        monkeypatch.setattr(ports, "LOWEST", busy)
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (busy + 1001, 65535))
        chosen = ports.free_ports(5, rng=_TriesFirst(busy, times=3))
        assert busy not in chosen
        assert len(set(chosen)) == 5


def test_without_room_below_the_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65535))
    chosen = ports.free_ports(3)
    assert len(set(chosen)) == 3
