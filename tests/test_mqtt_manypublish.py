"""Many QoS 1 messages handed to paho at once (:func:`parkwatch.mqttlink.manypublish.publish_many`)
arrive as paho's own ``publish()`` would send them: in order, each once, retained where asked,
each confirmed by its PUBACK; a message the broker never acknowledged goes again, with the DUP
flag, after a reconnect; and what the fast path does not handle is paho's.

A real Mosquitto; a subscriber records what arrives.
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_until
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.mqttlink.buffered import BufferedClient
from parkwatch.mqttlink.manypublish import publish_many


class _Recorder:
    def __init__(self, broker: LocalMosquitto, topic: str) -> None:
        self.got: list[tuple[str, bytes, bool, int]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{topic}")
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *_a: subscribed.set()
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()
        # nothing published before the broker has the subscription may be missed
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, msg.payload, bool(msg.retain), msg.qos))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _publisher(broker: LocalMosquitto, name: str, inflight: int = 0) -> BufferedClient:
    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311,
                       clean_session=False)
    c.max_queued_messages_set(0)
    c.max_inflight_messages_set(inflight)
    c.connect(broker.host, broker.port)
    c.loop_start()
    wait_until(c.is_connected)
    return c


def _close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def test_a_window_of_messages_arrives_in_order_once_each_and_every_one_is_confirmed(broker):
    rec = _Recorder(broker, "many/#")
    c = _publisher(broker, "many-order")
    n = 3000
    messages = [(f"many/{k % 7}", f"载荷 {k}".encode(), False) for k in range(n)]
    try:
        infos = []
        for start in range(0, n, 64):  # as a courier sends its windows
            infos += publish_many(c, messages[start:start + 64])
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
        assert len({info.mid for info in infos}) == n
        with c._out_message_mutex:
            assert not c._out_messages and c._inflight_messages == 0
        wait_until(lambda: len(rec.got) >= n, 30, "every message at the subscriber")
        assert [(t, p) for t, p, _, _ in rec.got] == [(t, p) for t, p, _ in messages]
        assert all(q == 1 for *_, q in rec.got)
    finally:
        _close(c)
        rec.close()


def test_retained_messages_are_retained_and_an_empty_one_clears_the_topic(broker):
    c = _publisher(broker, "many-retain")
    try:
        infos = publish_many(c, [("ret/a", b"first", True), ("ret/b", b"kept", True),
                                 ("ret/c", b"not kept", False), ("ret/a", b"", True)])
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
        late = _Recorder(broker, "ret/#")  # subscribes after: sees the retained ones only
        try:
            wait_until(lambda: len(late.got) >= 1, 10, "the retained message")
            # a retained message is sent on subscribing; a marker published after it tells
            # that nothing else is coming
            done = publish_many(c, [("ret/zz", b"marker", False)])
            done[0].wait_for_publish(10)
            wait_until(lambda: any(t == "ret/zz" for t, *_ in late.got), 10, "the marker")
            assert [(t, p, r) for t, p, r, _ in late.got] == [("ret/b", b"kept", True),
                                                             ("ret/zz", b"marker", False)]
        finally:
            late.close()
    finally:
        _close(c)


def test_unconfirmed_messages_go_again_with_dup_after_a_reconnect(broker):
    c = _publisher(broker, "many-again")
    rec = _Recorder(broker, "again/#")
    try:
        c.loop_stop()  # no network thread: no PUBACK is read
        with c._in_callback_mutex:  # and paho does not write the packet on this thread
            infos = publish_many(c, [(f"again/{k}", b"%d" % k, False) for k in range(5)])
        assert len(c._out_packet) == 1  # the five messages, one buffer, not written
        assert not any(info.is_published() for info in infos)
        with c._out_message_mutex:
            assert [m.state for m in c._out_messages.values()] == [
                mqtt.mqtt_ms_wait_for_puback] * 5
        c._out_packet.clear()  # the connection drops before the packet left
        c.reconnect()
        c.loop_start()
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
        wait_until(lambda: len(rec.got) >= 5, 10, "the messages sent again")
        assert sorted(p for _, p, _, _ in rec.got) == [b"%d" % k for k in range(5)]
    finally:
        _close(c)
        rec.close()


def test_a_client_window_is_left_to_paho_and_a_bad_topic_is_refused_before_anything_goes(
        broker):
    c = _publisher(broker, "many-window", inflight=2)
    try:
        infos = publish_many(c, [(f"w/{k}", b"x", False) for k in range(5)])
        # paho's own publish(): a condition for each message (the fast path shares one)
        assert len({id(info._condition) for info in infos}) == 5
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        _close(c)
    c = _publisher(broker, "many-bad")
    try:
        fast = publish_many(c, [("ok/1", b"x", False), ("ok/2", b"y", False)])
        assert fast[0]._condition is fast[1]._condition
        before = c._last_mid
        with pytest.raises(ValueError, match="invalid topic"):
            publish_many(c, [("ok/3", b"x", False), ("bad/#", b"x", False)])
        assert c._last_mid == before  # nothing of the refused call was registered
        for info in fast:
            info.wait_for_publish(10)
        with c._out_message_mutex:
            assert not c._out_messages
    finally:
        _close(c)
