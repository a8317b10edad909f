"""parkwatch's paho client confirms the PUBACKs already in its read buffer in one loop, without
paho's per-packet decoding: every QoS 1 message is still confirmed exactly once, with the
callbacks, states and in-flight window paho would give it; MQTT 5, and anything the loop does
not know, is still paho's.

A real Mosquitto; the publishers are BufferedClients that count the PUBACKs paho handled.
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from conftest import wait_until
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.mqttlink.buffered import _PUBACK_PROPERTIES, _PUBACK_REASON, BufferedClient, _fresh


class _Counted(BufferedClient):
    """Counts the PUBACKs that went through paho's own handler; records on_publish's calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slow_pubacks = 0
        self.published: list[tuple[Any, ...]] = []  # on_publish's arguments after userdata
        self.max_inflight_seen = 0
        self.lock = threading.Lock()

    def _handle_pubackcomp(self, cmd: Any) -> mqtt.MQTTErrorCode:
        if cmd == "PUBACK":
            self.slow_pubacks += 1
        return super()._handle_pubackcomp(cmd)

    def record(self, _c: Any, _u: Any, *args: Any) -> None:
        with self.lock:
            self.published.append(args)
            self.max_inflight_seen = max(self.max_inflight_seen, self._inflight_messages)


def _publisher(broker: LocalMosquitto, name: str, *, inflight: int = 0,
               version: CallbackAPIVersion = CallbackAPIVersion.VERSION2,
               protocol: int = mqtt.MQTTv311) -> _Counted:
    c = _Counted(version, client_id=name, protocol=protocol)
    c.max_queued_messages_set(0)
    c.max_inflight_messages_set(inflight)
    c.on_publish = c.record
    c.connect(broker.host, broker.port)
    c.loop_start()
    wait_until(c.is_connected)
    return c


def _close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def _assert_all_confirmed(c: _Counted, infos: list[mqtt.MQTTMessageInfo]) -> None:
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published(), info.mid
    wait_until(lambda: len(c.published) >= len(infos), 5, "every on_publish")
    mids = [args[0] for args in c.published]
    assert sorted(mids) == sorted(info.mid for info in infos)  # each mid once
    assert len(set(mids)) == len(mids)
    with c._out_message_mutex:
        assert not c._out_messages
        assert c._inflight_messages == 0


@pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated")
@pytest.mark.parametrize("version", [CallbackAPIVersion.VERSION1, CallbackAPIVersion.VERSION2],
                         ids=["VERSION1", "VERSION2"])
def test_a_qos1_flood_is_confirmed_completely_by_the_fast_loop(broker, version):
    n = 5000
    c = _publisher(broker, f"flood-{version.name}", version=version)
    try:
        infos = [c.publish(f"t/{k % 50}", b'{"value":%d}' % k, qos=1) for k in range(n)]
        _assert_all_confirmed(c, infos)
        for args in c.published:  # the arguments paho gives a 3.1.1 PUBACK's on_publish
            if version == CallbackAPIVersion.VERSION1:
                assert len(args) == 1
            else:
                _mid, reason, props = args
                assert isinstance(reason, ReasonCode) and reason == 0
                assert not reason.is_failure and str(reason) == "Success"
                assert isinstance(props, Properties) and props.isEmpty()
                assert props.packetType == PacketTypes.PUBACK
        # every PUBACK was taken by one path, nearly all by the fast one (paho's only when
        # a TCP read ends inside a packet)
        assert c.fast_pubacks + c.slow_pubacks == n
        assert c.slow_pubacks <= n // 10, (c.fast_pubacks, c.slow_pubacks)
    finally:
        _close(c)


@pytest.mark.parametrize("batch", [False, True], ids=["on_message", "batch"])
def test_a_client_publishing_to_itself_keeps_receiving_and_confirming(broker, batch):
    """PUBLISH and PUBACK packets interleaved in one buffer: each goes to its own path."""
    n = 3000
    got: list[bytes] = []
    c = _publisher(broker, f"self-{batch}")
    try:
        if batch:  # as the MQTT driver: whole packets in bulk, acknowledged by hand
            c.manual_ack_set(True)

            def on_batch(publishes: list[tuple[str, bytes, int, int]]) -> None:
                for _topic, payload, mid, qos in publishes:
                    got.append(payload)
                    c.ack(mid, qos)

            c.on_publish_batch = on_batch

        def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
            got.append(m.payload)
            if batch:
                c.ack(m.mid, m.qos)

        c.on_message = on_message
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.subscribe("t/self/#", qos=1)
        assert subscribed.wait(5)
        infos = [c.publish("t/self/x", b"%d" % k, qos=1) for k in range(n)]
        _assert_all_confirmed(c, infos)
        wait_until(lambda: len(got) == n, 30, "every message back")
        assert got == [b"%d" % k for k in range(n)]  # one topic: in order
        assert c.fast_pubacks > 0
        assert c.fast_pubacks + c.slow_pubacks == n
    finally:
        _close(c)


def test_mqtt5_puback_stays_paho_s(broker):
    n = 2000
    c = _publisher(broker, "v5", protocol=mqtt.MQTTv5)
    try:
        infos = [c.publish(f"t/{k % 50}", b"%d" % k, qos=1) for k in range(n)]
        _assert_all_confirmed(c, infos)
        assert c.fast_pubacks == 0
        assert c.slow_pubacks == n
        # paho's decoding: Mosquitto says "No matching subscribers" (16), which 3.1.1 cannot
        assert all(isinstance(args[1], ReasonCode) and args[1] == 16 for args in c.published)
    finally:
        _close(c)


@pytest.mark.parametrize("window", [1, 10, 100])
def test_the_inflight_window_still_sends_queued_messages_as_pubacks_free_slots(broker, window):
    n = 2000
    c = _publisher(broker, f"window-{window}", inflight=window)
    try:
        with c._out_message_mutex:  # no PUBACK is handled meanwhile: the window is full
            infos = [c.publish(f"t/{k % 50}", b"%d" % k, qos=1) for k in range(n)]
            states = [m.state for m in c._out_messages.values()]
        assert states.count(mqtt.mqtt_ms_wait_for_puback) == window
        assert states.count(mqtt.mqtt_ms_queued) == n - window
        _assert_all_confirmed(c, infos)
        assert [args[0] for args in c.published] == [info.mid for info in infos]  # in order
        assert c.max_inflight_seen <= window
        assert c.fast_pubacks > 0
        assert c.fast_pubacks + c.slow_pubacks == n
    finally:
        _close(c)


# --- the PUBACK loop, on bytes laid out by hand -----------------------------------------------


def _acks(buf: bytes, known: range, protocol: int = mqtt.MQTTv311,
          limit: int = 1000) -> tuple[list[int], int]:
    """The mids the fast loop confirms from `buf` (messages `known` in flight), and where it
    leaves the rest for paho."""
    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id="acks", protocol=protocol)
    c.max_inflight_messages_set(0)
    confirmed: list[int] = []
    c.on_publish = lambda _c, _u, mid, _r, _p: confirmed.append(mid)
    for mid in known:
        msg = mqtt.MQTTMessage(mid, b"t")
        msg.qos = 1
        msg.state = mqtt.mqtt_ms_wait_for_puback
        c._out_messages[mid] = msg
        c._inflight_messages += 1
    c._rbuf, c._rpos = buf, 0
    taken, rc = c._puback_batch(limit)
    assert rc == mqtt.MQTT_ERR_SUCCESS
    assert taken == len(confirmed) == c.fast_pubacks
    assert sorted(c._out_messages) == sorted(set(known) - set(confirmed))
    assert c._inflight_messages == len(known) - len(confirmed)
    return confirmed, c._rpos


def _puback(mid: int) -> bytes:
    return b"\x40\x02" + mid.to_bytes(2, "big")


def test_puback_loop_takes_known_whole_pubacks():
    buf = b"".join(_puback(m) for m in (1, 2, 300, 65535))
    assert _acks(buf, range(1, 65536)) == ([1, 2, 300, 65535], len(buf))
    assert _acks(buf, range(1, 65536), limit=3) == ([1, 2, 300], 12)


def test_puback_loop_stops_where_paho_must_take_over():
    one = _puback(1)
    known = range(1, 10)
    stops = [
        _puback(42),                      # a mid not in flight: paho logs and ignores it
        b"\x50\x02\x00\x02",              # PUBREC
        b"\x70\x02\x00\x02",              # PUBCOMP
        b"\x41\x02\x00\x02",              # PUBACK with reserved flags set
        b"\x40\x03\x00\x02\x00",          # a remaining length paho refuses
        b"\x40\x82\x00\x00\x02",          # the same length in two bytes
        b"\x30\x05\x00\x03a/1",           # a PUBLISH
        b"\xd0\x00",                      # PINGRESP
    ]
    for packet in stops:
        assert _acks(one + packet + _puback(3), known) == ([1], 4), packet
    for cut in (1, 2, 3):  # the next PUBACK cut short
        assert _acks(one + _puback(2)[:cut], known) == ([1], 4)
    assert _acks(one, known, protocol=mqtt.MQTTv5) == ([], 0)  # reason codes: paho's


def test_a_version2_on_publish_gets_its_own_objects_equal_to_paho_s():
    """The success ReasonCode and empty Properties are copies of one template, not shared:
    a callback that changes what it was given changes nothing for the next one."""
    paho_reason, paho_props = ReasonCode(PacketTypes.PUBACK), Properties(PacketTypes.PUBACK)
    a, b = _fresh(_PUBACK_REASON), _fresh(_PUBACK_REASON)
    assert type(a) is ReasonCode and vars(a) == vars(paho_reason) and a is not b
    assert a.names is not b.names
    a.value = 16
    assert b == 0 and _fresh(_PUBACK_REASON) == 0
    p, q = _fresh(_PUBACK_PROPERTIES), _fresh(_PUBACK_PROPERTIES)
    assert type(p) is Properties and vars(p) == vars(paho_props)
    p.ReasonString = "changed"
    assert q.isEmpty() and _fresh(_PUBACK_PROPERTIES).isEmpty()
    assert p.pack() != q.pack() and q.pack() == paho_props.pack()
