"""Simulated Modbus TCP devices: the slaves of a :class:`~.modbus_bus.SimBus` (never started:
it only holds them, their registers and the configured sensors) answering over TCP.

Each request is an MBAP header and a PDU (Modbus Messaging on TCP/IP Implementation Guide
V1.0b, §3.1.3); the unit identifier picks the slave, which answers as it would on the serial
bus (pymodbus builds the response frame).  An unknown or dead unit does not answer, as a
device that is off; the gateway's timeout sees to it.
"""

from __future__ import annotations

import socket
import struct

from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU

from parkwatch.firmware_sim.modbus_bus import SimBus
from parkwatch.firmware_sim.tcp_listener import TcpListener

_HEADER = struct.Struct(">HHHB")  # transaction, protocol, length, unit


class SimModbusTcpServer(TcpListener):
    def __init__(self, bus: SimBus, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port, "Modbus TCP device")
        self.bus = bus
        self._framer = FramerSocket(DecodePDU(True))

    def serve(self, conn: socket.socket) -> None:
        while True:
            head = _read(conn, _HEADER.size)
            tid, protocol, length, unit = _HEADER.unpack(head)
            body = _read(conn, length - 1)
            slave = self.bus.slaves.get(unit)
            if slave is not None:
                slave.requests += 1
            if protocol != 0 or slave is None or not slave.alive:
                continue
            response = self.bus.answer(slave, body)
            response.transaction_id, response.dev_id = tid, unit
            slave.answered += 1
            conn.sendall(self._framer.buildFrame(response))


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("closed")
        data += chunk
    return data
