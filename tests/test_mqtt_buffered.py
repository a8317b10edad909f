"""parkwatch's paho client that reads its socket in large chunks: every message arrives, intact
and in order, whatever the packets' sizes; a burst already read from the socket is handled at
once, not at the network loop's next timeout; acknowledgements still go out during a flood.

A real Mosquitto; the publisher is a raw socket (benchmarks/mqttload.py's packets), so a burst
reaches the subscriber in as few TCP segments as the kernel makes of it.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_until
from parkwatch.localbroker import LocalMosquitto
from parkwatch.mqtt.buffered import BURST, CHUNK, BufferedClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from mqttload import DISCONNECT, publish_packet, raw_connect


class _Sink:
    def __init__(self, broker: LocalMosquitto, qos: int, manual_ack: bool = False) -> None:
        self.got: list[tuple[str, bytes, float]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        c = BufferedClient(CallbackAPIVersion.VERSION2, client_id=f"sink-{qos}",
                           clean_session=False, protocol=mqtt.MQTTv311)
        c.max_queued_messages_set(0)
        if manual_ack:
            c.manual_ack_set(True)
        c.on_message = self._on_message
        c.on_subscribe = lambda *_a: subscribed.set()
        c.connect(broker.host, broker.port)
        c.subscribe("t/#", qos=qos)
        c.loop_start()
        assert subscribed.wait(5)
        self.client, self.manual_ack = c, manual_ack

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((m.topic, m.payload, time.monotonic()))
        if self.manual_ack:
            self.client.ack(m.mid, m.qos)

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _burst(broker: LocalMosquitto, packets: list[bytes]) -> float:
    sock = raw_connect(broker.host, broker.port, "burst")
    try:
        t = time.monotonic()
        sock.sendall(b"".join(packets))
        sock.sendall(DISCONNECT)
        return t
    finally:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def test_small_and_large_messages_arrive_intact_and_in_order(broker):
    sink = _Sink(broker, qos=0)
    try:
        big = bytes(range(256)) * (CHUNK * 2 // 256 + 7)  # spans several chunks
        msgs = [(f"t/{k % 37}", b'{"value":%d}' % k) for k in range(3 * BURST)]
        msgs.insert(1500, ("t/big", big))
        msgs += [(f"t/end/{k}", b"x" * k) for k in range(300)]  # every length 0 .. 299
        _burst(broker, [publish_packet(t.encode(), p) for t, p in msgs])
        wait_until(lambda: sink.count() == len(msgs), 15, "every message")
        assert [(t, p) for t, p, _ in sink.got] == msgs
    finally:
        sink.close()


def test_a_burst_read_at_once_is_handled_at_once(broker):
    sink = _Sink(broker, qos=0)
    try:
        for round_ in range(5):  # nothing else arrives after each burst to wake the loop
            before = sink.count()
            sent = _burst(broker, [publish_packet(b"t/b", b'{"value":%d}' % k)
                                   for k in range(50)])
            wait_until(lambda b=before: sink.count() == b + 50, 5, f"burst {round_}")
            last = sink.got[-1][2]
            # paho's loop waits up to 1 s in select(): a buffered packet left behind would
            # only be handled then
            assert last - sent < 0.5, f"burst {round_}: last message after {last - sent:.3f} s"
            time.sleep(0.2)
    finally:
        sink.close()


def test_qos1_acknowledgements_go_out_during_a_flood(broker):
    """A subscriber that acknowledges by hand (as the MQTT driver does) is sent the whole
    flood: the broker stops at its in-flight limit unless PUBACKs keep coming back."""
    sink = _Sink(broker, qos=1, manual_ack=True)
    try:
        n = 10 * BURST
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood", protocol=mqtt.MQTTv311)
        pub.max_queued_messages_set(0)
        pub.max_inflight_messages_set(1000)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        try:
            infos = [pub.publish(f"t/{k % 100}", b'{"value":%d}' % k, qos=1) for k in range(n)]
            for info in infos:
                info.wait_for_publish(20)
        finally:
            pub.disconnect()
            pub.loop_stop()
        wait_until(lambda: sink.count() == n, 20, "every QoS 1 message")
        assert sorted(int(p[9:-1]) for _t, p, _ in sink.got) == list(range(n))
    finally:
        sink.close()


def test_wait_written_returns_once_the_packet_is_in_the_socket_and_not_before(broker):
    """A publisher (the pipeline after a commit) can wait for paho's network thread to write
    its packet instead of racing it for the GIL; a broker that takes nothing makes the wait
    time out instead of blocking the publisher."""
    import os
    import signal

    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id="writer", protocol=mqtt.MQTTv311)
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        wait_until(c.is_connected)
        info = c.publish("t/small", b"x" * 100, qos=1)
        assert c.wait_written(2.0)
        assert not c._out_packet
        info.wait_for_publish(5)
        os.kill(broker.proc.pid, signal.SIGSTOP)  # the broker reads nothing: the socket fills
        try:
            c.publish("t/big", b"y" * (32 * 1024 * 1024), qos=1)
            t0 = time.monotonic()
            assert not c.wait_written(0.3)
            assert 0.25 < time.monotonic() - t0 < 2.0
            assert c._out_packet  # still queued, not dropped
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        assert c.wait_written(20.0)
    finally:
        c.disconnect()
        c.loop_stop()


def test_topic_callbacks_still_win_over_on_message(broker):
    """The direct dispatch is only for clients without topic callbacks (the uplink's ack
    topic has one): a message on such a topic goes to its callback, the rest to on_message."""
    got: dict[str, list[str]] = {"filtered": [], "default": []}
    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id="dispatch", protocol=mqtt.MQTTv311)
    c.on_message = lambda _c, _u, m: got["default"].append(m.topic)
    c.message_callback_add("t/acks/#", lambda _c, _u, m: got["filtered"].append(m.topic))
    c.connect(broker.host, broker.port)
    c.subscribe("t/#", qos=1)
    c.loop_start()
    try:
        wait_until(c.is_connected)
        time.sleep(0.2)
        for topic in ("t/acks/1", "t/data/1", "t/acks/2"):
            c.publish(topic, b"x", qos=1).wait_for_publish(5)
        wait_until(lambda: len(got["filtered"]) + len(got["default"]) == 3)
    finally:
        c.disconnect()
        c.loop_stop()
    assert got == {"filtered": ["t/acks/1", "t/acks/2"], "default": ["t/data/1"]}
