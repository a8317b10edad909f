"""The example park's daemon reports a fire press to a (simulated) city fire monitoring
center over GB/T 26875.3: the frame is confirmed, the button's reset follows as a recovery
and a system reset, the gateway reports itself online from the start and then beats its heart,
and a frame the center dropped is sent again.

The daemon runs in-process on the test broker with the park's MQTT devices only (as in
tests/test_webhook.py); the center is :mod:`parkwatch.firmware_sim.gb26875_center` on
127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Device, wait_until
from parkwatch.alarms.gb26875.codes import DataType
from parkwatch.alarms.gb26875.objects import ComponentState, SystemState
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.firmware_sim.gb26875_center import Center
from test_webhook import BUTTON, fire_subscriber, hook_config, outbox, running

DEVICE = 0x0000_1919_0001  # the gateway's address at the center
OTHER = "A-1F-FB1"  # another fire button of the park
CENTER = 0x0000_0000_0119


@pytest.fixture
def center() -> Iterator[Center]:
    c = Center(address=CENTER, device=DEVICE).start()
    yield c
    c.stop()


def target(center: Center, **extra: Any) -> dict[str, Any]:
    return {"type": "gb26875", "host": "127.0.0.1", "port": center.port,
            "source_address": DEVICE, "destination_address": CENTER,
            "retry": {"initial_s": 0.2, "max_s": 1.0}, **extra}


def config(broker: LocalMosquitto, tmp_path: Path, center: Center, **extra: Any) -> Any:
    return hook_config(broker, tmp_path, {"fire-center": target(center, **extra)},
                       [fire_subscriber("city-119", "fire-center")])


def parts(center: Center) -> list[ComponentState | SystemState]:
    """The component and system states the center took, in order."""
    return [o for r in center.received for o in r.objects
            if isinstance(o, ComponentState | SystemState)]


def test_a_fire_press_reaches_the_center_confirmed_and_its_reset_follows(
        broker: LocalMosquitto, tmp_path: Path, center: Center, device: Device) -> None:
    with running(config(broker, tmp_path, center, heartbeat_s=0.5)) as d:
        # online from the start: the device's running state before any alarm
        assert center.wait(lambda c: [r.data_type for r in c.received][:1] == [
            DataType.DEVICE_STATE]), "the gateway did not report itself to the center"
        courier = d.couriers["fire-center"]
        wait_until(lambda: courier.idle_mark() is not None, what="the courier idle")
        device.send(BUTTON, {"event": "press"})
        assert center.wait(lambda c: len(parts(c)) == 1), "no fire frame at the center"
        (fire,) = parts(center)
        assert isinstance(fire, ComponentState)
        assert (fire.system_type, fire.component_type, fire.state) == (1, 23, 0x0003)
        assert fire.description.startswith(BUTTON)
        wait_until(lambda: [r["state"] for r in outbox(d, "fire-center")] == ["delivered"],
                   what="the raise marked delivered")
        # sent by the commit stage itself, the moment it was committed (express)
        assert courier.health()["expressed"] == 1

        device.send(BUTTON, {"event": "reset"})
        assert center.wait(lambda c: len(parts(c)) == 3), "no recovery and reset"
        _, recovery, reset = parts(center)
        assert isinstance(recovery, ComponentState) and recovery.state == 0x0001
        assert recovery.component_address == fire.component_address
        assert isinstance(reset, SystemState) and reset.state == 0x2001
        # nothing sent for half a second: the device's running state goes out as heartbeat
        assert center.wait(lambda c: c.received[-1].data_type == DataType.DEVICE_STATE
                           and c.received[-1].frame.serial > 3)
    assert center.rejected == [] and center.connections == 1
    assert all(r.action == "confirm" for r in center.received)


def test_a_frame_the_center_dropped_is_sent_again_and_confirmed(
        broker: LocalMosquitto, tmp_path: Path, center: Center, device: Device) -> None:
    center.plan("drop")
    with running(config(broker, tmp_path, center, confirm_timeout_s=0.5,
                        heartbeat_s=None)) as d:
        device.send(BUTTON, {"event": "press"})
        assert center.wait(lambda c: len(c.received) == 2, 15), "no retransmission"
        dropped, confirmed = center.received
        assert (dropped.action, confirmed.action) == ("drop", "confirm")
        assert dropped.frame.data == confirmed.frame.data  # the same fire alarm
        assert confirmed.frame.serial != dropped.frame.serial  # a new frame of the device
        wait_until(lambda: [r["state"] for r in outbox(d, "fire-center")] == ["delivered"],
                   what="the raise marked delivered")
        (row,) = outbox(d, "fire-center")
        assert row["attempts"] >= 2 and "no confirm" in (row["last_error"] or ""), row


def test_a_fire_press_goes_out_while_the_center_has_not_yet_confirmed_the_last_one(
        broker: LocalMosquitto, tmp_path: Path, center: Center, device: Device) -> None:
    """Fire first: the courier waits for the center's (late) confirm of one press; a second
    button's press is sent at once, not after that confirm."""
    center.plan("delay:8")
    with running(config(broker, tmp_path, center, confirm_timeout_s=20.0,
                        heartbeat_s=None)) as d:
        courier = d.couriers["fire-center"]
        reads = courier.read_mark()
        device.send(BUTTON, {"event": "press"})
        assert center.wait(lambda c: len(parts(c)) == 1), "no fire frame at the center"
        # the courier has read the first press's row and waits for its confirm (a press
        # committed while it reads the outbox is its to send, after the rows in flight)
        wait_until(lambda: courier.read_mark() > reads, what="the courier's read")
        device.send(OTHER, {"event": "press"})
        assert center.wait(lambda c: len(parts(c)) == 2), "the second press did not go out"
        # the first press's confirm is still to come: its row waits for it
        assert [r["state"] for r in outbox(d, "fire-center")] == ["pending", "pending"]
        # sent by the commit stage (counted just after the frame went on the wire)
        wait_until(lambda: courier.health()["prioritised"] == 1, what="the press prioritised")
        wait_until(lambda: [r["state"] for r in outbox(d, "fire-center")] == [
            "delivered", "delivered"], 30, "both presses confirmed")
    first, second = parts(center)
    assert first.description.startswith(BUTTON) and second.description.startswith(OTHER)
    assert [r.action for r in center.received] == ["delay:8", "confirm"]
