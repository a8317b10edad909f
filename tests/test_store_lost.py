"""A damaged alarm store must not hide an alarm: the gateway starts without it, and every
condition that was alarming is raised again (a latched fire button at once, the others by their
next reading), rather than the rule state remembering alarms nobody holds any more."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Device, Subscriber, example_config, wait_until
from parkwatch.daemon.app import Daemon
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.firmware_sim.devices import SimulatedPark


def raised(sub: Subscriber, sensor_id: str) -> list[str]:
    return [e["alarm_id"] for e in sub.events()
            if e["sensor_id"] == sensor_id and e["event"] == "raised"]


def test_a_lost_alarm_store_raises_every_alarming_condition_again(
        broker: LocalMosquitto, tmp_path: Path, serial_devices: SimulatedPark,
        subscriber: Subscriber, device: Device, caplog: pytest.LogCaptureFixture) -> None:
    cfg = example_config(broker, tmp_path)
    first = Daemon(cfg)
    first.start()
    try:
        assert first.uplink.link.connected.wait(5)
        wait_until(lambda: all(d.subscribed.is_set() for d in first.drivers
                               if hasattr(d, "subscribed")), what="the MQTT driver")
        device.send("A-3F-FB1", {"event": "press"})
        device.send("A-1F-WL1", {"value": 60})
        wait_until(lambda: raised(subscriber, "A-3F-FB1") and raised(subscriber, "A-1F-WL1"),
                   what="the fire and the flood alarms")
    finally:
        first.stop()
    state = cfg.gateway.state_dir
    (state / "alarms.db").write_bytes(b"not a database any more" * 200)
    for suffix in ("-wal", "-shm"):
        (state / f"alarms.db{suffix}").unlink(missing_ok=True)
    fire_before, flood_before = raised(subscriber, "A-3F-FB1"), raised(subscriber, "A-1F-WL1")

    second = Daemon(cfg)
    second.start()
    try:
        assert second.store_lost
        # the latched button (its press is never sent again) is raised again at once
        wait_until(lambda: len(raised(subscriber, "A-3F-FB1")) == 2,
                   what="the latched fire alarm raised again")
        assert raised(subscriber, "A-3F-FB1")[1] not in fire_before  # a new alarm
        # the water gauge's next reading raises its alarm again: its rule state was not kept
        wait_until(lambda: all(d.subscribed.is_set() for d in second.drivers
                               if hasattr(d, "subscribed")), what="the MQTT driver")
        device.send("A-1F-WL1", {"value": 61})
        wait_until(lambda: len(raised(subscriber, "A-1F-WL1")) == 2,
                   what="the flood alarm raised again by the next reading")
        assert raised(subscriber, "A-1F-WL1")[1] not in flood_before
        assert list(state.glob("rules.npz.store-lost-*"))
        assert "1 latched fire button(s) raised again now" in caplog.text
    finally:
        second.stop()
