"""Independent checks of a client's reported result: the harness never takes a client's word.

A stateless sum is recomputed from the closed form a·(2^n - 1); a stateful checksum is
recomputed from the session seed when the harness saw the server hand it out. Big numbers are
compared as decimal text, because Python 3.11 refuses ``int(str)`` beyond 4,300 digits and a
sum at n = 65535 has up to 19,731.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reference.numbers import to_decimal
from reference.protocol.sequences import stateful_checksum, stateless_sum

from .model import NO_EVIDENCE, Mode, SessionEvidence

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


def verify_stateless(result: Mapping[str, Any], *, n: int) -> Verdict:
    """``sum`` must be the decimal text of a·(2^n - 1), a being the client's ``first``."""
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
    return Verdict(ok=True)


def verify_stateful(result: Mapping[str, Any], *, n: int, seed: int | None) -> Verdict:
    """Both checksums must agree, and equal the recomputation from ``seed`` when it is known."""
    computed = _checksum(result.get("checksum_computed"))
    expected = _checksum(result.get("checksum_expected"))
    if computed is None or expected is None:
        return _fail(
            "checksum_expected and checksum_computed must be 64 hex digits, got "
            f"{result.get('checksum_expected')!r} and {result.get('checksum_computed')!r}"
        )
    if computed != expected:
        return _fail(f"checksums differ: expected {expected}, computed {computed}")
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
) -> Verdict:
    """The whole verdict on one client run.

    ``client_id``: the id the client was told to use, if the command passed it on.
    ``evidence``: what the server side showed of a stateful client's session. With
    ``seed_known`` (the harness records every seed its server hands out) a stateful result
    naming a session the server never opened is a failure, not an unchecked pass; a
    ``changed_seed`` means the servers failed the client (a session's seed never changes);
    ``completed`` confirms or refutes a final frame lost (None: the harness cannot see it).
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
        return verify_stateless(result, n=n)
    return verify_stateful(result, n=n, seed=seed)


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
