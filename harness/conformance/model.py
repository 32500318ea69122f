"""Cases, checks and results of the conformance suite.

A case is data: an id that begins with its spec section (``11.2/resume-at-n``), a one-line
title, the expectation in words, the level of the rule it tests (MUST, SHOULD or INFO for
behaviour the spec leaves open) and an async ``run`` that drives the implementation and records
what it saw into a :class:`Check`. The outcome follows from the failed checks:

* a failed MUST check -> FAIL (and the case stops there);
* a failed SHOULD check -> NON-STRICT (the case goes on);
* an INFO case -> INFO, with the observation recorded;
* :class:`Skip` raised -> SKIPPED, with the reason.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.Enum):
    PASS = "PASS"  # noqa: S105 - an outcome, not a password
    NON_STRICT = "NON-STRICT"
    FAIL = "FAIL"
    INFO = "INFO"
    SKIPPED = "SKIPPED"


class Level(enum.Enum):
    MUST = "MUST"
    SHOULD = "SHOULD"
    INFO = "INFO"


def shown_text(text: str, limit: int = 40) -> str:
    """``repr(text)`` for a case title or a note, a long text cut to its first characters and
    its length (cli_values.json has a fraction of 5,000 digits)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[: limit // 2]!r}... ({len(text)} characters)"


class Skip(Exception):
    """The case cannot run against this target; the message says why."""


class MustFailed(Exception):
    """A MUST check failed; the case ends FAIL."""


@dataclass
class Exchange:
    """One chunk of bytes on one connection, for the HTML report."""

    connection: int
    direction: str  # "sent" (by the suite) or "received" (from the implementation)
    data: bytes
    at: float


@dataclass
class Check:
    """What a running case observed and which of its rules failed."""

    notes: list[str] = field(default_factory=list)
    must_failures: list[str] = field(default_factory=list)
    should_failures: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    connections: int = 0

    def note(self, text: str) -> None:
        self.notes.append(text)

    def must(self, condition: bool, failure: str) -> None:
        """A MUST rule: on failure record it and end the case (FAIL)."""
        if not condition:
            self.must_failures.append(failure)
            raise MustFailed(failure)

    def should(self, condition: bool, failure: str) -> bool:
        """A SHOULD rule: on failure record it and go on (NON-STRICT)."""
        if not condition:
            self.should_failures.append(failure)
        return condition

    def new_connection(self) -> int:
        self.connections += 1
        return self.connections

    def record(self, connection: int, direction: str, data: bytes) -> None:
        if data:
            self.exchanges.append(Exchange(connection, direction, data, time.monotonic()))


RunFn = Callable[[Any, Check], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    """One conformance case (see the module docstring)."""

    id: str
    title: str
    expected: str
    level: Level
    run: RunFn
    #: Capabilities the target must offer, e.g. ``"redis"`` or ``"spawn"``; missing ones skip.
    needs: frozenset[str] = frozenset()
    #: Cases marked exclusive run alone (they stop the server, count store commands, ...).
    exclusive: bool = False
    #: Further sections the case tests besides the one its id begins with (for the audit).
    covers: tuple[str, ...] = ()

    @property
    def section(self) -> str:
        return self.id.split("/", 1)[0]


@dataclass
class Result:
    case: Case
    outcome: Outcome
    observed: str
    duration: float
    exchanges: list[Exchange]
    failures: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "section": self.case.section,
            "title": self.case.title,
            "level": self.case.level.value,
            "outcome": self.outcome.value,
            "expected": self.case.expected,
            "observed": self.observed,
            "failures": self.failures,
            "duration": round(self.duration, 3),
        }


def judge(case: Case, check: Check, error: BaseException | None) -> Result:
    """Turn what a case recorded into its outcome."""
    duration = time.monotonic() - check.started
    observed = "; ".join(check.notes)
    if isinstance(error, Skip):
        return Result(case, Outcome.SKIPPED, str(error), duration, check.exchanges, [])
    failures = check.must_failures + check.should_failures
    if error is not None and not isinstance(error, MustFailed):
        failures = [*failures, f"the case broke: {type(error).__name__}: {error}"]
        return Result(case, Outcome.FAIL, observed, duration, check.exchanges, failures)
    if check.must_failures:
        outcome = Outcome.FAIL
    elif check.should_failures:
        outcome = Outcome.NON_STRICT
    elif case.level is Level.INFO:
        outcome = Outcome.INFO
    else:
        outcome = Outcome.PASS
    return Result(case, outcome, observed, duration, check.exchanges, failures)
