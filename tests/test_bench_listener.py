"""The benchmarks' command-center subscriber (benchmarks/mqttload.py ``ListenerProcess``) on a
real Mosquitto: it reads MQTT from its socket itself, so these check what paho did for it
before: every QoS 1 message acknowledged (the broker here sends at most 20 unacknowledged
ones), packets split across and joined within reads, each event once, in order."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_until
from parkwatch.devtools.localbroker import LocalMosquitto

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from mqttload import ListenerProcess, split_packets  # the spawned child imports it by name


def test_split_packets_takes_whole_packets_and_leaves_a_partial_one() -> None:
    one = b"\x30\x05\x00\x01tab"  # PUBLISH QoS 0, topic "t", payload "ab"
    long = b"\x30\x82\x01" + b"\x00\x01t" + b"x" * 127  # remaining length 130: two bytes
    packets, used = split_packets(one + long + one[:3])
    assert packets == [(0x30, b"\x00\x01tab"), (0x30, b"\x00\x01t" + b"x" * 127)]
    assert used == len(one) + len(long)
    assert split_packets(b"\x30\x82") == ([], 0)  # the length itself cut short


def test_every_event_arrives_once_in_order_and_is_acknowledged(tmp_path: Path) -> None:
    # a window of 20 in flight: without its acknowledgements the listener would stall
    broker = LocalMosquitto(workdir=tmp_path, extra_conf="max_inflight_messages 20\n").start()
    try:
        _every_event(broker)
    finally:
        broker.close()


def _every_event(broker: LocalMosquitto) -> None:
    listener = ListenerProcess((broker.host, broker.port), (broker.host, broker.port),
                               "bench/events/#")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-listener-pub")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    n = 3000
    try:
        infos = [pub.publish(f"bench/events/{k % 5}", json.dumps(
            {"sensor_id": f"S{k}", "event": "raised", "alarm_id": f"A{k}", "seq": k,
             "message": "水位超限 " * 60}, ensure_ascii=False), qos=1) for k in range(n)]
        for info in infos:
            info.wait_for_publish(10)
        wait_until(lambda: listener.ask("count") >= n, 30, "every event at the listener")
        events = listener.ask("events", 0)
        assert [e[4] for e in events] == list(range(n))  # once each, in order
        assert [e[1:4] for e in events[:2]] == [("S0", "raised", "A0"), ("S1", "raised", "A1")]
        times = [e[0] for e in events]
        assert times == sorted(times)
        assert listener.ask("events", n - 1) == events[n - 1:]
    finally:
        pub.loop_stop()
        pub.disconnect()
        listener.close()
