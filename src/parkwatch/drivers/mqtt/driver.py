"""MQTT device driver: one subscription per topic template serves thousands of sensors.

paho's network thread only hands (topic, payload, receive time) to the daemon's inbox; decoding
happens in bulk on the pipeline thread, so a flood of payloads is parsed in one go and nothing
here ever blocks the network loop.

A fire button's messages go to the inbox's urgent lane, evaluated before the ordinary queue:
a press must not wait behind the readings of a flood that arrived before it.

A QoS 1/2 message is acknowledged to the broker only after the pipeline has run it through the
rules and committed the alarm changes it caused (:meth:`MqttDriver.settle`), not on arrival:
a daemon killed with a fire-button press still in its inbox gets the press again from the
broker's persistent session when it reconnects, instead of losing it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from parkwatch.config.model import ParkConfig
from parkwatch.drivers.base import BrokerLink
from parkwatch.drivers.metricfamily import MetricSample
from parkwatch.drivers.mqtt.config import MqttDriverConfig, sensor_topic, subscription
from parkwatch.drivers.mqtt.payload import PayloadDecoder, Rejected
from parkwatch.mqttlink.link import MqttLink
from parkwatch.park import KIND_CODE, ParkModel
from parkwatch.plausible import screen
from parkwatch.readings import ReadingBatch
from parkwatch.rejections import Rejections, excerpt

log = logging.getLogger("parkwatch.drivers.mqtt")


def _never(_payload: bytes, _now: float) -> None:
    return None


#: how the driver reads a sensor: its value, or a button's event; FIXED: on its own address
_READING, _BUTTON, _FIXED = 1, 2, 4

#: one message as the network thread puts it into the inbox: (driver, topic, payload, receive
#: time, mid, qos).  A QoS 0 message has qos 0 and is never acknowledged.  A plain tuple of one
#: shape (see :mod:`parkwatch.daemon.inbox`): one is built per message
Message = tuple["MqttDriver", str, bytes, float, int, int]
#: where a message keeps its QoS (0: nothing to acknowledge to the broker)
QOS = 5


class MqttDriver:
    def __init__(self, cfg: MqttDriverConfig, park: ParkModel, inbox: Any,
                 park_cfg: ParkConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.inbox = inbox
        # which sensor a topic is: a templated topic is not stored but cut out of the message's
        # topic and looked up in the park's index (a topic string, a tuple and a table entry a
        # sensor were 1.9 MB with 10,000 sensors); fixed addresses have a table of their own
        head, _, tail = cfg.topic.partition("{sensor_id}")
        self._template = (head, tail) if "{sensor_id}" in cfg.topic else None
        self._park, self._index = park, park.index
        #: per sensor index: how this driver reads it (0: not this driver's sensor)
        self._how = bytearray(len(park))
        #: (scale, offset) of the sensors whose value = raw * scale + offset is not raw
        self._scale: dict[int, tuple[float, float]] = {}
        self._fixed: dict[str, int] = {}
        #: the topics of this driver's fire buttons: their messages take the urgent lane
        self._urgent: set[str] = set()
        self.filters: list[str] = []
        self.sensors = 0
        for info in park.sensors:
            s = info.config
            if s.driver != cfg.id:
                continue
            self.sensors += 1
            button = bool(park.kind[info.index] == KIND_CODE["fire_button"])
            if not button and (s.scale != 1.0 or s.offset != 0.0):
                self._scale[info.index] = (s.scale, s.offset)
            self._how[info.index] = (_BUTTON if button else _READING) | (
                _FIXED if s.address else 0)
            if s.address:
                self._fixed[s.address] = info.index
                self.filters.append(s.address)
            if button:
                self._urgent.add(s.address or sensor_topic(cfg, s.id, None))
        if self.sensors > len(self._fixed):
            self.filters.insert(0, subscription(cfg))
        self.decoder = PayloadDecoder(cfg.value_field, cfg.time_field, cfg.time_unit,
                                      cfg.event_field, cfg.battery_field, cfg.max_payload_bytes,
                                      cfg.max_clock_skew_s)
        #: the broker acknowledged this connection's subscription: until then a reading
        #: published on a first start is dropped by the broker (no session holds it), so the
        #: driver is not "connected" in its health (nor the daemon READY) before it
        self.subscribed = threading.Event()
        self.accepted = 0
        self.rejections = Rejections(log, f"driver {cfg.id}")
        broker = park_cfg.brokers[cfg.broker]
        self.link = MqttLink(f"driver {cfg.id}", broker,
                             broker.client_id(park_cfg.gateway.id, f"driver-{cfg.id}"),
                             clean_session=False, on_connected=self._subscribe)
        self.link.client.on_message = self._on_message
        self.link.client.on_publish_batch = self._on_publishes
        self.link.client.manual_ack_set(True)  # acknowledged in settle(), after the alarm path
        self.link.client.on_subscribe = self._on_subscribe
        #: told True once the subscription is acknowledged, False when the link is lost (the
        #: daemon publishes its status on either)
        self.state_listeners: list[Callable[[bool], None]] = []
        self.link.state_listeners.append(self._link_state)

    # --- network thread -----------------------------------------------------------------
    def _subscribe(self, link: MqttLink) -> None:
        self.subscribed.clear()
        if self.filters:
            topics: list[tuple[str, int]] = [(f, self.cfg.qos) for f in self.filters]
            link.client.subscribe(topics)
        else:  # no sensors: nothing to wait for
            self._heard()

    def _link_state(self, up: bool) -> None:
        if not up:
            for listener in self.state_listeners:
                listener(False)

    def _heard(self) -> None:
        self.subscribed.set()
        for listener in self.state_listeners:
            listener(True)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[Any],
                      _props: Any = None) -> None:
        refused = [f for f, code in zip(self.filters, codes, strict=False)
                   if getattr(code, "is_failure", False)]
        if refused:  # typically the broker's ACL: those sensors would never be heard
            log.error("driver %s: broker '%s' refused the subscription to %s; check the ACL "
                      "of this gateway's user", self.id, self.cfg.broker, ", ".join(refused))
            return
        self._heard()
        log.info("driver %s: subscribed to %s for %d sensor(s)", self.id,
                 ", ".join(self.filters[:3]) + (" …" if len(self.filters) > 3 else ""),
                 self.sensors)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        put = self.inbox.put_urgent if msg.topic in self._urgent else self.inbox.put
        put((self, msg.topic, msg.payload, time.time(), msg.mid, msg.qos))

    def _on_publishes(self, publishes: list[tuple[str, bytes, int, int]]) -> None:
        """A flood's whole packets, parsed in bulk by the client (see ``BufferedClient``)."""
        received = time.time()
        put, urgent = self.inbox.put, self._urgent
        for topic, payload, mid, qos in publishes:
            item: Message = (self, topic, payload, received, mid, qos)
            if topic in urgent:
                self.inbox.put_urgent(item)
            else:
                put(item)

    # --- pipeline thread ----------------------------------------------------------------
    def decode(self, items: list[Message]) -> ReadingBatch:
        """Turn queued messages into readings; count and log (rate-limited) the rest."""
        sensors: list[int] = []
        readings: list[tuple[float, float, int, float]] = []  # (value, ts, quality, battery)
        decode, reject = self.decoder.decode, self.rejections.reject
        read = self.decoder.read_common or _never
        how_of, fixed, index, scales = self._how, self._fixed, self._index, self._scale
        head, tail = self._template or ("", "")
        templated = self._template is not None
        cut = len(tail)
        for _driver, topic, payload, received, _mid, _qos in items:
            idx = fixed.get(topic)
            if idx is not None:
                how = how_of[idx]
            elif templated and topic.startswith(head) and topic.endswith(tail):
                idx = index.get(topic[len(head):len(topic) - cut])
                # another driver's sensor, or one on an address of its own, is not this topic
                how = how_of[idx] if idx is not None and not how_of[idx] & _FIXED else 0
            else:
                how = 0
            if not how:
                reject("unknown_sensor", f"topic {excerpt(topic)}")
                continue
            assert idx is not None  # a topic has a way to decode it only for a known sensor
            button = bool(how & _BUTTON)
            # a flood's common shape first (a button's payload is an event: decode's)
            reading = None if button else read(payload, received)
            try:
                if reading is None:
                    reading = decode(payload, button, received)
            except Rejected as exc:
                reject(exc.reason, f"topic {topic}: {exc.detail}; payload {excerpt(payload)}")
                continue
            except Exception as exc:  # a decoder bug must cost one payload, not the driver
                log.exception("driver %s: unexpected error decoding %s", self.id, topic)
                reject("internal_error", f"{type(exc).__name__} on {topic}")
                continue
            scale = scales.get(idx) if scales else None
            if scale is not None:
                value = reading[0] * scale[0] + scale[1]
                if math.isinf(value):
                    # a finite payload value that the sensor's scale/offset push past float
                    # range (1e308 x 10) must not reach the rules as infinity (tests/test_fuzz.py)
                    reject("bad_value", f"topic {topic}: {reading[0]!r} scaled is out of range")
                    continue
                reading = (value, *reading[1:])
            readings.append(reading)
            sensors.append(idx)
        if not sensors:
            return ReadingBatch.empty()
        n = len(sensors)
        values, times, qualities, batteries = zip(*readings, strict=True)
        # values no sensor can send (1e308, or scaled past PLAUSIBLE_LIMIT): counted, dropped
        batch = screen(ReadingBatch(np.fromiter(sensors, np.int32, n),
                                    np.fromiter(values, np.float64, n),
                                    np.fromiter(times, np.float64, n),
                                    np.fromiter(qualities, np.uint8, n),
                                    np.fromiter(batteries, np.float64, n)),
                       self.rejections, self._park.ident)
        self.accepted += len(batch)
        return batch

    def settle(self, items: list[Message]) -> None:
        """The pipeline is done with these messages (their alarm changes are committed):
        acknowledge the QoS 1/2 ones to the broker.  One that is never acknowledged (the daemon
        died first) is delivered again when this client's session reconnects."""
        ack = self.link.client.ack
        for _driver, _topic, _payload, _received, mid, qos in items:
            if qos:
                ack(mid, qos)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.link.start()

    @property
    def alive(self) -> bool:
        """Its network loop runs (the watchdog asks)."""
        return self.link.alive

    def stop(self) -> None:
        self.link.stop()
        self.rejections.flush()

    def topics(self) -> list[str]:
        """Each of this driver's sensors' topic (for tests and diagnostics; not kept)."""
        fixed = {i: topic for topic, i in self._fixed.items()}
        return [fixed.get(i) or sensor_topic(self.cfg, self._park.sensors[i].id, None)
                for i, how in enumerate(self._how) if how]

    def health(self) -> dict[str, Any]:
        return {"type": "mqtt",
                "connected": self.link.connected.is_set() and self.subscribed.is_set(),
                "sensors": self.sensors, "accepted": self.accepted,
                "rejected": dict(self.rejections.total)}

    def metric_samples(self) -> tuple[MetricSample, ...]:
        """No families of its own: its broker link is shown through :meth:`broker_link`."""
        return ()

    def health_warnings(self) -> list[str]:
        return []

    def broker_link(self) -> BrokerLink:
        """Its broker and whether the connection is up (``parkwatch_broker_connected``)."""
        return BrokerLink(self.cfg.broker, self.link.connected.is_set())
