"""``python -m harness.conformance.audit``: which normative sentences of the spec have cases.

Lists, per section of ``spec/PROTOCOL.md`` and ``spec/STORE-REDIS.md``, the sentences that
carry MUST, MUST NOT, SHOULD or SHOULD NOT, and the server and client cases whose id begins
with that section (or that name it in ``Case.covers``). A section with such a sentence and no
case is a gap; ``--gaps`` lists only those and exits 1 if there are any.

Section names follow the case ids: ``5.3`` and ``A.1`` for PROTOCOL.md (``B`` for Appendix B),
``redis-4`` and ``redis-4.1`` for STORE-REDIS.md. Unnumbered headings (``### COMPLETE ...``)
belong to the numbered section above them. Not audited: the text before §1 (the RFC 2119
boilerplate), §22 (the changelog restates the rules of the sections it names) and code blocks.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .model import Case

SPEC = Path(__file__).resolve().parents[2] / "spec"
KEYWORDS = re.compile(r"\b(MUST NOT|MUST|SHOULD NOT|SHOULD)\b")
NOT_AUDITED = {"22": "the changelog restates the rules of the sections it names"}
_HEADING = re.compile(r"^(#{2,4}) (.*)$")
_NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.? ")
_APPENDIX = re.compile(r"^Appendix ([A-Z])\. ")
_APPENDIX_SUB = re.compile(r"^([A-Z]\.\d+) ")


@dataclass
class Section:
    name: str  # as case ids spell it: 5.3, A.1, B, redis-2
    title: str
    sentences: list[str] = field(default_factory=list)

    @property
    def normative(self) -> bool:
        return bool(self.sentences)


def _section_name(title: str, prefix: str) -> str | None:
    """The id-style name of a heading, or None for an unnumbered one."""
    if m := _APPENDIX.match(title):
        return m.group(1)
    if m := _APPENDIX_SUB.match(title):
        return m.group(1)
    if m := _NUMBERED.match(title):
        return prefix + m.group(1)
    return None


def sentences_of(text: str) -> list[str]:
    """Sentences of a block of prose, table rows and list items each on their own."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*[|*-] )|\n(?=\s*\d+\. )", text):
        flat = " ".join(line.strip() for line in block.splitlines()).strip()
        if not flat:
            continue
        out += [part.strip() for part in re.split(r"(?<=[.;:])\s+(?=[A-Z(*`])", flat)]
    return [s for s in out if s]


def parse(path: Path, prefix: str = "") -> list[Section]:
    """The sections of one spec document with their normative sentences."""
    sections: list[Section] = []
    current: Section | None = None
    in_code = False
    lines: list[str] = []

    def flush() -> None:
        if current is not None:
            current.sentences += [s for s in sentences_of("\n".join(lines)) if KEYWORDS.search(s)]
        lines.clear()

    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        heading = _HEADING.match(line)
        if heading:
            name = _section_name(heading.group(2), prefix)
            inside_changelog = (
                current is not None and current.name == "22" and len(heading.group(1)) > 2
            )
            if name is not None and not inside_changelog:
                flush()
                current = Section(name, heading.group(2))
                sections.append(current)
                continue
            # an unnumbered heading (### COMPLETE ...), or a version inside §22: the section
            # above goes on
            continue
        lines.append(line)
    flush()
    return [s for s in sections if s.name not in NOT_AUDITED]


def spec_sections() -> list[Section]:
    return [*parse(SPEC / "PROTOCOL.md"), *parse(SPEC / "STORE-REDIS.md", "redis-")]


def case_sections(case: Case) -> set[str]:
    return {case.section, *case.covers}


@dataclass
class Coverage:
    section: Section
    server: list[str]
    client: list[str]

    @property
    def gap(self) -> bool:
        return self.section.normative and not (self.server or self.client)


def coverage(
    sections: Sequence[Section], server: Iterable[Case], client: Iterable[Case]
) -> list[Coverage]:
    by_section: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for role, cases in ((0, server), (1, client)):
        for case in cases:
            for name in case_sections(case):
                by_section[name][role].append(case.id)
    return [Coverage(s, *by_section[s.name]) for s in sections]


def unknown_sections(sections: Sequence[Section], cases: Iterable[Case]) -> set[str]:
    """Sections named by cases that no heading of the spec has (a typo in a case id)."""
    known = {s.name for s in sections} | set(NOT_AUDITED)
    return {name for case in cases for name in case_sections(case)} - known


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.conformance.audit",
        description="Per spec section: its MUST/SHOULD sentences and the cases that test it.",
    )
    parser.add_argument("--gaps", action="store_true", help="only sections with no case; exit 1")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the sentences too")
    args = parser.parse_args(argv)
    from .client_role import client_cases
    from .server_role import server_cases

    server, client = server_cases(), client_cases()
    rows = coverage(spec_sections(), server, client)
    gaps = [row for row in rows if row.gap]
    print(f"{'section':<12} {'MUST/SHOULD':>11} {'server':>6} {'client':>6}  title")
    for row in gaps if args.gaps else rows:
        s = row.section
        mark = "  GAP" if row.gap else ""
        print(
            f"{s.name:<12} {len(s.sentences):>11} {len(row.server):>6} {len(row.client):>6}  "
            f"{s.title[:60]}{mark}"
        )
        if args.verbose:
            for sentence in s.sentences:
                print(f"{'':14}- {sentence[:160]}")
    total = sum(len(r.section.sentences) for r in rows)
    print(
        f"{len(rows)} sections, {sum(r.section.normative for r in rows)} with {total} MUST/SHOULD "
        f"sentences; {len(server)} server and {len(client)} client cases; {len(gaps)} gap(s)"
    )
    for name in sorted(unknown_sections(spec_sections(), [*server, *client])):
        print(f"cases name section {name}, which the spec does not have", file=sys.stderr)
    return 1 if args.gaps and gaps else 0


if __name__ == "__main__":
    sys.exit(main())
