"""Attacks from the outside world (the ``breaker`` findings): each test fails on the defect it
names and passes once it is fixed. Findings and repro commands: the commit messages."""

from __future__ import annotations

import logging
import socket

import pytest

from reference.store.base import StoreError
from reference.store.redis import RedisStore


pytestmark = pytest.mark.anyio


async def test_unanswering_redis_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """``--store redis://`` on a port that accepts TCP but never answers (a frozen Redis, or
    not Redis at all): the deadline cancels coredis's handshake, and coredis used to log that
    as "Connection attempt failed unexpectedly!" with a full traceback (server start-up and
    every reconnection during an outage). Now: one StoreError, no traceback in the log.

    Repro: ``python -m reference.server --port 0 --store redis://127.0.0.1:P/0`` with a bare
    listener on P."""
    caplog.set_level(logging.DEBUG)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with pytest.raises(StoreError):
            await RedisStore.connect(f"redis://127.0.0.1:{port}/0", op_timeout=0.2)
    with_traceback = [r for r in caplog.records if r.exc_info or r.exc_text]
    assert not with_traceback, [f"{r.name}: {r.getMessage()}" for r in with_traceback]
