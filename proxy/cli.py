"""Command line: ``python -m proxy --listen PORT --upstream HOST:PORT [faults...]``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import anyio

from proxy.faults import DEFAULT_FAULT_WINDOW, FaultConfig
from proxy.server import ChaosProxy
from reference.cli import (
    OneLineErrorParser,
    add_version,
    configure_logging,
    int_range,
    listen_port,
    non_negative_float,
    positive_int,
    probability,
    program_name,
    run_program,
)

log = logging.getLogger(__name__)

DESCRIPTION = """\
Fault-injecting TCP proxy. Listens on 127.0.0.1:PORT and relays every client connection to
one of the upstreams, round-robin by connection (if one is down, the next is tried), injecting
faults on the way. It knows nothing of the protocol it carries: faults are placed by byte offset.

Every random decision for connection #i is drawn from the seed and i alone, so the same --seed
and the same traffic give the same faults. Each fault is logged (and, with --event-log, written
as one JSON line). All faults are off by default."""

EPILOG = """\
exit status: 0 after SIGINT or SIGTERM (at any moment), 1 if the port cannot be bound or
--event-log could not be written to the end (the proxy goes on relaying meanwhile),
2 for bad arguments.

example: python -m proxy --listen 9000 --upstream 127.0.0.1:9001 --upstream 127.0.0.1:9002 \\
           --seed 7 --drop-rate 0.1 --reset-rate 0.1 --latency 0.01 --jitter 0.005"""


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2  # [::1]:9000
    unbalanced = not bracketed and ("[" in host or "]" in host)  # '[::1' or '::1]:9000'
    host = host[1:-1] if bracketed else host
    if not colon or not host or unbalanced or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: allowed HOST:PORT with PORT in 1..65535 "
            "(an IPv6 address in brackets: [::1]:9000)"
        )
    return host, int(port)


def _is_own_address(upstream: tuple[str, int], listen: int) -> bool:
    """Whether connecting to ``upstream`` reaches the proxy's own listener on 127.0.0.1:listen
    (a proxy relaying to itself opens connections to itself until it runs out of descriptors)."""
    host, port = upstream
    if port != listen:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address == ipaddress.IPv4Address("127.0.0.1") or (
        isinstance(address, ipaddress.IPv4Address) and address.is_unspecified
    )


# The same value types as the server and client (finite, bounded, NaN refused): one message
# naming the option, the value and the allowed range for every bad number.
_probability = probability
_seconds = non_negative_float
_bytes = int_range(0)
_positive_bytes = positive_int


def add_fault_arguments(
    parser: argparse.ArgumentParser,
    *,
    fault_window_default: int | None = DEFAULT_FAULT_WINDOW,
    fault_window_help: str = "offsets are drawn below this many downstream bytes "
    "(default %(default)s)",
) -> None:
    """Add the fault options, in three groups, one dest per ``FaultConfig`` field.

    Shared by the proxy's command line and the chaos harness, which passes them on to the proxy
    (with its own default window, sized to the streams it runs); ``fault_config_from_args``
    turns them into a ``FaultConfig``.
    """
    ends = parser.add_argument_group(
        "drawn faults",
        "At most one of drop, reset, blackhole, partition and corrupt per connection: the\n"
        "rates are exclusive probabilities summing to at most 1. The fault strikes at a\n"
        "downstream byte offset drawn uniformly from [0, --fault-window); a connection that\n"
        "carries fewer bytes than that offset escapes it. (The chaos harness instead draws\n"
        "the offset uniformly over what each connection carries, so there a rate R is the\n"
        "probability that a connection carrying stream data is hit.)",
    )
    ends.add_argument(
        "--drop-rate",
        metavar="P",
        type=_probability,
        default=0.0,
        help="close both sides with a FIN",
    )
    ends.add_argument(
        "--reset-rate",
        metavar="P",
        type=_probability,
        default=0.0,
        help="abort both sides with an RST (SO_LINGER 0)",
    )
    ends.add_argument(
        "--blackhole-rate",
        metavar="P",
        type=_probability,
        default=0.0,
        help="stop forwarding both ways but keep both sockets open until a peer closes; "
        "what either side sends is read and discarded",
    )
    ends.add_argument(
        "--partition-rate",
        metavar="P",
        type=_probability,
        default=0.0,
        help="stop forwarding and stop reading both ways: the server's writes back up into "
        "full buffers, the client hears nothing; both sockets are held until the client hangs "
        "up and 12 s have passed (or both peers hang up)",
    )
    ends.add_argument(
        "--corrupt-rate",
        metavar="P",
        type=_probability,
        default=0.0,
        help="XOR one downstream byte with a random nonzero mask; the connection goes on",
    )
    ends.add_argument(
        "--fault-window",
        metavar="BYTES",
        type=_positive_bytes,
        default=fault_window_default,
        help=fault_window_help,
    )
    ends.add_argument(
        "--limit-data",
        metavar="BYTES",
        type=_bytes,
        help="close every connection (FIN) once this many bytes went downstream",
    )

    refuse = parser.add_argument_group("refusal")
    refuse.add_argument(
        "--refuse-rate",
        metavar="P",
        type=_probability,
        default=0.0,
        help="probability that a new connection starts a refuse period",
    )
    refuse.add_argument(
        "--refuse-duration",
        metavar="S",
        type=_seconds,
        default=0.5,
        help="seconds during which every new connection is accepted and closed at once"
        " (default 0.5)",
    )

    shaping = parser.add_argument_group("shaping (bytes arrive intact, only later or in pieces)")
    shaping.add_argument(
        "--latency",
        metavar="S",
        type=_seconds,
        default=0.0,
        help="delay added to each chunk, both ways, order kept",
    )
    shaping.add_argument(
        "--jitter", metavar="S", type=_seconds, default=0.0, help="uniform +/- S on each delay"
    )
    shaping.add_argument(
        "--bandwidth",
        metavar="BPS",
        type=_positive_bytes,
        help="bytes per second, per direction per connection",
    )
    shaping.add_argument(
        "--slice",
        metavar="BYTES",
        type=_positive_bytes,
        dest="slice_size",
        help="send downstream bytes in pieces of at most BYTES",
    )
    shaping.add_argument(
        "--slice-delay",
        metavar="S",
        type=_seconds,
        default=0.0,
        help="pause between slices",
    )


FAULT_FIELDS = tuple(field.name for field in dataclasses.fields(FaultConfig))
"""The dests ``add_fault_arguments`` fills: ``FaultConfig``'s field names."""


def fault_values(args: object) -> dict[str, Any]:
    """The fault options' values by ``FaultConfig`` field, from parsed arguments (or from any
    object with those attributes, such as the harness's ``ChaosOptions``)."""
    return {name: getattr(args, name) for name in FAULT_FIELDS}


def fault_config_from_args(args: object, *, fault_window: int) -> FaultConfig:
    """The ``FaultConfig`` the fault options ask for, with ``fault_window`` resolved by the caller
    (the harness's default depends on the run). Raises ValueError for settings no single
    option's type rejects, such as rates summing above 1, naming the options as typed."""
    try:
        return FaultConfig(**(fault_values(args) | {"fault_window": fault_window}))
    except ValueError as exc:  # FaultConfig names its fields: drop_rate is --drop-rate here
        raise ValueError(re.sub(r"\b([a-z]+)_rate\b", r"--\1-rate", str(exc))) from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=program_name("python -m proxy"),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--listen",
        metavar="PORT",
        type=listen_port,
        required=True,
        help="port on 127.0.0.1 (0: any)",
    )
    add(
        "--upstream",
        metavar="HOST:PORT",
        type=_host_port,
        action="append",
        required=True,
        help="server to relay to; repeat for several (round-robin, with failover)",
    )
    add("--seed", type=int, default=0, help="seed for every random decision (default 0)")
    add("--event-log", metavar="FILE", help="write each fault as one JSON line to FILE")
    add(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="warning",
        help="stderr logging; each fault is logged at info (default warning)",
    )

    add_fault_arguments(parser)
    add_version(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = fault_config_from_args(args, fault_window=args.fault_window)
    except ValueError as exc:  # what no single option's type can catch: rates summing above 1
        parser.error(str(exc))
    for upstream in args.upstream:
        if args.listen and _is_own_address(upstream, args.listen):
            parser.error(
                f"--upstream {upstream[0]}:{upstream[1]} is the proxy's own --listen address: "
                "it would relay to itself"
            )
    configure_logging(args.log_level)
    with contextlib.ExitStack() as stack:
        event_log = None
        if args.event_log is not None:
            try:
                event_log = open(args.event_log, "w", encoding="utf-8")  # noqa: SIM115 (closed by the stack, quietly)
            except OSError as exc:
                parser.error(f"cannot write --event-log: {exc}")
            stack.callback(close_quietly, event_log)
        proxy = args.proxy = ChaosProxy(
            args.upstream, config=config, seed=args.seed, event_log=event_log
        )
        status = run_program(
            _serve, args, prog="numstream-proxy", backend="asyncio", on_signal=lambda _: 0
        )
        return 1 if status == 0 and proxy.event_log_error is not None else status


def close_quietly(file: TextIO) -> None:
    """Close a log file whose last write may have failed (a full disk): closing flushes what
    is left in its buffer, which fails the same way; that failure was reported already."""
    with contextlib.suppress(OSError):
        file.close()


async def _serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; a port we cannot bind is a one-line error, not a traceback."""
    proxy: ChaosProxy = args.proxy
    port: int = args.listen
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            try:
                bound: int = await tg.start(functools.partial(proxy.serve, port=port))
            except OSError as exc:
                print(f"proxy: cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr)
                return 1
            print(f"listening on 127.0.0.1:{bound}", file=sys.stderr, flush=True)
            async for signum in signals:
                log.info("%s received; shutting down", signal.Signals(signum).name)
                break
            tg.cancel_scope.cancel()
    return 0
