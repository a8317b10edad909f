"""Modbus TCP framing for the bus scheduler: its RTU request frames re-framed with an MBAP
header, the answers checked against it.

MBAP header (Modbus Messaging on TCP/IP Implementation Guide V1.0b, §3.1.3): transaction
identifier (2 bytes, echoed by the server), protocol identifier (2 bytes, 0 = Modbus), length
(2 bytes: the bytes that follow, unit identifier included), unit identifier (1 byte); then the
PDU (function code and data), with no CRC (TCP checks the bytes).  A PDU is at most 253 bytes
(Modbus Application Protocol V1.1b3, §4.1).
"""

from __future__ import annotations

import struct
import time
from typing import Any

from pymodbus.exceptions import ModbusException
from pymodbus.pdu import DecodePDU

from parkwatch.drivers.modbus_rtu.link import ByteStream

_HEADER = struct.Struct(">HHHB")  # transaction, protocol, length, unit
_MAX_PDU = 253
_STALE_ANSWERS = 8  # late answers to earlier requests skipped while waiting for this one's


class MbapLink:
    """Modbus TCP over a :class:`~parkwatch.drivers.tcpstream.TcpStream`; one request at a
    time, each with a new transaction identifier so that a late answer is never taken for the
    current one."""

    gap_s = 0.0  # no line to keep silent

    def __init__(self, stream: ByteStream, name: str, reopen_max_s: float) -> None:
        self.stream = stream
        self.name = name
        self.reopen_max_s = reopen_max_s
        self._tid = 0
        self._decoder = DecodePDU(False)
        self.answered_at = 0.0

    def open(self) -> None:
        self.stream.open()

    def close(self) -> None:
        self.stream.close()

    def exchange(self, request: bytes, response_len: int, slave: int) -> tuple[Any, bool]:
        """`request` is an RTU frame: its address byte is the unit, its CRC is dropped."""
        self._tid = (self._tid + 1) & 0xFFFF
        pdu = request[1:-2]
        s = self.stream
        s.discard()
        s.write(_HEADER.pack(self._tid, 0, len(pdu) + 1, request[0]) + pdu)
        for _ in range(_STALE_ANSWERS):
            head = s.read(_HEADER.size)
            if len(head) < _HEADER.size:
                break
            tid, protocol, length, unit = _HEADER.unpack(head)
            if protocol != 0 or not 2 <= length - 1 <= _MAX_PDU:
                # not an MBAP header: the stream is out of step, start a new connection
                raise ConnectionError(f"invalid Modbus TCP header {head.hex()}")
            body = s.read(length - 1)
            if len(body) < length - 1:
                break
            if tid == self._tid:
                self.answered_at = time.monotonic()
                return (self._decode(body, slave) if unit == request[0] else None), False
        self.answered_at = time.monotonic()
        return None, True

    def _decode(self, body: bytes, slave: int) -> Any:
        try:
            answer = self._decoder.decode(body)
        except (ModbusException, ValueError, IndexError, struct.error):
            return None
        if answer is not None:
            answer.dev_id = slave
        return answer
