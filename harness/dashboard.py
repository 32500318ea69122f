"""How a run shows itself: a rich live dashboard on a terminal, plain lines anywhere else.

The runner mutates its state on the event loop and calls ``refresh`` from there, so the
dashboard is redrawn with ``auto_refresh`` off: rich's own refresh thread would read that
state while the loop changes it.
"""

from __future__ import annotations

import logging
import sys
from typing import Protocol, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from proxy import FaultKind

from .model import ChaosOptions, ChaosReport, ClientPhase, ClientState, RunView

#: Fault events shown under the proxy counters.
RECENT_FAULTS = 8
#: Lines the dashboard needs besides client rows (header, panels, borders).
DASHBOARD_CHROME = 24

_PHASE_STYLE = {
    ClientPhase.QUEUED: "dim",
    ClientPhase.STARTING: "dim",
    ClientPhase.CONNECTING: "yellow",
    ClientPhase.CONNECTED: "green",
    ClientPhase.BACKING_OFF: "magenta",
    ClientPhase.EXITED: "cyan",
    ClientPhase.VERIFIED: "bold green",
    ClientPhase.FINAL_LOST: "bold yellow",
    ClientPhase.FAILED: "bold red",
}
#: Row order: clients doing something first, then failures, the queue, the verified.
_PHASE_ORDER = {
    ClientPhase.CONNECTING: 0,
    ClientPhase.CONNECTED: 0,
    ClientPhase.BACKING_OFF: 0,
    ClientPhase.STARTING: 0,
    ClientPhase.EXITED: 0,
    ClientPhase.FAILED: 1,
    ClientPhase.FINAL_LOST: 1,
    ClientPhase.QUEUED: 2,
    ClientPhase.VERIFIED: 3,
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


class LogUI:
    """Plain lines on stderr, one per client: for CI logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def _print(self, line: str) -> None:
        print(line, file=self._stream or sys.stderr, flush=True)

    def start(self, view: RunView) -> None:
        self._print(describe_run(view))

    def refresh(self) -> None:
        pass

    def client_finished(self, client: ClientState) -> None:
        self._print(client_line(client))

    def stop(self) -> None:
        pass


class LiveDashboard:
    """A rich Live view on stdout, redrawn by the runner about eight times a second."""

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
        """Log records printed above the live display instead of through it."""
        return _ConsoleHandler(self.console)

    def _render(self) -> RenderableType:
        if self._view is None:
            return Text("")
        return render_dashboard(self._view, height=self.console.size.height)


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            style = "red" if record.levelno >= logging.ERROR else "yellow"
            if record.levelno < logging.WARNING:
                style = "dim"
            self._console.print(Text(self.format(record), style=style))
        except Exception:
            self.handleError(record)


# --- rendering ------------------------------------------------------------------------------------


def describe_run(view: RunView) -> str:
    options = view.options
    servers = view.servers.ports if view.servers is not None else []
    kind = "subprocess" if options.server_subprocess else "in-process"
    return (
        f"chaos: seed {view.seed} (replay with --seed {view.seed}); "
        f"{options.clients} clients ({options.mode}, n={options.n}, "
        f"concurrency {options.effective_concurrency}); proxy 127.0.0.1:{view.proxy_port} -> "
        f"{kind} server{'s' if len(servers) != 1 else ''} on port "
        f"{', '.join(map(str, servers))}; faults: {describe_faults(options)}"
    )


def describe_faults(options: ChaosOptions) -> str:
    parts = [
        f"{name} {rate:g}"
        for name, rate in (
            ("drop", options.drop_rate),
            ("reset", options.reset_rate),
            ("blackhole", options.blackhole_rate),
            ("partition", options.partition_rate),
            ("corrupt", options.corrupt_rate),
            ("refuse", options.refuse_rate),
        )
        if rate
    ]
    if options.rates() and options.fault_window is not None:
        parts.append(f"window {options.fault_window} B")
    if options.limit_data is not None:
        parts.append(f"limit-data {options.limit_data} B")
    if options.latency or options.jitter:
        parts.append(f"latency {options.latency:g}±{options.jitter:g} s")
    if options.bandwidth is not None:
        parts.append(f"bandwidth {options.bandwidth} B/s")
    if options.slice_size is not None:
        parts.append(f"slice {options.slice_size} B / {options.slice_delay:g} s")
    if options.kill_interval is not None:
        parts.append(f"kill a server every {options.kill_interval:g} s")
    return ", ".join(parts) or "none"


def enabled_fault_kinds(options: ChaosOptions) -> list[str]:
    enabled = {
        FaultKind.DROP: options.drop_rate > 0,
        FaultKind.RESET: options.reset_rate > 0,
        FaultKind.BLACKHOLE: options.blackhole_rate > 0,
        FaultKind.PARTITION: options.partition_rate > 0,
        FaultKind.CORRUPT: options.corrupt_rate > 0,
        FaultKind.REFUSE: options.refuse_rate > 0,
        FaultKind.LIMIT_DATA: options.limit_data is not None,
        FaultKind.LATENCY: bool(options.latency or options.jitter),
        FaultKind.BANDWIDTH: options.bandwidth is not None,
        FaultKind.SLICE: options.slice_size is not None,
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


def client_line(client: ClientState) -> str:
    spec = client.spec
    duration = f"{client.duration:.1f} s" if client.duration is not None else "-"
    head = f"chaos: client {spec.id} ({spec.mode}, n={spec.n})"
    if client.ok:
        checked = ", checksum recomputed from seed" if client.seed_checked else ""
        reconnects = _plural(client.reconnects, "reconnect")
        return f"{head} verified: {reconnects}, {duration}{checked}"
    if client.final_frame_lost:
        return f"{head} not verified, excusably: {client.reason} ({duration})"
    return (
        f"{head} FAILED: {client.reason} "
        f"(exit {client.exit_code}, {_plural(client.reconnects, 'reconnect')}, {duration})"
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


def summary_table(report: ChaosReport) -> Table:
    table = Table(title="chaos run: verdict per client", box=box.SIMPLE_HEAVY, expand=False)
    for column, justify in (
        ("client", "right"),
        ("mode", "left"),
        ("n", "right"),
        ("verdict", "left"),
        ("reconnects", "right"),
        ("exit", "right"),
        ("seed check", "left"),
        ("time", "right"),
        ("reason", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for client in report.clients:
        verdict = Text("verified", "bold green") if client.ok else Text("FAILED", "bold red")
        if client.final_frame_lost:
            verdict = Text("final lost", "bold yellow")
        table.add_row(
            str(client.spec.id),
            client.spec.mode,
            str(client.spec.n),
            verdict,
            str(client.reconnects),
            "-" if client.exit_code is None else str(client.exit_code),
            _seed_check(client),
            "-" if client.duration is None else f"{client.duration:.1f} s",
            Text(client.reason or "", "red"),
        )
    return table


def _seed_check(client: ClientState) -> str:
    if not client.ok:
        return "-"
    if client.spec.mode == "stateless":
        return "closed form"
    return "recomputed" if client.seed_checked else "not available"


def render_dashboard(view: RunView, *, height: int = 40) -> RenderableType:
    """The whole screen: header, client rows, proxy and server panels, recent faults."""
    return Group(
        _header(view),
        _clients_table(view, max_rows=max(4, height - DASHBOARD_CHROME)),
        _panels(view),
        _events_table(view),
    )


def _header(view: RunView) -> Text:
    done = [client for client in view.clients if client.phase.finished]
    ok = sum(client.ok for client in done)
    lost = sum(client.final_frame_lost for client in done)
    text = Text()
    text.append("chaos ", "bold")
    text.append(f"seed {view.seed}   elapsed {view.elapsed:6.1f} s   ")
    text.append(f"finished {len(done)}/{len(view.clients)}   ")
    text.append(f"verified {ok}", "green")
    failed = len(done) - ok - lost
    if lost:
        text.append(f"   final lost {lost}", "yellow")
    text.append("   ")
    text.append(f"failed {failed}", "bold red" if failed else "dim")
    return text


def _clients_table(view: RunView, *, max_rows: int) -> Table:
    table = Table(box=box.SIMPLE, expand=False, pad_edge=False)
    table.add_column("client", justify="right")
    table.add_column("mode")
    table.add_column("progress", width=32)
    table.add_column("received", justify="right")
    table.add_column("reconn", justify="right")
    table.add_column("state")
    table.add_column("detail", overflow="ellipsis", no_wrap=True, max_width=50)
    rows = sorted(view.clients, key=lambda c: (_PHASE_ORDER[c.phase], c.spec.id))
    shown = rows if len(rows) <= max_rows else rows[: max_rows - 1]
    for client in shown:
        n = client.spec.n
        bar = ProgressBar(total=n, completed=client.received, width=30)
        if client.phase is ClientPhase.FAILED:
            bar.complete_style = "red"
        detail = client.reason if client.phase.finished else client.detail
        table.add_row(
            str(client.spec.id),
            client.spec.mode,
            bar,
            f"{client.received}/{n}",
            str(client.reconnects),
            Text(client.phase.value, _PHASE_STYLE[client.phase]),
            Text(detail or "", "dim"),
        )
    if len(shown) < len(rows):
        table.add_row("", Text(f"... {len(rows) - len(shown)} more", "dim"))
    return table


def _panels(view: RunView) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column()
    grid.add_column()
    grid.add_row(_proxy_panel(view), _server_panel(view))
    return grid


def _proxy_panel(view: RunView) -> Panel:
    body = Table.grid(padding=(0, 1))
    body.add_column(style="dim")
    body.add_column(justify="right")
    if view.proxy is not None:
        c = view.proxy.counters
        body.add_row("connections", f"{c.connections_active} active / {c.connections_total}")
        body.add_row("bytes to server", f"{c.bytes_upstream:,}")
        body.add_row("bytes to clients", f"{c.bytes_downstream:,}")
        body.add_row("upstream failures", str(c.upstream_failures))
        faults: dict[str, int] = dict(c.faults)
        body.add_row("faults", Text(fault_summary(view.options, faults), "bold"))
    return Panel(body, title=f"proxy :{view.proxy_port}", border_style="blue")


def _server_panel(view: RunView) -> Panel:
    body = Table.grid(padding=(0, 1))
    body.add_column(style="dim")
    body.add_column(justify="right")
    held = "n/a" if view.sessions_held is None else str(view.sessions_held)
    if view.servers is not None:
        stats = view.servers.stats()
        if stats.get("kind") == "in-process":
            active, total = stats["connections_active"], stats["connections_total"]
            body.add_row("connections", f"{active} active / {total}")
            body.add_row("streams completed", str(stats["streams_completed"]))
            errors = stats.get("errors_sent") or {}
            body.add_row(
                "errors sent",
                ", ".join(f"{name} {count}" for name, count in errors.items()) or "0",
            )
        else:
            body.add_row("instances up", f"{stats['up']}/{stats['instances']}")
            body.add_row("kills / restarts", f"{stats['kills']} / {stats['restarts']}")
            for instance in view.servers.instances():
                state = Text("up", "green") if instance.up else Text("down", "bold red")
                body.add_row(f"  :{instance.port} pid {instance.pid}", state)
    body.add_row("sessions held", held)
    return Panel(body, title="server", border_style="blue")


def _events_table(view: RunView) -> Table:
    table = Table(title="recent faults", box=box.SIMPLE, title_justify="left", pad_edge=False)
    for column in ("t (s)", "conn", "kind", "direction", "bytes down", "bytes up", "upstream"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    events = view.proxy.recent_events(RECENT_FAULTS) if view.proxy is not None else []
    for event in events:
        table.add_row(
            f"{event.t:.2f}",
            str(event.connection),
            Text(str(event.kind), "bold"),
            str(event.direction or "-"),
            str(event.offset_downstream),
            str(event.offset_upstream),
            event.upstream or "-",
        )
    return table
