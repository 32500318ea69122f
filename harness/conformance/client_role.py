"""The ``client`` role: a client started from ``--client-cmd`` is played scripted servers, and
its exit status, its stdout (Appendix A.3/A.4), its HELLOs and its reconnection timing (§15)
are judged against the spec."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import SocketStream

from harness import processes

from . import scripted as s
from . import wire
from .cli import add_ranged
from .model import Case, Check, Level

CLIENT_PLACEHOLDERS = (
    "port",
    "mode",
    "n",
    "client_id",
    "seed",
    "json",
    "backoff_initial",
    "backoff_max",
    "max_retries",
    "connect_timeout",
    "min_silence",
)
DEFAULT_CLIENT_CMD = (
    f"{sys.executable} -m reference.client --port {{port}} --mode {{mode}} -n {{n}} {{json}} "
    "--backoff-initial {backoff_initial} --backoff-max {backoff_max} "
    "--max-retries {max_retries} --connect-timeout {connect_timeout} "
    "--min-silence {min_silence} --log-level warning"
)
#: Spec defaults (§15, §14.1, Appendix A.2) for a timing the template does not let us set.
SPEC_DEFAULTS = {
    "backoff_initial": 1.0,
    "backoff_max": 10.0,
    "max_retries": 10,
    "connect_timeout": 5.0,
    "min_silence": 2.0,
}
MODES = {wire.STATELESS: "stateless", wire.STATEFUL: "stateful"}


@dataclass
class ClientTarget:
    template: str
    backoff_initial: float = 0.1
    backoff_max: float = 0.4
    max_retries: int = 3
    connect_timeout: float = 3.0
    min_silence: float = 1.5
    fields: set[str] = field(default_factory=set)

    def timing(self, name: str) -> float:
        """The value the client runs with: ours when the template has the placeholder."""
        if name in self.fields:
            return float(getattr(self, name))
        return float(SPEC_DEFAULTS[name])

    def argv(
        self,
        port: int,
        mode: int,
        n: int | str | None,
        *,
        json_out: bool,
        extra: Sequence[str] = (),
    ) -> list[str]:
        values: dict[str, object] = {
            "port": port,
            "mode": MODES[mode],
            "n": "" if n is None else n,
            "client_id": str(uuid.uuid4()),
            "seed": 7,
            "json": "--json" if json_out else "",
            "backoff_initial": f"{self.backoff_initial:g}",
            "backoff_max": f"{self.backoff_max:g}",
            "max_retries": self.max_retries,
            "connect_timeout": f"{self.connect_timeout:g}",
            "min_silence": f"{self.min_silence:g}",
        }
        words = shlex.split(self.template)
        if n is None and "{n}" in words:  # drop "-n {n}"
            at = words.index("{n}")
            del words[at - 1 : at + 1]
        # "{json}" alone is an optional word: it vanishes when empty; any other word stays,
        # even empty (an empty -n is a case of its own)
        argv = [w.format_map(values) for w in words if w != "{json}" or json_out]
        if json_out and "json" not in self.fields:
            argv.append("--json")
        return argv + list(extra)


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client-cmd",
        metavar="TEMPLATE",
        help="command that runs the client; placeholders {port} {mode} {n} and optionally "
        "{client_id} {seed} {json} {backoff_initial} {backoff_max} {max_retries} "
        "{connect_timeout} {min_silence} (timing placeholders let the suite run fast; without "
        "them the spec defaults are assumed). Default: the reference client",
    )
    add_ranged(parser, "--backoff-initial", 0.01, 5, 0.1, "{backoff_initial}", unit=" s")
    add_ranged(parser, "--backoff-max", 0.01, 20, 0.4, "{backoff_max}", unit=" s")
    add_ranged(parser, "--max-retries", 2, 20, 3, "{max_retries}", integer=True)
    add_ranged(parser, "--connect-timeout", 0.2, 10, 3.0, "{connect_timeout}", unit=" s")
    add_ranged(parser, "--min-silence", 0.1, 10, 1.5, "{min_silence}", unit=" s")


async def prepare_client(
    args: argparse.Namespace, parser: argparse.ArgumentParser, stack: AsyncExitStack
) -> tuple[ClientTarget, set[str], dict[str, Any]]:
    template = args.client_cmd or DEFAULT_CLIENT_CMD
    try:
        processes.check_template(template, CLIENT_PLACEHOLDERS)
    except ValueError as exc:
        parser.error(f"--client-cmd: {exc}")
    fields = processes.template_fields(template)
    missing = {"port", "mode"} - fields
    if missing:
        parser.error(f"--client-cmd needs the placeholders {{port}} and {{mode}}: {template!r}")
    target = ClientTarget(
        template,
        args.backoff_initial,
        args.backoff_max,
        int(args.max_retries),
        args.connect_timeout,
        args.min_silence,
        fields,
    )
    capabilities = {"n"} if "n" in fields else set()
    capabilities |= {f for f in fields if f in SPEC_DEFAULTS}
    meta = {"target": {"command": template, **{k: target.timing(k) for k in SPEC_DEFAULTS}}}
    return target, capabilities, meta


# -- running one scenario ---------------------------------------------------------------------


@dataclass
class Expect:
    status: int | tuple[int, ...]
    reason: str | None = None  # A.3 reason token; None on success
    connections: int | None = None  # exact number of connections, when known
    final_frame_lost: bool | None = None
    text: bool = False  # judge the text output (A.3) instead of the JSON object
    verify_level: Level = Level.MUST


@dataclass
class Scenario:
    mode: int
    n: int
    scripts: Sequence[Sequence[object]]
    expect: Expect
    interval_ms: int = 20
    ttl_ms: int = 30000
    extra_args: tuple[str, ...] = ()
    omit_n: bool = False
    n_arg: str | None = None  # -n written this way instead of str(n)
    client_id: str | None = None  # the id given with --client-id, to find in the HELLOs
    check_v4: bool = False  # also judge the drawn id's version and variant (SHOULD)
    refuse_for: float = 0.0  # nobody listens on the port for this long at first
    interrupt_after: float = 0.0  # SIGINT to the client this long after its first HELLO
    timing: bool = True  # judge reconnection delays against §15
    hello_within: float | None = None
    black_hole: bool = False  # the port listens, but no connect ever completes (§14.1)


def nominal_delay(target: ClientTarget, k: int) -> float:
    return min(target.timing("backoff_initial") * 1.6**k, target.timing("backoff_max"))


class BlackHole:
    """A port whose connects never complete, without root: a listening socket with a backlog
    of 0 that never accepts, its accept queue filled by connections of our own. Linux then
    drops every further SYN (the queue is full), so a client's connect neither succeeds nor
    fails: only its own connect timeout ends it (§14.1)."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.fillers: list[socket.socket] = []
        try:
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(0)
            self.port: int = self.listener.getsockname()[1]
        except OSError:
            self.close()
            raise

    async def fill(self) -> None:
        """Connect until one connect stays pending: the queue is full from then on."""
        for _ in range(64):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            self.fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            await anyio.sleep(0.05)
            if filler.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                raise OSError("a connect to the black hole failed")
            try:
                filler.getpeername()
            except OSError:  # not connected: the SYN was dropped, the queue is full
                return
        raise OSError("the accept queue never filled up")

    def close(self) -> None:
        for sock in [*self.fillers, self.listener]:
            sock.close()


async def play(sc: Scenario, target: ClientTarget, check: Check) -> None:  # noqa: C901 (the scripted server's event loop: one branch per scenario step kind, as the spec lists them)
    state = s.State(sc.mode, sc.n, interval_ms=sc.interval_ms, ttl_ms=sc.ttl_ms)
    state.min_silence = target.timing("min_silence")
    state.handshake = target.timing("connect_timeout")
    conns: list[s.Conn] = []
    first_id: list[bytes] = []
    hello_within = sc.hello_within or target.timing("connect_timeout") + 3.0

    first_hello = anyio.Event()

    def on_hello(conn: s.Conn, st: s.State) -> None:
        hello = conn.hello
        assert hello is not None
        first_hello.set()
        check.must(hello.version == 1, f"HELLO version {hello.version}")
        check.must(hello.mode == sc.mode, f"HELLO mode {hello.mode}")
        check.must(hello.flags & 0xFE == 0, f"HELLO flags {hello.flags:#04x}")
        if not sc.omit_n:
            check.must(hello.n == sc.n, f"HELLO n {hello.n}, the command line said {sc.n}")
        else:
            st.n = hello.n
            check.must(1 <= hello.n <= 65535, f"drawn n {hello.n}")
        if sc.mode == wire.STATEFUL:
            check.must(
                wire.CLIENT_ID_RE.match(hello.client_id) is not None,
                f"client id {hello.client_id!r} is not lower-case canonical UUID text",
            )
            if not first_id:
                first_id.append(hello.client_id)
                st.client_id = hello.client_id
            check.must(hello.client_id == first_id[0], "the client id changed between connections")
        where = f"connection {conn.index}"
        if sc.mode == wire.STATEFUL or st.received > 0:
            check.must(
                hello.resume == st.welcome_seen,
                f"{where}: RESUME {'missing' if st.welcome_seen else 'set'} "
                f"({'after' if st.welcome_seen else 'before'} a WELCOME, §7.3/§11)",
            )
        elif st.welcome_seen:
            check.should(hello.resume, f"{where}: a WELCOME was seen but no RESUME (§6.4)")
        else:
            check.must(not hello.resume, f"{where}: RESUME before any WELCOME")
        if hello.resume and hello.next_index < st.received and previous_dropped_by_client(conn):
            # The client ended the previous connection itself (a timer of its own, on a busy
            # machine) before reading every number we had written: it resumes from what it
            # really got, and the end result still proves whether that was right.
            conn.notes.append(f"resumed at {hello.next_index} of {st.received} written")
            st.received = hello.next_index
        if hello.resume:
            check.must(
                hello.next_index == st.received,
                f"{where}: next_index {hello.next_index}, but {st.received} numbers were received",
            )
            if sc.mode == wire.STATELESS:
                check.must(
                    hello.a == st.a, f"{where}: RESUME with a {hello.a}, WELCOME said {st.a}"
                )
        else:
            check.must(
                hello.next_index == 0, f"{where}: next_index {hello.next_index} without RESUME"
            )
            if sc.mode == wire.STATELESS:
                check.must(hello.a == 0, f"{where}: a {hello.a} without RESUME")
        check.must(not conn.extra, f"{where}: {len(conn.extra)} bytes after the HELLO")

    def previous_dropped_by_client(conn: s.Conn) -> bool:
        if conn.index < 2:
            return False
        before = conns[conn.index - 2]
        return before.client_closed is not None and (
            before.server_closed is None or before.client_closed < before.server_closed
        )

    async def handler(stream: SocketStream) -> None:
        conn = s.Conn(len(conns) + 1, time.monotonic())
        check.connections = conn.index
        conns.append(conn)
        script = sc.scripts[conn.index - 1] if conn.index <= len(sc.scripts) else [s.fin]
        if conn.index > len(sc.scripts):
            conn.notes.append("unexpected connection")
        try:
            await s.run_connection(stream, conn, state, check, script, hello_within, on_hello)
        except Exception as exc:  # a failed MUST inside a connection is already recorded
            leaves = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
            conn.notes.extend(str(leaf) for leaf in leaves)

    n_arg: int | str | None = None if sc.omit_n else (sc.n if sc.n_arg is None else sc.n_arg)
    out = b""
    err = b""
    status: int | None = None
    budget = max(40.0, black_hole_bounds(target)[1] + 10.0) if sc.black_hole else 40.0
    lag = [0.0]
    ran = 0.0

    async def watch_lag() -> None:
        """How late our own event loop runs: the uncertainty of every time we record."""
        while True:
            started = time.monotonic()
            await anyio.sleep(0.01)
            lag[0] = max(lag[0], time.monotonic() - started - 0.01)

    async with AsyncExitStack() as stack:
        listener: anyio.abc.Listener[SocketStream] | None = None
        if sc.black_hole:
            hole = BlackHole()
            stack.callback(hole.close)
            await hole.fill()
            port = hole.port
        elif sc.refuse_for:
            from .servers import free_port

            port = free_port()
        else:
            bound = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            stack.push_async_callback(bound.aclose)
            port = bound.extra(anyio.abc.SocketAttribute.local_port)
            listener = bound
        argv = target.argv(port, sc.mode, n_arg, json_out=not sc.expect.text, extra=sc.extra_args)
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_lag)
            process = await processes.start(argv)
            started = time.monotonic()
            try:  # the client is stopped on every way out, a cancelled case included
                if sc.refuse_for:
                    await anyio.sleep(sc.refuse_for)
                    late = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
                    stack.push_async_callback(late.aclose)
                    listener = late
                if listener is not None:
                    tg.start_soon(listener.serve, handler)
                if sc.interrupt_after:

                    async def interrupt() -> None:
                        await first_hello.wait()
                        await anyio.sleep(sc.interrupt_after)
                        if process.returncode is None:
                            os.kill(process.pid, signal.SIGINT)

                    tg.start_soon(interrupt)
                with anyio.move_on_after(budget):
                    async with anyio.create_task_group() as io:
                        results: dict[str, bytes] = {}

                        async def grab(name: str, stream: Any) -> None:
                            results[name] = await processes.read_all(stream, 4 * 1024 * 1024)

                        io.start_soon(grab, "out", process.stdout)
                        io.start_soon(grab, "err", process.stderr)
                        await process.wait()
                    out, err = results.get("out", b""), results.get("err", b"")
                status = process.returncode
                ran = time.monotonic() - started
            finally:
                await processes.stop(process, grace=0)
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    judge_run(
        lag[0], sc, target, check, conns, state, status, out.decode(errors="replace"), err, ran
    )


def black_hole_bounds(target: ClientTarget) -> tuple[float, float]:
    """(least, most) seconds a client takes to give up on a black hole: ``max_retries``
    connects, each ended by the connect timeout, with the backoff of §15 between them.
    The least allows 10 % early timers; the most 1.5 s late per attempt and 3 s to start."""
    attempts = int(target.timing("max_retries"))
    timeout = target.timing("connect_timeout")
    waits = sum(nominal_delay(target, k) for k in range(1, attempts))
    return (
        0.9 * attempts * timeout + 0.8 * waits,
        attempts * (timeout + 1.5) + 1.2 * waits + 3.0,
    )


def judge_run(  # noqa: C901 (one verdict per outcome the spec allows a client, in the spec's order)
    lag: float,
    sc: Scenario,
    target: ClientTarget,
    check: Check,
    conns: list[s.Conn],
    state: s.State,
    status: int | None,
    out: str,
    err: bytes,
    ran: float = 0.0,
) -> None:
    exp = sc.expect
    check.note(f"exit {status}, {len(conns)} connection(s)")
    for conn in conns:
        if conn.notes:
            check.note(f"#{conn.index}: " + ", ".join(conn.notes))
    check.note(f"stdout {out.strip()[-300:]!r}")
    check.must(status is not None, "the client did not exit within 40 s")
    allowed = exp.status if isinstance(exp.status, tuple) else (exp.status,)
    tail = err.decode(errors="replace").strip()[-200:]
    check.must(status in allowed, f"exit status {status}, expected {exp.status}; stderr {tail!r}")
    if status == 2 and 2 in allowed:
        # A.1: a usage error is one line on stderr naming the option, the value and the range,
        # and nothing on stdout (not argparse's usage block before the error: specread S4)
        lines = err.decode(errors="replace").strip().splitlines()
        check.must(not out.strip(), f"a usage error wrote {out.strip()[:80]!r} on stdout")
        check.should(len(lines) == 1, f"a usage error wrote {len(lines)} lines on stderr, not 1")
    if sc.client_id is not None and state.client_id is not None:
        check.must(
            state.client_id == sc.client_id.lower().encode(),
            f"HELLO client id {state.client_id!r}, --client-id said {sc.client_id}",
        )
    if sc.check_v4 and state.client_id is not None:
        cid = state.client_id.decode()
        check.should(cid[14] == "4" and cid[19] in "89ab", f"{cid} is not a version-4 UUID")
    if sc.black_hole:
        least, most = black_hole_bounds(target)
        attempts = int(target.timing("max_retries"))
        check.note(f"gave up after {ran:.2f} s (expected {least:.2f} to {most:.2f} s)")
        check.must(not conns, f"{len(conns)} connection(s) through a port that accepts none")
        check.must(
            ran >= least - 0.05 - lag,
            f"gave up after {ran:.2f} s: {attempts} connects cannot each have waited the "
            f"connect timeout ({target.timing('connect_timeout'):g} s) with the backoff between",
        )
        check.should(ran <= most, f"gave up after {ran:.2f} s, expected at most {most:.2f} s")
    elif exp.reason == "GAVE_UP" and "max_retries" in target.fields:
        last = max((c.index for c in conns if c.progress), default=0)
        check.must(
            len(conns) - last == target.max_retries,
            f"{len(conns) - last} attempts without progress before giving up, "
            f"--max-retries {target.max_retries}",
        )
    if exp.connections is not None:
        check.must(
            len(conns) == exp.connections,
            f"{len(conns)} connection(s), expected {exp.connections}",
        )
    if sc.timing:
        judge_timing(check, target, conns, lag)
    for conn in (c for c in conns if c.hello is not None):
        check.must(
            not conn.extra,
            f"the client sent {len(conn.extra)} bytes after its HELLO "
            f"on connection {conn.index} (§5.1: one frame per connection)",
        )
    if status == 0 and conns:
        final_conn = conns[-1]
        closed_at, final_at = final_conn.client_closed, final_conn.final_sent
        if closed_at is not None and final_at is not None:
            check.must(
                closed_at >= final_at - 0.01,
                "the client closed (or half-closed) before FINAL was sent",
            )
    if status == 130:
        check.must(out == "", f"stdout is not empty after SIGINT: {out[:80]!r}")
        return
    if status == 2:
        check.must(out == "", f"stdout is not empty on a usage error: {out[:80]!r}")
        check.must(not conns, "the client connected despite the usage error")
        return
    if exp.text:
        judge_text(sc, check, state, out)
    else:
        judge_json(sc, check, state, out, conns, status, target)


def judge_timing(check: Check, target: ClientTarget, conns: list[s.Conn], lag: float = 0.0) -> None:
    """§15: every reconnection waits at least 0.8 x the nominal delay (MUST: no busy loop);
    at most 1.2 x it plus a second of slack (SHOULD)."""
    k = 0
    delays = []
    for before, after in itertools.pairwise(conns):
        k = 0 if before.progress else k + 1
        nominal = nominal_delay(target, k)
        gap = after.accepted - before.ended
        delays.append(f"{gap:.2f}/{nominal:.2f}")
        check.must(
            gap >= 0.8 * nominal - 0.05 - lag,
            f"reconnection {after.index} after {gap:.3f} s; the backoff is at least "
            f"{0.8 * nominal:.3f} s (k = {k})",
        )
        check.should(
            gap <= 1.2 * nominal + 1.0,
            f"reconnection {after.index} after {gap:.3f} s; nominal {nominal:.3f} s (k = {k})",
        )
    if delays:
        check.note(
            "delays observed/nominal " + " ".join(delays) + f" (our loop lagged up to {lag:.3f} s)"
        )


def _truth_sum(state: s.State) -> int:
    return state.truth_sum(state.received)


def judge_text(sc: Scenario, check: Check, state: s.State, out: str) -> None:
    exp = sc.expect
    lines = out.split("\n")
    check.must(out.endswith("\n"), "stdout does not end with a newline")
    lines = lines[:-1]
    if sc.mode == wire.STATELESS:
        want = [str(_truth_sum(state))] if exp.reason is None else [f"FAILURE {exp.reason}"]
        check.must(lines == want, f"stdout {lines[:3]!r} is not {want[0][:60]!r} (A.3)")
        return
    cid = (state.client_id or b"").decode()
    if exp.reason is None:
        digest = state.truth_checksum().hex()
        want = [
            f"client_id {cid}",
            f"checksum_expected {digest}",
            f"checksum_computed {digest}",
            "SUCCESS",
        ]
    else:
        want_last = f"FAILURE {exp.reason}"
        check.must(len(lines) == 4, f"{len(lines)} lines on stdout, A.3 wants four")
        check.must(lines[0] == f"client_id {cid}", f"first line {lines[0]!r}")
        check.must(lines[3] == want_last, f"last line {lines[3]!r}, expected {want_last!r}")
        return
    check.must(lines == want, f"stdout {lines!r} is not the four lines of A.3")


def judge_json(
    sc: Scenario,
    check: Check,
    state: s.State,
    out: str,
    conns: list[s.Conn],
    status: int | None,
    target: ClientTarget,
) -> None:
    exp = sc.expect
    lines = [line for line in out.split("\n") if line.strip()]
    check.must(bool(lines), "nothing on stdout")
    try:
        doc = json.loads(lines[-1])
    except ValueError:
        check.must(False, f"the last stdout line is not JSON: {lines[-1][:80]!r}")
        return
    check.must(isinstance(doc, dict), "the JSON result is not an object")
    mode = MODES[sc.mode]
    common = {"mode", "n", "ok", "reconnects", "received", "error"}
    own = (
        {"first", "sum"}
        if sc.mode == wire.STATELESS
        else {"client_id", "checksum_expected", "checksum_computed", "final_frame_lost"}
    )
    missing = (common | own) - set(doc)
    check.should(not missing, f"JSON fields missing: {sorted(missing)} (A.4)")
    check.must(doc.get("mode") == mode, f"mode {doc.get('mode')!r}")
    check.must(doc.get("n") == state.n, f"n {doc.get('n')!r}")
    check.must(doc.get("ok") is (status == 0), f"ok {doc.get('ok')!r} with exit status {status}")
    check.must(
        doc.get("error", exp.reason) == exp.reason,
        f"error {doc.get('error')!r}, expected {exp.reason!r}",
    )
    judge_reconnects(sc, check, doc, conns, target)
    if "received" in doc:
        check.should(
            doc["received"] == state.received,
            f"received {doc['received']}, delivered {state.received}",
        )
    if sc.mode == wire.STATELESS:
        if state.welcome_seen:
            check.must(
                doc.get("first") == str(state.a), f"first {doc.get('first')!r}, a was {state.a}"
            )
            want = str(_truth_sum(state))
            got = doc.get("sum")
            why = f"sum {str(got)[:40]!r} is not the sum of the numbers delivered ({want[:40]})"
            if exp.reason is None:
                check.must(got == want, why)
            else:
                check.should(got == want, why + ", as a partial sum (A.4)")
        return
    judge_client_id(check, state, doc)
    if exp.reason is None:
        digest = state.truth_checksum().hex()
        check.must(doc.get("checksum_expected") == digest, "checksum_expected is not FINAL's")
        check.must(doc.get("checksum_computed") == digest, "checksum_computed is wrong")
    if exp.final_frame_lost is not None:
        check.must(
            doc.get("final_frame_lost") is exp.final_frame_lost,
            f"final_frame_lost {doc.get('final_frame_lost')!r}, expected {exp.final_frame_lost}",
        )


def judge_reconnects(
    sc: Scenario, check: Check, doc: dict[str, Any], conns: list[s.Conn], target: ClientTarget
) -> None:
    """A.4 ``reconnects``: attempts - 1 (SHOULD: the harness tolerates its absence)."""
    if "reconnects" in doc and sc.black_hole:
        attempts = int(target.timing("max_retries"))
        check.should(
            doc["reconnects"] == attempts - 1,
            f"reconnects {doc['reconnects']}, after {attempts} attempts (A.2 --max-retries)",
        )
    elif "reconnects" in doc and not sc.refuse_for:
        check.should(
            doc["reconnects"] == len(conns) - 1,
            f"reconnects {doc['reconnects']}, made {len(conns) - 1}",
        )


def judge_client_id(check: Check, state: s.State, doc: dict[str, Any]) -> None:
    """A.4 ``client_id``: the id of the HELLOs, lower-case canonical."""
    if state.client_id is None:  # no HELLO ever arrived: the id is still the A.4 form
        got = doc.get("client_id")
        check.must(
            isinstance(got, str) and wire.CLIENT_ID_RE.match(got.encode()) is not None,
            f"client_id {got!r} is not lower-case canonical UUID text",
        )
    else:
        cid = state.client_id.decode()
        check.must(
            doc.get("client_id") == cid, f"client_id {doc.get('client_id')!r}, HELLO said {cid}"
        )


def scenario_case(
    case_id: str,
    title: str,
    expected: str,
    sc: Scenario,
    level: Level = Level.MUST,
    needs: frozenset[str] = frozenset(),
    covers: tuple[str, ...] = (),
) -> Case:
    async def run(target: ClientTarget, check: Check) -> None:
        await play(sc, target, check)

    return Case(case_id, title, expected, level, run, needs, covers=covers)


def client_cases() -> list[Case]:
    from .client_cases import all_cases

    return all_cases()
