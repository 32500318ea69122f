"""Logging for the reference programs: peer text escaped, a JSON format, rate-limited lines.

Everything a peer sends is data, never terminal control: ERROR messages and anything else from
the wire may hold any UTF-8 (spec §4.4), including escape sequences and newlines that would
retitle a window, clear a screen or forge a log line. ``printable`` escapes it, and every
handler installed by ``configure_logging`` escapes the whole formatted message again, so a
string that reaches a log unescaped still cannot act on the terminal.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

LOG_FORMATS = ("text", "json")


def printable(text: str) -> str:
    """``text`` with every non-printable character as a Python-style escape (``\\x1b``, ``\\n``,
    ``\\u202e``); printable text, backslashes included, is unchanged.

    Non-printable is ``str.isprintable``'s notion: control characters (C0, C1, DEL), format
    characters (bidirectional overrides, zero-width joiners, U+FEFF), separators other than
    the space, surrogates, private-use and unassigned code points.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{code:02x}")
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def quoted(text: str) -> str:
    """Peer text for a log line: escaped, in double quotes so its extent is plain."""
    return f'"{printable(text)}"'


class _TextFormatter(logging.Formatter):
    """The usual one-line format, with the message escaped (a traceback keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return printable(super().formatMessage(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's ``fields``.

    ``json.dumps`` escapes control characters, so peer text cannot break a line here either.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(
    level: str, *, log_format: str = "text", console: Console | None = None
) -> None:
    """Logs go to stderr, so stdout carries nothing but the result.

    ``console``: log through rich's handler on that console (the one a progress bar draws on),
    so log lines appear above the bar instead of through it. ``log_format`` ``json``: one JSON
    object per line, for machines.
    """
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonFormatter())
    elif console is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(_TextFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class RateLimit:
    """A token bucket: at most ``burst`` lines at once and ``rate`` per second after that.

    ``allow()`` says whether one more line may be written now; ``take_suppressed()`` returns
    (and resets) how many were refused since, so the next line can say that some were dropped.
    ``clock`` is injectable for tests.
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self.suppressed = 0

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count
