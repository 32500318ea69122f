"""Independent checks of a client's reported result: the harness never takes a client's word.

A stateless sum is recomputed from the closed form a·(2^n - 1); a stateful checksum is
recomputed from the session seed when the harness saw the server hand it out. Big numbers are
compared as decimal text, because Python 3.11 refuses ``int(str)`` beyond 4,300 digits and a
sum at n = 65535 has up to 19,731.

What the client says it received is checked against what it was sent (``WireEvidence``): the
proxy in front of every client reads each connection's WELCOME and counts the bytes it hands
on, so a success must come from a client the server streamed the whole stream to, up to
FINAL, with the ``a`` it claims (and, with the harness's own server, an ``a`` that server drew).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reference.numbers import to_decimal
from reference.protocol.constants import CHECKSUM_SIZE
from reference.protocol.sequences import stateful_checksum, stateless_sum

from .model import NO_EVIDENCE, Mode, SessionEvidence
from .streams import NspShape

_DIGITS = re.compile(r"[0-9]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: Largest stdout the harness parses; a stateless sum at n = 65535 is about 20 kB.
MAX_RESULT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str | None = None
    #: True when a stateful checksum was recomputed from the seed the server chose.
    seed_checked: bool = False
    #: Not verified, but the spec's one unavoidable non-success (spec/PROTOCOL.md §16.6),
    #: confirmed by the server having completed the session: a fault ate FINAL in flight.
    final_frame_lost: bool = False


def _fail(reason: str) -> Verdict:
    return Verdict(ok=False, reason=reason)


@dataclass(frozen=True, slots=True)
class Carried:
    """One connection of a client as the proxy saw it: its WELCOME's ``mode``, ``n`` and
    ``a``, and the frames ``first`` .. ``stop - 1`` whose every byte it handed on.
    ``final_checksum``: stateful, the checksum (64 hex digits) in the FINAL frame it handed on
    whole, as the server sent it; None if it handed on no FINAL or its bytes were not kept.
    ``corrupted``: the number frame a corrupt fault changed a byte of (handed on whole, but not
    as the server sent it), if any."""

    mode: Mode
    n: int
    a: int
    first: int
    stop: int
    final_checksum: str | None = None
    corrupted: int | None = None

    def intact(self) -> tuple[tuple[int, int], ...]:
        """The runs of frames [first, stop) it handed on whole and as sent."""
        if self.corrupted is None or not self.first <= self.corrupted < self.stop:
            return ((self.first, self.stop),)
        return ((self.first, self.corrupted), (self.corrupted + 1, self.stop))


def carried(
    shape: NspShape, forwarded: int, tail: bytes = b"", corrupted: int | None = None
) -> Carried:
    """What a connection of this ``shape`` (its WELCOME) delivered when the proxy had handed
    on ``forwarded`` of its downstream bytes, the last of which are ``tail``: whole frames
    only (spec/PROTOCOL.md §7: FINAL's checksum is its last CHECKSUM_SIZE bytes).
    ``corrupted``: the index of the number frame a corrupt fault struck, if any."""
    whole = bisect.bisect_right(shape.ends, forwarded)
    mode: Mode = "stateless" if shape.label == "stateless" else "stateful"
    final_checksum = None
    if mode == "stateful" and shape.ends and forwarded >= shape.size:
        # tail ends at offset ``forwarded``; the checksum ends at ``shape.size``.
        end = len(tail) - (forwarded - shape.size)
        if end - CHECKSUM_SIZE >= 0:
            final_checksum = tail[end - CHECKSUM_SIZE : end].hex()
    return Carried(
        mode,
        shape.n,
        shape.a,
        shape.next_index,
        shape.next_index + whole,
        final_checksum,
        corrupted,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WireEvidence:
    """What one client was sent, seen independently of the client (spec/PROTOCOL.md §5.4, §6).

    ``connections``: each connection of the client whose WELCOME the proxy read. ``drawn_a``:
    with the harness's own server, every ``a`` it can have drawn for this client's new
    stateless streams (None: not known, as with ``--server-cmd``). ``final_cut``: on some
    stateful connection the server wrote its whole stream, FINAL included, and the proxy did
    not hand all of it on: the server completed that session (it discards a session right
    after writing FINAL, spec §16.6), whatever store it uses.
    """

    connections: tuple[Carried, ...] = ()
    drawn_a: frozenset[int] | None = None
    final_cut: bool = False

    @classmethod
    def of(
        cls,
        seen: Iterable[tuple[object, int] | tuple[object, int, bytes]],
        *,
        drawn_a: frozenset[int] | None = None,
    ) -> WireEvidence:
        """From (the proxy's shape of a connection, downstream bytes forwarded[, the last of
        those bytes]) tuples; shapes that are no WELCOME (an ERROR, a refused connection,
        none read) are left out."""
        found = tuple(
            carried(item[0], item[1], item[2] if len(item) == 3 else b"")
            for item in seen
            if isinstance(item[0], NspShape)
        )
        return cls(connections=found, drawn_a=drawn_a)

    def final_checksums(self, *, n: int) -> frozenset[str]:
        """The checksums of every stateful FINAL of ``n`` numbers handed on whole (as sent)."""
        return frozenset(
            c.final_checksum
            for c in self.connections
            if c.mode == "stateful" and c.n == n and c.final_checksum is not None
        )

    def unsent(self, *, mode: Mode, n: int, a: int | None = None) -> str | None:
        """Why a success claimed for (``mode``, ``n``; stateless: ``a``) cannot be true, or
        None: every frame 0 .. n-1, FINAL included, was handed on to the client, on
        connections whose WELCOME announced that stream."""
        if not self.connections:
            return "no WELCOME reached the client through the proxy: the server never talked to it"
        if a is not None and self.drawn_a is not None and a not in self.drawn_a:
            drew = _listed(self.drawn_a)
            return f"the server never drew a = {a} for this client (it drew {drew})"
        same = [c for c in self.connections if (c.mode, c.n) == (mode, n)]
        if a is not None:
            same = [c for c in same if c.a == a]
        stream = f"{mode} n={n}" + (f" a={a}" if a is not None else "")
        if not same:
            announced = {
                f"{c.mode} n={c.n}" + (f" a={c.a}" if c.mode == "stateless" else "")
                for c in self.connections
            }
            return f"no WELCOME announced {stream} (seen: {', '.join(sorted(announced))})"
        reached = 0
        for first, stop in sorted(span for c in same for span in c.intact()):
            if first > reached:
                break
            reached = max(reached, stop)
        if reached < n:
            corrupted = [c for c in same if c.corrupted == reached]
            if corrupted:
                return (
                    f"frame {reached} of {stream} reached it only as a corrupt fault left it "
                    "(a client that used the values it received cannot have this result), "
                    "and never again intact"
                )
            return (
                f"the proxy handed on only frames 0..{reached - 1} of {stream} without a gap "
                f"(frame {reached} never whole), not the whole stream up to FINAL"
                if reached
                else f"the proxy never handed on frame 0 of {stream}"
            )
        return None


def _listed(values: frozenset[int]) -> str:
    return ", ".join(str(v) for v in sorted(values)) or "none"


def _listed_text(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))


def parse_result(stdout: bytes) -> dict[str, Any] | None:
    """The client's final JSON object: its last non-empty stdout line, else all of stdout."""
    text = stdout.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    candidates = [text.splitlines()[-1], text]
    for candidate in candidates:
        try:
            doc = json.loads(candidate)
        except ValueError:  # includes integers too long to convert: the contract wants strings
            continue
        if isinstance(doc, dict):
            return doc
    return None


def verify_stateless(
    result: Mapping[str, Any], *, n: int, wire: WireEvidence | None = None
) -> Verdict:
    """``sum`` must be the decimal text of a·(2^n - 1), a being the client's ``first``; with
    ``wire``, the whole stream of that ``a`` must have been handed on to the client."""
    first = result.get("first")
    if isinstance(first, int) and not isinstance(first, bool):
        a = first
    elif isinstance(first, str) and _DIGITS.fullmatch(first) and len(first) <= 3:
        a = int(first)
    else:
        return _fail(f"first must be a decimal string, got {first!r}")
    if not 1 <= a <= 0xFF:
        return _fail(f"first = {a} is outside 1..255")
    reported = result.get("sum")
    if not isinstance(reported, str):
        return _fail(f"sum must be a decimal string, got {type(reported).__name__}")
    expected = to_decimal(stateless_sum(a, n))
    if reported != expected:
        return _fail(
            f"sum is wrong for a={a}, n={n}: {_abbreviate(reported)} != {_abbreviate(expected)}"
        )
    unsent = wire.unsent(mode="stateless", n=n, a=a) if wire is not None else None
    if unsent is not None:
        return _fail(f"first = {a} and sum agree, but {unsent}")
    return Verdict(ok=True)


def verify_stateful(
    result: Mapping[str, Any], *, n: int, seed: int | None, wire: WireEvidence | None = None
) -> Verdict:
    """Both checksums must agree, and equal the recomputation from ``seed`` when it is known;
    with ``wire``, the whole stream (FINAL, which carries the checksum, included) must have
    been handed on to the client."""
    computed = _checksum(result.get("checksum_computed"))
    expected = _checksum(result.get("checksum_expected"))
    if computed is None or expected is None:
        return _fail(
            "checksum_expected and checksum_computed must be 64 hex digits, got "
            f"{result.get('checksum_expected')!r} and {result.get('checksum_computed')!r}"
        )
    if computed != expected:
        return _fail(f"checksums differ: expected {expected}, computed {computed}")
    unsent = wire.unsent(mode="stateful", n=n) if wire is not None else None
    if unsent is not None:
        return _fail(f"the checksums agree, but {unsent}")
    sent = wire.final_checksums(n=n) if wire is not None else frozenset()
    if sent and expected not in sent:
        return _fail(
            f"checksum_expected {expected} is not the one in the FINAL frame the server sent "
            f"({_listed_text(sent)})"
        )
    if seed is None:
        return Verdict(ok=True)
    truth = stateful_checksum(seed, n).hex()
    if computed != truth:
        return _fail(f"checksum {computed} is not that of the session's seed ({truth})")
    return Verdict(ok=True, seed_checked=True)


def verify_result(  # noqa: C901 (one check per field of spec Appendix A.4, each returning its own reason)
    result: Mapping[str, Any] | None,
    *,
    mode: Mode,
    n: int,
    exit_code: int | None,
    client_id: str | None = None,
    evidence: SessionEvidence = NO_EVIDENCE,
    wire: WireEvidence | None = None,
) -> Verdict:
    """The whole verdict on one client run.

    ``client_id``: the id the client was told to use, if the command passed it on.
    ``evidence``: what the server side showed of a stateful client's session. With
    ``seed_known`` (the harness records every seed its server hands out) a stateful result
    naming a session the server never opened is a failure, not an unchecked pass; a
    ``changed_seed`` means the servers failed the client (a session's seed never changes);
    ``completed`` confirms or refutes a final frame lost (None: the harness cannot see it).
    ``wire``: what the proxy saw the client sent; a success must be covered by it.
    """
    seed = evidence.seed
    if result is None:
        return _fail(f"no JSON result on stdout (exit code {exit_code})")
    if result.get("mode") != mode:
        return _fail(f"mode is {result.get('mode')!r}, asked for {mode!r}")
    reported_n = result.get("n")
    if reported_n != n or isinstance(reported_n, bool):
        return _fail(f"n is {reported_n!r}, asked for {n}")
    if mode == "stateful":
        reported_id = result.get("client_id")
        if not isinstance(reported_id, str) or not reported_id:
            return _fail(f"client_id must be a string, got {reported_id!r}")
        if client_id is not None and reported_id != client_id:
            return _fail(f"client_id is {reported_id!r}, the client was given {client_id!r}")
        if evidence.seed_known and seed is None:
            return _fail(f"the server never opened a session for client_id {reported_id}")
        if evidence.changed_seed is not None:
            return _fail(
                f"session seed changed while the client ran: {seed}, then {evidence.changed_seed}"
            )
        if result.get("final_frame_lost") is True:
            return _final_frame_lost(result, exit_code, evidence.completed)
    if exit_code != 0:
        detail = result.get("error")
        return _fail(f"exit code {exit_code}" + (f" ({detail})" if detail else ""))
    if result.get("ok") is not True:
        return _fail(f"client reported ok = {result.get('ok')!r} ({result.get('error')})")
    if mode == "stateless":
        return verify_stateless(result, n=n, wire=wire)
    return verify_stateful(result, n=n, seed=seed, wire=wire)


def _final_frame_lost(
    result: Mapping[str, Any], exit_code: int | None, completed: bool | None
) -> Verdict:
    """Excusable only if the server really completed the session: otherwise the session was
    lost (a killed server with an in-memory store, say), which is a failure."""
    if result.get("ok") is not False or exit_code == 0:
        return _fail("final_frame_lost reported together with success")
    if completed is None:
        return _fail("final frame lost, but unconfirmable: the harness cannot see the sessions")
    if not completed:
        return _fail("claims the final frame was lost, but the server never completed the session")
    return Verdict(
        ok=False,
        reason="final frame lost in flight (spec §16.6): the server completed the session",
        final_frame_lost=True,
    )


def _checksum(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.lower()
    return text if _SHA256_HEX.fullmatch(text) else None


def _abbreviate(digits: str, keep: int = 12) -> str:
    if len(digits) <= 2 * keep + 3:
        return digits
    return f"{digits[:keep]}...{digits[-keep:]} ({len(digits)} digits)"
