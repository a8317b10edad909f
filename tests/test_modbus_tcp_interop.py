"""Modbus TCP against pymodbus on real loopback sockets, both ways: the modbus_tcp driver reads
a pymodbus server, and a pymodbus client reads and writes the simulator's Modbus TCP device.
Both ends framing alike with an independent implementation is what keeps a field device's
answers readable."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer

from conftest import wait_until
from parkwatch.drivers.modbus_rtu.registers import encode
from parkwatch.drivers.modbus_tcp.driver import ModbusTcpDriver
from parkwatch.firmware_sim.devices import free_port
from parkwatch.firmware_sim.modbus_tcp_server import SimModbusTcpServer
from parkwatch.firmware_sim.modbus_wiring import build_bus_from_config
from parkwatch.park import ParkModel
from parkwatch.readings import Quality
from parkwatch.schema import load_config

CONFIG = """
park: {{id: bench, name: 试验园区}}
gateway: {{id: gw-bench, state_dir: state}}
brokers: {{local: {{host: 127.0.0.1, port: 1883}}}}
uplink: {{broker: local}}
landlord: {{id: l, name: 业主}}
buildings: [{{id: A, floors: [{{id: 1F, rated_load_kn_m2: 4.0, area_m2: 500}}]}}]
tenants: [{{id: t1, name: 租户一, occupies: [{{building: A, floor: 1F}}]}}]
drivers:
  - {{id: plc, type: modbus_tcp, host: 127.0.0.1, port: {port}, poll_interval_s: 0.05,
     di_interval_s: 0.05, timeout_s: 1.0}}
sensors:
  - {{id: LC1, kind: load_cell, building: A, floor: 1F, driver: plc,
     address: '7/hr10:float32:cdab'}}
  - {{id: FB1, kind: fire_button, building: A, floor: 1F, driver: plc, address: '7/di2'}}
outputs:
  - {{id: SND, kind: sounder, building: A, floor: 1F, driver: plc, address: '7/co0'}}
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Any:
    path = tmp_path / "park.yaml"
    path.write_text(CONFIG.format(port=free_port()), encoding="utf-8")
    return load_config(path)


class Inbox:
    def __init__(self) -> None:
        self.items: list[tuple] = []

    def put(self, item: tuple) -> None:
        self.items.append(item)

    def latest(self, sensor: int) -> float | None:
        good = [v for _, s, v, _, q in self.items if s == sensor and q == Quality.GOOD]
        return good[-1] if good else None


@pytest.fixture
def pymodbus_server(cfg: Any) -> Iterator[Any]:
    """A pymodbus Modbus TCP server at the driver's port: unit 7, hr10-11 a float32 (cdab),
    di2 closed; yields a function reading its coil 0."""
    # pymodbus addresses its blocks from 1 (wire address 0 is the block's first value)
    device = ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, [0] * 10 + encode(1234.5, "float32", "cdab") + [0] * 8),
        di=ModbusSequentialDataBlock(1, [False, False, True] + [False] * 5),
        co=ModbusSequentialDataBlock(1, [False] * 8))
    made: list[ModbusTcpServer] = []
    up = threading.Event()

    async def serve() -> None:  # pymodbus makes its server on the loop that runs it
        made.append(ModbusTcpServer(ModbusServerContext(devices={7: device}, single=False),
                                    address=("127.0.0.1", cfg.drivers[0].port)))
        up.set()
        await made[0].serve_forever()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert up.wait(10)
    server = made[0]

    def coil0() -> bool:
        return bool(asyncio.run_coroutine_threadsafe(
            server.async_getValues(7, 1, 0, 1), loop).result(10)[0])

    yield coil0
    asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(10)
    thread.join(10)
    loop.close()


def test_the_driver_reads_and_writes_a_pymodbus_server(cfg: Any, pymodbus_server: Any) -> None:
    from parkwatch.drivers.modbus_rtu.outputs import ModbusOutputs

    park = ParkModel(cfg)
    inbox = Inbox()
    driver = ModbusTcpDriver(cfg.drivers[0], park, inbox, cfg)
    outputs = ModbusOutputs(driver, cfg.drivers[0], park.outputs, cfg)
    driver.start()
    try:
        wait_until(lambda: inbox.latest(park.index["LC1"]) == pytest.approx(1234.5)
                   and inbox.latest(park.index["FB1"]) == 1.0, timeout=15,
                   what="the load cell and the contact read from pymodbus")
        answers: list[tuple[bool, str]] = []
        outputs.write(next(iter(outputs.points)), True, lambda _p, ok, seen: answers.append(
            (ok, seen)))
        wait_until(lambda: bool(answers), timeout=15, what="the write read back")
        assert answers == [(True, "on")]
        assert pymodbus_server()
    finally:
        driver.stop()


def test_a_pymodbus_client_reads_and_writes_the_simulated_device(cfg: Any) -> None:
    drv = cfg.drivers[0]
    bus = build_bus_from_config(drv, cfg, "unused")
    server = SimModbusTcpServer(bus, "127.0.0.1", drv.port).start()
    bus.set_sensor("LC1", 987.25)
    bus.set_sensor("FB1", True)
    client = ModbusTcpClient("127.0.0.1", port=drv.port, timeout=5)
    try:
        assert client.connect()
        regs = client.read_holding_registers(10, count=2, device_id=7).registers
        assert regs == encode(987.25, "float32", "cdab")
        assert client.read_discrete_inputs(0, count=8, device_id=7).bits[2] is True
        assert not client.write_coil(0, True, device_id=7).isError()
        assert bus.output_on("SND")
    finally:
        client.close()
        server.stop()


def test_a_slow_connect_never_holds_up_the_comm_fail_reports(cfg: Any) -> None:
    """A connect that hangs (a 4G DTU out of reach drops the SYN; here: a listener whose
    backlog is full) runs beside the bus loop: the sensors report comm_fail at their cadence
    meanwhile, and the failure is logged once the attempt gives up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fills = []
    for _ in range(3):  # fill the backlog: further SYNs are dropped, connects hang
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(listener.getsockname())
        fills.append(c)
    drv_cfg = cfg.drivers[0].model_copy(update={"port": listener.getsockname()[1],
                                                "connect_timeout_s": 10.0})
    park = ParkModel(cfg)
    inbox = Inbox()
    driver = ModbusTcpDriver(drv_cfg, park, inbox, cfg)
    fb = park.index["FB1"]
    driver.start()
    try:
        wait_until(lambda: sum(1 for _, s, _, _, q in inbox.items
                               if s == fb and q == Quality.COMM_FAIL) >= 5, timeout=30,
                   what="comm_fail reports while connecting")
        # still the first attempt, not yet failed (10 s: room for a busy machine's stalls)
        assert driver.bus.port_lost_at is None
        wait_until(lambda: driver.bus.port_lost_at is not None, timeout=40,
                   what="the attempt given up")
    finally:
        for s in [listener, *fills]:
            s.close()  # further attempts are refused at once
        driver.stop()
    wait_until(lambda: not any(t.name.startswith("parkwatch-connect-")
                               for t in threading.enumerate()), timeout=15,
               what="the connect threads ended")


def test_a_device_that_takes_the_connection_and_closes_it_is_not_back_and_waits_longer(
        cfg: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A Modbus TCP device or serial server whose one client slot is taken by another master
    accepts each connection and closes it at once: the loss is logged once, never "back", the
    reconnects back off, and its slave is not quarantined for it."""
    import logging

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def refuse_each() -> None:  # accept, then close at once
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                conn.close()

    server = threading.Thread(target=refuse_each, daemon=True)
    server.start()
    caplog.set_level(logging.INFO, "parkwatch.drivers.modbus")
    drv_cfg = cfg.drivers[0].model_copy(update={"port": listener.getsockname()[1]})
    park = ParkModel(cfg)
    driver = ModbusTcpDriver(drv_cfg, park, Inbox(), cfg)
    driver.start()
    try:
        wait_until(lambda: driver.bus.failed_reopens >= 3, timeout=30,
                   what="three reconnects that did not hold")
        assert driver.bus._reopen_backoff >= 4.0  # 0.5, 1, 2, 4: it waits ever longer
        messages = [r.getMessage() for r in caplog.records]
        assert sum("port unavailable" in m for m in messages) == 1, messages
        assert not any("port is back" in m for m in messages), messages
        assert not any(s.quarantined for s in driver.bus.slaves.values())
    finally:
        driver.stop()
        stop.set()
        server.join(5)
        listener.close()
