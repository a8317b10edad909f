"""Many QoS 1 messages published on a paho client at once.

paho's ``publish()`` does, for every message, what a courier publishing a window of alarm
rows needs once: it validates the arguments, takes three locks, builds an ``MQTTMessageInfo``
with a ``threading.Condition`` of its own, queues the packet by itself and wakes the network
thread for it, which then writes it with a ``send()`` of its own.  Under an alarm storm, with
two messages a row (the event and the alarm's retained state), that was most of the uplink's
share of the interpreter.

:func:`publish_many` registers the messages exactly as paho's ``publish()`` does for QoS 1
(the same ``MQTTMessage`` in ``_out_messages``, in flight, so a PUBACK confirms it and a
reconnect sends it again with the DUP flag), but builds their PUBLISH packets (MQTT 3.1.1
§3.3) into one buffer queued as one packet, and gives the messages of one call one shared
condition: ``MQTTMessageInfo.wait_for_publish`` waits with a predicate on its own message and
wakes at least every tenth of its timeout, so a waiter woken for another message of the call
waits on.  What paho would handle otherwise (MQTT 5's properties, a client window or queue
limit, no socket, a message id still in use) goes through paho's own ``publish()``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

#: (topic, payload, retain) of one message
Message = tuple[str, bytes, bool]

_PUBLISH_QOS1 = mqtt.PUBLISH | 0x02


def _info(mid: int, condition: threading.Condition) -> mqtt.MQTTMessageInfo:
    """An ``MQTTMessageInfo`` as its ``__init__`` leaves it, with `condition` for its own."""
    info = object.__new__(mqtt.MQTTMessageInfo)
    info.mid = mid
    info._published = False
    info._condition = condition
    info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
    info._iterpos = 0
    return info


def _message(mid: int, topic: bytes, payload: bytes, retain: bool, now: float,
             info: mqtt.MQTTMessageInfo) -> mqtt.MQTTMessage:
    """An ``MQTTMessage`` as paho's ``publish()`` leaves a QoS 1 message sent at once."""
    msg = object.__new__(mqtt.MQTTMessage)
    msg.timestamp = now
    msg.state = mqtt.mqtt_ms_wait_for_puback
    msg.dup = False
    msg.mid = mid
    msg._topic = topic
    msg.payload = payload
    msg.qos = 1
    msg.retain = retain
    msg.info = info
    msg.properties = None
    return msg


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _fast(client: mqtt.Client) -> bool:
    return (client._protocol in (mqtt.MQTTv311, mqtt.MQTTv31)
            and client._max_inflight_messages == 0 and client._max_queued_messages == 0
            and client._sock is not None)


def publish_many(client: mqtt.Client, messages: Sequence[Message]) -> list[mqtt.MQTTMessageInfo]:
    """Publish `messages` with QoS 1, in order; their infos, as ``publish()`` returns them."""
    if not messages:
        return []
    if not _fast(client):
        return [client.publish(t, p, qos=1, retain=r) for t, p, r in messages]
    encoded: list[tuple[bytes, bytes, bool]] = []
    for topic, payload, retain in messages:
        topic_b = topic.encode("utf-8")
        if not topic_b or b"+" in topic_b or b"#" in topic_b or len(topic_b) > 65535:
            raise ValueError(f"invalid topic to publish to: {topic!r}")
        if len(payload) > 268_435_455:
            raise ValueError("Payload too large.")
        encoded.append((topic_b, payload, retain))
    condition = threading.Condition()
    now = mqtt.time_func()
    packet = bytearray()
    infos: list[mqtt.MQTTMessageInfo] = []
    out = client._out_messages
    with client._out_message_mutex:
        with client._mid_generate_mutex:
            mid = client._last_mid
            mids = []
            for _ in encoded:
                mid = mid + 1 if mid < 65535 else 1
                mids.append(mid)
            if any(m in out for m in mids):  # a window of 65,535 still unconfirmed: paho's
                mids = []
            else:
                client._last_mid = mid
        if not mids:
            return [client.publish(t, p, qos=1, retain=r) for t, p, r in messages]
        for mid, (topic_b, payload, retain) in zip(mids, encoded, strict=True):
            info = _info(mid, condition)
            out[mid] = _message(mid, topic_b, payload, retain, now, info)
            packet.append(_PUBLISH_QOS1 | retain)
            packet += _remaining_length(4 + len(topic_b) + len(payload))
            packet += len(topic_b).to_bytes(2, "big")
            packet += topic_b
            packet += mid.to_bytes(2, "big")
            packet += payload
            infos.append(info)
        client._inflight_messages += len(infos)
        rc = client._packet_queue(mqtt.PUBLISH | 0x02, bytes(packet), 0, 1, None)
    for info in infos:
        info.rc = rc
    return infos
