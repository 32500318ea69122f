"""The suite's outputs: a rich table on stdout, JSON, JUnit XML and one self-contained HTML page."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .model import Outcome, Result

STYLE = {
    Outcome.PASS: "green",
    Outcome.NON_STRICT: "yellow",
    Outcome.FAIL: "bold red",
    Outcome.INFO: "cyan",
    Outcome.SKIPPED: "dim",
}
ORDER = [Outcome.PASS, Outcome.NON_STRICT, Outcome.FAIL, Outcome.INFO, Outcome.SKIPPED]
HEX_LIMIT = 2048  # bytes of each exchange shown in the HTML page


def failed(results: Sequence[Result], strict: bool) -> list[Result]:
    """FAIL always fails the run; NON-STRICT only under ``--strict``."""
    bad = {Outcome.FAIL, Outcome.NON_STRICT} if strict else {Outcome.FAIL}
    return [r for r in results if r.outcome in bad]


def summary(results: Sequence[Result]) -> dict[str, int]:
    counts = Counter(r.outcome for r in results)
    return {o.value: counts.get(o, 0) for o in ORDER}


def table(results: Sequence[Result], console: Console, role: str, seconds: float) -> None:
    grid = Table(title=f"NSP conformance: {role}", expand=False)
    grid.add_column("case")
    grid.add_column("outcome")
    grid.add_column("s", justify="right")
    grid.add_column("observed / why", overflow="fold")
    for r in results:
        why = "; ".join(r.failures) if r.failures else r.observed
        grid.add_row(
            r.case.id, f"[{STYLE[r.outcome]}]{r.outcome.value}", f"{r.duration:.1f}", why[:300]
        )
    console.print(grid)
    counts = summary(results)
    parts = [f"[{STYLE[o]}]{counts[o.value]} {o.value}[/]" for o in ORDER]
    console.print(f"{len(results)} cases in {seconds:.1f} s: " + ", ".join(parts))


def write_json(path: Path, results: Sequence[Result], meta: dict[str, Any]) -> None:
    doc = {**meta, "summary": summary(results), "cases": [r.as_json() for r in results]}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_junit(path: Path, results: Sequence[Result], role: str, strict: bool) -> None:
    counts = summary(results)
    bad = {Outcome.FAIL, Outcome.NON_STRICT} if strict else {Outcome.FAIL}
    suite = ET.Element(
        "testsuite",
        name=f"nsp-conformance-{role}",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if r.outcome in bad)),
        skipped=str(counts["SKIPPED"]),
        time=f"{sum(r.duration for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{role}.{r.case.section}",
            name=r.case.id,
            time=f"{r.duration:.3f}",
        )
        if r.outcome in bad:
            failure = ET.SubElement(case, "failure", message="; ".join(r.failures)[:500])
            failure.text = f"expected: {r.case.expected}\nobserved: {r.observed}"
        elif r.outcome is Outcome.SKIPPED:
            ET.SubElement(case, "skipped", message=r.observed)
        out = ET.SubElement(case, "system-out")
        out.text = f"{r.outcome.value}: {r.observed}"
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _hex(data: bytes) -> str:
    shown = data[:HEX_LIMIT]
    lines = [
        f"{offset:06x}  " + " ".join(f"{b:02x}" for b in shown[offset : offset + 16])
        for offset in range(0, len(shown), 16)
    ]
    if len(data) > HEX_LIMIT:
        lines.append(f"… {len(data) - HEX_LIMIT} more bytes")
    return "\n".join(lines)


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table.grid{border-collapse:collapse;margin-bottom:1.5em}
.grid td,.grid th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
.grid th:first-child,.grid td:first-child{text-align:left}
.PASS{background:#d9f2d9}.NON-STRICT{background:#fff1c2}.FAIL{background:#f8c9c9}
.INFO{background:#d6ecf7}.SKIPPED{background:#eee;color:#777}
details{margin:.2em 0;border-left:6px solid #ccc;padding-left:.5em}
details.FAIL{border-color:#c33}details.NON-STRICT{border-color:#d9a400}
details.PASS{border-color:#393}details.INFO{border-color:#38c}
summary{cursor:pointer}
pre{background:#f6f6f6;padding:.4em;overflow-x:auto;font-size:12px}
.sent{color:#05a}.received{color:#a50}
"""


def write_html(path: Path, results: Sequence[Result], meta: dict[str, Any]) -> None:
    sections: dict[str, Counter[Outcome]] = defaultdict(Counter)
    for r in results:
        sections[r.case.section][r.outcome] += 1
    rows = []
    for section in sorted(sections, key=_section_key):
        counts = sections[section]
        cells = "".join(
            f'<td class="{o.value if counts[o] else ""}">{counts[o] or ""}</td>' for o in ORDER
        )
        rows.append(f"<tr><td>{html.escape(section)}</td>{cells}</tr>")
    totals = summary(results)
    head = "".join(f"<th>{o.value}</th>" for o in ORDER)
    total_cells = "".join(f"<td>{totals[o.value]}</td>" for o in ORDER)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>NSP conformance: {html.escape(str(meta.get('role')))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>NSP conformance: {html.escape(str(meta.get('role')))}</h1>",
        "<p>" + html.escape(json.dumps({k: v for k, v in meta.items() if k != "cases"})) + "</p>",
        f"<table class='grid'><tr><th>section</th>{head}</tr>{''.join(rows)}",
        f"<tr><th>all</th>{total_cells}</tr></table>",
    ]
    for r in results:
        exchanges = [
            f"<div class='{ex.direction}'>connection {ex.connection}, {ex.direction} "
            f"({len(ex.data)} bytes):<pre>{html.escape(_hex(ex.data))}</pre></div>"
            for ex in r.exchanges
        ]
        failures = "".join(f"<li>{html.escape(f)}</li>" for f in r.failures)
        parts.append(
            f"<details class='{r.outcome.value}'><summary><b>{html.escape(r.case.id)}</b> "
            f"<span class='{r.outcome.value}'>{r.outcome.value}</span> "
            f"({r.case.level.value}, {r.duration:.2f} s): {html.escape(r.case.title)}</summary>"
            f"<p><b>expected:</b> {html.escape(r.case.expected)}</p>"
            f"<p><b>observed:</b> {html.escape(r.observed)}</p>"
            + (f"<ul>{failures}</ul>" if failures else "")
            + "".join(exchanges)
            + "</details>"
        )
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def _section_key(section: str) -> tuple[Any, ...]:
    return tuple(
        (0, int(p)) if p.isdigit() else (1, p) for p in section.replace("-", ".").split(".")
    )
