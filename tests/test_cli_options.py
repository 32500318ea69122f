"""Numeric options the protocol or the platform cannot carry are refused at start-up.

Issue 11, point 1: ``--interval 5000000`` used to start a server whose every WELCOME failed
(5e9 ms is not a u32), ``--session-ttl inf`` likewise. Every numeric option of every Python CLI
is held to the spec's limits (spec/PROTOCOL.md §13.1, §17, Appendix A.2 and B: durations are
whole milliseconds up to MAX_DURATION_MS, one day): exit status 2 and one line naming the
option, the value and the allowed range. Server, client, proxy, chaos harness and conformance
suite here; the Node client in interop/node-client/test, the Go server in test_go_server.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import anyio
import pytest

from harness import chaos
from harness.conformance import cli as conformance_cli
from proxy import cli as proxy_cli
from reference import client, server

from .support import RawReader, running_server, stateful_hello

#: The spec's bound on every duration, interval_ms and session_ttl_ms included (§13.1).
MAX_DURATION_MS = 86_400_000
#: The same bound in seconds, as the allowed range is written in the messages.
LIMIT_TEXT = "86400"

SERVER = ["--port", "0"]
CLIENT = ["--port", "9", "--mode", "stateless", "-n", "3"]
PROXY = ["--listen", "0", "--upstream", "127.0.0.1:9"]
CHAOS: list[str] = []

Main = Callable[[Sequence[str] | None], int]

CASES: list[tuple[str, Main, list[str], str, str]] = [
    # (cli, its main, its required arguments, option, value)
    *[
        ("server", server.main, SERVER, option, value)
        for option, value in [
            ("--interval", "5000000"),  # 5e9 ms does not fit WELCOME's u32
            ("--interval", "800000"),  # fits the u32, but a client's silence timer could not
            ("--interval", "86400.0005"),  # rounds up to MAX_DURATION_MS + 1 ms (§13.1)
            ("--interval", "inf"),
            ("--interval", "nan"),
            ("--interval", "-1"),
            ("--session-ttl", "inf"),
            ("--session-ttl", "5e6"),
            ("--session-ttl", "nan"),
            ("--handshake-timeout", "0"),
            ("--handshake-timeout", "inf"),
            ("--max-connections", "0"),
            ("--max-connections", "-5"),
            ("--max-connections", "1.5"),
            ("--port", "65536"),
        ]
    ],
    *[
        ("client", client.main, CLIENT, option, value)
        for option, value in [
            ("--connect-timeout", "inf"),
            ("--connect-timeout", "0"),
            ("--silence-timeout", "nan"),
            ("--silence-timeout", "1e300"),
            ("--min-silence", "inf"),
            ("--backoff-initial", "inf"),
            ("--backoff-initial", "-1"),
            ("--backoff-max", "1e10"),
            ("--max-retries", "0"),
            ("--max-retries", "-3"),
            ("-n", "70000"),
        ]
    ],
    *[
        ("proxy", proxy_cli.main, PROXY, option, value)
        for option, value in [
            ("--latency", "inf"),
            ("--jitter", "nan"),
            ("--refuse-duration", "1e400"),
            ("--slice-delay", "inf"),
            ("--drop-rate", "nan"),
            ("--reset-rate", "1.5"),
            ("--fault-window", "0"),
            ("--bandwidth", "0"),
            ("--slice", "0"),
            ("--limit-data", "-1"),
            ("--listen", "70000"),
        ]
    ],
    *[
        ("chaos", chaos.main, CHAOS, option, value)
        for option, value in [
            ("--interval", "5000000"),
            ("--interval", "nan"),
            ("--session-ttl", "inf"),
            ("--timeout", "inf"),
            ("--timeout", "0"),
            ("--clients", "0"),
            ("--concurrency", "0"),
            ("--servers", "0"),
            ("--kill-interval", "inf"),
            ("--store-pause-interval", "0"),
            ("--store-restart-interval", "1e300"),
            ("--latency", "inf"),
            ("--drop-rate", "nan"),
            ("--bandwidth", "0"),
            ("--fault-window", "0"),
            ("-n", "70000"),
        ]
    ],
]


@pytest.mark.parametrize(
    ("main", "required", "option", "value"),
    [pytest.param(*case[1:], id=f"{case[0]} {case[3]} {case[4]}") for case in CASES],
)
def test_numeric_option_out_of_range_exits_2_naming_option_value_and_range(
    main: Main,
    required: list[str],
    option: str,
    value: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = (
        [*required, option, value] if option not in required else _replace(required, option, value)
    )
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    assert stopped.value.code == 2
    assert out == ""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    line = errors[0]
    assert option in line
    assert repr(value) in line
    assert "allowed" in line
    if option in ("--interval", "--session-ttl") or option.endswith("timeout"):
        assert f"..{LIMIT_TEXT} seconds" in line  # the spec's MAX_DURATION_MS, in seconds


@pytest.mark.parametrize(
    ("role", "option", "value"),
    [
        ("server", "--interval", "5000000"),
        ("server", "--interval", "nan"),
        ("server", "--ttl", "inf"),
        ("server", "--handshake-timeout", "0"),
        ("server", "--port", "70000"),
        ("server", "--case-timeout", "inf"),
        ("server", "--concurrency", "0"),
        ("client", "--concurrency", "1e9"),
        ("client", "--case-timeout", "nan"),
    ],
)
def test_conformance_numeric_option_out_of_range_exits_2_with_one_line(
    role: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The conformance suite: the same kind, its own wording (option, value, allowed range)."""
    with pytest.raises(SystemExit) as stopped:
        conformance_cli.main([role, option, value])
    out, err = capsys.readouterr()
    assert stopped.value.code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert option in lines[0]
    assert value in lines[0]
    assert "allowed" in lines[0]


def _replace(argv: list[str], option: str, value: str) -> list[str]:
    at = argv.index(option)
    return [*argv[:at], option, value, *argv[at + 2 :]]


@pytest.mark.parametrize("option", ["--interval", "--session-ttl"])
def test_server_accepts_the_largest_duration_welcome_can_carry(option: str) -> None:
    args = server.build_parser().parse_args([*SERVER, option, LIMIT_TEXT])
    config = server.config_from_args(args)
    assert max(config.interval_ms, config.ttl_ms) == MAX_DURATION_MS


@pytest.mark.anyio
async def test_welcome_carries_the_largest_interval_and_ttl() -> None:
    """At the edge of the range the server still answers with a WELCOME, not INTERNAL_ERROR."""
    args = server.build_parser().parse_args(
        [*SERVER, "--interval", LIMIT_TEXT, "--session-ttl", LIMIT_TEXT]
    )
    async with (
        running_server(server.config_from_args(args)) as (_, port),
        await anyio.connect_tcp("127.0.0.1", port) as stream,
    ):
        await stream.send(stateful_hello("3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a90", 3))
        with anyio.fail_after(10):
            welcome = await RawReader(stream).next()
    assert welcome is not None
    assert welcome.type == 0x02
    interval_ms, _a, ttl_ms = struct.unpack(">III", welcome.payload[11:23])
    assert interval_ms == MAX_DURATION_MS
    assert ttl_ms == MAX_DURATION_MS
