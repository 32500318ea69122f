"""``python -m harness.conformance {server,client}``: the NSP conformance suite.

Exit status: 0 when no case failed (FAIL; with ``--strict`` also NON-STRICT), 1 when some did
or the results could not be written (stdout, a report file: one line on stderr), 2 for bad
arguments (one line on stderr; a report file that cannot be created is one, before the run),
3 when the target could not be reached or started, 130 on SIGINT and 143 on SIGTERM at any
moment (what the suite started is stopped first).
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.logging import RichHandler

from reference.cli import add_version, discard_stdout, program_name, run_program

from . import report, wire
from .model import Case, Result
from .runner import run_all, select

log = logging.getLogger("harness.conformance")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TARGET = 0, 1, 2, 3
#: A signal ended the run: 128 + its number, as shells report it.
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, naming what was wrong; exit status 2."""
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _ranged(
    kind: Callable[[str], float], low: float, high: float, unit: str = ""
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number; allowed {low:g} to {high:g}{unit}"
            ) from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(
                f"{text} is out of range; allowed {low:g} to {high:g}{unit}"
            )
        return value

    return parse


def _int(text: str) -> float:
    return float(int(text, 10))


def add_ranged(
    parser: argparse.ArgumentParser,
    flag: str,
    low: float,
    high: float,
    default: float,
    what: str,
    *,
    unit: str = "",
    integer: bool = False,
    note: str = "",
) -> None:
    """Add the option ``flag``: a number (a whole one with ``integer``) from ``low`` to ``high``.

    Its help reads ``"{what} ({low}..{high}{unit}, default {default}{note})"``, from the same
    numbers the check uses; a value outside them exits 2 with one line naming the range.
    """
    parser.add_argument(
        flag,
        type=_ranged(_int if integer else float, low, high, unit),
        default=default,
        help=f"{what} ({low:g}..{high:g}{unit}, default {default:g}{note})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=program_name("python -m harness.conformance"),
        description="NSP conformance suite: judges a server or a client case by case against "
        "spec/PROTOCOL.md and spec/STORE-REDIS.md. Each case is PASS, NON-STRICT (a SHOULD "
        "unmet), FAIL (a MUST broken), INFO (behaviour the spec leaves open, recorded) or "
        "SKIPPED (with the reason). Results go to stdout, progress and logs to stderr.",
        epilog="Exit status: 0 nothing failed, 1 some case failed or the results could not be "
        "written (stdout, a report file), 2 bad arguments (a report file that cannot be "
        "created included, checked before the run), 3 the "
        "target could not be started or reached, 130 on SIGINT (Ctrl-C) and 143 on SIGTERM "
        "at any moment (servers and Redis the suite started are stopped first).",
    )
    roles = parser.add_subparsers(dest="role", required=True, metavar="{server,client}")
    common = _Parser(add_help=False)
    common.add_argument(
        "sections",
        nargs="*",
        metavar="PREFIX",
        help="run only the cases whose id starts with PREFIX (e.g. 16.4, "
        "11.2/resume, redis-3); several allowed",
    )
    common.add_argument("--strict", action="store_true", help="NON-STRICT counts as a failure")
    common.add_argument("--json", type=Path, metavar="FILE", help="write results as JSON")
    common.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML")
    common.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write one self-contained HTML page with every exchange in hex",
    )
    common.add_argument("--list", action="store_true", help="list the cases and exit")
    add_ranged(common, "--concurrency", 1, 64, 8, "cases run at once", integer=True)
    common.add_argument(
        "--case-timeout",
        type=_ranged(float, 1, 600, " s"),
        default=60.0,
        help="seconds one case may take (1..600, default 60)",
    )
    common.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="warning"
    )

    server = roles.add_parser(
        "server",
        parents=[common],
        help="test a server",
        description="Test a running server (--port) or one the suite starts (--server-cmd; by "
        "default the reference server). Placeholders: {port} {interval} {ttl} {store}.",
    )
    server.add_argument(
        "--port",
        type=_ranged(_int, 1, 65535),
        help="a running server's port "
        "(1..65535); it is tested with the interval and TTL it announces",
    )
    server.add_argument(
        "--server-cmd",
        metavar="TEMPLATE",
        help='command that starts the server, e.g. "./nspd --port {port} '
        '--interval {interval} --session-ttl {ttl} --store {store}"',
    )
    add_ranged(server, "--interval", 0.001, 2.0, 0.02, "{interval} for a started server", unit=" s")
    add_ranged(
        server,
        "--ttl",
        0.5,
        120.0,
        1.5,
        "{ttl} for a started server",
        unit=" s",
        note=": expiry cases run in seconds",
    )
    server.add_argument(
        "--redis-url",
        metavar="URL",
        help="redis://HOST:PORT/DB shared with "
        "the server: plant and inspect sessions (STORE-REDIS.md)",
    )
    server.add_argument(
        "--redis",
        action="store_true",
        help="start a throwaway redis-server "
        "(needs redis-server on PATH) and use it as --redis-url",
    )
    server.add_argument(
        "--redis-prefix",
        default=None,
        help="key prefix of STORE-REDIS.md §2 (default: the URL's ?prefix=, else nsp:v1:)",
    )
    add_ranged(
        server, "--handshake-timeout", 0.5, 60.0, 5.0, "the server's handshake timeout", unit=" s"
    )

    from .client_role import add_client_arguments

    client = roles.add_parser(
        "client",
        parents=[common],
        help="test a client",
        description="Play scripted servers to a client started from --client-cmd.",
    )
    add_client_arguments(client)
    add_version(parser)
    return parser


def _setup_logging(level: str, console: Console) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,  # the progress bar's console, whatever handler was there before
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    out = Console() if sys.stdout.isatty() else Console(width=200)
    _setup_logging(args.log_level, err)
    _check_report_paths(args, parser)

    async def entry(args: argparse.Namespace) -> int:
        return await _main(args, parser, out, err)

    def interrupted(signum: int) -> int:
        err.print("interrupted", highlight=False)
        return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED

    return run_program(entry, args, prog=parser.prog, backend="asyncio", on_signal=interrupted)


async def _main(
    args: argparse.Namespace, parser: argparse.ArgumentParser, out: Console, err: Console
) -> int:
    if args.role == "server":
        from .server_role import server_cases as all_cases
    else:
        from .client_role import client_cases as all_cases
    cases = select(all_cases(), args.sections)
    if args.sections and not cases:
        parser.error(f"no case id starts with {' or '.join(args.sections)}")
    if args.list:
        try:
            for case in cases:
                out.print(f"{case.id}\t{case.level.value}\t{case.title}", highlight=False)
            sys.stdout.flush()
        except OSError as exc:
            return _stdout_failed(exc, err)
        return EXIT_OK
    async with AsyncExitStack() as stack:
        target: object
        try:
            if args.role == "server":
                from .server_setup import prepare_server

                target, capabilities, meta = await prepare_server(args, parser, stack)
            else:
                from .client_role import prepare_client

                target, capabilities, meta = await prepare_client(args, parser, stack)
        except TargetError as exc:
            err.print(f"[red]{exc}")
            return EXIT_TARGET
        return await _run(args, cases, target, capabilities, meta, out, err)


class TargetError(Exception):
    """The implementation under test could not be started or reached."""


async def _run(
    args: argparse.Namespace,
    cases: list[Case],
    target: object,
    capabilities: set[str],
    meta: dict[str, Any],
    out: Console,
    err: Console,
) -> int:
    started = time.monotonic()
    results: list[Result] = await run_all(
        cases,
        target,
        capabilities,
        concurrency=int(args.concurrency),
        limit=args.case_timeout,
        console=err,
    )
    seconds = time.monotonic() - started
    meta = {**meta, "role": args.role, "strict": args.strict, "seconds": round(seconds, 2)}
    try:
        report.table(results, out, args.role, seconds)
        sys.stdout.flush()
    except OSError as exc:
        return _stdout_failed(exc, err)
    written = True
    for path in (args.json, args.junit, args.html):
        if not path:
            continue
        try:
            if path is args.json:
                report.write_json(path, results, meta)
            elif path is args.junit:
                report.write_junit(path, results, args.role, args.strict)
            else:
                report.write_html(path, results, meta)
        except OSError as exc:
            err.print(f"cannot write report {path}: {exc.strerror or exc}", highlight=False)
            written = False
    bad = report.failed(results, args.strict)
    return EXIT_FAILED if bad or not written else EXIT_OK


def _stdout_failed(exc: OSError, err: Console) -> int:
    """stdout cannot be written (``> /dev/full``, a reader gone): one line (none for a reader
    that went away, as with ``| head``), status 1; what is left in its buffer is dropped."""
    discard_stdout()
    if exc.errno != errno.EPIPE:
        err.print(f"cannot write to stdout: {exc.strerror or exc}", highlight=False)
    return EXIT_FAILED


def _check_report_paths(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Before the run: each report file can be created (its directory exists and takes it);
    one that would fail only after every case ran is a usage error now."""
    for flag, path in (("--json", args.json), ("--junit", args.junit), ("--html", args.html)):
        if not path:
            continue
        existed = path.exists()
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            parser.error(f"{flag}: cannot write {path}: {exc.strerror or exc}")
        if not existed:
            path.unlink(missing_ok=True)


_ = wire
