"""The client cases, as tables of scenarios: per connection a script of what the scripted
server does, and what the client must end with."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Callable

from . import scripted as s
from . import wire
from .client_role import Expect, Scenario, scenario_case
from .model import Case, Level, shown_text
from .server_role import VECTORS

SL, SF = wire.STATELESS, wire.STATEFUL
NAME = {SL: "stateless", SF: "stateful"}
OK = Expect(0)


def honest(mode: int) -> list[object]:
    return [s.welcome(), s.numbers()]


def cases_honest() -> list[Case]:
    return [
        scenario_case(
            "20.1/stateless-text",
            "the §20.1 stream (n 3, a 23), text output",
            "stdout exactly '161', exit 0",
            Scenario(SL, 3, [honest(SL)], Expect(0, text=True, connections=1)),
        ),
        scenario_case(
            "20.3/stateful-text",
            "the §20.3 session (n 3, seed 0x0123456789abcdef), text output",
            "the four lines of A.3 with both checksums fab44cfb… and SUCCESS, exit 0",
            Scenario(SF, 3, [honest(SF)], Expect(0, text=True, connections=1)),
        ),
        scenario_case(
            "A.4/stateless-json",
            "an honest stateless stream of 10, --json",
            "one JSON object with every A.4 field, sum exact, exit 0",
            Scenario(SL, 10, [honest(SL)], Expect(0, connections=1)),
        ),
        scenario_case(
            "A.4/stateful-json",
            "an honest stateful stream of 10, --json",
            "one JSON object with every A.4 field, checksums equal, exit 0",
            Scenario(SF, 10, [honest(SF)], Expect(0, connections=1)),
        ),
        scenario_case(
            "2.3/stateless-big-sum",
            "2,000 stateless numbers at interval 0 (values up to 251 bytes)",
            "the exact 603-digit sum",
            Scenario(SL, 2000, [honest(SL)], Expect(0, connections=1), interval_ms=0),
        ),
        scenario_case(
            "2.3/stateless-big-sum-text",
            "1,500 stateless numbers, text output",
            "the exact sum alone on one line",
            Scenario(SL, 1500, [honest(SL)], Expect(0, text=True), interval_ms=0),
        ),
        scenario_case(
            "7.5/stateful-n-1",
            "a stateful stream of one number: WELCOME, FINAL",
            "SUCCESS",
            Scenario(SF, 1, [honest(SF)], Expect(0, connections=1)),
        ),
        scenario_case(
            "7.5/stateful-n-3000",
            "3,000 stateful numbers at interval 0",
            "SUCCESS",
            Scenario(SF, 3000, [honest(SF)], Expect(0), interval_ms=0),
        ),
        scenario_case(
            "6.3/stateless-n-1",
            "a stateless stream of one number",
            "the sum a",
            Scenario(SL, 1, [honest(SL)], Expect(0, connections=1)),
        ),
        scenario_case(
            "2.1/frames-byte-by-byte",
            "every frame written in pieces (its header one byte at a time)",
            "the client reassembles: SUCCESS",
            Scenario(SF, 4, [[s.welcome(), bytewise(4)]], Expect(0, connections=1)),
        ),
        scenario_case(
            "2.1/all-frames-in-one-write",
            "WELCOME and every number in one write",
            "the client processes every frame of one read: exact sum",
            Scenario(SL, 6, [[all_at_once()]], Expect(0, connections=1)),
        ),
        scenario_case(
            "10/closes-after-final-without-eof",
            "after FINAL the server keeps the connection open",
            "the client closes at once and exits 0",
            Scenario(
                SF, 3, [[s.welcome(), s.numbers(), s.expect_close(2.0)]], Expect(0, connections=1)
            ),
        ),
        scenario_case(
            "10/bytes-after-final",
            "a DATA frame right behind FINAL in the same write (issue 8 point g: discarded)",
            "the result stands: exit 0",
            Scenario(
                SL,
                3,
                [[s.welcome(), s.numbers(2), s.final_with(wire.number(wire.DATA, 3, b"\x01"))]],
                Expect(0, connections=1),
            ),
        ),
        scenario_case(
            "10/garbage-after-final",
            "garbage bytes after a stateful FINAL",
            "discarded: SUCCESS, exit 0",
            Scenario(
                SF,
                3,
                [[s.welcome(), s.numbers(2), s.final_with(b"\xff\xff\xff")]],
                Expect(0, connections=1),
            ),
        ),
        scenario_case(
            "13/slow-server",
            "interval 300 ms: slower than the floor of the silence "
            "timeout but well within 3 x interval",
            "no reconnection; SUCCESS",
            Scenario(SF, 4, [honest(SF)], Expect(0, connections=1), interval_ms=300),
        ),
    ]


def bytewise(count: int) -> Callable[[s.Ctx], object]:
    async def step(ctx: s.Ctx) -> None:
        import anyio

        for _ in range(count):
            frame = ctx.state.number(ctx.state.next_on_conn)
            # the header and the first payload byte one by one, the rest in two pieces: a
            # frame never arrives whole, yet a busy machine cannot stretch it past the
            # client's silence timeout
            cuts = sorted({1, 2, 3, 4, (4 + len(frame)) // 2, len(frame)})
            start = 0
            for cut in cuts:
                if ctx.closed.is_set() or not await ctx.send(frame[start:cut]):
                    return
                start = cut
                await anyio.sleep(0.002)
            ctx.state.received += 1
            ctx.state.next_on_conn += 1
            ctx.conn.progress = True

    return step


def all_at_once() -> Callable[[s.Ctx], object]:
    async def step(ctx: s.Ctx) -> None:
        st = ctx.state
        data = st.welcome() + b"".join(st.number(i) for i in range(st.n))
        await ctx.send(data)
        st.welcome_seen = True
        st.received = st.n
        ctx.conn.progress = True

    return step


# -- cuts at every phase ----------------------------------------------------------------------

#: (name, steps before the cut, numbers received by then)
PHASES: list[tuple[str, Callable[[], list[object]]]] = [
    ("before-welcome", list),
    ("inside-welcome", lambda: [s.raw(lambda st: st.welcome()[:11])]),
    ("after-welcome", lambda: [s.welcome()]),
    ("after-two-numbers", lambda: [s.welcome(), s.numbers(2)]),
    ("inside-data-header", lambda: [s.welcome(), s.numbers(2), s.partial_next(2)]),
    ("inside-data-payload", lambda: [s.welcome(), s.numbers(2), s.partial_next(6)]),
    ("before-final", lambda: [s.welcome(), s.numbers(4)]),
    ("inside-final", lambda: [s.welcome(), s.numbers(4), s.partial_next(-1)]),
]


def cases_cuts() -> list[Case]:
    cases = []
    for mode in (SL, SF):
        for phase, before in PHASES:
            for how, cut in (("fin", s.fin), ("rst", s.reset)):
                section = "11" if phase not in ("before-welcome", "inside-welcome") else "7.3"
                if mode == SL and section == "7.3":
                    section = "6.4"
                sc = Scenario(
                    mode,
                    5,
                    [[*before(), cut], [s.welcome(), s.numbers()]],
                    Expect(0, connections=2),
                )
                cases.append(
                    scenario_case(
                        f"{section}/{NAME[mode]}-cut-{phase}-{how}",
                        f"{NAME[mode]} n 5: the connection is cut ({how.upper()}) "
                        + phase.replace("-", " "),
                        "reconnect after the backoff with the right resumption parameters "
                        "(RESUME iff a WELCOME was seen, next_index = numbers received), "
                        "then success",
                        sc,
                    )
                )
    for mode in (SL, SF):
        cases.append(  # noqa: PERF401 - one case per mode reads better as a loop
            scenario_case(
                f"15/{NAME[mode]}-three-drops",
                f"{NAME[mode]}: three drops, each after progress",
                "each reconnection after about the initial backoff (progress resets it); success",
                Scenario(
                    mode,
                    8,
                    [
                        [s.welcome(), s.numbers(2), s.fin],
                        [s.welcome(), s.numbers(2), s.reset],
                        [s.welcome(), s.numbers(2), s.fin],
                        [s.welcome(), s.numbers()],
                    ],
                    Expect(0, connections=4),
                ),
            )
        )
    return cases


# -- violations the client must reject ---------------------------------------------------------

Build = Callable[[s.State], bytes]


def _w(**kw: int) -> Build:
    return lambda st: st.welcome(**kw)


def _utf8_error(message: bytes) -> Build:
    return lambda st: wire.frame(wire.ERROR, struct.pack(">H", 20) + message)


#: WELCOME lies: (name, modes, build, extra steps before) — sent instead of the WELCOME.
WELCOME_LIES: list[tuple[str, str, tuple[int, ...], Build]] = [
    (
        "welcome-22-bytes",
        "a WELCOME payload of 22 bytes",
        (SL, SF),
        lambda st: wire.frame(wire.WELCOME, st.welcome()[3:-1]),
    ),
    (
        "welcome-24-bytes",
        "a WELCOME payload of 24 bytes",
        (SL, SF),
        lambda st: wire.frame(wire.WELCOME, st.welcome()[3:] + b"\x00"),
    ),
    ("welcome-version-2", "WELCOME version 2", (SL, SF), _w(version=2)),
    ("welcome-mode-3", "WELCOME mode 3", (SL, SF), _w(mode=3)),
    ("welcome-flags-1", "WELCOME flags 0x01", (SL, SF), _w(flags=1)),
    ("welcome-n-0", "WELCOME n 0", (SL, SF), _w(n=0)),
    (
        "welcome-n-differs",
        "WELCOME n one more than the HELLO's",
        (SL, SF),
        lambda st: st.welcome(n=st.n + 1),
    ),
    (
        "welcome-next-index-differs",
        "WELCOME next_index 1 for a HELLO at 0",
        (SL, SF),
        _w(next_index=1),
    ),
    (
        "welcome-next-index-at-n",
        "WELCOME next_index = n",
        (SL, SF),
        lambda st: st.welcome(next_index=st.n),
    ),
    (
        "welcome-mode-differs",
        "a stateful WELCOME to a stateless HELLO (and vice versa)",
        (SL, SF),
        lambda st: st.welcome(
            mode=3 - st.mode, a=0 if st.mode == SL else 9, ttl_ms=30000 if st.mode == SL else 0
        ),
    ),
    ("welcome-stateless-a-0", "stateless WELCOME with a 0", (SL,), _w(a=0)),
    ("welcome-stateless-a-256", "stateless WELCOME with a 256", (SL,), _w(a=256)),
    (
        "welcome-stateless-ttl",
        "stateless WELCOME with session_ttl_ms 30000",
        (SL,),
        _w(ttl_ms=30000),
    ),
    ("welcome-stateful-a-5", "stateful WELCOME with a 5", (SF,), _w(a=5)),
    (
        "welcome-interval-over-a-day",
        "interval_ms 86,400,001 (issue 8 point j, 1.1: at most one day)",
        (SL, SF),
        _w(interval_ms=86_400_001),
    ),
    (
        "welcome-ttl-over-a-day",
        "session_ttl_ms 86,400,001 (issue 8 point j)",
        (SF,),
        _w(ttl_ms=86_400_001),
    ),
]

#: Frame lies after a valid WELCOME and two numbers: (name, title, modes, build)
FRAME_LIES: list[tuple[str, str, tuple[int, ...], Build]] = [
    ("unknown-type-0x06", "a frame of type 0x06", (SL, SF), lambda st: wire.frame(6, b"\x00" * 4)),
    ("type-0x00", "a frame of type 0x00", (SL, SF), lambda st: wire.frame(0, b"")),
    (
        "length-16385",
        "a header announcing 16,385 bytes",
        (SL, SF),
        lambda st: wire.raw_header(wire.DATA, 16385),
    ),
    ("second-welcome", "a second WELCOME", (SL, SF), lambda st: st.welcome()),
    ("server-sends-hello", "a HELLO from the server", (SL, SF), lambda st: wire.hello(SL, 5)),
    (
        "index-gap",
        "the next DATA skips one index",
        (SL, SF),
        lambda st: st.number(st.next_on_conn + 1),
    ),
    ("index-repeat", "the last DATA again", (SL, SF), lambda st: st.number(st.next_on_conn - 1)),
    ("index-zero-again", "DATA index 0 after index 1", (SL, SF), lambda st: st.number(0)),
    (
        "final-too-early",
        "FINAL at the expected index, before n-1",
        (SL, SF),
        lambda st: _as(st, wire.FINAL),
    ),
    (
        "stateless-leading-zero",
        "a stateless value with a leading 0x00 byte",
        (SL,),
        lambda st: wire.number(
            wire.DATA, st.next_on_conn, b"\x00" + wire.stateless_value(st.a, st.next_on_conn)
        ),
    ),
    (
        "stateless-no-value",
        "a stateless DATA of 4 bytes (no value)",
        (SL,),
        lambda st: wire.number(wire.DATA, st.next_on_conn, b""),
    ),
    (
        "stateless-3-bytes",
        "a stateless DATA payload of 3 bytes",
        (SL,),
        lambda st: wire.frame(wire.DATA, b"\x00\x00\x00"),
    ),
    (
        "stateful-data-7",
        "a stateful DATA payload of 7 bytes",
        (SF,),
        lambda st: wire.frame(wire.DATA, st.number(st.next_on_conn)[3:10]),
    ),
    (
        "stateful-data-9",
        "a stateful DATA payload of 9 bytes",
        (SF,),
        lambda st: wire.frame(wire.DATA, st.number(st.next_on_conn)[3:] + b"\x00"),
    ),
    (
        "stateful-data-with-checksum",
        "a stateful DATA of 40 bytes",
        (SF,),
        lambda st: wire.frame(wire.DATA, st.number(st.next_on_conn)[3:] + bytes(32)),
    ),
    (
        "error-payload-1-byte",
        "an ERROR with a 1-byte payload",
        (SL, SF),
        lambda st: wire.frame(wire.ERROR, b"\x00"),
    ),
    (
        "error-message-1025",
        "an ERROR with a 1,025-byte message",
        (SL, SF),
        lambda st: wire.error(20, b"x" * 1025),
    ),
    (
        "error-overlong-utf8",
        "an ERROR whose message has an overlong UTF-8 form",
        (SL, SF),
        _utf8_error(b"\xc0\xaf"),
    ),
    (
        "error-surrogate",
        "an ERROR whose message encodes a surrogate",
        (SL, SF),
        _utf8_error(b"\xed\xa0\x80"),
    ),
    (
        "error-truncated-utf8",
        "an ERROR whose message ends inside a UTF-8 sequence",
        (SL, SF),
        _utf8_error(b"ok\xe2\x82"),
    ),
    (
        "error-above-u10ffff",
        "an ERROR whose message encodes a code point above U+10FFFF",
        (SL, SF),
        _utf8_error(b"\xf4\x90\x80\x80"),
    ),
]


def _as(st: s.State, kind: int) -> bytes:
    frame = st.number(st.next_on_conn)
    if st.mode == SF:
        return wire.frame(kind, frame[3:] + bytes(32))
    return wire.frame(kind, frame[3:])


def cases_violations() -> list[Case]:
    cases = []
    expected = (
        "the client closes at once (MUST), discards the frame and reconnects with "
        "the numbers received before it; success"
    )
    for name, title, modes, build in WELCOME_LIES:
        for mode in modes:
            section = "5.4"
            sc = Scenario(
                mode,
                5,
                [
                    [s.raw(build), s.expect_close(2.0, "after a bad WELCOME")],
                    [s.welcome(), s.numbers()],
                ],
                Expect(0, connections=2),
            )
            cases.append(
                scenario_case(
                    f"{section}/{NAME[mode]}-{name}", f"{NAME[mode]}: {title}", expected, sc
                )
            )
    # WELCOME a differs on a stateless resume (check 12)
    cases.append(
        scenario_case(
            "5.4/stateless-welcome-a-differs-on-resume",
            "stateless RESUME answered with another a",
            expected,
            Scenario(
                SL,
                5,
                [
                    [s.welcome(), s.numbers(2), s.fin],
                    [s.raw(lambda st: st.welcome(a=st.a + 1)), s.expect_close()],
                    [s.welcome(), s.numbers()],
                ],
                Expect(0, connections=3),
            ),
        )
    )
    for name, title, modes, build in FRAME_LIES:
        for mode in modes:
            section = "4.4" if name.startswith("error") else "5.5"
            if name.startswith(("unknown", "type-", "length")):
                section = "3"
            sc = Scenario(
                mode,
                6,
                [
                    [s.welcome(), s.numbers(2), s.raw(build), s.expect_close(2.0)],
                    [s.welcome(), s.numbers()],
                ],
                Expect(0, connections=2),
            )
            cases.append(
                scenario_case(
                    f"{section}/{NAME[mode]}-{name}", f"{NAME[mode]}: {title}", expected, sc
                )
            )
    for mode in (SL, SF):
        cases.append(
            scenario_case(
                f"5.5/{NAME[mode]}-data-before-welcome",
                f"{NAME[mode]}: DATA 0 instead of a WELCOME",
                expected,
                Scenario(
                    mode,
                    5,
                    [
                        [s.raw(lambda st: st.number(0)), s.expect_close()],
                        [s.welcome(), s.numbers()],
                    ],
                    Expect(0, connections=2),
                ),
            )
        )
        cases.append(
            scenario_case(
                f"5.5/{NAME[mode]}-data-at-n-minus-1",
                f"{NAME[mode]}: DATA (not FINAL) at index n-1",
                expected,
                Scenario(
                    mode,
                    4,
                    [
                        [
                            s.welcome(),
                            s.numbers(3),
                            s.raw(lambda st: _as(st, wire.DATA)),
                            s.expect_close(),
                        ],
                        [s.welcome(), s.numbers()],
                    ],
                    Expect(0, connections=2),
                ),
            )
        )
        cases.append(
            scenario_case(
                f"3/{NAME[mode]}-unknown-first-byte",
                f"{NAME[mode]}: a lone byte 0x07 after the "
                "WELCOME, nothing more (issue 8 point k: rejected as soon as it is in)",
                "the client closes within 2 s and resumes",
                Scenario(
                    mode,
                    5,
                    [
                        [s.welcome(), s.numbers(1), s.raw(lambda st: b"\x07"), s.expect_close(2.0)],
                        [s.welcome(), s.numbers()],
                    ],
                    Expect(0, connections=2),
                ),
            )
        )
        cases.append(
            scenario_case(
                f"15/{NAME[mode]}-persistent-violations-give-up",
                f"{NAME[mode]}: every connection gets a bad WELCOME",
                "the client gives up after --max-retries attempts: exit 4, FAILURE GAVE_UP",
                Scenario(
                    mode, 5, [[s.raw(_w(flags=1)), s.expect_close()]] * 25, Expect(4, "GAVE_UP")
                ),
                needs=frozenset({"max_retries"}),
            )
        )
    # each of them is also §12.3: close, discard the offending frame, resume with what came before
    return [dataclasses.replace(case, covers=(*case.covers, "12.3")) for case in cases]


# -- lying values --------------------------------------------------------------------------------


def cases_values() -> list[Case]:
    def bad_value(st: s.State) -> bytes:
        wrong = st.value(st.next_on_conn) + 1
        return wire.number(wire.DATA, st.next_on_conn, wrong.to_bytes(16, "big").lstrip(b"\x00"))

    def bad_final(st: s.State) -> bytes:
        return wire.number(
            wire.FINAL, st.n - 1, ((st.a << (st.n - 1)) * 3).to_bytes(16, "big").lstrip(b"\x00")
        )

    def oversized(st: s.State) -> bytes:
        return wire.number(wire.DATA, st.next_on_conn, b"\x01" + bytes(8193))

    def wrong_checksum(st: s.State) -> bytes:
        frame = bytearray(st.number(st.n - 1))
        frame[-1] ^= 0x01
        return bytes(frame)

    def wrong_stateful_value(st: s.State) -> bytes:
        i = st.next_on_conn
        return wire.number(wire.DATA, i, struct.pack(">I", st.value(i) ^ 0x80000000))

    stop = "no reconnection; exit 1"
    return [
        scenario_case(
            "6.3/wrong-value",
            "a stateless DATA whose value is a·2^index + 1",
            f"FAILURE VERIFY_FAILED, {stop}; the partial sum excludes it",
            Scenario(
                SL,
                6,
                [[s.welcome(), s.numbers(2), s.raw(bad_value), s.expect_close()]],
                Expect(1, "VERIFY_FAILED", connections=1),
            ),
            Level.SHOULD,
        ),
        scenario_case(
            "6.3/wrong-final-value",
            "a stateless FINAL with 3·a·2^(n-1)",
            f"FAILURE VERIFY_FAILED, {stop}",
            Scenario(
                SL,
                4,
                [[s.welcome(), s.numbers(3), s.raw(bad_final), s.expect_close()]],
                Expect(1, "VERIFY_FAILED", connections=1),
            ),
            Level.SHOULD,
        ),
        scenario_case(
            "6.3/wrong-value-text",
            "a wrong stateless value, text output",
            "stdout exactly 'FAILURE VERIFY_FAILED', exit 1",
            Scenario(
                SL,
                6,
                [[s.welcome(), s.numbers(1), s.raw(bad_value), s.expect_close()]],
                Expect(1, "VERIFY_FAILED", connections=1, text=True),
            ),
            Level.SHOULD,
        ),
        scenario_case(
            "4.3/oversized-stateless-value",
            "a stateless value of 8,194 bytes (longer than any legitimate one)",
            f"FAILURE VERIFY_FAILED, {stop}",
            Scenario(
                SL,
                6,
                [[s.welcome(), s.numbers(2), s.raw(oversized), s.expect_close()]],
                Expect(1, "VERIFY_FAILED", connections=1),
            ),
            Level.SHOULD,
        ),
        scenario_case(
            "9/wrong-checksum",
            "a stateful FINAL whose checksum has one bit flipped",
            f"FAILURE CHECKSUM_MISMATCH, both checksums printed, {stop}",
            Scenario(
                SF,
                5,
                [[s.welcome(), s.numbers(4), _lie(wrong_checksum)]],
                Expect(1, "CHECKSUM_MISMATCH", connections=1),
            ),
        ),
        scenario_case(
            "9/wrong-checksum-text",
            "a wrong checksum, text output",
            "four lines ending in 'FAILURE CHECKSUM_MISMATCH', exit 1",
            Scenario(
                SF,
                5,
                [[s.welcome(), s.numbers(4), _lie(wrong_checksum)]],
                Expect(1, "CHECKSUM_MISMATCH", connections=1, text=True),
            ),
        ),
        scenario_case(
            "9/wrong-stateful-value",
            "one stateful DATA value altered (FINAL's checksum is the true one)",
            f"FAILURE CHECKSUM_MISMATCH, {stop}",
            Scenario(
                SF,
                5,
                [[s.welcome(), s.numbers(1), _lie(wrong_stateful_value), s.numbers()]],
                Expect(1, "CHECKSUM_MISMATCH", connections=1),
            ),
        ),
    ]


def _lie(build: Build) -> Callable[[s.Ctx], object]:
    """Send a well-formed number frame with a false value in place of the true one."""

    async def step(ctx: s.Ctx) -> None:
        await ctx.send(build(ctx.state))
        ctx.state.next_on_conn += 1
        ctx.state.received += 1

    return step


# -- ERROR codes ---------------------------------------------------------------------------------

UNASSIGNED = [11, 19, 23, 34, 99, 65535]


def cases_errors() -> list[Case]:
    cases = []
    codes = sorted(wire.CODES) + UNASSIGNED
    for code in codes:
        name = wire.code_name(code)
        retry = code in wire.CODES and wire.CODES[code][1]
        for phase, mode in (("hello", SL), ("stream", SF)):
            before: list[object] = [] if phase == "hello" else [s.welcome(), s.numbers(2)]
            if retry:
                sc = Scenario(
                    mode,
                    5,
                    [[*before, s.error(code, "conformance")], [s.welcome(), s.numbers()]],
                    Expect(0, connections=2),
                )
                expected = "retryable: back off, reconnect with the resumption parameters, success"
            else:
                sc = Scenario(
                    mode,
                    5,
                    [[*before, s.error(code, "conformance")]],
                    Expect(3, name, connections=1, final_frame_lost=False if mode == SF else None),
                )
                expected = f"final: no reconnection, FAILURE {name}, exit 3"
            section = "12.1"
            label = name.lower().replace("_", "-")
            cases.append(
                scenario_case(
                    f"{section}/{label}-{phase}-{NAME[mode]}",
                    f"ERROR {code} ({name}) "
                    + ("in answer to the HELLO" if phase == "hello" else "while streaming"),
                    expected,
                    sc,
                )
            )
    cases.append(
        scenario_case(
            "12.2/server-busy-before-hello",
            "SERVER_BUSY sent at accept, before the HELLO is read",
            "retry after the backoff; success",
            Scenario(
                SF,
                4,
                [[s.NO_HELLO, s.error(31)], [s.welcome(), s.numbers()]],
                Expect(0, connections=2),
            ),
        )
    )
    cases.append(
        scenario_case(
            "4.4/error-message-bom-and-nul",
            "a final ERROR whose message holds U+FEFF and U+0000",
            "valid UTF-8: the code is acted on (FAILURE INVALID_N, exit 3)",
            Scenario(
                SL,
                4,
                [[s.error(6, "\ufeffbad\x00n\ufeff".encode())]],
                Expect(3, "INVALID_N", connections=1),
            ),
        )
    )
    cases.append(
        scenario_case(
            "12.2/final-error-text-stateless",
            "a final ERROR, text output",
            "stdout exactly 'FAILURE SESSION_MISMATCH', exit 3",
            Scenario(
                SL, 4, [[s.error(21)]], Expect(3, "SESSION_MISMATCH", connections=1, text=True)
            ),
        )
    )
    cases.append(
        scenario_case(
            "12.2/final-error-text-stateful",
            "a final ERROR to a stateful client, text output",
            "four lines, checksums '-', last 'FAILURE INVALID_N', exit 3",
            Scenario(SF, 4, [[s.error(6)]], Expect(3, "INVALID_N", connections=1, text=True)),
        )
    )
    cases.append(
        scenario_case(
            "12.2/unknown-code-text",
            "ERROR code 4242, text output",
            "stdout exactly 'FAILURE ERROR_4242', exit 3",
            Scenario(SL, 4, [[s.error(4242)]], Expect(3, "ERROR_4242", connections=1, text=True)),
        )
    )
    return cases


# -- final frame lost ----------------------------------------------------------------------------


def cases_final_lost() -> list[Case]:
    unknown = s.error(20, "session unknown or expired")
    return [
        scenario_case(
            "12.2/final-frame-lost",
            "the §20.5 story: drop before FINAL, the RESUME "
            "gets SESSION_UNKNOWN well within the TTL",
            "FAILURE SESSION_UNKNOWN, final_frame_lost true, exit 3",
            Scenario(
                SF,
                3,
                [[s.welcome(), s.numbers(2), s.fin], [unknown]],
                Expect(3, "SESSION_UNKNOWN", connections=2, final_frame_lost=True),
            ),
        ),
        scenario_case(
            "12.2/final-frame-lost-text",
            "as 12.2/final-frame-lost, text output",
            "four lines ending in 'FAILURE SESSION_UNKNOWN', exit 3",
            Scenario(
                SF,
                3,
                [[s.welcome(), s.numbers(2), s.fin], [unknown]],
                Expect(3, "SESSION_UNKNOWN", connections=2, text=True),
            ),
        ),
        scenario_case(
            "12.2/unknown-after-error-frame",
            "the last WELCOMEd connection ended by ERROR SHUTTING_DOWN, then SESSION_UNKNOWN",
            "final_frame_lost false, exit 3",
            Scenario(
                SF,
                5,
                [[s.welcome(), s.numbers(2), s.error(32)], [unknown]],
                Expect(3, "SESSION_UNKNOWN", connections=2, final_frame_lost=False),
            ),
        ),
        scenario_case(
            "12.2/unknown-after-ttl",
            "a TTL of 300 ms and SESSION_UNKNOWN 0.6 s after the drop",
            "final_frame_lost false (the session expired), exit 3",
            Scenario(
                SF,
                5,
                [[s.welcome(), s.numbers(2), s.fin], [s.sleep(0.6), unknown]],
                Expect(3, "SESSION_UNKNOWN", connections=2, final_frame_lost=False),
                ttl_ms=300,
            ),
        ),
        scenario_case(
            "12.2/unwelcomed-connections-do-not-count",
            "drop after progress; one attempt refused with SERVER_BUSY; then SESSION_UNKNOWN",
            "final_frame_lost true: connections without a WELCOME do not count",
            Scenario(
                SF,
                4,
                [[s.welcome(), s.numbers(3), s.fin], [s.error(31)], [unknown]],
                Expect(3, "SESSION_UNKNOWN", connections=3, final_frame_lost=True),
            ),
        ),
        scenario_case(
            "12.2/silence-longer-than-ttl",
            "TTL 400 ms; the server goes silent, the "
            "client notices after its silence timeout (> TTL), then SESSION_UNKNOWN "
            "(issue 8 point l)",
            "final_frame_lost false: measured from the last complete frame, the TTL had passed",
            Scenario(
                SF,
                5,
                [[s.welcome(), s.numbers(2), s.hold()], [unknown]],
                Expect(3, "SESSION_UNKNOWN", connections=2, final_frame_lost=False),
                ttl_ms=400,
                interval_ms=100,
            ),
        ),
    ]


# -- timers and backoff ----------------------------------------------------------------------------


def cases_timers() -> list[Case]:
    def silence(interval_ms: int, before: list[object]) -> Scenario:
        return Scenario(
            SF,
            5,
            [[*before, silent_check(interval_ms)], [s.welcome(), s.numbers()]],
            Expect(0, connections=2),
            interval_ms=interval_ms,
        )

    return [
        scenario_case(
            "14.1/silence-after-welcome",
            "WELCOME (interval 100 ms), then nothing",
            "the client drops after max(3 x interval, min-silence), resumes at 0",
            silence(100, [s.welcome()]),
        ),
        scenario_case(
            "14.1/silence-mid-stream",
            "two numbers, then nothing",
            "dropped after the silence timeout; resumes at 2",
            silence(100, [s.welcome(), s.numbers(2)]),
        ),
        scenario_case(
            "14.1/silence-from-interval",
            "interval 800 ms: the timeout 3 x 0.8 s is above the floor",
            "no drop before 2.4 s of silence",
            silence(800, [s.welcome(), s.numbers(1)]),
        ),
        scenario_case(
            "14.1/silence-recomputed",
            "first WELCOME interval 2 s (silence 6 s), the resumed one 50 ms, then silence",
            "the second connection's timeout comes from its own WELCOME",
            Scenario(
                SF,
                6,
                [
                    [s.welcome(), s.numbers(1), s.fin],
                    [s.welcome(interval_ms=50), s.numbers(1), silent_check(50)],
                    [s.welcome(interval_ms=50), s.numbers()],
                ],
                Expect(0, connections=3),
                interval_ms=2000,
            ),
        ),
        scenario_case(
            "14.1/trickle-is-silence",
            "after the WELCOME one byte every 100 ms that never completes a frame",
            "timers restart on complete frames only: dropped after the silence timeout",
            Scenario(
                SF,
                5,
                [[s.welcome(), trickle()], [s.welcome(), s.numbers()]],
                Expect(0, connections=2),
                interval_ms=100,
            ),
        ),
        scenario_case(
            "14.1/handshake-timeout",
            "the HELLO is read and nothing is answered",
            "the client gives up on the connection after its handshake timeout and "
            "sends a new HELLO (no RESUME)",
            Scenario(
                SF, 4, [[handshake_check()], [s.welcome(), s.numbers()]], Expect(0, connections=2)
            ),
        ),
        *[
            scenario_case(
                f"14.1/connect-timeout-{NAME[mode]}",
                "the port listens but no connect ever completes (a full accept queue: every "
                "SYN is dropped), on every attempt",
                "each connect ends by the client's connect timeout (never waits for the "
                "kernel), backoff between; after --max-retries attempts: exit 4, FAILURE GAVE_UP",
                Scenario(mode, 5, [], Expect(4, "GAVE_UP"), black_hole=True, timing=False),
                needs=frozenset({"max_retries", "connect_timeout"}),
            )
            for mode in (SL, SF)
        ],
        scenario_case(
            "15/backoff-and-give-up",
            "every connection is closed right after its HELLO (no progress)",
            "delays grow x1.6 up to the cap with jitter; after "
            "--max-retries attempts: exit 4, FAILURE GAVE_UP",
            Scenario(SL, 5, [[s.fin]] * 25, Expect(4, "GAVE_UP")),
            needs=frozenset({"max_retries"}),
        ),
        scenario_case(
            "15/backoff-and-give-up-stateful",
            "as 15/backoff-and-give-up, stateful, after one number",
            "exit 4, FAILURE GAVE_UP, checksums null",
            Scenario(
                SF, 5, [[s.welcome(), s.numbers(1), s.fin], *[[s.fin]] * 25], Expect(4, "GAVE_UP")
            ),
            needs=frozenset({"max_retries"}),
        ),
        scenario_case(
            "15/progress-resets-backoff",
            "progress, two fruitless attempts, progress, completion",
            "delays: initial, x1.6, x2.56, then initial again",
            Scenario(
                SF,
                6,
                [
                    [s.welcome(), s.numbers(1), s.fin],
                    [s.fin],
                    [s.fin],
                    [s.welcome(), s.numbers(1), s.fin],
                    [s.welcome(), s.numbers()],
                ],
                Expect(0, connections=5),
            ),
        ),
        scenario_case(
            "15/welcome-without-numbers-is-no-progress",
            "WELCOME then a cut, twice",
            "a WELCOME alone is no progress: the delay grows",
            Scenario(
                SL,
                4,
                [[s.welcome(), s.fin], [s.welcome(), s.fin], [s.welcome(), s.numbers()]],
                Expect(0, connections=3),
            ),
        ),
        scenario_case(
            "13.1/welcome-interval-one-day",
            "WELCOME announcing interval_ms 86,400,000 (the largest allowed), numbers sent at once",
            "accepted; the silence timer (3 days) holds its range: no drop, SUCCESS",
            Scenario(
                SF,
                4,
                [[s.welcome(interval_ms=86_400_000), s.numbers(pace=False)]],
                Expect(0, connections=1),
            ),
        ),
        scenario_case(
            "13.1/welcome-ttl-one-day",
            "WELCOME announcing session_ttl_ms 86,400,000, a drop, SESSION_UNKNOWN",
            "accepted; final frame lost judged within that TTL: final_frame_lost true",
            Scenario(
                SF,
                3,
                [[s.welcome(ttl_ms=86_400_000), s.numbers(2), s.fin], [s.error(20)]],
                Expect(3, "SESSION_UNKNOWN", connections=2, final_frame_lost=True),
            ),
        ),
        scenario_case(
            "12.4/sigint",
            "SIGINT while the client streams",
            "exit status 130, nothing on stdout (Appendix A.5)",
            Scenario(SL, 200, [honest(SL)], Expect(130), interval_ms=100, interrupt_after=0.5),
        ),
        scenario_case(
            "15/refused-then-up",
            "the first attempts find no listener",
            "backoff, then success",
            refused_first(),
        ),
    ]


def silent_check(interval_ms: int) -> Callable[[s.Ctx], object]:
    """Stay silent; the client must drop after its silence timeout."""

    async def step(ctx: s.Ctx) -> None:
        import time

        started = ctx.conn.last_frame or time.monotonic()
        closed = await ctx.wait_closed(30.0)
        took = time.monotonic() - started
        timeout = max(3 * interval_ms / 1000, ctx.state.min_silence)
        ctx.conn.notes.append(f"dropped after {took:.2f} s of silence (timeout {timeout:g} s)")
        ctx.check.must(closed, "the client never dropped the silent connection")
        why = f"dropped after {took:.2f} s of silence; its silence timeout is {timeout:.2f} s"
        ctx.check.must(took >= timeout * 0.9 - 0.05, why)
        ctx.check.should(took <= timeout + 1.5, why)
        await s.fin(ctx)

    return step


def trickle() -> Callable[[s.Ctx], object]:
    """A DATA header announcing 1,000 bytes, then one byte every 100 ms: bytes keep coming
    but no frame completes, so the silence timer (restarted on complete frames only) fires."""

    async def step(ctx: s.Ctx) -> None:
        import time

        import anyio

        started = ctx.conn.last_frame or time.monotonic()
        await ctx.send(wire.raw_header(wire.DATA, 1000))
        while not ctx.closed.is_set() and time.monotonic() - started < 20:
            if not await ctx.send(b"\x00"):
                break
            with anyio.move_on_after(0.1):
                await ctx.closed.wait()
        took = time.monotonic() - started
        timeout = max(3 * ctx.state.interval_ms / 1000, ctx.state.min_silence)
        ctx.conn.notes.append(f"dropped {took:.2f} s after the last complete frame")
        ctx.check.must(ctx.closed.is_set(), "a trickle of bytes kept the client waiting")
        why = f"dropped after {took:.2f} s; its silence timeout is {timeout:.2f} s"
        ctx.check.must(took >= timeout * 0.9 - 0.05, why)
        ctx.check.should(took <= timeout + 1.5, why)
        await s.fin(ctx)

    return step


def handshake_check() -> Callable[[s.Ctx], object]:
    async def step(ctx: s.Ctx) -> None:
        import time

        started = ctx.conn.accepted
        closed = await ctx.wait_closed(30.0)
        took = time.monotonic() - started
        ctx.conn.notes.append(f"closed {took:.2f} s after connecting")
        ctx.check.must(closed, "the client waited forever for a WELCOME")
        why = f"closed after {took:.2f} s; its handshake timeout is {ctx.state.handshake:g} s"
        ctx.check.must(took >= ctx.state.handshake * 0.9 - 0.05, why)
        ctx.check.should(took <= ctx.state.handshake + 1.5, why)
        await s.fin(ctx)

    return step


def refused_first() -> Scenario:
    """Nobody listens for the first 0.25 s after the client starts.

    The window must close before the client's last allowed attempt: with the suite's timings
    (backoff 0.1 s, x1.6, jitter 0.8..1.2, 3 attempts) the third attempt comes at least
    0.8 x (0.16 + 0.256) = 0.33 s after the first, so a fast starter (Node) gets refused at least
    once and still connects; a longer window made it give up by construction.
    """
    return Scenario(SL, 4, [[s.welcome(), s.numbers()]], Expect(0, connections=1), refuse_for=0.25)


# -- Appendix A command line ---------------------------------------------------------------------


def cases_cli() -> list[Case]:
    usage = Expect(2)
    n_needed = frozenset({"n"})
    return [
        scenario_case(
            "A.1/n-zero",
            "-n 0",
            "usage error: exit 2, nothing on stdout, no connection",
            Scenario(SL, 0, [], usage),
            needs=n_needed,
        ),
        scenario_case(
            "A.1/n-65536",
            "-n 65536",
            "usage error: exit 2",
            Scenario(SF, 65536, [], usage),
            needs=n_needed,
        ),
        scenario_case(
            "A.1/n-hex",
            "-n 0x10 (issue 8 point m: decimal only)",
            "usage error: exit 2",
            Scenario(SL, 16, [], usage, n_arg="0x10"),
            needs=n_needed,
        ),
        scenario_case(
            "A.1/unknown-option",
            "an unknown option --no-such-option",
            "usage error: exit 2",
            Scenario(SL, 4, [], usage, extra_args=("--no-such-option",)),
        ),
        scenario_case(
            "A.1/abbreviated-option",
            "--jso, an abbreviation of --json (options are spelled in full)",
            "usage error: exit 2, one line on stderr",
            Scenario(SL, 4, [], usage, extra_args=("--jso",)),
        ),
        scenario_case(
            "A.1/client-id-not-a-uuid",
            "--client-id not-a-uuid",
            "usage error: exit 2",
            Scenario(SF, 4, [], usage, extra_args=("--client-id", "not-a-uuid")),
        ),
        scenario_case(
            "A.1/stateless-without-n",
            "stateless mode without -n",
            "usage error: exit 2 (SHOULD)",
            _omit_n(SL, usage),
            Level.SHOULD,
            n_needed,
        ),
        scenario_case(
            "A.1/stateful-random-n",
            "stateful mode without -n",
            "n drawn in 1..65535; the HELLO carries it",
            _omit_n(SF, Expect(3, "INVALID_N")),
            needs=n_needed,
        ),
        scenario_case(
            "A.1/client-id-given",
            "--client-id with a lower-case UUID",
            "the HELLOs carry exactly that id",
            _given_id(),
        ),
        scenario_case(
            "A.1/client-id-upper-case",
            "--client-id in upper case (MAY be accepted)",
            "recorded: accepted and sent lower-case, or a usage error",
            _upper_id(),
            Level.INFO,
        ),
        scenario_case(
            "A.1/client-id-ignored-stateless",
            "--client-id in stateless mode (issue 8 point m: accepted and ignored)",
            "a normal stateless run, exit 0",
            Scenario(
                SL,
                3,
                [honest(SL)],
                Expect(0, connections=1),
                extra_args=("--client-id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
            ),
        ),
        scenario_case(
            "A.1/n-leading-zeros",
            "-n 007 (decimal digits, leading zeros allowed)",
            "the HELLO carries n 7",
            _leading_zero_n(),
            needs=n_needed,
        ),
        scenario_case(
            "7.1/uuid-v4",
            "a drawn client id",
            "lower-case canonical (MUST), version 4 with the RFC 4122 variant (SHOULD)",
            _uuid_v4(),
            covers=("4.1",),
        ),
    ]


def _omit_n(mode: int, expect: Expect) -> Scenario:
    scripts: list[list[object]] = [] if expect.status == 2 else [[s.error(6)]]
    return Scenario(mode, 1, scripts, expect, omit_n=True)


def _given_id() -> Scenario:
    cid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    return Scenario(
        SF,
        3,
        [[s.welcome(), s.numbers(1), s.fin], [s.welcome(), s.numbers()]],
        Expect(0, connections=2),
        extra_args=("--client-id", cid),
        client_id=cid,
    )


def _upper_id() -> Scenario:
    cid = "0F8FAD5B-D9CB-469F-A165-70867728950E"
    return Scenario(
        SF, 3, [honest(SF)], Expect((0, 2)), extra_args=("--client-id", cid), client_id=cid
    )


def _leading_zero_n() -> Scenario:
    return Scenario(SL, 7, [honest(SL)], Expect(0, connections=1), n_arg="007")


def _uuid_v4() -> Scenario:
    return Scenario(SF, 2, [honest(SF)], Expect(0, connections=1), check_v4=True)


def cases_cli_vectors() -> list[Case]:
    """cli_values.json rows for the client: every ``-n`` text, and every text ``--min-silence``
    must refuse (the other duration options share its grammar)."""
    doc = json.loads((VECTORS / "cli_values.json").read_text())
    cases = []
    for i, row in enumerate(doc["options"]):
        option, text, accepted = row["option"], row["text"], row["accepted"]
        if option == "client -n":
            if accepted:
                value = int(text)
                sc = Scenario(
                    SF, value, [[s.error(6)]], Expect(3, "INVALID_N", connections=1), n_arg=text
                )
                expected = f"accepted: the HELLO carries n {value}"
            else:
                sc = Scenario(SF, 5, [], Expect(2), n_arg=text)
                expected = "usage error: exit 2, nothing on stdout, no connection"
            cases.append(
                scenario_case(
                    f"A.1/vector-n-{i:03d}",
                    f"cli_values.json: -n {text!r}",
                    expected,
                    sc,
                    needs=frozenset({"n"}),
                )
            )
        elif option == "client --min-silence" and not accepted:
            sc = Scenario(SL, 5, [], Expect(2), extra_args=("--min-silence", text))
            cases.append(
                scenario_case(
                    f"A.2/vector-min-silence-{i:03d}",
                    f"cli_values.json: --min-silence {shown_text(text)}",
                    "usage error: exit 2, nothing on stdout, no connection",
                    sc,
                )
            )
    return cases


def all_cases() -> list[Case]:
    return [
        *cases_honest(),
        *cases_cuts(),
        *cases_violations(),
        *cases_values(),
        *cases_errors(),
        *cases_final_lost(),
        *cases_timers(),
        *cases_cli(),
        *cases_cli_vectors(),
    ]
