"""The command center's courier in a process of its own (``uplink.process: true``): the same
events and retained states reach the command center, fire presses among them, each row is
marked delivered in the store by the daemon's commit stage, a courier process that dies is
started again and carries what was left, and stopping the daemon stops it.

The example park's daemon, in-process, its uplink courier in a real child process, on a real
Mosquitto."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Subscriber, example_config, process_alive, wait_until
from parkwatch.alarms.courierproc import CourierProcess
from parkwatch.config.delivery import UPLINK

BUTTON = "A-3F-FB1"
CELL = "A-2F-LC1"


@pytest.fixture
def udaemon(broker: Any, tmp_path: Path, serial_devices: Any) -> Iterator[Any]:
    from parkwatch.daemon.app import Daemon

    d = Daemon(example_config(broker, tmp_path, {("uplink", "process"): True}))
    d.start()
    courier = d.couriers[UPLINK]
    assert isinstance(courier, CourierProcess)
    wait_until(courier.ready.is_set, timeout=30, what="the courier process to connect")
    yield d
    d.stop()
    assert not process_alive(courier.pid)  # stopping the daemon stops its courier process


def _pending(d: Any) -> int:
    db = sqlite3.connect(d.store_path)
    try:
        return int(db.execute("SELECT count(*) FROM outbox WHERE target = ? AND state = "
                              "'pending'", (UPLINK,)).fetchone()[0])
    finally:
        db.close()


def _of(events: list[dict[str, Any]], sensor: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["sensor_id"] == sensor and e["event"] == kind]


def test_events_and_states_reach_the_command_center_and_are_marked_delivered(
        udaemon, broker, subscriber, device):
    courier = udaemon.couriers[UPLINK]
    assert courier.pid != os.getpid() and process_alive(courier.pid)
    states = Subscriber(broker, "parkwatch/v1/xinqiao/alarms/#")
    try:
        device.send(CELL, {"value": 10_250})
        device.send(BUTTON, {"event": "press"})
        events = subscriber.wait_events(lambda ev: _of(ev, BUTTON, "raised")
                                        and _of(ev, CELL, "raised"))
        (fire,) = _of(events, BUTTON, "raised")
        wait_until(lambda: any(json.loads(p or b"{}").get("alarm_id") == fire["alarm_id"]
                               for _, p, _r in list(states.messages)),
                   what="the alarm's retained state")
    finally:
        states.close()
    wait_until(lambda: _pending(udaemon) == 0, what="every uplink row marked delivered")
    wait_until(lambda: courier.delivered >= 2, what="the courier's count")
    assert courier.health()["process"] == courier.pid and not courier.failing


def test_a_killed_courier_process_is_started_again_and_carries_what_was_left(
        udaemon, subscriber, device, caplog):
    courier = udaemon.couriers[UPLINK]
    first = courier.pid
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not courier.ready.is_set(), what="the courier to count as not ready")
    device.send(BUTTON, {"event": "press"})  # committed while no courier process runs
    wait_until(lambda: courier.pid != first and courier.ready.is_set(), timeout=30,
               what="a new courier process to connect")
    events = subscriber.wait_events(lambda ev: _of(ev, BUTTON, "raised"), timeout=30)
    assert len(_of(events, BUTTON, "raised")) == 1
    assert courier.restarts == 1
    assert any("its process ended" in r.getMessage() for r in caplog.records)
    wait_until(lambda: _pending(udaemon) == 0, timeout=10, what="its row marked delivered")
