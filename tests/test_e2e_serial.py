"""The example park end to end over its RS-485 devices: Modbus DI module and weighing indicator."""

from __future__ import annotations

import subprocess
import sys

from conftest import EXAMPLE, REPO


def _of(events, sensor, kind=None):
    return [e for e in events if e["sensor_id"] == sensor and (kind is None or e["event"] == kind)]


def test_wired_fire_button_on_the_modbus_di_module_alarms_the_whole_building(
        daemon, serial_devices, subscriber):
    serial_devices.button("B-1F-FB2", "press")
    events = subscriber.wait_events(lambda ev: _of(ev, "B-1F-FB2", "raised"))
    e = _of(events, "B-1F-FB2")[0]
    assert (e["severity"], e["rule"], e["building"], e["floor"]) == (
        "critical", "button_latch", "B", "1F")
    assert set(e["tenants"]) == {"jiali", "hengtong"}
    serial_devices.button("B-1F-FB2", "reset")
    subscriber.wait_events(lambda ev: _of(ev, "B-1F-FB2", "cleared"))


def test_overload_on_the_weighing_indicator_and_the_modbus_load_cell(
        daemon, serial_devices, subscriber):
    serial_devices.reading("A-3F-LC2", 10_400.0)  # XK3190-A9 frames on the pty
    serial_devices.reading("B-3F-LC2", 8_600.0)  # int32 cdab, 0.1 kg counts on Modbus
    events = subscriber.wait_events(lambda ev: _of(ev, "A-3F-LC2", "raised")
                                    and _of(ev, "B-3F-LC2", "raised"))
    a, b = _of(events, "A-3F-LC2")[0], _of(events, "B-3F-LC2")[0]
    assert (a["severity"], a["value"]) == ("critical", 10_400.0)
    assert (b["severity"], b["value"]) == ("warning", 8_600.0)
    assert a["tenants"] == ["yongsheng"] and b["tenants"] == ["hengtong"]


def test_sim_lists_its_scenarios():
    out = subprocess.run([sys.executable, "-m", "parkwatch", "sim", "--config", str(EXAMPLE),
                          "--list"], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert out.returncode == 0
    for name in ("demo", "fire_drill", "overload", "flood", "cable_cut"):
        assert name in out.stdout
