"""The language-neutral vectors in spec/vectors/ checked against the reference core.

The vectors come from spec/vectors/generate.py, which shares no code with reference/: a
disagreement here means the spec text, the generator or the core is wrong, and must be resolved
in whichever of them is at fault, never by regenerating the vectors from the core.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

import reference.client
import reference.server
from reference.protocol import (
    ClientConnection,
    ConnectionClosed,
    Error,
    ErrorCode,
    Event,
    FrameType,
    Hello,
    Mode,
    Number,
    RemoteProtocolError,
    ServerConnection,
    State,
    Welcome,
    is_retryable,
    seconds_text_to_ms,
)
from reference.protocol.connection import _Connection
from reference.protocol.events import _NeedData
from reference.protocol.frames import (
    FrameReader,
    decode_error,
    decode_hello,
    decode_number,
    decode_welcome,
    encode_error,
    encode_hello,
    encode_number,
    encode_welcome,
)
from reference.protocol.sequences import (
    Checksum,
    splitmix64_output,
    stateful_checksum,
    stateful_prefix_checksum,
    stateful_value,
    stateless_sum,
    stateless_value,
)

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec"
VECTORS = SPEC / "vectors"
GENERATOR = VECTORS / "generate.py"
VECTOR_FILES = (
    "prng.json",
    "checksum.json",
    "stateless_sums.json",
    "frames.json",
    "invalid_frames.json",
    "sessions.json",
    "cli_values.json",
    "store_records.json",
)

Json = dict[str, Any]


def _load(name: str) -> Json:
    document: Json = json.loads((VECTORS / name).read_text(encoding="ascii"))
    return document


PRNG = _load("prng.json")
CHECKSUMS = _load("checksum.json")
SUMS = _load("stateless_sums.json")
FRAMES = _load("frames.json")
INVALID = _load("invalid_frames.json")
SESSIONS = _load("sessions.json")
CLI_VALUES = _load("cli_values.json")
RECORDS = _load("store_records.json")

MODES = {"stateless": Mode.STATELESS, "stateful": Mode.STATEFUL}


@pytest.fixture(autouse=True)
def _unlimited_int_digits() -> Iterator[None]:
    """Stateless sums run to 19,731 decimal digits, past Python's default conversion limit."""
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    yield
    sys.set_int_max_str_digits(previous)


# --- helpers --------------------------------------------------------------------------------


def _one_frame(data: bytes) -> tuple[FrameType, bytes]:
    reader = FrameReader()
    reader.feed(data)
    item = reader.next_frame()
    assert item is not None
    assert reader.buffered == 0
    return item


def _hello_from_hex(text: str) -> Hello:
    frame_type, payload = _one_frame(bytes.fromhex(text))
    assert frame_type is FrameType.HELLO
    return decode_hello(payload)


def _welcome_from_hex(text: str) -> Welcome:
    frame_type, payload = _one_frame(bytes.fromhex(text))
    assert frame_type is FrameType.WELCOME
    return decode_welcome(payload)


def _event_from_fields(entry: Json) -> Hello | Welcome | Number | Error:
    fields: Json = entry["fields"]
    kind = entry["type"]
    if kind == "HELLO":
        assert fields["flags"] == (1 if fields["resume"] else 0)
        return Hello(
            version=fields["version"],
            mode=Mode(fields["mode"]),
            n=fields["n"],
            resume=fields["resume"],
            next_index=fields["next_index"],
            a=fields.get("a", 0),
            client_id=fields.get("client_id", ""),
        )
    if kind == "WELCOME":
        assert fields["flags"] == 0
        return Welcome(
            version=fields["version"],
            mode=Mode(fields["mode"]),
            n=fields["n"],
            next_index=fields["next_index"],
            interval_ms=fields["interval_ms"],
            a=fields["a"],
            session_ttl_ms=fields["session_ttl_ms"],
        )
    if kind in ("DATA", "FINAL"):
        checksum = fields.get("checksum")
        return Number(
            index=fields["index"],
            value=int(fields["value"]),
            final=kind == "FINAL",
            checksum=None if checksum is None else bytes.fromhex(checksum),
        )
    assert kind == "ERROR"
    if "code_name" in fields:
        assert ErrorCode[fields["code_name"]] == fields["code"]
    return Error(code=fields["code"], message=fields["message"])


def _mode_of(entry: Json) -> Mode | None:
    mode = entry["mode"]
    return None if mode is None else MODES[mode]


def _encode(event: Hello | Welcome | Number | Error, mode: Mode | None) -> bytes:
    if isinstance(event, Hello):
        return encode_hello(event)
    if isinstance(event, Welcome):
        return encode_welcome(event)
    if isinstance(event, Error):
        return encode_error(event)
    assert mode is not None
    return encode_number(event, mode)


def _decode(frame_type: FrameType, payload: bytes, mode: Mode | None) -> Event:
    if frame_type is FrameType.HELLO:
        return decode_hello(payload)
    if frame_type is FrameType.WELCOME:
        return decode_welcome(payload)
    if frame_type is FrameType.ERROR:
        return decode_error(payload)
    assert mode is not None
    return decode_number(payload, final=frame_type is FrameType.FINAL, mode=mode)


def _drain(connection: _Connection) -> list[Event]:
    events: list[Event] = []
    while True:
        event = connection.next_event()
        if isinstance(event, _NeedData):
            return events
        events.append(event)


def _client_after(hello_hex: str, received: bytes) -> ClientConnection:
    client = ClientConnection()
    hello_bytes = bytes.fromhex(hello_hex)
    assert client.send(_hello_from_hex(hello_hex)) == hello_bytes
    if received:  # an empty chunk would mean EOF
        client.receive_data(received)
    events = _drain(client)
    assert not any(isinstance(e, ConnectionClosed | Error) for e in events)
    return client


def _ids(entries: list[Json], key: str = "name") -> list[str]:
    return [str(entry[key]) for entry in entries]


# --- the files themselves -------------------------------------------------------------------


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_file_header(name: str) -> None:
    document = _load(name)
    assert document["version"] == 1
    assert isinstance(document["description"], str)
    assert document["description"]


def test_generator_output_is_committed(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), str(tmp_path)], check=True, timeout=120)
    generated = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in VECTORS.glob("*.json"))
    assert generated == committed == sorted(VECTOR_FILES)
    for name in VECTOR_FILES:
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name


def test_generator_is_independent_of_the_core() -> None:
    """The vectors are a second opinion only if the generator cannot see the code under test."""
    tree = ast.parse(GENERATOR.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            assert node.module is not None
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
    assert "reference" not in imported


# --- PRNG -----------------------------------------------------------------------------------


def test_published_splitmix64_values() -> None:
    """First outputs of SplitMix64 as published with Vigna's splitmix64.c, quoted independently."""
    assert [splitmix64_output(0, i) for i in range(3)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]
    assert [splitmix64_output(1234567, i) for i in range(3)] == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
    ]
    assert stateful_value(0, 0) == 0xE220A839


def test_prng_constants_match() -> None:
    constants = PRNG["constants"]
    assert int(constants["gamma_hex"], 16) == 0x9E3779B97F4A7C15
    assert int(constants["mul1_hex"], 16) == 0xBF58476D1CE4E5B9
    assert int(constants["mul2_hex"], 16) == 0x94D049BB133111EB


@pytest.mark.parametrize("case", PRNG["cases"], ids=_ids(PRNG["cases"], "seed_hex"))
def test_prng(case: Json) -> None:
    seed = int(case["seed"])
    assert seed == int(case["seed_hex"], 16)
    assert len(case["seed_hex"]) == 16
    for output in case["outputs"]:
        index = output["index"]
        value = int(output["output"])
        assert value == int(output["output_hex"], 16)
        assert len(output["output_hex"]) == 16
        assert splitmix64_output(seed, index) == value, index
        assert stateful_value(seed, index) == output["element"] == int(output["element_hex"], 16)
        assert output["element"] == value >> 32


# --- checksum -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CHECKSUMS["sequences"], ids=_ids(CHECKSUMS["sequences"]))
def test_checksum_sequence(case: Json) -> None:
    checksum = Checksum()
    for value in case["values"]:
        checksum.update(value)
    assert checksum.digest().hex() == case["sha256"]
    assert len(bytes.fromhex(case["bytes_hex"])) == 4 * len(case["values"])


def test_checksum_is_order_sensitive() -> None:
    by_name = {case["name"]: case["sha256"] for case in CHECKSUMS["sequences"]}
    assert by_name["one two"] != by_name["two one (order matters)"]


@pytest.mark.parametrize(
    "case",
    CHECKSUMS["sessions"],
    ids=[f"{c['seed_hex']}-n{c['n']}" for c in CHECKSUMS["sessions"]],
)
def test_session_checksum(case: Json) -> None:
    seed, n = int(case["seed"]), case["n"]
    expected = case["sha256"]
    assert stateful_checksum(seed, n).hex() == expected
    assert [stateful_value(seed, i) for i in range(len(case["first_elements"]))] == (
        case["first_elements"]
    )
    assert stateful_value(seed, n - 1) == case["last_element"]
    if n <= 1000:
        # A resuming server rebuilds the running hash over the prefix: same digest from any cut.
        for cut in sorted({0, 1, n // 2, n - 1}):
            checksum = stateful_prefix_checksum(seed, cut)
            for index in range(cut, n):
                checksum.update(stateful_value(seed, index))
            assert checksum.digest().hex() == expected, cut


# --- stateless sums -------------------------------------------------------------------------


@pytest.mark.parametrize("case", SUMS["cases"], ids=[f"a{c['a']}-n{c['n']}" for c in SUMS["cases"]])
def test_stateless_sum(case: Json) -> None:
    a, n = case["a"], case["n"]
    expected = int(case["sum"])
    assert stateless_sum(a, n) == expected
    assert expected.bit_length() == case["sum_bits"]
    assert len(case["sum"]) == case["sum_digits"]
    last = stateless_value(a, n - 1)
    assert (last.bit_length() + 7) // 8 == case["last_value_bytes"]
    if n <= 100:
        assert sum(stateless_value(a, k) for k in range(n)) == expected


# --- valid frames ---------------------------------------------------------------------------


@pytest.mark.parametrize("entry", FRAMES["frames"], ids=_ids(FRAMES["frames"]))
def test_frame_encodes(entry: Json) -> None:
    data = bytes.fromhex(entry["hex"])
    assert len(data) == entry["size"]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert data[0] == FrameType[entry["type"]]
    assert _encode(_event_from_fields(entry), _mode_of(entry)) == data


@pytest.mark.parametrize("entry", FRAMES["frames"], ids=_ids(FRAMES["frames"]))
@pytest.mark.parametrize("feeding", ["whole", "bytewise", "with-trailing-bytes"])
def test_frame_decodes(entry: Json, feeding: str) -> None:
    data = bytes.fromhex(entry["hex"])
    reader = FrameReader()
    item: tuple[FrameType, bytes] | None = None
    if feeding == "bytewise":
        for position in range(len(data)):
            assert item is None
            reader.feed(data[position : position + 1])
            item = reader.next_frame()
    else:
        trailing = data[:2] if feeding == "with-trailing-bytes" else b""
        reader.feed(data + trailing)
        item = reader.next_frame()
        assert reader.buffered == len(trailing)
        assert reader.next_frame() is None
    assert item is not None
    frame_type, payload = item
    assert frame_type is FrameType[entry["type"]]
    assert _decode(frame_type, payload, _mode_of(entry)) == _event_from_fields(entry)


@pytest.mark.parametrize("entry", FRAMES["frames"], ids=_ids(FRAMES["frames"]))
def test_frame_through_connections(entry: Json) -> None:
    data = bytes.fromhex(entry["hex"])
    event = _event_from_fields(entry)
    if entry["direction"] == "client-to-server":
        assert isinstance(event, Hello)
        client = ClientConnection()
        assert client.send(event) == data
        assert client.state is State.AWAIT_WELCOME
        server = ServerConnection()
        server.receive_data(data)
        assert _drain(server) == [event]
        assert server.state is State.HELLO_RECEIVED
        return
    context: Json = entry["context"]
    # The client receives the frame after the context's HELLO (and WELCOME).
    received = bytes.fromhex(context.get("welcome", ""))
    client = _client_after(context["hello"], received)
    client.receive_data(data)
    assert _drain(client) == [event]
    # The server, answering the same HELLO, produces the same bytes.
    server = ServerConnection()
    server.receive_data(bytes.fromhex(context["hello"]))
    assert _drain(server) == [_hello_from_hex(context["hello"])]
    if "welcome" in context:
        server.send(_welcome_from_hex(context["welcome"]))
    assert server.send(event) == data
    if isinstance(event, Number):
        expected_state = State.DONE if event.final else State.STREAMING
        assert client.state is server.state is expected_state
    if isinstance(event, Error):
        assert client.state is server.state is State.CLOSED


# --- invalid frames -------------------------------------------------------------------------


def _connection_for(case: Json) -> _Connection:
    context: Json = case["context"]
    received = bytes.fromhex(context["received"])
    if case["decoder"] == "client":
        return _client_after(context["hello"], received)
    assert case["decoder"] == "server"
    server = ServerConnection()
    if received:  # an empty chunk would mean EOF
        server.receive_data(received)
    events = _drain(server)
    assert len(events) == (1 if received else 0)
    return server


@pytest.mark.parametrize("case", INVALID["cases"], ids=_ids(INVALID["cases"]))
def test_invalid_frame_whole(case: Json) -> None:
    expected = ErrorCode[case["error"]["name"]]
    assert expected == case["error"]["code"]
    connection = _connection_for(case)
    connection.receive_data(bytes.fromhex(case["hex"]))
    if case["eof"]:
        connection.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as info:
        _drain(connection)
    assert info.value.error_code == expected
    assert connection.state is State.ERROR


@pytest.mark.parametrize("case", INVALID["cases"], ids=_ids(INVALID["cases"]))
def test_invalid_frame_bytewise(case: Json) -> None:
    """Fed one byte at a time, the failure comes no later than the last byte (or the EOF)."""
    expected = ErrorCode[case["error"]["name"]]
    connection = _connection_for(case)
    data = bytes.fromhex(case["hex"])
    chunks = [data[i : i + 1] for i in range(len(data))]
    if case["eof"]:
        chunks.append(b"")
    with pytest.raises(RemoteProtocolError) as info:  # noqa: PT012 (the loop is the point)
        for chunk in chunks:
            connection.receive_data(chunk)
            _drain(connection)
    assert info.value.error_code == expected


def test_oversized_header_fails_before_payload() -> None:
    server = ServerConnection()
    server.receive_data(bytes.fromhex("014001"))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.error_code is ErrorCode.FRAME_TOO_LARGE


# --- whole sessions -------------------------------------------------------------------------


@pytest.mark.parametrize("session", SESSIONS["sessions"], ids=_ids(SESSIONS["sessions"]))
def test_session_replay(session: Json) -> None:  # noqa: C901 (replays every vector's steps: one branch per step kind of the vector format)
    """Replay each conversation through both state machines and redo the client's arithmetic."""
    mode = MODES[session["mode"]]
    parameters: Json = session["parameters"]
    n = parameters["n"]
    values: list[int] = []
    checksum = Checksum()
    server_checksum: bytes | None = None
    last_error: Error | None = None
    for spec in session["connections"]:
        (hello_hex,) = spec["client_sends"]
        hello = _hello_from_hex(hello_hex)
        assert hello.next_index == len(values)
        assert hello.resume == (spec is not session["connections"][0])
        client, server = ClientConnection(), ServerConnection()
        assert client.send(hello) == bytes.fromhex(hello_hex)
        server.receive_data(bytes.fromhex(hello_hex))
        assert _drain(server) == [hello]
        for frame in spec["server_sends"]:
            data = bytes.fromhex(frame["hex"])
            client.receive_data(data)
            (event,) = _drain(client)
            assert not isinstance(event, ConnectionClosed)
            assert server.send(event) == data
            if isinstance(event, Welcome):
                assert event.interval_ms == parameters["interval_ms"]
                if mode is Mode.STATELESS:
                    assert event.a == parameters["a"]
                else:
                    assert event.session_ttl_ms == parameters["session_ttl_ms"]
            elif isinstance(event, Number):
                values.append(event.value)
                if mode is Mode.STATEFUL:
                    checksum.update(event.value)
                if event.final:
                    server_checksum = event.checksum
            elif isinstance(event, Error):
                last_error = event
        if "after_final" in spec:  # §5.5: after FINAL the client reads nothing more
            assert client.state is State.DONE
            client.receive_data(bytes.fromhex(spec["after_final"]))
            assert _drain(client) == []
        if spec["end"].startswith("dropped"):
            client.receive_data(b"")
            assert _drain(client) == [ConnectionClosed()]
    if mode is Mode.STATELESS:
        assert [str(v) for v in values] == session["values"]
        assert values == [stateless_value(parameters["a"], k) for k in range(n)]
        assert str(sum(values)) == session["result"]["sum"]
        assert sum(values) == stateless_sum(parameters["a"], n)
        return
    seed = int(parameters["seed"])
    assert seed == int(parameters["seed_hex"], 16)
    assert values == session["values"] == [stateful_value(seed, k) for k in range(len(values))]
    result: Json = session["result"]
    if result["verdict"] == "SUCCESS":
        assert server_checksum is not None
        assert checksum.digest() == server_checksum == bytes.fromhex(result["checksum"])
        assert server_checksum == stateful_checksum(seed, n)
    else:
        assert server_checksum is None
        assert last_error is not None
        assert last_error.code == ErrorCode.SESSION_UNKNOWN
        assert not is_retryable(last_error.code)
        assert len(values) == n - 1


# --- the spec's own hex dumps ---------------------------------------------------------------


def _known_frames() -> set[str]:
    known = {entry["hex"] for entry in FRAMES["frames"]}
    for session in SESSIONS["sessions"]:
        for connection in session["connections"]:
            known.update(connection["client_sends"])
            known.update(frame["hex"] for frame in connection["server_sends"])
    known.update(case["hex"] for case in INVALID["cases"])
    return known


def test_protocol_md_hex_dumps_are_vectors() -> None:
    """Every ```hex block in PROTOCOL.md is one frame that the vector files also contain."""
    text = (SPEC / "PROTOCOL.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```hex\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 10
    known = _known_frames()
    for block in blocks:
        compact = "".join(block.split()).lower()
        assert re.fullmatch(r"(?:[0-9a-f]{2})+", compact), block
        assert compact in known, block


# --- command-line values (§13.1, Appendices A and B) ----------------------------------------


@pytest.mark.parametrize("case", CLI_VALUES["durations"], ids=lambda c: repr(c["text"]))
def test_duration_text_to_ms(case: Json) -> None:
    if case["ms"] is None:
        with pytest.raises(ValueError, match="not a decimal number"):
            seconds_text_to_ms(case["text"])
    else:
        assert seconds_text_to_ms(case["text"]) == case["ms"]


def _option_parser(option: str) -> Callable[[str], object]:
    """The argparse type the reference CLI uses for ``option`` ("server --interval")."""
    program, flag = option.split()
    module = reference.server if program == "server" else reference.client
    parser = module.build_parser()
    if program == "client" and flag == "--handshake-timeout":
        flag = "--connect-timeout"  # the reference's one option for both timeouts (A.2)
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    parse = action.type
    assert callable(parse)
    return cast("Callable[[str], object]", parse)


@pytest.mark.parametrize(
    "case", CLI_VALUES["options"], ids=lambda c: f"{c['option']}={c['text']!r}"
)
def test_option_value_accepted_or_refused(case: Json) -> None:
    parse = _option_parser(case["option"])
    if case["accepted"]:
        value = parse(case["text"])
        kind = CLI_VALUES["ranges"][case["option"]]["kind"]
        if kind == "duration":  # whole milliseconds, as §13.1 computes them
            assert isinstance(value, float)
            (expected,) = [d["ms"] for d in CLI_VALUES["durations"] if d["text"] == case["text"]]
            assert round(value * 1000) == expected
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(case["text"])


def test_server_announces_the_ms_of_the_rule() -> None:
    """ServerConfig given seconds as a float announces what §13.1 makes of their text."""
    for case in CLI_VALUES["durations"]:
        ms = case["ms"]
        if ms is None or ms > CLI_VALUES["max_duration_ms"] or not case["text"].strip("0."):
            continue
        seconds = float(case["text"])
        config = reference.server.ServerConfig(interval=seconds, session_ttl=seconds)
        assert config.interval_ms == config.ttl_ms == ms, case["text"]


# --- store records (STORE-REDIS.md §2) ------------------------------------------------------


@pytest.mark.parametrize("case", RECORDS["cases"], ids=lambda c: f"{c['seed']!r}-{c['n']!r}")
def test_store_record_fields(case: Json) -> None:
    from reference.store.redis import record_from_fields

    if case["valid"]:
        record = record_from_fields(case["seed"], case["n"])
        assert (record.seed, record.n) == (int(case["seed"]), int(case["n"]))
    else:
        with pytest.raises(ValueError, match=r"corrupt|outside|u64"):
            record_from_fields(case["seed"], case["n"])
