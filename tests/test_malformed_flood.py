"""10,000 random and malformed payloads neither crash nor stall the daemon; all are counted."""

from __future__ import annotations

import json
import random

from conftest import wait_until

SENSORS = ["A-2F-LC1", "A-3F-FB1", "B-B1-WL1", "A-1F-WL1", "B-2F-FB1"]


def malformed_payloads(n: int, seed: int = 2026) -> list[tuple[str, bytes]]:
    """(topic, payload) pairs, every one of which the daemon must reject."""
    rng = random.Random(seed)
    makers = [
        lambda: b"\xff" + rng.randbytes(rng.randint(0, 64)),
        lambda: json.dumps({"value": rng.random()})[: rng.randint(1, 12)].encode(),
        lambda: b"",
        lambda: json.dumps({"value": rng.choice(["12", "abc", None, [1], {"x": 1}, True])})
        .encode(),
        lambda: b'{"value": NaN}',
        lambda: b'{"value": Infinity}',
        lambda: b"-Infinity",
        lambda: json.dumps({"value": 1.0, "ts": rng.choice([1e18, -5, "yesterday",
                                                            "2026-01-01T00:00:00"])}).encode(),
        lambda: json.dumps({"temperature": 20}).encode(),
        lambda: b"x" * 5000,
        lambda: json.dumps([1, 2, 3]).encode(),
    ]
    out = []
    for i in range(n):
        if i % 10 == 0:  # a sensor nobody configured
            out.append((f"devices/ghost-{rng.randint(0, 999)}/up", b"42"))
            continue
        out.append((f"devices/{rng.choice(SENSORS)}/up", rng.choice(makers)()))
    return out


def test_flood_of_malformed_payloads_is_counted_and_survived(daemon, subscriber, device):
    payloads = malformed_payloads(10_000)
    infos = [device.publish(topic, data) for topic, data in payloads]
    for info in infos:
        info.wait_for_publish(10)
    lora = daemon.drivers[0]  # the MQTT driver; the RS-485 devices keep reporting meanwhile
    wait_until(lambda: lora.rejections.count + lora.accepted >= 10_000,
               timeout=30, what="all 10,000 payloads to be processed")
    assert lora.rejections.count == 10_000 and lora.accepted == 0
    assert daemon.counts()["pipeline_errors"] == 0
    rejected = lora.rejections.total
    assert rejected["unknown_sensor"] == 1_000
    assert "internal_error" not in rejected
    assert rejected["too_large"] > 0 and rejected["bad_timestamp"] > 0
    assert rejected["malformed_json"] > 0 and rejected["bad_value"] > 0
    raised = [(e["sensor_id"], e["rule"], e["event"], e.get("value"))
              for e in subscriber.events()]
    assert not raised, f"garbage must never raise an alarm: {raised}"

    # the daemon still works, and correctly: valid readings after the flood raise and clear
    device.send("A-2F-LC1", {"value": 9_000})
    device.send("A-3F-FB1", {"event": "press"})
    events = subscriber.wait_events(lambda ev: len(ev) == 2)
    assert {(e["sensor_id"], e["severity"]) for e in events} == {
        ("A-2F-LC1", "warning"), ("A-3F-FB1", "critical")}
    device.send("A-2F-LC1", {"value": 100})
    events = subscriber.wait_events(lambda ev: len(ev) == 3)
    assert events[-1]["event"] == "cleared" and events[-1]["sensor_id"] == "A-2F-LC1"


def test_flood_of_valid_readings_is_all_accepted_and_acknowledged(daemon, broker, subscriber,
                                                                  device):
    """A burst of QoS 1 readings reaches the driver many packets to a socket read (the bulk
    path of ``BufferedClient``): every one is accepted, the last value of each sensor is the
    one the rules hold, and every one is acknowledged, so the broker sends nothing again."""
    sensors = ["A-2F-LC1", "B-B1-WL1", "A-1F-WL1"]
    n = 6_000
    lora = daemon.drivers[0]
    before = lora.accepted
    infos = [device.publish(f"devices/{sensors[k % 3]}/up", b'{"value":%d.5}' % (k % 50))
             for k in range(n)]
    for info in infos:
        info.wait_for_publish(10)
    wait_until(lambda: lora.accepted - before >= n, timeout=30, what="every reading accepted")
    assert lora.accepted - before == n and not lora.rejections.count
    assert daemon.counts()["pipeline_errors"] == 0
    # once the pipeline is through with them (a barrier queued behind the flood), their alarm
    # changes are committed (the acknowledgements are sent after that), and the broker has
    # read the acknowledgements (it confirms a QoS 1 message sent behind them on the same
    # connection: a socket closed with the acknowledgements still in its send buffer may drop
    # them), the driver's session holds no unacknowledged message: a reconnect gets nothing
    # again
    assert daemon.inbox.barrier(daemon.committer.flush).wait(10)
    behind = lora.link.client.publish("test/after-the-acks", b"", qos=1)
    behind.wait_for_publish(10)
    assert behind.is_published()
    lora.link.client.reconnect()
    wait_until(lambda: lora.link.connected.is_set(), timeout=10, what="the driver reconnected")
    device.send("A-2F-LC1", {"value": 1.5})
    wait_until(lambda: lora.accepted - before >= n + 1, timeout=10, what="one more reading")
    assert lora.accepted - before == n + 1
