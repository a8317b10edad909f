"""Modbus addresses, poll blocks and register decoding (no bus needed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.bit_message import ReadDiscreteInputsResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from parkwatch.drivers.modbus_rtu import registers
from parkwatch.drivers.modbus_rtu.address import parse_address
from parkwatch.drivers.modbus_rtu.blocks import build_blocks, parse_response

SERVER = FramerRTU(DecodePDU(True))


@pytest.mark.parametrize(("text", "slave", "table", "reg", "dtype", "order"), [
    ("3/hr100:float32:cdab", 3, "hr", 100, "float32", "cdab"),
    ("2/IR0:int16", 2, "ir", 0, "int16", "abcd"),
    ("5/di2", 5, "di", 2, "bit", "abcd"),
    ("247/hr65535", 247, "hr", 65535, "uint16", "abcd"),
])
def test_addresses_parse(text, slave, table, reg, dtype, order):
    a = parse_address(text)
    assert (a.slave, a.table, a.register, a.dtype, a.order) == (slave, table, reg, dtype, order)


@pytest.mark.parametrize(("text", "why"), [
    ("0/hr1", "outside 1..247"), ("248/hr1", "outside 1..247"), ("3/xx1", "not a Modbus"),
    ("3/hr1:float64", "unknown type"), ("3/hr1:int32:abdc", "unknown byte order"),
    ("3/di1:int16", "single bit"), ("3/hr1:int16:cdab", "no word order"),
    ("3/hr70000", "outside 0..65535"),
])
def test_bad_addresses_say_why(text, why):
    with pytest.raises(ValueError, match=why):
        parse_address(text)


@given(st.sampled_from([("int16", ["abcd", "badc"]), ("uint16", ["abcd", "badc"]),
                        ("int32", ["abcd", "cdab", "badc", "dcba"]),
                        ("uint32", ["abcd", "cdab", "badc", "dcba"]),
                        ("float32", ["abcd", "cdab", "badc", "dcba"])]).flatmap(
    lambda t: st.tuples(st.just(t[0]), st.sampled_from(t[1]))),
    st.integers(0, 5), st.data())
def test_register_encoding_round_trips(kind, pad, data):
    dtype, order = kind
    lo, hi = {"int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1),
              "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1)}.get(dtype, (0, 0))
    value = (data.draw(st.floats(-1e6, 1e6, width=32)) if dtype == "float32"
             else data.draw(st.integers(lo, hi)))
    regs = [0xBEEF] * pad + registers.encode(value, dtype, order) + [0xCAFE]
    got = registers.decode(regs, np.array([pad]), dtype, order)
    assert got[0] == np.float32(value) if dtype == "float32" else got[0] == value


@pytest.mark.parametrize("order", ["abcd", "cdab", "badc", "dcba"])
def test_a_signalling_nan_decodes_to_nan_without_a_warning(order):
    """0x7F800001 is a signalling NaN in float32; its cast to float64 must stay quiet (the log
    of a gateway whose device sends it would fill with numpy warnings) and give NaN."""
    snan = np.frombuffer(bytes.fromhex("7f800001"), ">f4")  # stays float32: no cast yet
    wire = registers.encode(snan[0], "float32", order)  # the bytes in the order's places
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = registers.decode(wire, np.array([0]), "float32", order)
    assert np.isnan(values).all() and values.dtype == np.float64


def test_blocks_merge_neighbours_and_split_far_registers():
    pts = [(0, parse_address("1/hr0:float32"), 1.0, 0.0),
           (1, parse_address("1/hr2:int16"), 0.5, 10.0),
           (2, parse_address("1/hr100"), 1.0, 0.0),
           (3, parse_address("2/hr0"), 1.0, 0.0),
           (4, parse_address("1/di3"), 1.0, 0.0),
           (5, parse_address("1/di0"), 1.0, 0.0)]
    blocks = build_blocks(pts, {1: 1.0, 2: 2.0}, 0.2, 64)
    summary = sorted((b.slave, b.table, b.start, b.count, b.interval, b.priority)
                     for b in blocks)
    assert summary == [(1, "di", 0, 4, 0.2, 0), (1, "hr", 0, 3, 1.0, 1),
                       (1, "hr", 100, 1, 1.0, 1), (2, "hr", 0, 1, 2.0, 1)]
    block = next(b for b in blocks if b.table == "hr" and b.start == 0)
    regs = registers.encode(12.5, "float32", "abcd") + registers.encode(-40, "int16", "abcd")
    frame = SERVER.buildFrame(ReadHoldingRegistersResponse(dev_id=1, registers=regs))
    pdu = parse_response(frame, 1)
    assert pdu is not None and block.values(pdu).tolist() == [12.5, -40 * 0.5 + 10.0]
    di = next(b for b in blocks if b.table == "di")
    frame = SERVER.buildFrame(ReadDiscreteInputsResponse(dev_id=1, bits=[1, 0, 0, 1] + [0] * 4))
    assert di.values(parse_response(frame, 1)).tolist() == [1.0, 1.0]
    assert len(block.request) == 8 and block.response_len == 11


def test_bad_crc_garbage_and_wrong_slave_are_not_responses():
    frame = SERVER.buildFrame(ReadHoldingRegistersResponse(dev_id=1, registers=[1, 2]))
    assert parse_response(frame, 1) is not None
    assert parse_response(frame[:-1] + bytes([frame[-1] ^ 0xFF]), 1) is None
    assert parse_response(frame, 2) is None
    assert parse_response(b"\x01\x03\x04garbage", 1) is None
    assert parse_response(b"", 1) is None
