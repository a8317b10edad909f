"""Fuzzing every parser with random and mutated input (issue 8).

Parsers covered: the indicator frame formats (stream parsers), Modbus RTU responses (through
the bus's own poll, with a fake serial port), MQTT device payloads (through the MQTT driver's
decode path), the park config loader, and the MQTT ack command of the daemon.  Inputs are
random bytes or text and mutations of valid input (bit flips, truncation, insertion,
duplication, deletion, splicing), plus structured oddities: JSON with wrong types, NaN, huge
numbers and deep nesting; YAML with wrong types, anchors, huge ints, unicode, tabs and
duplicate keys.  The properties: no exception other than the documented one escapes, and every
input that does not become a reading is a counted rejection with a reason.

In CI each test runs 2,000 generated inputs (about 25 s for the config loader, which validates a
whole park per input).  ``PARKWATCH_FUZZ_EXAMPLES`` sets the number for every parser.  The
dedicated run, 100,000 inputs per parser (not for CI; roughly 3-5 minutes per parser on 2
cores, 20 for the config loader)::

    PARKWATCH_FUZZ_EXAMPLES=100000 .venv/bin/pytest tests/test_fuzz.py -p no:cacheprovider -q \\
        -o timeout=0

One parser at a time: add ``-k indicator``, ``-k modbus``, ``-k mqtt``, ``-k config`` or
``-k ack``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.bit_message import ReadCoilsResponse, ReadDiscreteInputsResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from parkwatch.alarms.service import AlarmService
from parkwatch.alarms.store import AlarmStore
from parkwatch.config import ConfigError
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.cmdauth import CommandGate
from parkwatch.daemon.commands import mqtt_ack
from parkwatch.drivers.modbus_rtu.address import parse_address
from parkwatch.drivers.modbus_rtu.blocks import PollBlock, build_blocks
from parkwatch.drivers.modbus_rtu.bus import BusScheduler
from parkwatch.drivers.modbus_rtu.link import RtuLink
from parkwatch.drivers.mqtt.driver import MqttDriver
from parkwatch.drivers.serial_indicator.formats import (
    FORMATS,
    Frame,
    FrameFormat,
    Reading,
    Rejection,
)
from parkwatch.drivers.serial_indicator.formats.and_line import MAX_LINE
from parkwatch.park import ParkModel
from parkwatch.rules.engine import RuleEngine
from parkwatch.schema import load_config

EXAMPLES = int(os.environ.get("PARKWATCH_FUZZ_EXAMPLES", "0")) or None  # None: CI's sizes
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "park.yaml"
FUZZ = settings(max_examples=EXAMPLES or 2000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

# --- mutation ----------------------------------------------------------------------------


@st.composite
def mutate(draw: st.DrawFn, seed: bytes, splice: bytes = b"", max_ops: int = 4) -> bytes:
    """``seed`` damaged by a few random edits (what line noise and bad devices do)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "delete",
                                   "splice", "byte"]))
        n = len(data)
        i = draw(st.integers(0, n))
        if op == "flip" and n:
            i = min(i, n - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and n:
            data[min(i, n - 1)] = draw(st.integers(0, 255))
        elif op == "truncate":
            data = data[:i] if draw(st.booleans()) else data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "duplicate":
            j = draw(st.integers(i, n))
            data[j:j] = data[i:j]
        elif op == "delete":
            j = draw(st.integers(i, min(n, i + 8)))
            del data[i:j]
        elif op == "splice":
            other = splice or seed
            a = draw(st.integers(0, len(other)))
            b = draw(st.integers(a, len(other)))
            data[i:] = other[a:b] + data[i:]
    return bytes(data)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# --- indicator frames --------------------------------------------------------------------

REASONS = {"garbage", "cut_frame", "bad_frame", "bad_checksum", "bad_digits", "bad_line"}


@st.composite
def indicator_stream(draw: st.DrawFn, fmt: type[FrameFormat]) -> bytes:
    """Random bytes, or a run of valid frames mutated, or valid frames with junk between."""
    frames = []
    for _ in range(draw(st.integers(0, 6))):
        decimals = draw(st.integers(0, fmt.max_decimals))
        top = fmt.max_counts(decimals)
        frames.append(fmt.encode_counts(
            draw(st.integers(-top, top)), decimals, draw(st.sampled_from(fmt.statuses)),
            draw(st.booleans()) if fmt.carries_net else False,
            draw(st.sampled_from(["kg", "t", "lb", "g"])) if fmt.carries_unit else None))
    valid = b"".join(frames)
    kind = draw(st.sampled_from(["random", "mutated", "junk_between", "long_junk"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "mutated":
        return draw(mutate(valid, splice=valid + fmt.delimiters, max_ops=8))
    if kind == "long_junk":  # past the junk-run and line limits, frames after it
        return draw(st.binary(min_size=500, max_size=1500)) + valid
    junk = st.binary(max_size=16) | st.sampled_from([fmt.delimiters, b"\r", b"\n", b",",
                                                     b"ST,GS,", b"\x02+00"])
    return b"".join(draw(junk) + f for f in frames) + draw(junk)


def parse_all(fmt: type[FrameFormat], pieces: list[bytes]) -> list[Frame]:
    parser = fmt.parser()
    out: list[Frame] = []
    for p in pieces:
        out += parser.feed(p)
    out += parser.flush()
    return out


def blank_line_bytes(fmt: type[FrameFormat], stream: bytes) -> int:
    """Bytes the format drops without a word because they carry nothing (and_line: blank
    lines); everything else must be accounted for by a reading or a rejection."""
    if fmt.name != "and_line":
        return 0
    *lines, tail = stream.split(b"\n")
    blank = sum(len(x) + 1 for x in lines if x in (b"", b"\r"))
    # whitespace left when the line closes is not reported as a cut line (flush); beyond the
    # longest line it has been counted as junk already
    return blank + (min(len(tail), MAX_LINE) if not tail.strip() else 0)


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
@FUZZ
@given(data=st.data())
def test_indicator_parser_accounts_for_every_byte(fmt: type[FrameFormat], data: Any) -> None:
    """Whatever the bytes and however they are chunked: only Reading/Rejection comes out, every
    byte is in exactly one of them (bar blank lines), each reading is a frame that decodes on
    its own to the same value, and the readings do not depend on the chunking."""
    stream = data.draw(indicator_stream(fmt))
    cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=12))
    out = parse_all(fmt, chunked(stream, cuts))
    accounted = 0
    for f in out:
        if isinstance(f, Rejection):
            assert f.reason in REASONS and f.size > 0, f
            accounted += f.size
        else:
            assert isinstance(f, Reading), f
            accounted += len(f.raw)
            assert 0 <= f.decimals <= fmt.max_decimals and abs(f.counts) <= fmt.max_counts(
                f.decimals)
            assert f.status in fmt.statuses and math.isfinite(f.value)
            alone = [x for x in parse_all(fmt, [f.raw]) if isinstance(x, Reading)]
            assert alone == [f]
    assert accounted + blank_line_bytes(fmt, stream) == len(stream)
    whole = parse_all(fmt, [stream])
    assert [f for f in whole if isinstance(f, Reading)] == [
        f for f in out if isinstance(f, Reading)]


# --- Modbus RTU responses ------------------------------------------------------------------

SERVER = FramerRTU(DecodePDU(True))
_POINTS = [(0, "7/hr100:float32:cdab"), (1, "7/hr102:int16"), (2, "7/hr103:uint32:dcba"),
           (3, "7/hr106:int32:badc"), (4, "7/ir0:uint16"), (5, "7/ir1:float32"),
           (6, "7/di0"), (7, "7/di5"), (8, "7/co3")]
BLOCKS = build_blocks([(i, parse_address(a), 1.5, -2.0) for i, a in _POINTS],
                      {7: 1.0}, 0.5, 64)


class FakePort:
    """A serial port whose slave answers every request with ``answer``."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass

    def write(self, _data: bytes) -> None:
        pass

    def read(self, n: int) -> bytes:
        out, self.answer = self.answer[:n], self.answer[n:]
        return out


def valid_answer(block: PollBlock, draw: st.DrawFn) -> bytes:
    if block.is_bits:
        cls = ReadCoilsResponse if block.table == "co" else ReadDiscreteInputsResponse
        bits = draw(st.lists(st.booleans(), min_size=block.count, max_size=block.count))
        pdu: Any = cls(dev_id=block.slave, bits=bits + [False] * (-len(bits) % 8))
    else:
        cls = ReadHoldingRegistersResponse if block.table == "hr" else ReadInputRegistersResponse
        regs = draw(st.lists(st.integers(0, 0xFFFF), min_size=block.count,
                             max_size=block.count))
        pdu = cls(dev_id=block.slave, registers=regs)
    return bytes(SERVER.buildFrame(pdu))


def with_crc(body: bytes) -> bytes:
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


@st.composite
def modbus_answer(draw: st.DrawFn, block: PollBlock) -> bytes:
    valid = valid_answer(block, draw)
    kind = draw(st.sampled_from(["random", "mutated", "mutated_crc", "any_pdu", "other_block",
                                 "exception"]))
    if kind == "random":
        return draw(st.binary(max_size=2 * block.response_len))
    if kind == "mutated":
        return draw(mutate(valid))
    if kind == "mutated_crc":  # damaged body with a correct CRC: only the PDU decoder stands
        return with_crc(draw(mutate(valid[:-2])))
    if kind == "any_pdu":  # this slave, any function code, any body, a correct CRC
        body = bytes([block.slave, draw(st.integers(0, 255))]) + draw(
            st.binary(max_size=block.response_len))
        return with_crc(body)
    if kind == "other_block":  # a well-formed answer to a different request
        return valid_answer(draw(st.sampled_from(BLOCKS)), draw)
    return with_crc(bytes([block.slave, draw(st.integers(0x80, 0xFF)),
                           draw(st.integers(0, 255))]))


@FUZZ
@given(data=st.data())
def test_modbus_answer_is_values_or_a_counted_failure(data: Any) -> None:
    """One poll against a slave that answers anything: it ends in exactly one sensor-values
    delivery of the block's length, or in a counted timeout / bad frame / exception answer,
    and never raises."""
    block = data.draw(st.sampled_from(BLOCKS))
    answer = data.draw(modbus_answer(block))
    got: list[np.ndarray] = []
    failed: list[PollBlock] = []
    cfg = SimpleNamespace(id="fuzz", port="/dev/fuzz", retries=0, t35=0.0, quarantine_after=3,
                          reprobe_s=1.0, backoff_max_s=10.0)
    link = RtuLink(FakePort(answer), "/dev/fuzz", 0.0, 1.0)
    bus = BusScheduler(cfg, BLOCKS, lambda _b, values, _t: got.append(values),  # type: ignore[arg-type]
                       lambda b, _t: failed.append(b), link)
    bus.port = link
    bus._poll(block, bus.slaves[block.slave])
    state = bus.slaves[block.slave]
    counted = state.timeouts + state.bad_frames + state.exceptions
    assert (len(got), len(failed), counted) in ((1, 0, 0), (0, 1, 1)), (got, state)
    if got:
        assert got[0].shape == (len(block.sensors),)


# --- MQTT payloads ---------------------------------------------------------------------------

JSON_ODD = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-10**400, 10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
    | st.sampled_from(["press", "reset", "heartbeat", "test", "PRESS", "2026-11-22T08:00:00",
                      "2026-11-22T08:00:00+08:00", "nan"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["value", "ts", "event", "battery", "data", "x"]) | st.text(max_size=5),
        kids, max_size=5),
    max_leaves=12)


@st.composite
def mqtt_payload(draw: st.DrawFn) -> bytes:
    now = 1_795_000_000.0
    valid = draw(st.sampled_from([
        {"value": 1234.5}, {"value": 2.5, "ts": now, "battery": 87},
        {"event": "press"}, {"event": "reset", "ts": now * 1000}, {"value": 1},
        {"data": {"value": 3}}, 42, "press"]))
    seed = json.dumps(valid).encode()
    kind = draw(st.sampled_from(["random", "mutated", "odd_json", "deep", "huge", "text"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "mutated":
        return draw(mutate(seed))
    if kind == "odd_json":
        return json.dumps(draw(JSON_ODD)).encode()
    if kind == "deep":
        depth = draw(st.integers(1, 5_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"value":', "}")]))
        return (opener * depth + "1" + closer * draw(st.integers(0, depth))).encode()
    if kind == "huge":
        return draw(st.sampled_from([b"9" * 5000, b"1e999", b'{"value": 1e308}',
                                     b'{"value": -1e308, "ts": 1e400}', b" " * 10_000,
                                     b'{"value": 1' + b"0" * 400 + b"}"]))
    return draw(st.text(max_size=50)).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def park_cfg(tmp_path_factory: pytest.TempPathFactory) -> ParkConfig:
    state = tmp_path_factory.mktemp("fuzz-state")
    return load_config(EXAMPLE, {("gateway", "state_dir"): str(state)})


@pytest.fixture(scope="module")
def mqtt_driver(park_cfg: ParkConfig) -> MqttDriver:
    cfg = next(d for d in park_cfg.drivers if d.type == "mqtt")
    driver = MqttDriver(cfg, ParkModel(park_cfg), None, park_cfg)  # never started
    driver.rejections.log = logging.getLogger("parkwatch.fuzz")
    return driver


@FUZZ
@given(data=st.data())
def test_mqtt_messages_are_accepted_or_counted(mqtt_driver: MqttDriver, data: Any) -> None:
    """Through the driver's decode: accepted + rejected == messages, no 'internal_error' (a
    decoder exception), and nothing accepted is infinite."""
    topics = [*mqtt_driver.topics(), "devices/ghost/up"]
    items = [(mqtt_driver, data.draw(st.sampled_from(topics)), data.draw(mqtt_payload()),
              1_795_000_000.0, 0, 0) for _ in range(data.draw(st.integers(1, 4)))]
    accepted, rejected = mqtt_driver.accepted, mqtt_driver.rejections.count
    batch = mqtt_driver.decode(items)
    new_accepted = mqtt_driver.accepted - accepted
    assert new_accepted + mqtt_driver.rejections.count - rejected == len(items)
    assert len(batch) == new_accepted
    assert "internal_error" not in mqtt_driver.rejections.total
    assert not np.isinf(batch.value).any()


# --- park config -----------------------------------------------------------------------------

EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
EXAMPLE_DATA = yaml.safe_load(EXAMPLE_TEXT)
YAML_SNIPPETS = ["\t", "  x: &a [*a, *a]\n", "<<: *a\n", "  a: 1\n  a: 2\n", "&a ", "*a",
                 "? [1, 2]\n: 3\n", "!!binary AAAA\n", "!!python/name:os.system\n", ": ",
                 "- ", "'", '"', "{", "[", "99999999999999999999999999999999", ".nan", "~",
                 "\ufeff", "名字: 王工\n", "\u2028", "---\n", "...\n", "%YAML 1.1\n", "#"]
ODD_VALUES = st.sampled_from([None, True, "", "no", 10**40, -1, 0, math.nan, math.inf, 1e308,
                              [], {}, [1, "a"], {"a": {"b": [None]}}, "王工", "\t", "x" * 300,
                              "2026-13-45T99:00:00", "/dev/null", "../../etc/passwd"])


def replace_node(data: Any, path: list[int], value: Any) -> Any:
    """``data`` with the node chosen by ``path`` (indices into each level) replaced."""
    if not path or not isinstance(data, dict | list) or not data:
        return value
    keys = list(data) if isinstance(data, dict) else list(range(len(data)))
    key = keys[path[0] % len(keys)]
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[key] = replace_node(data[key], path[1:], value)  # type: ignore[index]
    return copy


@st.composite
def config_text(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["random", "bytes", "lines", "snippets", "values", "anchors"]))
    if kind == "random":
        return draw(st.text(max_size=300))
    if kind == "bytes":
        raw = draw(mutate(EXAMPLE_TEXT.encode(), max_ops=6))
        return raw.decode("utf-8", "replace")
    lines = EXAMPLE_TEXT.splitlines(keepends=True)
    if kind == "lines":
        for _ in range(draw(st.integers(1, 5))):
            i = draw(st.integers(0, len(lines) - 1))
            op = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent"]))
            if op == "delete":
                del lines[i]
            elif op == "duplicate":
                lines.insert(i, lines[i])
            elif op == "swap":
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            elif op == "indent":
                lines[i] = draw(st.sampled_from(["  ", "\t", " "])) + lines[i]
            else:
                lines[i] = lines[i][1:]
        return "".join(lines)
    if kind == "snippets":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(lines)))
            snippet = draw(st.sampled_from(YAML_SNIPPETS))
            if draw(st.booleans()) and i < len(lines):  # inside a line, not between lines
                j = draw(st.integers(0, len(lines[i])))
                lines[i] = lines[i][:j] + snippet + lines[i][j:]
            else:
                lines.insert(i, snippet)
        return "".join(lines)
    if kind == "anchors":  # aliases to a node, to itself, a billion laughs in miniature
        return draw(st.sampled_from([
            "a: &x [*x]\n", "a: &x {b: *x}\n", "park: &p\n  id: p\ngateway: *p\n",
            "l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
                f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 7)),
        ])) + draw(st.sampled_from(["", EXAMPLE_TEXT]))
    data = EXAMPLE_DATA
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.lists(st.integers(0, 50), max_size=5))
        data = replace_node(data, path, draw(ODD_VALUES))
    return yaml.safe_dump(data, allow_unicode=draw(st.booleans()))


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


@FUZZ
@given(text=config_text())
def test_config_loads_or_says_why(config_dir: Path, text: str) -> None:
    """load_config returns a ParkConfig or raises ConfigError with problems; nothing else."""
    path = config_dir / "park.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        cfg = load_config(path, {("gateway", "state_dir"): str(config_dir)})
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
    else:
        assert isinstance(cfg, ParkConfig)


# --- ack command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ack_daemon(park_cfg: ParkConfig, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Just what commands.mqtt_ack uses: the alarm service (no alarm open) and the topic."""
    park = ParkModel(park_cfg)
    store = AlarmStore(tmp_path_factory.mktemp("fuzz-alarms") / "alarms.db")
    alarms = AlarmService(park_cfg, park, RuleEngine(park, start=0.0), store,
                          on_due=lambda _t: None)
    alarms.refused.log = logging.getLogger("parkwatch.fuzz")
    return SimpleNamespace(alarms=alarms, cfg=park_cfg, uplink=SimpleNamespace(
        topics=SimpleNamespace(ack="parkwatch/fuzz/cmd/ack")),
        gate=CommandGate(tmp_path_factory.mktemp("fuzz-commands")))


@st.composite
def ack_payload(draw: st.DrawFn) -> bytes:
    seed = json.dumps(draw(st.sampled_from([
        {"alarm_id": "A-2F-LC1/overload", "by": "王工"},
        {"alarm_id": "x", "by": "张三", "note": "on my way"},
        {"alarm_id": "", "by": " district-duty "}]))).encode()
    kind = draw(st.sampled_from(["random", "mutated", "odd_json", "fields", "deep"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "mutated":
        return draw(mutate(seed))
    if kind == "odd_json":
        return json.dumps(draw(JSON_ODD)).encode()
    if kind == "fields":
        doc = {k: draw(JSON_ODD) for k in draw(st.lists(
            st.sampled_from(["alarm_id", "by", "note"]), unique=True))}
        return json.dumps(doc).encode()
    depth = draw(st.integers(1, 5_000))
    return (b"[" * depth) + b"1" + (b"]" * depth)


@FUZZ
@given(payload=ack_payload())
def test_ack_command_is_carried_out_or_refused_and_counted(ack_daemon: Any,
                                                           payload: bytes) -> None:
    """With no alarm open, every ack command is refused (bad_command, not_operator or
    unknown_alarm) and counted exactly once; none raises."""
    refused: Callable[[], int] = lambda: ack_daemon.alarms.refused.count  # noqa: E731
    before = refused()
    mqtt_ack(ack_daemon.alarms, ack_daemon.gate, ack_daemon.cfg, ack_daemon.uplink.topics.ack,
             payload)
    assert refused() == before + 1
    assert set(ack_daemon.alarms.refused.total) <= {"bad_command", "not_operator",
                                                    "unknown_alarm"}
