"""The Modbus RTU slave simulator, driven over its pty as a master (pyserial + pymodbus) would.

These tests check what the daemon's driver and a field engineer rely on: byte-exact frames
with the right values, silence from dead and unknown slaves, exception responses, injected
faults the master can detect, the line timing of the baud rate, the t3.5 bookkeeping, and the
cable cut.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import serial
import yaml
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

from parkwatch.drivers.modbus_rtu import registers
from parkwatch.firmware_sim.modbus_bus import SimBus
from parkwatch.firmware_sim.modbus_slave import SimSlave
from parkwatch.firmware_sim.modbus_wiring import build_bus_from_config
from parkwatch.schema import load_config

REPO = Path(__file__).resolve().parent.parent
REQUESTS: dict[str, type[ModbusPDU]] = {
    "hr": ReadHoldingRegistersRequest, "ir": ReadInputRegistersRequest,
    "di": ReadDiscreteInputsRequest, "co": ReadCoilsRequest}
NO_ANSWER = "no answer"
BAD_FRAME = "bad frame"


class Master:
    """A Modbus RTU master on the simulator's port: pyserial plus pymodbus's client framer."""

    def __init__(self, path: Path, baudrate: int = 9600) -> None:
        self.ser = serial.Serial(str(path), baudrate, timeout=0.01)
        self.framer = FramerRTU(DecodePDU(False))

    def request(self, slave: int, table: str, address: int, count: int) -> bytes:
        return self.framer.buildFrame(REQUESTS[table](dev_id=slave, address=address,
                                                      count=count))

    def send(self, slave: int, table: str, address: int, count: int) -> None:
        self.ser.write(self.request(slave, table, address, count))

    def receive(self, timeout: float = 0.3) -> ModbusPDU | str:
        """The response PDU; BAD_FRAME if bytes came but no valid frame; NO_ANSWER if none."""
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            buf += self.ser.read(self.ser.in_waiting or 1)
            if buf:
                used, pdu = self.framer.handleFrame(buf, 0, 0)
                if pdu is not None:
                    return pdu
                if used:
                    return BAD_FRAME  # the framer consumed the bytes: CRC or garbage
        return BAD_FRAME if buf else NO_ANSWER

    def transact(self, slave: int, table: str, address: int, count: int,
                 timeout: float = 0.3) -> ModbusPDU | str:
        self.send(slave, table, address, count)
        return self.receive(timeout)

    def close(self) -> None:
        self.ser.close()


def value(pdu: ModbusPDU | str, dtype: str, order: str = "abcd") -> float:
    assert isinstance(pdu, ModbusPDU) and not pdu.isError(), pdu
    return float(registers.decode(list(pdu.registers), np.array([0]), dtype, order)[0])


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[SimBus]:
    level = SimSlave(3, name="water-level transmitter")
    level.set("3/hr100:float32:cdab", 12.5)
    level.set("3/ir0:int16", -42)
    cell = SimSlave(4, name="load-cell transmitter")
    cell.set("4/hr10:int32:badc", -123456)
    cell.set("4/hr12:uint32", 4_000_000_000)
    di = SimSlave(5, name="8-channel DI module")
    di.map("di", 0, 8)
    di.set_bit("5/di2", True)
    di.set_bit("5/di7", True)
    b = SimBus(tmp_path / "rs485", 9600, 10, [level, cell, di]).start()
    yield b
    b.stop()


@pytest.fixture
def master(bus: SimBus) -> Iterator[Master]:
    m = Master(bus.path)
    yield m
    m.close()


def test_reads_registers_and_inputs(bus: SimBus, master: Master) -> None:
    assert value(master.transact(3, "hr", 100, 2), "float32", "cdab") == 12.5
    assert value(master.transact(3, "ir", 0, 1), "int16") == -42
    assert value(master.transact(4, "hr", 10, 2), "int32", "badc") == -123456
    pdu = master.transact(4, "hr", 10, 4)  # one block across both load-cell values
    assert isinstance(pdu, ModbusPDU)
    assert registers.decode(list(pdu.registers), np.array([2]), "uint32", "abcd")[0] == 4e9
    pdu = master.transact(5, "di", 0, 8)
    assert isinstance(pdu, ModbusPDU) and pdu.dev_id == 5
    assert list(pdu.bits[:8]) == [False, False, True, False, False, False, False, True]

    bus.slaves[5].set_bit("5/di2", False)  # the button is reset
    bus.slaves[3].set("3/hr100:float32:cdab", 31.25)  # the water rises
    pdu = master.transact(5, "di", 2, 1)
    assert isinstance(pdu, ModbusPDU) and pdu.bits[0] is False
    assert value(master.transact(3, "hr", 100, 2), "float32", "cdab") == 31.25
    st = bus.stats
    assert st.requests == st.answered == 7 and st.exceptions == 0
    assert st.per_slave == {3: 3, 4: 2, 5: 2} == st.answered_per_slave


def test_response_is_byte_exact(bus: SimBus, master: Master) -> None:
    """12.5 as float32 is 0x41480000; in cdab order the low word travels first."""
    master.send(3, "hr", 100, 2)
    raw = b""
    deadline = time.monotonic() + 0.5
    while len(raw) < 9 and time.monotonic() < deadline:
        raw += master.ser.read(9 - len(raw))
    assert raw[:7] == bytes([3, 0x03, 4, 0x00, 0x00, 0x41, 0x48])
    assert master.framer.handleFrame(raw, 3, 0)[1] is not None  # the CRC checks out


def test_dead_and_unknown_slaves_stay_silent(bus: SimBus, master: Master) -> None:
    bus.slaves[3].alive = False
    assert master.transact(3, "hr", 100, 2, timeout=0.25) == NO_ANSWER
    assert master.transact(77, "hr", 0, 1, timeout=0.25) == NO_ANSWER
    master.send(0, "hr", 0, 1)  # broadcast: nobody answers a read to address 0
    assert master.receive(0.1) == NO_ANSWER
    bus.slaves[3].alive = True
    assert value(master.transact(3, "hr", 100, 2), "float32", "cdab") == 12.5
    st = bus.stats
    assert (st.requests, st.answered, st.ignored, st.broadcasts) == (4, 1, 2, 1)
    assert st.per_slave == {3: 2, 77: 1, 0: 1}


def test_unmapped_register_gets_exception_2(bus: SimBus, master: Master) -> None:
    for table, address, count in (("hr", 200, 1), ("hr", 100, 3), ("ir", 1, 1), ("di", 6, 4)):
        pdu = master.transact(5 if table == "di" else 3, table, address, count)
        assert isinstance(pdu, ExceptionResponse), (table, address, count, pdu)
        assert pdu.exception_code == 2
        assert pdu.function_code == 0x80 | {"hr": 3, "ir": 4, "di": 2}[table]
    assert bus.stats.exceptions == 4


def test_faults_are_detected_by_the_master(bus: SimBus, master: Master) -> None:
    slave = bus.slaves[3]
    slave.bad_crc_once = True
    assert master.transact(3, "hr", 100, 2) == BAD_FRAME
    assert value(master.transact(3, "hr", 100, 2), "float32", "cdab") == 12.5  # once only
    slave.garbage_once = True
    assert master.transact(3, "hr", 100, 2) == BAD_FRAME
    time.sleep(0.01)
    master.ser.reset_input_buffer()
    slave.latency_s = 0.1
    t0 = time.monotonic()
    assert value(master.transact(3, "hr", 100, 2), "float32", "cdab") == 12.5
    assert time.monotonic() - t0 >= 0.1


def test_transaction_takes_the_line_time_at_9600(bus: SimBus, master: Master) -> None:
    """8-byte request + 9-byte response at 10 bits/char: at least 17 character times."""
    char_time = 10 / 9600
    durations = []
    for _ in range(5):
        time.sleep(0.01)
        t0 = time.monotonic()
        pdu = master.transact(3, "hr", 100, 2)
        durations.append(time.monotonic() - t0)
        assert isinstance(pdu, ModbusPDU)
    assert min(durations) >= 17 * char_time
    assert statistics.median(durations) < 2 * 17 * char_time + 0.010


def test_t35_violations_are_counted(bus: SimBus, master: Master) -> None:
    assert isinstance(master.transact(3, "hr", 100, 2), ModbusPDU)
    assert isinstance(master.transact(3, "hr", 100, 2), ModbusPDU)  # straight after: too soon
    assert bus.stats.t35_violations == 1
    time.sleep(bus.t35 + 0.005)
    assert isinstance(master.transact(3, "hr", 100, 2), ModbusPDU)
    time.sleep(bus.t35 + 0.005)
    assert isinstance(master.transact(77, "hr", 0, 1, timeout=0.05), str)  # nobody there
    time.sleep(bus.t35 + 0.005)
    assert isinstance(master.transact(4, "hr", 10, 2), ModbusPDU)
    assert bus.stats.t35_violations == 1


def test_talking_over_a_response_is_a_collision(bus: SimBus, master: Master) -> None:
    bus.slaves[3].latency_s = 0.05
    master.send(3, "hr", 100, 2)
    time.sleep(0.02)
    master.send(4, "hr", 10, 2)  # the master did not wait for slave 3's answer
    assert value(master.receive(), "float32", "cdab") == 12.5
    assert master.receive(0.1) == NO_ANSWER  # the second request was lost in the collision
    st = bus.stats
    assert (st.collisions, st.t35_violations, st.answered) == (1, 1, 1)


def test_cut_fails_the_port_and_restore_brings_it_back(bus: SimBus, master: Master) -> None:
    assert isinstance(master.transact(3, "hr", 100, 2), ModbusPDU)
    bus.cut()
    assert not bus.path.exists()
    with pytest.raises(serial.SerialException):
        master.ser.read(1)
    with pytest.raises(serial.SerialException):
        master.ser.write(master.request(3, "hr", 100, 2))
    with pytest.raises(serial.SerialException):
        serial.Serial(str(bus.path), 9600)
    master.close()
    bus.restore()
    again = Master(bus.path)
    try:
        assert value(again.transact(3, "hr", 100, 2), "float32", "cdab") == 12.5
    finally:
        again.close()


def test_stop_ends_the_thread_and_removes_the_link(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    bus = SimBus(tmp_path / "port", 115200, slaves=[SimSlave(1)]).start()
    assert bus.path.is_symlink() and bus.running
    t0 = time.monotonic()
    bus.stop()
    assert time.monotonic() - t0 < 0.5
    assert not bus.running and not bus.path.exists()
    assert set(threading.enumerate()) <= before


def test_slave_setters_check_their_input() -> None:
    s = SimSlave(3)
    with pytest.raises(ValueError, match="belongs to slave 4"):
        s.set("4/hr0", 1)
    with pytest.raises(ValueError, match="does not fit"):
        s.set("3/hr0:int16", 40000)
    with pytest.raises(ValueError, match="not a bit"):
        s.set_bit("3/hr0", True)
    s.set("3/hr0:uint16:badc", 0x1234)
    assert s.read("hr", 0, 1) == [0x3412]
    assert s.get("3/hr0:uint16:badc") == 0x1234


def _modbus_park(tmp_path: Path) -> Any:
    """The example park with some of its sensors wired to an RS-485 bus instead of LoRa."""
    data = yaml.safe_load((REPO / "examples" / "park.yaml").read_text(encoding="utf-8"))
    data["drivers"].append({"id": "rs485", "type": "modbus_rtu", "port": str(tmp_path / "bus"),
                            "baudrate": 19200, "parity": "E",
                            "slaves": [{"slave": 9, "name": "spare DI module"}]})
    wiring = {"A-1F-FB1": {"address": "5/di2"}, "A-2F-FB1": {"address": "5/di5"},
              "A-2F-LC1": {"address": "2/hr0:float32:cdab"},
              "A-2F-LC2": {"address": "2/hr6:int32", "scale": 0.1},
              "A-1F-WL1": {"address": "3/ir0:int16", "scale": 0.1},
              "B-B1-WL1": {"address": "3/hr100:float32"}}
    for s in data["sensors"]:
        if s["id"] in wiring:
            s.update(driver="rs485", **wiring[s["id"]])
    path = tmp_path / "park.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path)


def test_bus_from_park_config(tmp_path: Path) -> None:
    cfg = _modbus_park(tmp_path)
    drv = next(d for d in cfg.drivers if d.id == "rs485")
    bus = build_bus_from_config(drv, cfg)
    assert sorted(bus.slaves) == [2, 3, 5, 9]
    assert bus.bits_per_char == 11 and bus.t35 == pytest.approx(3.5 * 11 / 19200)
    bus.start()
    m = Master(bus.path, 19200)
    try:
        # load cells start at a baseline below warning (8000 kg): 45 % of it
        assert value(m.transact(2, "hr", 0, 2), "float32", "cdab") == 3600.0
        pdu = m.transact(2, "hr", 0, 8)  # the driver's block across the gap between cells
        assert isinstance(pdu, ModbusPDU)
        assert registers.decode(list(pdu.registers), np.array([6]), "int32", "abcd")[0] == 36000
        assert value(m.transact(3, "ir", 0, 1), "int16") == 90  # 9 cm at 0.1 cm per count
        assert value(m.transact(3, "hr", 100, 2), "float32") == pytest.approx(0.12)  # metres
        pdu = m.transact(5, "di", 0, 8)  # an 8-channel module, every button released
        assert isinstance(pdu, ModbusPDU) and not any(pdu.bits[:8])
        assert isinstance(m.transact(5, "di", 8, 1), ExceptionResponse)
        bus.set_sensor("A-2F-FB1", True)
        bus.set_sensor("A-2F-LC2", 9876.5)
        bus.set_sensor("A-1F-WL1", 55.5)
        pdu = m.transact(5, "di", 0, 8)
        assert isinstance(pdu, ModbusPDU) and list(pdu.bits[:8]).index(True) == 5
        assert value(m.transact(2, "hr", 6, 2), "int32") == 98765
        assert value(m.transact(3, "ir", 0, 1), "int16") == 555
        assert isinstance(m.transact(9, "di", 0, 1), ExceptionResponse)  # present, empty map
    finally:
        m.close()
        bus.stop()
