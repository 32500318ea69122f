"""How a run shows itself: a rich live dashboard on a terminal, plain lines anywhere else.

The runner mutates its state on the event loop and calls ``refresh`` from there, so the
dashboard is redrawn with ``auto_refresh`` off: rich's own refresh thread would read that
state while the loop changes it.
"""

from __future__ import annotations

import io
import logging
import sys
from collections import Counter
from typing import Protocol, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from proxy import FaultEvent, FaultKind
from reference.logs import printable

from .model import (
    STRIKING_KINDS,
    ChaosOptions,
    ChaosReport,
    ClientPhase,
    ClientState,
    RunView,
    describe_fault,
    fault_what,
)

_PHASE_STYLE = {
    ClientPhase.QUEUED: "dim",
    ClientPhase.STARTING: "dim",
    ClientPhase.CONNECTING: "yellow",
    ClientPhase.CONNECTED: "green",
    ClientPhase.BACKING_OFF: "magenta",
    ClientPhase.EXITED: "cyan",
    ClientPhase.VERIFIED: "bold green",
    ClientPhase.FINAL_LOST: "bold yellow",
    ClientPhase.CORRUPTION_DETECTED: "bold yellow",
    ClientPhase.FAILED: "bold red",
    ClientPhase.FALSE_SUCCESS: "bold white on red",
}


class ChaosUI(Protocol):
    """What the runner tells its display; every call is made on the event loop."""

    def start(self, view: RunView) -> None: ...

    def refresh(self) -> None: ...

    def client_finished(self, client: ClientState) -> None: ...

    def stop(self) -> None: ...


class NullUI:
    """For tests and embedding: shows nothing."""

    def start(self, view: RunView) -> None:
        pass

    def refresh(self) -> None:
        pass

    def client_finished(self, client: ClientState) -> None:
        pass

    def stop(self) -> None:
        pass


#: Seconds between two progress lines of the plain display (a line per finished client says
#: nothing while every client is still streaming, e.g. for the first 30 s of ``-n 30
#: --interval 1``).
PROGRESS_EVERY = 10.0


class LogUI:
    """Plain lines on stderr, one per client, and a progress line every PROGRESS_EVERY
    seconds of the run: for CI logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._view: RunView | None = None
        self._next_progress = PROGRESS_EVERY

    def _print(self, line: str) -> None:
        print(line, file=self._stream or sys.stderr, flush=True)

    def start(self, view: RunView) -> None:
        self._view = view
        self._next_progress = PROGRESS_EVERY
        self._print(describe_run(view))

    def refresh(self) -> None:
        view = self._view
        if view is None or view.elapsed < self._next_progress:
            return
        while self._next_progress <= view.elapsed:
            self._next_progress += PROGRESS_EVERY
        self._print(progress_line(view))

    def client_finished(self, client: ClientState) -> None:
        self._print(client_line(client))

    def stop(self) -> None:
        pass


class LiveDashboard:
    """A rich Live view on stdout, redrawn by the runner about eight times a second.

    Transient: when the run ends the live frame is erased, so the verdict table printed next
    lists each client once. Log records go through the same console (``log_handler``), printed
    above the live frame instead of over it.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._live: Live | None = None
        self._view: RunView | None = None

    def start(self, view: RunView) -> None:
        self._view = view
        self.console.print(describe_run(view), style="dim", highlight=False)
        self._live = Live(
            self._render(),
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
            transient=True,
            vertical_overflow="crop",
        )
        self._live.start()

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def client_finished(self, client: ClientState) -> None:
        self.refresh()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def log_handler(self) -> logging.Handler:
        """rich's logging handler on the dashboard's console: records print above the live
        display instead of through it."""
        return RichHandler(
            console=self.console,
            show_path=False,
            show_time=False,
            markup=False,
            rich_tracebacks=False,
        )

    def _render(self) -> RenderableType:
        if self._view is None:
            return Text("")
        size = self.console.size
        # One line less than the screen: rich's live frame must never scroll the terminal.
        return render_dashboard(self._view, height=size.height - 1, width=size.width)


# --- rendering ------------------------------------------------------------------------------------


def progress_line(view: RunView) -> str:
    """``chaos: 10 s: 3/20 clients done (3 verified), 4,211/6,000 numbers, 2 faults, 1
    reconnect``: how far a run is, for the plain display."""
    clients = view.clients
    done = [client for client in clients if client.phase.finished]
    verified = sum(client.ok for client in done)
    total = sum(client.spec.n for client in clients)
    received = sum(
        client.spec.n if client.phase.finished and client.ok else client.received
        for client in clients
    )
    faults = sum(view.proxy.counters.faults.values()) if view.proxy is not None else 0
    reconnects = sum(client.reconnects for client in clients)
    return (
        f"chaos: {view.elapsed:.0f} s: {len(done)}/{len(clients)} clients done ({verified} "
        f"verified), {received:,}/{total:,} numbers, {_plural(faults, 'fault')}, "
        f"{_plural(reconnects, 'reconnect')}"
    )


def describe_run(view: RunView) -> str:
    options = view.options
    servers = view.servers.ports if view.servers is not None else []
    kind = "subprocess" if options.server_subprocess else "harness"
    return (
        f"chaos: seed {view.seed} (replay with --seed {view.seed}); "
        f"{options.clients} clients ({options.mode}, n={options.n}, "
        f"concurrency {options.effective_concurrency}); proxy 127.0.0.1:{view.proxy_port} -> "
        f"{kind} server{'s' if len(servers) != 1 else ''} on port "
        f"{', '.join(map(str, servers))}; faults: {describe_faults(options)}"
    )


def describe_faults(options: ChaosOptions) -> str:
    faults = options.faults
    parts = [
        f"{name} {rate:g}"
        for name, rate in (
            ("drop", faults.drop_rate),
            ("reset", faults.reset_rate),
            ("blackhole", faults.blackhole_rate),
            ("partition", faults.partition_rate),
            ("corrupt", faults.corrupt_rate),
            ("refuse", faults.refuse_rate),
        )
        if rate
    ]
    if options.rates() and not options.sized_faults:
        parts.append(f"window {faults.fault_window} B")
    if faults.limit_data is not None:
        parts.append(f"limit-data {faults.limit_data} B")
    if faults.latency or faults.jitter:
        parts.append(f"latency {faults.latency:g}±{faults.jitter:g} s")
    if faults.bandwidth is not None:
        parts.append(f"bandwidth {faults.bandwidth} B/s")
    if faults.slice_size is not None:
        parts.append(f"slice {faults.slice_size} B / {faults.slice_delay:g} s")
    if options.kill_interval is not None:
        parts.append(f"kill a server {options.kill_interval:g} s after all are up")
    if options.store_pause_interval is not None:
        parts.append(f"freeze the store about every {options.store_pause_interval:g} s")
    if options.store_restart_interval is not None:
        parts.append(f"restart the store about every {options.store_restart_interval:g} s")
    return ", ".join(parts) or "none"


def enabled_fault_kinds(options: ChaosOptions) -> list[str]:
    faults = options.faults
    enabled = {
        FaultKind.DROP: faults.drop_rate > 0,
        FaultKind.RESET: faults.reset_rate > 0,
        FaultKind.BLACKHOLE: faults.blackhole_rate > 0,
        FaultKind.PARTITION: faults.partition_rate > 0,
        FaultKind.CORRUPT: faults.corrupt_rate > 0,
        FaultKind.REFUSE: faults.refuse_rate > 0,
        FaultKind.LIMIT_DATA: faults.limit_data is not None,
        FaultKind.LATENCY: bool(faults.latency or faults.jitter),
        FaultKind.BANDWIDTH: faults.bandwidth is not None,
        FaultKind.SLICE: faults.slice_size is not None,
    }
    return [kind.value for kind, on in enabled.items() if on]


def fault_summary(options: ChaosOptions, faults: dict[str, int]) -> str:
    """``23 faults (drop 12, reset 11)``: every enabled kind, zero or not, and any other seen."""
    kinds = enabled_fault_kinds(options)
    kinds += [kind for kind in sorted(faults) if kind not in kinds]
    total = sum(faults.values())
    detail = ", ".join(f"{kind} {faults.get(kind, 0)}" for kind in kinds)
    return _plural(total, "fault") + (f" ({detail})" if detail else "")


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def client_faults_text(client: ClientState) -> str:
    """``conn 1 drop frame 17, conn 2 corrupt frame 33``: a client's faults, named."""
    return ", ".join(
        f"conn {event.client_connection} {fault_what(event)}" for event in client.faults
    )


def client_line(client: ClientState) -> str:
    spec = client.spec
    duration = f"{client.duration:.1f} s" if client.duration is not None else "-"
    head = f"chaos: client {spec.id} ({spec.mode}, n={spec.n})"
    faults = f"; faults: {client_faults_text(client)}" if client.faults else ""
    if client.ok:
        checked = ", checksum recomputed from seed" if client.seed_checked else ""
        reconnects = _plural(client.reconnects, "reconnect")
        return f"{head} verified: {reconnects}, {duration}{checked}{faults}"
    reason = printable(client.reason or "")  # may quote what the client printed
    if client.phase.acceptable:
        return f"{head} not verified, excusably: {reason} ({duration}){faults}"
    return (
        f"{head} {client.phase.value.upper()}: {reason} "
        f"(exit {client.exit_code}, {_plural(client.reconnects, 'reconnect')}, {duration}){faults}"
    )


def summary_line(report: ChaosReport) -> str:
    total = len(report.clients)
    reconnects = sum(client.reconnects for client in report.clients)
    parts = [f"{report.verified}/{total} clients verified"]
    if report.final_frames_lost:
        verdict = "failed under --strict" if report.options.strict else "excused"
        lost = _plural(report.final_frames_lost, "final frame lost", "final frames lost")
        parts.append(f"{lost} (spec §16.6, {verdict})")
    if report.corruptions_detected:
        parts.append(
            _plural(report.corruptions_detected, "corruption caught", "corruptions caught")
        )
    if report.false_successes:
        parts.append(_plural(report.false_successes, "FALSE SUCCESS", "FALSE SUCCESSES"))
    parts += [
        fault_summary(report.options, report.fault_counts),
        _plural(reconnects, "reconnect"),
    ]
    if report.servers_killed:
        parts.append(_plural(report.servers_killed, "server kill"))
    if report.store_events.get("pauses"):
        parts.append(_plural(report.store_events["pauses"], "store pause"))
    if report.store_events.get("restarts"):
        parts.append(_plural(report.store_events["restarts"], "store restart"))
    parts.append(f"{report.duration_s:.1f} s")
    parts.append(f"seed {report.seed}")
    line = "chaos: " + ", ".join(parts)
    if report.error:
        line += f"; ERROR: {report.error}"
    if report.timed_out:
        line += f"; TIMED OUT after {report.options.effective_timeout:g} s"
    if report.interrupted:
        line += "; INTERRUPTED"
    return line


_VERDICT_STYLE = {
    ClientPhase.VERIFIED: ("verified", "bold green"),
    ClientPhase.FINAL_LOST: ("final lost", "bold yellow"),
    ClientPhase.CORRUPTION_DETECTED: ("corruption caught", "bold yellow"),
    ClientPhase.FALSE_SUCCESS: ("FALSE SUCCESS", "bold white on red"),
}


def summary_table(report: ChaosReport, width: int | None = None) -> RenderableType:
    """The verdict per client, one row each, every value in the columns that matter whole.

    ``width``: the terminal's (None: unbounded). When the faults and reasons do not fit
    beside those columns they follow the table, a line per client that has any, instead of
    squeezing every column into an unreadable or clipped one; when not even those columns fit,
    each client's plain line (``client_line``) stands in for the table.
    """
    table = _verdict_table(report, details=True)
    if width is None or _width_of(table) <= width:
        return table
    if _width_of(_verdict_table(report, details=False)) > width:
        # Not even the short columns fit (a narrow pane): rich would clip every cell to
        # "stat…" and "ver…". The plain line per client says the same and wraps.
        return Group(*(Text(client_line(client)) for client in report.clients), Text(""))
    details = Table(box=None, pad_edge=False, padding=(0, 2), show_edge=False)
    details.add_column("client", justify="right", no_wrap=True)
    details.add_column("faults and reasons")  # wraps under itself, not under the numbers
    for client in report.clients:
        if client.faults or client.reason:
            details.add_row(
                str(client.spec.id),
                Text.assemble(
                    (client_faults_text(client), "magenta"),
                    ("; " if client.faults and client.reason else "", ""),
                    (printable(client.reason or ""), "red"),
                ),
            )
    if not details.row_count:
        return _verdict_table(report, details=False)
    return Group(_verdict_table(report, details=False), details, Text(""))


def _width_of(renderable: RenderableType) -> int:
    """The width ``renderable`` takes when nothing constrains it."""
    console = Console(width=100_000, file=io.StringIO())
    return console.measure(renderable).maximum


def _verdict_table(report: ChaosReport, *, details: bool) -> Table:
    n = {client.spec.n for client in report.clients}
    title = "chaos run: verdict per client" + (f" (n={n.pop()})" if len(n) == 1 else "")
    table = Table(title=title, box=box.SIMPLE_HEAVY, expand=False, pad_edge=False)
    columns = [
        ("client", "right"),
        ("mode", "left"),
        ("verdict", "left"),
        ("reconn", "right"),
        ("exit", "right"),
        ("check", "left"),
        ("time", "right"),
    ]
    if details:
        columns += [("faults", "left"), ("reason", "left")]
    for column, justify in columns:
        wraps = column in ("faults", "reason")
        table.add_column(column, justify=justify, no_wrap=not wraps)  # type: ignore[arg-type]
    for client in report.clients:
        label, style = _VERDICT_STYLE.get(client.phase, ("FAILED", "bold red"))
        cells: list[RenderableType] = [
            str(client.spec.id),
            client.spec.mode,
            Text(label, style),
            str(client.reconnects),
            "-" if client.exit_code is None else str(client.exit_code),
            _seed_check(client),
            "-" if client.duration is None else f"{client.duration:.1f} s",
        ]
        if details:
            cells += [
                Text(client_faults_text(client), "magenta"),
                Text(printable(client.reason or ""), "red"),
            ]
        table.add_row(*cells)
    return table


def _seed_check(client: ClientState) -> str:
    if not client.ok:
        return "-"
    if client.spec.mode == "stateless":
        return "closed form"
    return "recomputed" if client.seed_checked else "not available"


#: One letter per fault kind, for the per-client fault markers.
FAULT_MARKS = {
    FaultKind.DROP: "D",
    FaultKind.RESET: "R",
    FaultKind.BLACKHOLE: "B",
    FaultKind.PARTITION: "P",
    FaultKind.CORRUPT: "C",
    FaultKind.REFUSE: "X",
    FaultKind.LIMIT_DATA: "L",
}
_MODE_SHORT = {"stateless": "less", "stateful": "ful"}
#: Widths of the client-row columns other than the progress bar (id, mode, count, reconnects,
#: state), and the bar's bounds.
_ROW_FIXED = 4 + 5 + 12 + 3 + 12
_BAR_MIN, _BAR_MAX = 8, 40
#: A grid cell: "123 ✓ 100% DRC".
_CELL_WIDTH = 17


def faults_by_client(view: RunView) -> dict[int, list[FaultEvent]]:
    """The faults that struck each client's connections so far, in connection order."""
    faults: dict[int, list[FaultEvent]] = {}
    if view.proxy is None:
        return faults
    for record in view.proxy.connections:
        if record.key.client is not None and record.fault is not None:
            faults.setdefault(record.key.client, []).append(record.fault)
    return faults


def fault_marks(events: list[FaultEvent]) -> str:
    return "".join(FAULT_MARKS.get(event.kind, "?") for event in events)


def render_dashboard(view: RunView, *, height: int = 40, width: int = 100) -> RenderableType:
    """The whole screen, sized to fit ``width`` x ``height``: header and overall progress,
    every client (a row each, or a grid of cells when rows would not fit), the proxy and
    server in two lines, and as many recent faults as room is left for."""
    faults = faults_by_client(view)
    chrome = 2 + 2 + 2  # header + overall bar, proxy + server, table header + blank
    room = max(1, height - chrome - 1)
    clients = sorted(view.clients, key=lambda c: c.spec.id)
    if len(clients) + 1 <= room - 3:
        body: RenderableType = _client_rows(clients, faults, width)
        used = len(clients) + 1
    else:
        per_line = max(1, width // _CELL_WIDTH)
        rows = -(-len(clients) // per_line)
        # Lines for cells: all but the header and bar, the legend, the proxy and server lines.
        grid_room = height - 2 - len(GRID_LEGEND) - 2
        if rows > grid_room:  # the cells that matter most, and a line counting the rest
            fit = max(1, grid_room - 1) * per_line
            shown = sorted(sorted(clients, key=_grid_priority)[:fit], key=lambda c: c.spec.id)
            body = _client_grid(shown, faults, per_line, hidden=_hidden_line(clients, shown))
            used = -(-len(shown) // per_line) + len(GRID_LEGEND) + 1
        else:
            body = _client_grid(clients, faults, per_line)
            used = rows + len(GRID_LEGEND)
    recent = max(0, room - used - 1)
    parts: list[RenderableType] = [_header(view), _overall(view, width), body, _status(view)]
    if recent:
        parts.append(_recent_faults(view, recent))
    return Group(*parts)


def _header(view: RunView) -> Text:
    done = [client for client in view.clients if client.phase.finished]
    ok = sum(client.ok for client in done)
    excused = sum(client.phase.acceptable and not client.ok for client in done)
    failed = len(done) - ok - excused
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("chaos ", "bold")
    text.append(f"seed {view.seed}  {view.elapsed:.1f} s  done {len(done)}/{len(view.clients)}  ")
    text.append(f"verified {ok}", "green")
    if excused:
        text.append(f"  excused {excused}", "yellow")
    text.append("  ")
    text.append(f"failed {failed}", "bold red" if failed else "dim")
    return text


def _overall(view: RunView, width: int) -> Table:
    """One bar for all numbers of all clients, with their rate and an estimate of the rest."""
    total = sum(client.spec.n for client in view.clients)
    received = sum(
        client.spec.n if client.phase.finished and client.ok else client.received
        for client in view.clients
    )
    rate = received / view.elapsed if view.elapsed > 0 else 0.0
    eta = "-" if rate <= 0 or received >= total else f"{(total - received) / rate:.0f} s"
    label = f"{received:,}/{total:,} numbers  {rate:,.0f}/s  ETA {eta}"
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    bar_width = max(_BAR_MIN, min(60, width - len(label) - 2))
    grid.add_row(ProgressBar(total=max(1, total), completed=received, width=bar_width), label)
    return grid


def _client_rows(
    clients: list[ClientState], faults: dict[int, list[FaultEvent]], width: int
) -> Table:
    marks_width = max((len(faults.get(c.spec.id, [])) for c in clients), default=0)
    marks_width = max(6, min(marks_width, 12))
    bar = max(_BAR_MIN, min(_BAR_MAX, width - _ROW_FIXED - marks_width - 7))
    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    table.add_column("progress", width=bar, no_wrap=True)
    table.add_column("received", justify="right", no_wrap=True)
    table.add_column("re", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("faults", no_wrap=True, max_width=marks_width, overflow="ellipsis")
    for client in clients:
        n = client.spec.n
        progress = ProgressBar(total=n, completed=client.received, width=bar)
        if client.phase is ClientPhase.FAILED:
            progress.complete_style = "red"
        table.add_row(
            str(client.spec.id),
            client.spec.mode,
            progress,
            f"{client.received}/{n}",
            str(client.reconnects),
            Text(client.phase.value, _PHASE_STYLE[client.phase]),
            Text(fault_marks(faults.get(client.spec.id, [])), "bold magenta"),
        )
    return table


def _client_grid(
    clients: list[ClientState],
    faults: dict[int, list[FaultEvent]],
    per_line: int,
    *,
    hidden: Text | None = None,
) -> Group:
    """Many clients: a cell each, ``#id mode-letter state-glyph percent fault-marks``;
    ``hidden``: the line that counts the clients left out for want of room."""
    grid = Table.grid(padding=(0, 1))
    for _ in range(per_line):
        grid.add_column(width=_CELL_WIDTH - 1, no_wrap=True, overflow="crop")
    cells = [_cell(client, faults.get(client.spec.id, [])) for client in clients]
    for start in range(0, len(cells), per_line):
        row = cells[start : start + per_line]
        grid.add_row(*row, *[""] * (per_line - len(row)))
    legend = [Text(line, "dim", no_wrap=True, overflow="ellipsis") for line in GRID_LEGEND]
    return Group(grid, *([hidden] if hidden is not None else []), *legend)


#: Which clients a grid too big for the terminal shows first: the failed, then those at work,
#: then the excused, then the queued and the verified.
_GRID_ORDER = {
    ClientPhase.FALSE_SUCCESS: 0,
    ClientPhase.FAILED: 1,
    ClientPhase.CONNECTED: 2,
    ClientPhase.CONNECTING: 2,
    ClientPhase.BACKING_OFF: 2,
    ClientPhase.STARTING: 2,
    ClientPhase.EXITED: 2,
    ClientPhase.FINAL_LOST: 3,
    ClientPhase.CORRUPTION_DETECTED: 3,
    ClientPhase.QUEUED: 4,
    ClientPhase.VERIFIED: 5,
}


def _grid_priority(client: ClientState) -> tuple[int, int]:
    return _GRID_ORDER.get(client.phase, 2), client.spec.id


def _hidden_line(clients: list[ClientState], shown: list[ClientState]) -> Text:
    """``+ 120 more: 90 verified, 30 queued``: the clients a full screen left out, by phase."""
    ids = {client.spec.id for client in shown}
    left = Counter(client.phase.value for client in clients if client.spec.id not in ids)
    counts = ", ".join(f"{count} {phase}" for phase, count in left.most_common())
    return Text(f"+ {sum(left.values())} more: {counts}", "dim", no_wrap=True, overflow="ellipsis")


#: What the grid's letters mean.
GRID_LEGEND = (
    "L/F stateless/stateful  ✓ ok ~ final lost c corrupt caught ✗ failed ! FALSE SUCCESS",
    "» streaming ? connecting b backoff · queued  D drop R reset B blackhole P partition "
    "C corrupt X refuse L limit",
)


_GLYPH = {
    ClientPhase.VERIFIED: "✓",
    ClientPhase.FINAL_LOST: "~",
    ClientPhase.CORRUPTION_DETECTED: "c",
    ClientPhase.FAILED: "✗",
    ClientPhase.FALSE_SUCCESS: "!",
    ClientPhase.BACKING_OFF: "b",
    ClientPhase.CONNECTING: "?",
    ClientPhase.CONNECTED: "»",
}


def _cell(client: ClientState, faults: list[FaultEvent]) -> Text:
    percent = 100 * client.received // max(1, client.spec.n)
    if client.ok:
        percent = 100
    text = Text(no_wrap=True)
    text.append(f"{client.spec.id:>3}", "bold")
    text.append(" L " if client.spec.mode == "stateless" else " F ", "dim")
    text.append(_GLYPH.get(client.phase, "·"), _PHASE_STYLE[client.phase])
    text.append(f"{percent:>4}% ")
    text.append(fault_marks(faults)[:5], "bold magenta")
    return text


def _status(view: RunView) -> Text:
    """Two lines: the proxy's counters and the server's."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if view.proxy is not None:
        c = view.proxy.counters
        text.append("proxy ", "bold blue")
        text.append(
            f"{c.connections_active} active/{c.connections_total} conns  "
            f"{c.bytes_downstream:,} B down  {fault_summary(view.options, dict(c.faults))}"
        )
    text.append("\n")
    text.append("server ", "bold blue")
    held = "n/a" if view.sessions_held is None else str(view.sessions_held)
    if view.servers is not None:
        stats = view.servers.stats()
        if stats.get("kind") == "harness":
            errors = stats.get("errors_sent") or {}
            text.append(
                f"harness  {stats['connections_active']} active/{stats['connections_total']} "
                f"conns  {stats['streams_completed']} streams done  sessions {held}"
                + (f"  errors {sum(errors.values())}" if errors else "")
            )
        else:
            down = [str(i.port) for i in view.servers.instances() if not i.up]
            text.append(
                f"{stats['up']}/{stats['instances']} up  kills {stats['kills']}  "
                f"restarts {stats['restarts']}  sessions {held}"
            )
            if down:
                text.append(f"  down: {', '.join(down)}", "bold red")
    return text


def _recent_faults(view: RunView, limit: int) -> Text:
    events = [
        event
        for event in (view.proxy.recent_events(200) if view.proxy is not None else [])
        if event.kind in STRIKING_KINDS
    ][-limit:]
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("recent faults", "bold")
    for event in events:
        text.append(f"\n  {event.t:6.2f} s  ")
        text.append(describe_fault(event), "magenta")
    return text
