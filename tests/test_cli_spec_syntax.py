"""The reference client's and server's command lines as spec/PROTOCOL.md Appendices A and B fix
them for every implementation (specread S4, S5).

* A usage error is **one line** on stderr naming the option, the value and the allowed range
  (A.1, B), not argparse's usage block followed by the error.
* Options are spelled in full. An abbreviation (``--mod`` for ``--mode``, ``--interv`` for
  ``--interval``) is an unknown option, a usage error: the Go server and the Node client refuse
  it, and a template written against a reference that took ``--js`` would break on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from reference import client, server

Main = Callable[[Sequence[str] | None], int]

SERVER = ["--port", "0"]
CLIENT = ["--port", "9", "--mode", "stateless", "-n", "3"]


def _usage_error(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main(argv)``; assert status 2, nothing on stdout, one line on stderr; return it."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    assert stopped.value.code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("main", "argv", "named"),
    [
        (client.main, [*CLIENT, "--js"], "--js"),
        (client.main, [*CLIENT, "--max-retr", "3"], "--max-retr"),
        (client.main, ["--port", "9", "--mod", "stateless", "-n", "3"], "--mode"),
        (server.main, [*SERVER, "--interv", "0.5"], "--interv"),
        (server.main, [*SERVER, "--session-t", "30"], "--session-t"),
        (server.main, ["--po", "0"], "--port"),
    ],
)
def test_an_abbreviated_option_is_an_unknown_option(
    main: Main, argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_error(main, argv, capsys)
    assert named in line


@pytest.mark.parametrize(
    ("main", "argv", "named"),
    [
        (client.main, [*CLIENT[:-1], "0"], "'0'"),
        (client.main, [*CLIENT, "--no-such-option"], "--no-such-option"),
        (client.main, ["--port", "9", "--mode", "stateless"], "-n"),
        (client.main, ["--mode", "stateless", "-n", "3"], "--port"),
        (server.main, [*SERVER, "--interval", "-1"], "'-1'"),
        (server.main, [*SERVER, "--no-such-option"], "--no-such-option"),
        (server.main, [], "--port"),
    ],
)
def test_a_usage_error_is_one_line(
    main: Main, argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_error(main, argv, capsys)
    assert named in line
    assert "error:" in line


def test_full_spellings_and_the_equals_form_still_parse() -> None:
    args = client.build_parser().parse_args([*CLIENT, "--json", "--max-retries=3"])
    assert args.json
    assert args.max_retries == 3
    args = server.build_parser().parse_args([*SERVER, "--interval=0.5"])
    assert args.interval == 0.5
