"""End to end through a real Mosquitto: device topic in, command-center contract out."""

from __future__ import annotations

import json
import time

from conftest import Subscriber, wait_until

EVENTS = "parkwatch/v1/xinqiao/events"


def _of(events, sensor, kind=None):
    return [e for e in events if e["sensor_id"] == sensor and (kind is None or e["event"] == kind)]


def test_button_press_raises_retained_critical_fire_alarm(daemon, broker, subscriber, device):
    device.send("A-3F-FB1", {"event": "press", "battery": 91})
    events = subscriber.wait_events(lambda ev: _of(ev, "A-3F-FB1", "raised"))
    (raised,) = _of(events, "A-3F-FB1")
    assert raised["severity"] == "critical"
    assert raised["sensor_kind"] == "fire_button" and raised["rule"] == "button_latch"
    assert raised["active"] is True and raised["acknowledged"] is False
    assert raised["seq"] == 1 and raised["park"] == "xinqiao" and raised["gateway"] == "xinqiao-gw1"
    # 厂中厂: every tenant of building A is told, not only the floor's
    assert set(raised["tenants"]) == {"huaxin", "yongsheng", "ruifeng"}
    assert "火警" in raised["message"]

    # the alarm's current state is retained for anyone who connects later (once the courier
    # has published it: it follows the event on the uplink)
    state_topic = f"parkwatch/v1/xinqiao/alarms/{raised['alarm_id']}"
    wait_until(lambda: any(m[0] == state_topic for m in list(subscriber.messages)),
               what="the retained alarm state")
    late = Subscriber(broker, state_topic)
    try:
        late_msgs = _wait_msgs(late, 1)
        _topic, payload, retained = late_msgs[0]
        assert retained and json.loads(payload) == raised
    finally:
        late.close()


def test_load_above_critical_raises_and_below_deadband_clears(daemon, subscriber, device):
    device.send("A-2F-LC1", {"value": 10_250})
    events = subscriber.wait_events(lambda ev: _of(ev, "A-2F-LC1", "raised"))
    (raised,) = _of(events, "A-2F-LC1")
    assert (raised["severity"], raised["threshold"], raised["value"], raised["unit"]) == (
        "critical", 10_000, 10_250, "kg")
    assert raised["tenants"] == ["huaxin"] and raised["zone"] == "east"

    # inside the deadband of the warning limit (8000 - 200): still an alarm, only weaker
    device.send("A-2F-LC1", {"value": 7_900})
    events = subscriber.wait_events(lambda ev: _of(ev, "A-2F-LC1", "severity_changed"))
    (weaker,) = _of(events, "A-2F-LC1", "severity_changed")
    assert weaker["severity"] == "warning"
    # the limit named is the warning limit now in force, not the critical one just left
    assert weaker["threshold"] == 8_000
    assert "预警限值 8000 kg" in weaker["message"] and "10000" not in weaker["message"]
    assert not _of(events, "A-2F-LC1", "cleared")

    device.send("A-2F-LC1", {"value": 7_799})
    events = subscriber.wait_events(lambda ev: _of(ev, "A-2F-LC1", "cleared"))
    cleared = _of(events, "A-2F-LC1", "cleared")[0]
    assert cleared["alarm_id"] == raised["alarm_id"] and cleared["active"] is False
    assert [e["seq"] for e in _of(events, "A-2F-LC1")] == [1, 2, 3]


def test_values_oscillating_inside_the_band_produce_no_events(daemon, subscriber, device):
    device.send("A-1F-WL1", {"value": 31})  # warning limit 30 cm, deadband 3
    subscriber.wait_events(lambda ev: _of(ev, "A-1F-WL1", "raised"))
    for v in [29, 28, 30.5, 27.5, 29.9, 28.1, 31, 27.01] * 5:
        device.send("A-1F-WL1", {"value": v})
    # a marker: an ordinary alarm's raise goes out in commit order, so once it arrives,
    # everything before did too (a fire press would not do: fire overtakes the queue)
    device.send("A-2F-LC2", {"value": 10_250})
    events = subscriber.wait_events(lambda ev: _of(ev, "A-2F-LC2", "raised"))
    assert [e["event"] for e in _of(events, "A-1F-WL1")] == ["raised"]
    assert daemon.counts()["evaluated"] >= 42


def test_device_time_and_scaled_units_carry_into_the_event(daemon, subscriber, device):
    ts_ms = int(time.time() * 1000) - 1500
    device.send("B-B1-WL1", {"value": 0.65, "ts": ts_ms})  # metres × 100 = 65 cm > 60
    events = subscriber.wait_events(lambda ev: _of(ev, "B-B1-WL1", "raised"))
    e = _of(events, "B-B1-WL1")[0]
    assert e["value"] == 65.0 and e["unit"] == "cm" and e["severity"] == "critical"
    assert e["observed_at"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms // 1000)) \
        + f".{ts_ms % 1000:03d}Z"
    assert e["tenants"] == ["hengtong"]


def test_late_subscriber_sees_exactly_the_open_alarms(daemon, broker, subscriber, device):
    device.send("A-2F-FB1", {"event": "press"})
    device.send("B-3F-LC1", {"value": 8_100})
    device.send("A-3F-LC1", {"value": 12_000})
    events = subscriber.wait_events(lambda ev: len([e for e in ev if e["event"] == "raised"]) == 3)
    by_sensor = {e["sensor_id"]: e["alarm_id"] for e in events}

    # B-3F-LC1 clears and is acknowledged: closed, so its retained state is emptied
    device.send("B-3F-LC1", {"value": 100})
    subscriber.wait_events(lambda ev: _of(ev, "B-3F-LC1", "cleared"))
    assert daemon.acknowledge(by_sensor["B-3F-LC1"], "张三")
    events = subscriber.wait_events(lambda ev: _of(ev, "B-3F-LC1", "closed"))
    assert [e["event"] for e in _of(events, "B-3F-LC1")] == [
        "raised", "cleared", "acknowledged", "closed"]
    # the closed alarm's retained state is emptied right after the closed event
    closed_topic = f"parkwatch/v1/xinqiao/alarms/{by_sensor['B-3F-LC1']}"
    deadline = time.monotonic() + 5
    while not any(t == closed_topic and p == b"" for t, p, _ in subscriber.messages):
        assert time.monotonic() < deadline, "no empty retained payload for the closed alarm"
        time.sleep(0.02)

    late = Subscriber(broker, "parkwatch/v1/xinqiao/alarms/+")
    try:
        before = late.retained_end("parkwatch/v1/xinqiao/alarms/zz-end-of-retained")
        assert all(r and p for _t, p, r in before), before
        assert {json.loads(p)["sensor_id"] for _, p, _r in before} == {"A-2F-FB1", "A-3F-LC1"}
        assert len(before) == 2
    finally:
        late.close()


def test_gateway_status_is_retained_online(daemon, broker):
    # the status the daemon refreshes once its drivers are connected
    live = Subscriber(broker, "parkwatch/v1/xinqiao/gateway")
    try:
        wait_until(lambda: any(
            p and all(d["connected"] for d in json.loads(p)["drivers"].values())
            for _t, p, _r in list(live.messages)), what="a status with every driver connected")
    finally:
        live.close()
    late = Subscriber(broker, "parkwatch/v1/xinqiao/gateway")
    try:
        _topic, payload, retained = _wait_msgs(late, 1)[0]
        status = json.loads(payload)
        assert retained and status["state"] == "online" and status["gateway"] == "xinqiao-gw1"
        assert status["sensors"] == 22
        assert all(d["connected"] for d in status["drivers"].values()), status["drivers"]
    finally:
        late.close()


def test_daemon_reconnects_after_broker_restart(daemon, broker, device):
    device.close()
    broker.stop()
    time.sleep(0.5)
    broker.start()
    assert daemon.uplink.link.connected.wait(10), "uplink did not reconnect"
    assert daemon.drivers[0].link.connected.wait(10), "driver did not reconnect"
    sub = Subscriber(broker)
    from conftest import Device

    dev = Device(broker)
    try:
        # persistent sessions + re-subscribe on connect: a press after the restart still alarms
        wait_until(daemon.drivers[0].subscribed.is_set, 10, "the driver subscribed again")
        dev.send("B-1F-FB1", {"event": "press"})
        sub.wait_events(lambda ev: _of(ev, "B-1F-FB1", "raised"), timeout=10)
    finally:
        dev.close()
        sub.close()


def _wait_msgs(sub: Subscriber, n: int, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while len(sub.messages) < n:
        assert time.monotonic() < deadline, f"only {len(sub.messages)} message(s)"
        time.sleep(0.02)
    return list(sub.messages)
