"""Outputs on a Modbus RTU bus: write single coil (0x05) or single register (0x06), then read
it back (0x01 / 0x03), through the bus scheduler's queue ahead of every poll.

Function codes and frames: Modbus Application Protocol V1.1b3, §6.1 (read coils), §6.3 (read
holding registers), §6.5 (write single coil: 0xFF00 on, 0x0000 off, the answer echoes the
request), §6.6 (write single register).
"""

from __future__ import annotations

from typing import Any

from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, WriteSingleCoilRequest
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    WriteSingleRegisterRequest,
)

from parkwatch.drivers.modbus_rtu.address import parse_address
from parkwatch.drivers.modbus_rtu.blocks import CLIENT_FRAMER
from parkwatch.drivers.modbus_rtu.bus import BusJob, BusScheduler
from parkwatch.outputs.port import Done, OutputPort
from parkwatch.park import OutputInfo

#: bytes of a normal answer: a write's echo; a read of one coil; a read of one register
_ECHO, _ONE_BIT, _ONE_WORD = 8, 6, 7


class _Point:
    """One output's frames, built once."""

    def __init__(self, info: OutputInfo) -> None:
        c = info.config
        a = parse_address(c.address or "")
        self.slave, self.coil = a.slave, a.table == "co"
        self.on_value, self.off_value = c.on_value, c.off_value
        if self.coil:
            self.writes = {on: CLIENT_FRAMER.buildFrame(WriteSingleCoilRequest(
                dev_id=a.slave, address=a.register, bits=[on])) for on in (True, False)}
            self.read = CLIENT_FRAMER.buildFrame(ReadCoilsRequest(
                dev_id=a.slave, address=a.register, count=1))
        else:
            self.writes = {on: CLIENT_FRAMER.buildFrame(WriteSingleRegisterRequest(
                dev_id=a.slave, address=a.register,
                registers=[c.on_value if on else c.off_value])) for on in (True, False)}
            self.read = CLIENT_FRAMER.buildFrame(ReadHoldingRegistersRequest(
                dev_id=a.slave, address=a.register, count=1))
        self.read_len = _ONE_BIT if self.coil else _ONE_WORD

    def seen(self, pdu: ModbusPDU | None, on: bool) -> tuple[bool, str]:
        """Whether a read-back's answer shows the output `on` (or at rest), and what it
        showed."""
        if pdu is None:
            return False, "no answer"
        if pdu.function_code & 0x80:
            return False, f"exception {getattr(pdu, 'exception_code', '?')}"
        if self.coil:
            bit = bool(pdu.bits[0]) if pdu.bits else None
            return bit is on, "on" if bit else "off"
        word = pdu.registers[0] if pdu.registers else None
        return word == (self.on_value if on else self.off_value), f"register {word}"


class ModbusOutputs:
    """The outputs of one Modbus RTU driver (:class:`~parkwatch.outputs.port.OutputPort`)."""

    def __init__(self, driver: Any, driver_cfg: Any, outputs: list[OutputInfo],
                 park_cfg: Any) -> None:
        self.bus: BusScheduler = driver.bus
        self.points = {o.position: _Point(o) for o in outputs}

    def write(self, position: int, on: bool, done: Done) -> None:
        p = self.points[position]

        def written(pdu: ModbusPDU | None) -> None:
            if pdu is None or pdu.function_code & 0x80:
                done(position, False, "write " + self._failure(pdu))
                return
            self.bus.submit(BusJob(p.slave, p.read, p.read_len,
                                   lambda answer: done(position, *p.seen(answer, on))))

        self.bus.submit(BusJob(p.slave, p.writes[on], _ECHO, written))

    def check(self, position: int, on: bool, done: Done) -> None:
        p = self.points[position]
        self.bus.submit(BusJob(p.slave, p.read, p.read_len,
                               lambda answer: done(position, *p.seen(answer, on))), check=True)

    @staticmethod
    def _failure(pdu: ModbusPDU | None) -> str:
        if pdu is None:
            return "not answered"
        return f"refused with exception {getattr(pdu, 'exception_code', '?')}"

    def start(self) -> None:
        """The bus is the driver's, started with it."""

    def stop(self) -> None:
        """Likewise stopped with the driver."""


_: type[OutputPort] = ModbusOutputs
