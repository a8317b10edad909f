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
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_until
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.mqttlink.buffered import BURST, CHUNK, BufferedClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from mqttload import DISCONNECT, publish_packet, raw_connect


class _Sink:
    """A subscriber on t/#; with `batch`, whole packets also come in bulk, as a driver's do."""

    def __init__(self, broker: LocalMosquitto, qos: int, manual_ack: bool = False,
                 batch: bool = False) -> None:
        self.got: list[tuple[str, bytes, float]] = []
        self.batched = 0  # messages that came through on_publish_batch
        self.lock = threading.Lock()
        subscribed = threading.Event()
        c = BufferedClient(CallbackAPIVersion.VERSION2, client_id=f"sink-{qos}",
                           clean_session=False, protocol=mqtt.MQTTv311)
        c.max_queued_messages_set(0)
        if manual_ack:
            c.manual_ack_set(True)
        c.on_message = self._on_message
        if batch:
            c.on_publish_batch = self._on_batch
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

    def _on_batch(self, publishes: list[tuple[str, bytes, int, int]]) -> None:
        now = time.monotonic()
        with self.lock:
            self.got.extend((topic, payload, now) for topic, payload, _mid, _qos in publishes)
            self.batched += len(publishes)
        if self.manual_ack:
            for _topic, _payload, mid, qos in publishes:
                assert qos == 1 and mid > 0
                self.client.ack(mid, qos)

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


@pytest.mark.parametrize("batch", [False, True], ids=["on_message", "batch"])
def test_small_and_large_messages_arrive_intact_and_in_order(broker, batch):
    sink = _Sink(broker, qos=0, batch=batch)
    try:
        big = bytes(range(256)) * (CHUNK * 2 // 256 + 7)  # spans several chunks
        msgs = [(f"t/{k % 37}", b'{"value":%d}' % k) for k in range(3 * BURST)]
        msgs.insert(1500, ("t/big", big))
        msgs += [(f"t/end/{k}", b"x" * k) for k in range(300)]  # every length 0 .. 299
        _burst(broker, [publish_packet(t.encode(), p) for t, p in msgs])
        wait_until(lambda: sink.count() == len(msgs), 15, "every message")
        assert [(t, p) for t, p, _ in sink.got] == msgs
        if batch:  # the bulk path took part; how much depends on how the socket reads fell
            # (the first packet of each read is paho's: under load reads are small, 47 % bulk)
            assert sink.batched > 0
    finally:
        sink.close()


@pytest.mark.parametrize("batch", [False, True], ids=["on_message", "batch"])
def test_a_burst_read_at_once_is_handled_at_once(broker, batch):
    sink = _Sink(broker, qos=0, batch=batch)
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


@pytest.mark.parametrize("batch", [False, True], ids=["on_message", "batch"])
def test_qos1_acknowledgements_go_out_during_a_flood(broker, batch):
    """A subscriber that acknowledges by hand (as the MQTT driver does) is sent the whole
    flood: the broker stops at its in-flight limit unless PUBACKs keep coming back."""
    sink = _Sink(broker, qos=1, manual_ack=True, batch=batch)
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


def test_ack_many_acknowledges_exactly_the_messages_it_is_given(broker):
    """The command center acknowledges a batch after its commit in one write: those
    messages are done with, and the broker sends the others again when the session comes
    back (in-flight messages first, so a marker published afterwards says when all came)."""
    got: list[tuple[bytes, int, bool]] = []
    lock = threading.Lock()

    def session() -> BufferedClient:
        subscribed = threading.Event()
        c = BufferedClient(CallbackAPIVersion.VERSION2, client_id="acker", clean_session=False,
                           protocol=mqtt.MQTTv311)
        c.manual_ack_set(True)

        def keep(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
            with lock:
                got.append((m.payload, m.mid, m.dup))

        c.on_message = keep
        c.on_subscribe = lambda *_a: subscribed.set()
        c.connect(broker.host, broker.port)
        c.subscribe("acks/#", qos=1)
        c.loop_start()
        assert subscribed.wait(5)
        return c

    def publish(payloads: list[bytes]) -> None:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="acks-pub",
                          protocol=mqtt.MQTTv311)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        try:
            for info in [pub.publish("acks/x", p, qos=1) for p in payloads]:
                info.wait_for_publish(10)
        finally:
            pub.disconnect()
            pub.loop_stop()

    c = session()
    publish([b"m%d" % k for k in range(10)])
    wait_until(lambda: len(got) == 10, 10, "ten messages")
    with lock:
        first = list(got)
        got.clear()
    c.ack_many([mid for _p, mid, _d in first[:6]])
    assert c.wait_written(5)
    c.disconnect()
    c.loop_stop()

    c = session()
    try:
        publish([b"marker"])
        wait_until(lambda: any(p == b"marker" for p, _m, _d in got), 10, "the marker")
        with lock:
            again = [p for p, _m, _d in got if p != b"marker"]
        assert sorted(again) == sorted(p for p, _m, _d in first[6:])
    finally:
        c.disconnect()
        c.loop_stop()


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
        # more than the sockets can hold on any machine: this end's send buffer is fixed
        # small (no autotuning), and the broker's receive buffer grows at most to tcp_rmem's
        # maximum (machines tuned for throughput allow 32 MiB and more, which a fixed 32 MiB
        # packet once fitted into)
        c.socket().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        rmem_max = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
        size = max(32 * 1024 * 1024, 2 * (rmem_max + 256 * 1024))
        os.kill(broker.proc.pid, signal.SIGSTOP)  # the broker reads nothing: the socket fills
        try:
            c.publish("t/big", b"y" * size, qos=1)
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


def test_a_publisher_writes_its_own_packet_while_the_network_thread_is_busy(broker):
    """An alarm published by the committing thread goes out on that thread: it does not wait
    for paho's network thread, here held inside a message callback, to wake and write it."""
    held, release = threading.Event(), threading.Event()
    sink = _Sink(broker, qos=1)
    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id="self-writer",
                       protocol=mqtt.MQTTv311)

    def on_message(_c: Any, _u: Any, _m: mqtt.MQTTMessage) -> None:
        held.set()
        release.wait(20)

    c.on_message = on_message
    subscribed = threading.Event()
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(broker.host, broker.port)
    c.subscribe("hold/#", qos=0)
    c.loop_start()
    try:
        assert subscribed.wait(5)
        c.publish("hold/now", b"", qos=0)  # its echo holds the network thread
        assert held.wait(5)
        c.publish("t/alarm", b"fire", qos=1)
        assert c.wait_written(2.0)
        wait_until(lambda: any(topic == "t/alarm" for topic, _p, _t in sink.got), 5.0)
        assert not release.is_set()  # the network thread is still held
    finally:
        release.set()
        c.disconnect()
        c.loop_stop()
        sink.client.loop_stop()


def test_topic_callbacks_still_win_over_on_message(broker):
    """The direct dispatch is only for clients without topic callbacks (the uplink's ack
    topic has one): a message on such a topic goes to its callback, the rest to on_message."""
    got: dict[str, list[str]] = {"filtered": [], "default": []}
    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id="dispatch", protocol=mqtt.MQTTv311)
    c.on_message = lambda _c, _u, m: got["default"].append(m.topic)
    c.message_callback_add("t/acks/#", lambda _c, _u, m: got["filtered"].append(m.topic))
    subscribed = threading.Event()
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(broker.host, broker.port)
    c.subscribe("t/#", qos=1)
    c.loop_start()
    try:
        assert subscribed.wait(5)
        for topic in ("t/acks/1", "t/data/1", "t/acks/2"):
            c.publish(topic, b"x", qos=1).wait_for_publish(5)
        wait_until(lambda: len(got["filtered"]) + len(got["default"]) == 3)
    finally:
        c.disconnect()
        c.loop_stop()
    assert got == {"filtered": ["t/acks/1", "t/acks/2"], "default": ["t/data/1"]}


# --- the bulk PUBLISH parser, on bytes laid out by hand --------------------------------------


def _publish(topic: bytes, payload: bytes, qos: int = 0, mid: int = 0) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    body += payload
    n, length = len(body), bytearray()
    while True:
        n, digit = divmod(n, 128)
        length.append(digit | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x30 | qos << 1]) + bytes(length) + body


def _parse(buf: bytes, manual_ack: bool = True, protocol: int = mqtt.MQTTv311,
           limit: int = BURST) -> tuple[list[tuple[str, bytes, int, int]], int]:
    """What _publish_batch hands over from `buf`, and where it leaves the rest for paho."""
    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id="parse", protocol=protocol)
    c.manual_ack_set(manual_ack)
    got: list[tuple[str, bytes, int, int]] = []
    c.on_publish_batch = got.extend
    c._rbuf, c._rpos = buf, 0
    taken = c._publish_batch(limit)
    assert taken == len(got)
    return got, c._rpos


def test_bulk_parser_takes_whole_qos0_and_qos1_publishes_of_any_length():
    packets = [_publish(b"a/1", b'{"value":1}'), _publish(b"a/2", b"", qos=1, mid=7),
               _publish(b"a/3", b"x" * 200), _publish(b"a/4", b"y" * 20_000, qos=1, mid=65535),
               _publish(b"a/\xc3\xa9", b"z")]
    got, pos = _parse(b"".join(packets))
    assert got == [("a/1", b'{"value":1}', 0, 0), ("a/2", b"", 7, 1), ("a/3", b"x" * 200, 0, 0),
                   ("a/4", b"y" * 20_000, 65535, 1), ("a/\u00e9", b"z", 0, 0)]
    assert pos == sum(map(len, packets))


def test_bulk_parser_stops_where_paho_must_take_over():
    one = _publish(b"a/1", b"1")
    ping = b"\xd0\x00"  # PINGRESP
    assert _parse(one + ping + one) == ([("a/1", b"1", 0, 0)], len(one))
    whole = _publish(b"a/2", b"z" * 300)
    for cut in (1, 2, 3, len(whole) - 1):  # cut inside the header, the length, the payload
        assert _parse(one + whole[:cut]) == ([("a/1", b"1", 0, 0)], len(one))
    assert _parse(one + _publish(b"a/2", b"2", qos=2, mid=3))[1] == len(one)  # QoS 2: paho's
    assert _parse(_publish(b"a/2", b"2", qos=1, mid=3), manual_ack=False) == ([], 0)
    assert _parse(one, protocol=mqtt.MQTTv5) == ([], 0)  # properties: paho's
    assert _parse(one + one + one, limit=2) == ([("a/1", b"1", 0, 0)] * 2, 2 * len(one))


def test_bulk_parser_leaves_malformed_packets_to_paho():
    one = _publish(b"a/1", b"1")
    bad = [
        b"\x30\x05\x00\x09a/1xx",          # the topic runs past the packet
        b"\x30\x02\x00\x00",               # an empty topic (MQTT 3.1.1 forbids it)
        b"\x32\x05\x00\x03a/1",            # QoS 1 without room for its message id
        b"\x30\x01\x00",                   # too short for a topic length
        b"\x30\xff\xff\xff\xff\x01" + b"\x00" * 8,  # a remaining length of five bytes
    ]
    for packet in bad:
        assert _parse(one + packet + one) == ([("a/1", b"1", 0, 0)], len(one)), packet
