"""The live dashboard, rendered on recorded rich consoles of common terminal sizes.

The assertions are what a user must see: every client, unclipped, with its faults marked; the
overall progress with its rate and ETA; faults named by client, connection and frame; and a
frame that fits the terminal.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyte
import pytest
from rich.cells import cell_len
from rich.console import Console

from harness.dashboard import LiveDashboard, client_line, render_dashboard, summary_table
from harness.model import (
    ChaosOptions,
    ChaosReport,
    ClientPhase,
    ClientSpec,
    ClientState,
    Mode,
    RunView,
    ServerInstance,
)
from proxy import ConnectionKey, ConnectionRecord, FaultConfig, FaultEvent, FaultKind, ProxyCounters

PHASES = [
    ClientPhase.CONNECTED,
    ClientPhase.BACKING_OFF,
    ClientPhase.VERIFIED,
    ClientPhase.FAILED,
    ClientPhase.CONNECTING,
    ClientPhase.FINAL_LOST,
    ClientPhase.QUEUED,
    ClientPhase.CORRUPTION_DETECTED,
]


def fault(client: int, connection: int, kind: FaultKind, frame: int) -> FaultEvent:
    return FaultEvent(
        t=1.5 + client / 10,
        connection=client * 10 + connection,
        kind=kind,
        direction=None,
        offset_downstream=frame * 11 + 26,
        offset_upstream=45,
        upstream="127.0.0.1:40000",
        client=client,
        client_connection=connection,
        frame_index=frame,
        frame="data",
    )


@dataclass
class FakeProxy:
    records: list[ConnectionRecord]
    counters: ProxyCounters = field(default_factory=ProxyCounters)

    @property
    def connections(self) -> Sequence[ConnectionRecord]:
        return self.records

    def recent_events(self, limit: int = 20) -> list[FaultEvent]:
        events = [r.fault for r in self.records if r.fault is not None]
        return events[-limit:]


class FakeServers:
    ports: ClassVar[list[int]] = [40000]
    kills = 0

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "harness",
            "connections_active": 3,
            "connections_total": 31,
            "streams_completed": 12,
            "errors_sent": {},
        }

    def instances(self) -> list[ServerInstance]:
        return []

    async def sessions_held(self) -> int | None:
        return 2


def make_view(clients: int) -> RunView:
    options = ChaosOptions(
        clients=clients, n=65535, faults=FaultConfig(drop_rate=0.2, reset_rate=0.1)
    )
    states = []
    records = []
    for number in range(1, clients + 1):
        mode: Mode = "stateless" if number % 2 else "stateful"
        state = ClientState(
            ClientSpec(id=number, mode=mode, n=65535, seed=number, client_id=f"id-{number}")
        )
        state.phase = PHASES[number % len(PHASES)]
        state.received = (number * 7919) % 65536 if state.phase is not ClientPhase.QUEUED else 0
        state.attempts = number % 4 + 1
        states.append(state)
        if number % 3 == 0:
            for connection, kind in ((1, FaultKind.DROP), (2, FaultKind.RESET)):
                record = ConnectionRecord(key=ConnectionKey(index=0, client=number, number=1))
                record.fault = fault(number, connection, kind, 100 + number)
                records.append(record)
    view = RunView(
        options=options,
        seed=7,
        proxy_seed=8,
        clients=states,
        started_at=0.0,
        now=12.5,
        proxy=FakeProxy(records),
        proxy_port=40001,
        servers=FakeServers(),
        sessions_held=2,
    )
    view.proxy.counters.faults.update({"drop": 7, "reset": 7})  # type: ignore[union-attr]
    return view


def render(view: RunView, width: int, height: int) -> list[str]:
    console = Console(
        width=width, height=height, record=True, file=io.StringIO(), force_terminal=True
    )
    console.print(render_dashboard(view, width=width, height=height - 1))
    return console.export_text().rstrip("\n").split("\n")


def client_shown(lines: list[str], state: ClientState) -> str:
    """The line showing this client: a full row (id, mode) or a grid cell (id, L/F)."""
    number, mode = state.spec.id, state.spec.mode
    row = re.compile(rf"^\s*{number} +{mode} ")
    cell = re.compile(rf"(^|\s){number} {'L' if mode == 'stateless' else 'F'} ")
    found = [line for line in lines if row.search(line) or cell.search(line)]
    assert found, f"client {number} not shown:\n" + "\n".join(lines)
    return found[0]


@pytest.mark.parametrize(
    ("width", "height", "clients"), [(80, 24, 20), (160, 48, 20), (80, 24, 60)]
)
def test_dashboard_fits_the_terminal_and_shows_every_client(
    width: int, height: int, clients: int
) -> None:
    view = make_view(clients)
    lines = render(view, width, height)
    assert len(lines) <= height - 1, "\n".join(lines)
    assert all(cell_len(line) <= width for line in lines), "\n".join(lines)
    for state in view.clients:
        line = client_shown(lines, state)
        assert "…" not in line  # nothing that matters is clipped
        if state.spec.id % 3 == 0:
            assert "DR" in line  # its fault markers: a drop, then a reset
    text = "\n".join(lines)
    assert "ETA" in text
    assert re.search(r"[\d,]+/[\d,]+ numbers +[\d,]+/s", text)
    assert "verified" in text


def test_large_terminal_shows_rows_with_full_values_and_named_faults() -> None:
    view = make_view(20)
    lines = render(view, 160, 48)
    text = "\n".join(lines)
    for state in view.clients:
        line = client_shown(lines, state)
        assert f"{state.received}/65535" in line
        assert state.phase.value in line
    assert "backing off" in text
    assert "client 18 conn 2: reset frame 118" in text
    assert "client 15 conn 1: drop frame 115" in text


def test_plain_lines_and_verdict_table_name_each_clients_faults() -> None:
    view = make_view(8)
    state = view.clients[2]  # client 3: a drop and a reset
    state.faults = [fault(3, 1, FaultKind.DROP, 40), fault(3, 2, FaultKind.RESET, 90)]
    state.phase = ClientPhase.VERIFIED
    assert client_line(state).endswith("faults: conn 1 drop frame 40, conn 2 reset frame 90")
    report = ChaosReport(
        ok=True,
        seed=7,
        proxy_seed=8,
        duration_s=3.0,
        options=view.options,
        clients=view.clients,
        proxy={},
        server={},
    )
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(summary_table(report))
    table = console.export_text()
    assert "conn 1 drop frame 40, conn 2 reset frame 90" in table
    assert "corruption caught" in table
    for state in view.clients:
        assert len(re.findall(rf"^\s*{state.spec.id} +(stateless|stateful) ", table, re.M)) == 1


def test_live_frame_is_erased_at_the_end() -> None:
    """The verdict table follows the run: the last live frame must not stay above it."""
    console = Console(width=80, height=24, record=True, file=io.StringIO(), force_terminal=True)
    dashboard = LiveDashboard(console)
    dashboard.start(make_view(4))
    live = dashboard._live
    assert live is not None
    assert live.transient
    dashboard.refresh()
    dashboard.stop()
    assert not live.is_started


# --- a real run on a (pseudo-)terminal, as a user sees it ----------------------------------------

#: A verdict-table row: client number, mode, verdict (summary_table's first three columns).
VERDICT_ROW = re.compile(
    r"^\s*(\d+)\s+(stateless|stateful)\s+"
    r"(verified|final lost|corruption caught|FALSE SUCCESS|FAILED)(\s|$)"
)
#: A live client row: number, mode, then the progress bar.
LIVE_ROW = re.compile(r"^\s*\d+\s+(stateless|stateful)\s+[━╸╺]")


def run_on_terminal(argv: list[str], width: int, height: int) -> tuple[int, list[str]]:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal of ``width`` x ``height``,
    and return its exit status and what the terminal shows at the end: the scrollback, then the
    screen, as a terminal emulator (pyte) draws the bytes it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    screen = pyte.HistoryScreen(width, height, history=10_000, ratio=1.0)
    stream = pyte.ByteStream(screen)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            assert ready, "the run printed nothing for 120 s"
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal has closed it
                break
            if not data:
                break
            stream.feed(data)
        status = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def text(line: Any) -> str:
        return "".join(line[x].data for x in range(width)).rstrip()

    lines = [text(line) for line in screen.history.top] + [line.rstrip() for line in screen.display]
    return status, lines


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 48)])
def test_the_final_screen_shows_each_client_once(width: int, height: int) -> None:
    """A real run on a real terminal size: the verdict table lists every client exactly once,
    its verdict whole; no live frame is left behind; the summary line is all there."""
    clients = 6
    status, lines = run_on_terminal(
        [
            sys.executable, "-m", "harness.chaos", "--clients", str(clients), "-n", "30",
            "--interval", "0.005", "--drop-rate", "0.3", "--reset-rate", "0.2", "--seed", "3",
            "--ui", "live",
        ],
        width,
        height,
    )  # fmt: skip
    shown = "\n".join(lines)
    assert status == 0, shown
    rows = [match for line in lines if (match := VERDICT_ROW.match(line))]
    assert sorted(int(row[1]) for row in rows) == list(range(1, clients + 1)), shown
    for row in rows:
        # A drop can take a FINAL in flight when the proxy lags behind a server process (a
        # 388-byte stream fits in the proxy's buffers): excused, spec §16.6.
        assert row[3] in ("verified", "final lost"), shown
        assert (row[2] == "stateless") == (int(row[1]) % 2 == 1), shown
    verified = sum(row[3] == "verified" for row in rows)
    assert not [line for line in lines if LIVE_ROW.match(line)], shown  # the live frame is gone
    assert "…" not in shown  # nothing clipped: long faults and reasons wrap
    summary = " ".join(line.strip() for line in lines[lines.index(next(
        line for line in lines if line.startswith("chaos: ") and "clients verified" in line
    )):])  # fmt: skip
    assert f"{verified}/{clients} clients verified" in summary
    assert "seed 3" in summary
    assert sum("clients verified" in line for line in lines) == 1
    assert all(len(line) <= width for line in lines)


def test_log_lines_print_above_the_live_frame_never_over_it() -> None:
    """With the in-process server logging each connection at info during the live dashboard,
    every log line ends up whole on the terminal, each connection's accept matched by its end,
    and nothing of a live frame is left between them (issue 7 point 6, issue 11 point 6)."""
    status, lines = run_on_terminal(
        [
            sys.executable, "-m", "harness.chaos", "--clients", "4", "-n", "30",
            "--interval", "0.005", "--drop-rate", "0.3", "--seed", "3", "--ui", "live",
            "--log-level", "info",
        ],
        160,
        48,
    )  # fmt: skip
    shown = "\n".join(lines)
    assert status == 0, shown
    whole = re.compile(
        r"^INFO +reference\.server: (listening on 127\.0\.0\.1:\d+|\[[0-9a-f]+-\d+\] "
        r"(accepted from 127\.0\.0\.1:\d+|HELLO .+|ended after [\d.]+ s: .+))$"
    )
    logged = [line for line in lines if "reference.server" in line]
    assert logged, shown
    assert all(whole.match(line) for line in logged), shown
    accepted = sum("accepted from" in line for line in logged)
    assert accepted >= 4
    assert accepted == sum("ended after" in line for line in logged), shown
    assert not [line for line in lines if LIVE_ROW.match(line)], shown
