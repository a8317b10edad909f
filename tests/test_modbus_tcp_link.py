"""Modbus TCP framing (MbapLink): the request's MBAP header byte for byte, a late answer to an
earlier request never taken for the current one, and a stream out of step reconnected."""

from __future__ import annotations

import pytest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

from parkwatch.drivers.modbus_rtu.blocks import CLIENT_FRAMER
from parkwatch.drivers.modbus_tcp.link import MbapLink

# read 2 holding registers from 100 of unit 3: RTU frame 03 03 0064 0002 + CRC
REQUEST = CLIENT_FRAMER.buildFrame(ReadHoldingRegistersRequest(dev_id=3, address=100, count=2))


class Script:
    """A stream whose far end answers with the given bytes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sent: list[bytes] = []

    def open(self) -> None: ...

    def close(self) -> None: ...

    def discard(self) -> None: ...

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def read(self, n: int) -> bytes:
        out, self.answer = self.answer[:n], self.answer[n:]
        return out


def answer(tid: int, unit: int = 3, words: bytes = b"\x00\x2a\x01\x00") -> bytes:
    # MBAP: transaction, protocol 0, length (unit + PDU), unit; PDU: fc 3, byte count, data
    pdu = b"\x03" + bytes([len(words)]) + words
    return tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + \
        bytes([unit]) + pdu


def test_request_is_the_rtu_pdu_under_an_mbap_header() -> None:
    stream = Script(answer(1))
    pdu, timed_out = MbapLink(stream, "t", 1.0).exchange(REQUEST, 9, 3)
    # Modbus Messaging on TCP/IP Implementation Guide V1.0b §3.1.3: tid 1, protocol 0,
    # length 6, unit 3, then fc 3, start 0x0064, count 2; no CRC
    assert stream.sent == [bytes.fromhex("000100000006" "03" "03" "0064" "0002")]
    assert not timed_out and pdu.registers == [42, 256]


def test_a_late_answer_to_an_earlier_request_is_skipped() -> None:
    link = MbapLink(Script(b""), "t", 1.0)
    link.exchange(REQUEST, 9, 3)  # tid 1: no answer (timed out)
    link.stream = Script(answer(1, words=b"\x00\x01\x00\x01") + answer(2))
    pdu, timed_out = link.exchange(REQUEST, 9, 3)
    assert not timed_out and pdu.registers == [42, 256]


def test_no_answer_is_a_timeout_and_another_unit_a_bad_answer() -> None:
    assert MbapLink(Script(answer(1)[:5]), "t", 1.0).exchange(REQUEST, 9, 3) == (None, True)
    assert MbapLink(Script(answer(1, unit=4)), "t", 1.0).exchange(REQUEST, 9, 3) == (None, False)


def test_a_stream_out_of_step_is_a_lost_connection() -> None:
    with pytest.raises(ConnectionError):
        MbapLink(Script(b"\x00\x01\x12\x34\x00\x06\x03" + b"\x00" * 5), "t", 1.0).exchange(
            REQUEST, 9, 3)


def test_a_bus_stopped_while_it_connects_leaves_no_connection_behind(monkeypatch) -> None:
    """A reload stops a driver whose (slow, 4G) connect is still under way: the connection
    made after the stop is closed, so a serial server with one client slot is free for the
    new driver."""
    import socket
    import threading
    from types import SimpleNamespace

    from parkwatch.drivers import tcpstream
    from parkwatch.drivers.modbus_rtu.bus import BusScheduler
    from parkwatch.drivers.modbus_rtu.link import RtuLink

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    started, go = threading.Event(), threading.Event()
    real = socket.create_connection

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        started.set()
        go.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(tcpstream.socket, "create_connection", slow)
    stream = tcpstream.TcpStream("127.0.0.1", server.getsockname()[1], 0.5, 10.0)
    cfg = SimpleNamespace(id="dtu", retries=0)
    bus = BusScheduler(cfg, [], lambda *_a: None, lambda *_a: None,  # type: ignore[arg-type]
                       RtuLink(stream, "t", 0.001, 1.0))
    try:
        bus.start()
        assert started.wait(10), "the bus never tried to connect"
        bus.stop()
        go.set()  # the connect completes now, after the stop
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            assert conn.recv(1) == b"", "the connection made after the stop stayed open"
    finally:
        go.set()
        server.close()
