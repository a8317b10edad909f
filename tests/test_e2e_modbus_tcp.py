"""Modbus over TCP end to end: the real daemon in-process reads load cells and fire contacts
through a simulated serial server (RTU over TCP, the bus behind it with true line timing) and
a simulated Modbus TCP device, on real loopback sockets, and sounds the building through both;
a dropped connection gives comm_fault and recovers by itself.  Config errors of the TCP
drivers name the key path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Subscriber, wait_until
from parkwatch.config import ConfigError
from parkwatch.firmware_sim.devices import SimulatedPark, free_port
from parkwatch.schema import load_config

CONFIG = """
park: {{id: bench, name: 试验园区}}
gateway: {{id: gw-bench, state_dir: state, status_interval_s: 5}}
brokers: {{local: {{host: 127.0.0.1, port: {mqtt}}}}}
uplink: {{broker: local}}
landlord: {{id: l, name: 业主}}
buildings: [{{id: A, floors: [{{id: 1F, rated_load_kn_m2: 4.0, area_m2: 500}}]}}]
tenants: [{{id: t1, name: 租户一, occupies: [{{building: A, floor: 1F}}]}}]
rules: {{load_cell: {{high_warning: 8000, high_critical: 10000, deadband: 100}}}}
drivers:
  - id: dtu
    type: modbus_rtu_tcp
    host: {host}
    port: {rtu}
    baudrate: 19200
    parity: E
    poll_interval_s: 0.2
    di_interval_s: 0.1
    timeout_s: 0.5
    retries: 0
    comm_fault_after_s: 1.0
    reconnect_max_s: 0.5
  - id: plc
    type: modbus_tcp
    host: 127.0.0.1
    port: {tcp}
    poll_interval_s: 0.2
    di_interval_s: 0.1
    timeout_s: 0.5
    retries: 0
    comm_fault_after_s: 1.0
    reconnect_max_s: 0.5
sensors:
  - {{id: LC01, kind: load_cell, building: A, floor: 1F, driver: dtu,
     address: '1/hr0:int32:cdab', scale: 0.1}}
  - {{id: LC02, kind: load_cell, building: A, floor: 1F, driver: dtu,
     address: '2/hr0:int32:cdab', scale: 0.1}}
  - {{id: FB1, kind: fire_button, building: A, floor: 1F, driver: dtu, address: '100/di0'}}
  - {{id: LC11, kind: load_cell, building: A, floor: 1F, driver: plc,
     address: '1/hr10:float32', scale: 1.0}}
  - {{id: FB2, kind: fire_button, building: A, floor: 1F, driver: plc, address: '1/di3'}}
outputs:  # switched on by a fire in their building (linkage), written through both links
  - {{id: A-SND-1F, kind: sounder, building: A, floor: 1F, driver: dtu, address: '9/co0'}}
  - {{id: A-STB-1F, kind: strobe, building: A, floor: 1F, driver: plc, address: '1/co0'}}
"""


def write(tmp_path: Path, mqtt: int, **kw: Any) -> Path:
    values = {"host": "127.0.0.1", "rtu": free_port(), "tcp": free_port(), **kw}
    path = tmp_path / "park.yaml"
    path.write_text(CONFIG.format(mqtt=mqtt, **values), encoding="utf-8")
    return path


def _of(events: list[dict[str, Any]], sensor: str, event: str | None = None,
        rule: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["sensor_id"] == sensor
            and (event is None or e["event"] == event) and (rule is None or e["rule"] == rule)]


def _load(events: list[dict[str, Any]], sensor: str) -> list[dict[str, Any]]:
    """The sensor's load alarms raised (a busy machine may add a comm_fault blip)."""
    return [e for e in _of(events, sensor, "raised") if e["rule"] != "comm_fault"]


@pytest.fixture
def park(tmp_path: Path, broker: Any) -> Iterator[tuple[Any, SimulatedPark, Subscriber]]:
    """The daemon, its simulated serial server and Modbus TCP device, and an event subscriber."""
    from parkwatch.daemon.app import Daemon

    cfg = load_config(write(tmp_path, broker.port))
    devices = SimulatedPark(cfg, mqtt=False)
    devices.start()
    sub = Subscriber(broker)
    daemon = Daemon(cfg, tmp_path / "state")
    daemon.start()
    try:
        yield daemon, devices, sub
    finally:
        daemon.stop()
        sub.close()
        devices.stop()


def test_load_cells_and_fire_contacts_through_a_serial_server_and_a_modbus_tcp_device(park):
    daemon, devices, sub = park
    wait_until(lambda: all(d.accepted > 5 for d in daemon.drivers), timeout=15,
               what="readings from both TCP drivers")
    devices.reading("LC01", 8_600.0)  # int32 cdab, 0.1 kg counts, behind the serial server
    devices.reading("LC11", 10_400.0)  # float32 on the Modbus TCP device
    events = sub.wait_events(lambda ev: _load(ev, "LC01") and _load(ev, "LC11"), timeout=15)
    assert (_load(events, "LC01")[0]["severity"], _load(events, "LC01")[0]["value"]) == (
        "warning", 8_600.0)
    assert (_load(events, "LC11")[0]["severity"], _load(events, "LC11")[0]["value"]) == (
        "critical", 10_400.0)
    assert not devices.output_on("A-SND-1F") and not devices.output_on("A-STB-1F")
    for button in ("FB1", "FB2"):
        devices.button(button, "press")
        events = sub.wait_events(lambda ev, b=button: _of(ev, b, "raised", "button_latch"),
                                 timeout=15)
        e = _of(events, button, "raised", "button_latch")[0]
        assert (e["severity"], e["tenants"]) == ("critical", ["t1"])
    # the fire sounds the building: a coil written (and read back) over each link
    wait_until(lambda: devices.output_on("A-SND-1F") and devices.output_on("A-STB-1F"),
               timeout=15, what="the sounder and the strobe switched on")
    # the bus behind the serial server kept its line discipline (t3.5 between frames)
    assert devices.buses["dtu"].stats.t35_violations == 0
    assert {d.health()["type"] for d in daemon.drivers} == {"modbus_rtu_tcp", "modbus_tcp"}


def test_dropped_connections_give_comm_fault_and_recover_by_themselves(park, caplog):
    caplog.set_level(logging.INFO, logger="parkwatch")
    daemon, devices, sub = park
    wait_until(lambda: all(d.accepted > 5 for d in daemon.drivers), timeout=15,
               what="readings from both TCP drivers")
    sensors = {"LC01", "LC02", "FB1", "LC11", "FB2"}
    devices.cut("dtu")  # the serial server and the device go off the network
    devices.cut("plc")
    events = sub.wait_events(lambda ev: {e["sensor_id"] for e in ev if e["rule"] == "comm_fault"
                                         and e["event"] == "raised"} == sensors, timeout=20)
    assert all(e["severity"] == "warning" for e in events if e["rule"] == "comm_fault")
    # reconnects are refused a few times: still one 'unavailable' line per driver
    wait_until(lambda: all(d.health()["failed_reopens"] >= 2 for d in daemon.drivers),
               timeout=15, what="two failed reconnects of each driver")
    devices.restore("dtu")
    devices.restore("plc")
    sub.wait_events(lambda ev: {e["sensor_id"] for e in ev if e["rule"] == "comm_fault"
                                and e["event"] == "cleared"} == sensors, timeout=20)
    devices.button("FB2", "press")  # and the fire lane works again
    sub.wait_events(lambda ev: _of(ev, "FB2", "raised", "button_latch"), timeout=15)
    messages = [r.getMessage() for r in caplog.records]
    for name in ("dtu", "plc"):
        endpoint = daemon.drivers[["dtu", "plc"].index(name)].bus.name
        lost = [m for m in messages if endpoint in m and "port unavailable" in m]
        back = [m for m in messages if endpoint in m and "port is back" in m]
        assert len(lost) == 1 and len(back) == 1, messages


@pytest.mark.parametrize(("key", "value", "message"), [
    ("host", "tcp://10.0.0.5", "drivers[0].host"),
    ("host", "10.0.0.5:4001", "put the TCP port under `port`"),
    ("host", "bad host", "not a valid IP address or host name"),
    ("rtu", 70000, "drivers[0].port"),
    ("rtu", 0, "drivers[0].port"),
])
def test_bad_host_or_port_is_a_clear_error_with_its_key_path(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 1883, **{key: value}))
    text = "\n".join(str(p) for p in info.value.problems)
    assert message in text and "park.yaml:" in text, text


def test_two_drivers_on_one_connection_is_an_error(tmp_path):
    port = free_port()
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 1883, rtu=port, tcp=port))
    text = "\n".join(str(p) for p in info.value.problems)
    assert "drivers[1].port" in text and "one owner per connection" in text, text
