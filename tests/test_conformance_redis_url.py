"""The conformance suite reads ``--redis-url`` as PROTOCOL.md Appendix B writes it: RFC 3986
userinfo (AUTH), ``/DB`` or ``?db=``, ``?prefix=`` percent-encoded; a password never reaches its
output (breaker F17: the URL was split by hand, the password became part of the host name and
was printed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest

from harness.conformance.resp import RedisAddress, Resp, RespError, parse_redis_url

from .redis_fixture import free_port, redis_server_or_skip

PASSWORD = "s3cr%t-pw"  # noqa: S105 - a throwaway Redis's password


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h", RedisAddress("h", 6379, 0, None, None, None)),
        ("redis://h:7000/3", RedisAddress("h", 7000, 3, None, None, None)),
        ("redis://:pw@h:1/0", RedisAddress("h", 1, 0, None, "pw", None)),
        ("redis://u:p%40ss@h:1/", RedisAddress("h", 1, 0, "u", "p@ss", None)),
        ("redis://h:1/2?db=5", RedisAddress("h", 1, 5, None, None, None)),
        ("redis://h:1/0?prefix=t%3Ax%3A", RedisAddress("h", 1, 0, None, None, "t:x:")),
    ],
)
def test_store_urls_read_as_appendix_b_writes_them(url: str, expected: RedisAddress) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    "url", ["redis://h:1/abc", "redis://h:1/0/x", "http://h:1/0", "redis://h:x/0"]
)
def test_store_urls_that_name_no_database_or_port_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"database|port|redis://"):
        parse_redis_url(url)


@pytest.fixture(scope="module")
def protected_redis() -> Iterator[str]:
    """``redis://HOST:PORT`` of a throwaway Redis that requires PASSWORD."""
    with redis_server_or_skip() as url:

        async def protect() -> None:
            async with await Resp.connect(url) as r:
                await r.call("CONFIG", "SET", "requirepass", PASSWORD)

        anyio.run(protect)
        yield url.rsplit("/", 1)[0]


def test_userinfo_password_is_sent_with_auth(protected_redis: str) -> None:
    host_port = protected_redis.removeprefix("redis://")

    async def ping(url: str) -> object:
        async with await Resp.connect(url) as r:
            return await r.call("PING")

    assert anyio.run(ping, f"redis://:{PASSWORD.replace('%', '%25')}@{host_port}/0") == b"PONG"
    with pytest.raises(RespError, match=r"NOAUTH|Authentication"):
        anyio.run(ping, f"redis://{host_port}/0")


def test_a_wrong_password_is_reported_without_the_password(protected_redis: str) -> None:
    host_port = protected_redis.removeprefix("redis://")
    wrong = "not-the-Pw-123"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.conformance",
            "server",
            "--port",
            str(free_port()),
            "--redis-url",
            f"redis://:{wrong}@{host_port}/0",
            "3/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "cannot reach Redis at redis://:***@" in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
