"""A simulated Modbus RTU slave: its register and bit map, liveness, answer delay and faults,
and the sensors a park config places on it.

A slave answers the read functions (0x01-0x04) from its map, with exception 2 for anything
outside it, as a real transmitter answers a master configured with the wrong register, and the
write functions of a relay module (0x05 write single coil, 0x06 write single register), whose
outputs can be made to stick (a welded relay contact: the write is answered, nothing moves).  The
bus (:mod:`parkwatch.firmware_sim.modbus_bus`) carries the frames and the line timing; the
slave only decides what the answer is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsResponse,
    ReadDiscreteInputsResponse,
    WriteSingleCoilResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteSingleRegisterResponse,
)

from parkwatch.drivers.modbus_rtu import registers
from parkwatch.drivers.modbus_rtu.address import ModbusAddress, parse_address

#: function code -> register/bit table it reads
FUNCTION_TABLES = {0x01: "co", 0x02: "di", 0x03: "hr", 0x04: "ir"}
ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03

_INT_RANGES = {"int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
               "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1)}
_RESPONSES: dict[int, type[ModbusPDU]] = {
    0x01: ReadCoilsResponse, 0x02: ReadDiscreteInputsResponse,
    0x03: ReadHoldingRegistersResponse, 0x04: ReadInputRegistersResponse}


def _as_address(address: str | ModbusAddress) -> ModbusAddress:
    return address if isinstance(address, ModbusAddress) else parse_address(address)


class SimSlave:
    """One device on the bus: its register/bit map, liveness, answer delay and faults.

    Only registers and bits that exist in the device's map can be read; a read that touches
    anything outside it gets exception 2 (illegal data address), as a real transmitter answers
    a master configured with the wrong register.  :meth:`set` maps what it writes, and
    :meth:`map` declares further registers (zeros) so block reads across gaps succeed.

    ``alive = False`` makes the device silent (powered off, wire broken).  ``latency_s`` is
    extra processing time before it answers.  ``bad_crc_once`` / ``garbage_once`` spoil the
    next answer only (a corrupted CRC; line noise of the same length instead of the frame).
    Setters may be called from any thread while the bus runs; a 32-bit value changes atomically.
    """

    def __init__(self, address: int, *, name: str | None = None, alive: bool = True,
                 latency_s: float = 0.0) -> None:
        if not 1 <= address <= 247:
            raise ValueError(f"slave address {address} is outside 1..247")
        self.address = address
        self.name = name
        self.alive = alive
        self.latency_s = latency_s
        self.bad_crc_once = False
        self.garbage_once = False
        self.requests = 0  # requests addressed to this slave (alive or not)
        self.answered = 0  # normal and exception responses sent
        #: (table, register) of outputs that stick: a write is answered and changes nothing
        self.stuck: set[tuple[str, int]] = set()
        #: told (table, register, value) of every write that changed an output (tests,
        #: benchmarks, the simulator's display), on the bus's thread
        self.on_write: Callable[[str, int, int], None] | None = None
        self._lock = threading.Lock()
        self._tables: dict[str, dict[int, int]] = {"hr": {}, "ir": {}, "di": {}, "co": {}}

    def __repr__(self) -> str:
        return f"SimSlave({self.address}, alive={self.alive}, latency_s={self.latency_s})"

    # --- the map --------------------------------------------------------------------------
    def map(self, table: str, start: int, count: int) -> None:
        """Declare ``count`` registers (or bits) from ``start`` as existing; new ones read 0."""
        store = self._table(table)
        if start < 0 or start + count > 65536:
            raise ValueError(f"{table}{start}+{count} is outside 0..65535")
        with self._lock:
            for r in range(start, start + count):
                store.setdefault(r, 0)

    def set(self, address: str | ModbusAddress, value: float | bool) -> None:
        """Place a raw device value at a parkwatch address, e.g. ``set("3/hr100:float32", 1.5)``.

        The value is what the device holds (before the sensor's scale/offset); integer types
        are rounded and must fit.  A bit address (di/co) sets the contact.
        """
        a = self._own(address)
        if a.is_bit:
            self.set_bit(a, bool(value))
            return
        if a.dtype in _INT_RANGES:
            lo, hi = _INT_RANGES[a.dtype]
            value = round(value)
            if not lo <= value <= hi:
                raise ValueError(f"{value} does not fit a {a.dtype} register at {a.table}"
                                 f"{a.register} of slave {a.slave}")
        words = registers.encode(float(value), a.dtype, a.order)
        self.set_registers(a.table, a.register, words)

    def set_bit(self, address: str | ModbusAddress, on: bool) -> None:
        """Close (True) or open (False) a contact, e.g. ``set_bit("5/di2", True)``."""
        a = self._own(address)
        if not a.is_bit:
            raise ValueError(f"{a.table}{a.register} is a register, not a bit; use set()")
        with self._lock:
            self._tables[a.table][a.register] = int(bool(on))

    def set_registers(self, table: str, start: int, words: Iterable[int]) -> None:
        """Write raw 16-bit words from ``start`` (mapping them), all at once."""
        store = self._table(table)
        values = [int(w) for w in words]
        if any(not 0 <= w <= 0xFFFF for w in values) or start + len(values) > 65536:
            raise ValueError("registers are 16-bit words within 0..65535")
        with self._lock:
            for i, w in enumerate(values):
                store[start + i] = w

    def get(self, address: str | ModbusAddress) -> float:
        """The raw value at an address as a master would decode it (tests, narration)."""
        a = self._own(address)
        data = self.read(a.table, a.register, a.width)
        if data is None:
            raise KeyError(f"{a.table}{a.register} is not in slave {a.slave}'s map")
        if a.is_bit:
            return float(data[0])
        return float(registers.decode(data, np.array([0]), a.dtype, a.order)[0])

    def read(self, table: str, start: int, count: int) -> list[int] | None:
        """``count`` words (or 0/1 bits) from ``start``, or None if any is outside the map."""
        store = self._table(table)
        with self._lock:
            try:
                return [store[r] for r in range(start, start + count)]
            except KeyError:
                return None

    def stick(self, address: str | ModbusAddress, stuck: bool = True) -> None:
        """Make an output stick where it is (a welded relay), or free it again."""
        a = self._own(address)
        with self._lock:
            (self.stuck.add if stuck else self.stuck.discard)((a.table, a.register))

    # --- answering ------------------------------------------------------------------------
    def respond(self, request: ModbusPDU) -> ModbusPDU:
        """The response PDU to a decoded request: data, or an exception response."""
        fc = request.function_code
        if fc in (0x05, 0x06):
            return self._write(request)
        table = FUNCTION_TABLES.get(fc)
        if table is None:
            return ExceptionResponse(fc, ILLEGAL_FUNCTION, device_id=self.address)
        data = self.read(table, request.address, request.count)
        if data is None:
            return ExceptionResponse(fc, ILLEGAL_DATA_ADDRESS, device_id=self.address)
        if table in ("di", "co"):
            return _RESPONSES[fc](dev_id=self.address, bits=[bool(b) for b in data])
        return _RESPONSES[fc](dev_id=self.address, registers=data)

    def _write(self, request: ModbusPDU) -> ModbusPDU:
        """Write single coil or register: echoed when the output exists (Modbus Application
        Protocol V1.1b3 §6.5, §6.6), exception 2 when it does not."""
        coil = request.function_code == 0x05
        table, at = ("co" if coil else "hr"), request.address
        value = int(bool(request.bits[0])) if coil else int(request.registers[0])
        with self._lock:
            store = self._tables[table]
            if at not in store:
                return ExceptionResponse(request.function_code, ILLEGAL_DATA_ADDRESS,
                                         device_id=self.address)
            moved = (table, at) not in self.stuck and store[at] != value
            if moved:
                store[at] = value
        if moved and self.on_write is not None:
            self.on_write(table, at, value)
        if coil:
            return WriteSingleCoilResponse(dev_id=self.address, address=at, bits=[bool(value)])
        return WriteSingleRegisterResponse(dev_id=self.address, address=at, registers=[value])

    # --- helpers --------------------------------------------------------------------------
    def _table(self, table: str) -> dict[int, int]:
        if table not in self._tables:
            raise ValueError(f"unknown table '{table}' (known: hr, ir, di, co)")
        return self._tables[table]

    def _own(self, address: str | ModbusAddress) -> ModbusAddress:
        a = _as_address(address)
        if a.slave != self.address:
            raise ValueError(f"address {a.slave}/{a.table}{a.register} belongs to slave "
                             f"{a.slave}, not {self.address}")
        return a


@dataclass(frozen=True)
class SimSensor:
    """A configured sensor as the simulator sees it: where it lives and how it is scaled."""

    id: str
    kind: str
    address: ModbusAddress
    scale: float = 1.0
    offset: float = 0.0
    #: a 4-20 mA transmitter (``signal: 4-20mA``): its range (min, max), else None
    loop: tuple[float, float] | None = None

    def raw(self, value: float) -> float:
        """The device value showing ``value`` after the sensor's scale/offset, saturated; for
        a 4-20 mA transmitter the loop current of ``value`` (4 mA at min, 20 mA at max)."""
        if self.loop is not None:
            lo, hi = self.loop
            return self.raw_current(4.0 + (value - lo) / (hi - lo) * 16.0)
        return self._raw(value)

    def raw_current(self, ma: float) -> float:
        """The register holding a loop current of ``ma`` mA: a broken loop is 0 mA, NAMUR
        NE43's failure signals at most 3.6 or at least 21 mA."""
        return self._raw(ma)

    def _raw(self, value: float) -> float:
        raw = (value - self.offset) / self.scale
        if self.address.dtype in _INT_RANGES:
            lo, hi = _INT_RANGES[self.address.dtype]
            raw = float(min(max(round(raw), lo), hi))
        return raw
