"""MQTT device driver: one subscription per topic template serves thousands of sensors.

paho's network thread only hands (topic, payload, receive time) to the daemon's inbox; decoding
happens in bulk on the pipeline thread, so a flood of payloads is parsed in one go and nothing
here ever blocks the network loop.

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
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from parkwatch.config.model import ParkConfig
from parkwatch.drivers.mqtt.config import MqttDriverConfig, sensor_topic, subscription
from parkwatch.drivers.mqtt.payload import PayloadDecoder, Rejected
from parkwatch.mqtt.link import MqttLink
from parkwatch.park import KIND_CODE, ParkModel
from parkwatch.ratelog import Rejections, excerpt
from parkwatch.readings import ReadingBatch

log = logging.getLogger("parkwatch.drivers.mqtt")


def _never(_payload: bytes, _now: float) -> None:
    return None


class MqttDriver:
    def __init__(self, cfg: MqttDriverConfig, park: ParkModel, inbox: Any,
                 park_cfg: ParkConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.inbox = inbox
        #: topic -> (sensor index, is a fire button, (scale, offset) or None): one lookup a
        #: message; value = raw * scale + offset
        self.routes: dict[str, tuple[int, bool, tuple[float, float] | None]] = {}
        self.filters: list[str] = []
        templated = False
        for info in park.sensors:
            s = info.config
            if s.driver != cfg.id:
                continue
            topic = sensor_topic(cfg, s.id, s.address)
            button = bool(park.kind[info.index] == KIND_CODE["fire_button"])
            scaled = not button and (s.scale != 1.0 or s.offset != 0.0)
            self.routes[topic] = (info.index, button, (s.scale, s.offset) if scaled else None)
            if s.address:
                self.filters.append(topic)
            else:
                templated = True
        if templated:
            self.filters.insert(0, subscription(cfg))
        self.decoder = PayloadDecoder(cfg.value_field, cfg.time_field, cfg.time_unit,
                                      cfg.event_field, cfg.battery_field, cfg.max_payload_bytes,
                                      cfg.max_clock_skew_s)
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
        self.link.client.on_subscribe = lambda *_args: self.subscribed.set()

    # --- network thread -----------------------------------------------------------------
    def _subscribe(self, link: MqttLink) -> None:
        if self.filters:
            link.client.subscribe([(f, self.cfg.qos) for f in self.filters])
            log.info("driver %s: subscribed to %s for %d sensor(s)", self.id,
                     ", ".join(self.filters[:3]) + (" …" if len(self.filters) > 3 else ""),
                     len(self.routes))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.qos:
            self.inbox.put((self, msg.topic, msg.payload, time.time(), msg.mid, msg.qos))
        else:
            self.inbox.put((self, msg.topic, msg.payload, time.time()))

    def _on_publishes(self, publishes: list[tuple[str, bytes, int, int]]) -> None:
        """A flood's whole packets, parsed in bulk by the client (see ``BufferedClient``)."""
        received = time.time()
        put = self.inbox.put
        for topic, payload, mid, qos in publishes:
            put((self, topic, payload, received, mid, qos) if qos else
                (self, topic, payload, received))

    # --- pipeline thread ----------------------------------------------------------------
    def decode(self, items: list[tuple[Any, str, bytes, float]]) -> ReadingBatch:
        """Turn queued messages into readings; count and log (rate-limited) the rest."""
        sensors: list[int] = []
        readings: list[tuple[float, float, int, float]] = []  # (value, ts, quality, battery)
        routes, decode, reject = self.routes, self.decoder.decode, self.rejections.reject
        read = self.decoder.read_common or _never
        for item in items:
            topic, payload = item[1], item[2]
            route = routes.get(topic)
            if route is None:
                reject("unknown_sensor", f"topic {excerpt(topic)}")
                continue
            # a flood's common shape first (a button's payload is an event: decode's)
            reading = None if route[1] else read(payload, item[3])
            try:
                if reading is None:
                    reading = decode(payload, route[1], item[3])
            except Rejected as exc:
                reject(exc.reason, f"topic {topic}: {exc.detail}; payload {excerpt(payload)}")
                continue
            except Exception as exc:  # a decoder bug must cost one payload, not the driver
                log.exception("driver %s: unexpected error decoding %s", self.id, topic)
                reject("internal_error", f"{type(exc).__name__} on {topic}")
                continue
            if route[2] is not None:
                k, off = route[2]
                value = reading[0] * k + off
                if math.isinf(value):
                    # a finite payload value that the sensor's scale/offset push past float
                    # range (1e308 x 10) must not reach the rules as infinity (tests/test_fuzz.py)
                    reject("bad_value", f"topic {topic}: {reading[0]!r} scaled is out of range")
                    continue
                reading = (value, *reading[1:])
            readings.append(reading)
            sensors.append(route[0])
        if not sensors:
            return ReadingBatch.empty()
        n = len(sensors)
        values, times, qualities, batteries = zip(*readings, strict=True)
        self.accepted += n
        return ReadingBatch(np.fromiter(sensors, np.int32, n), np.fromiter(values, np.float64, n),
                            np.fromiter(times, np.float64, n), np.fromiter(qualities, np.uint8, n),
                            np.fromiter(batteries, np.float64, n))

    def settle(self, items: list[tuple[Any, ...]]) -> None:
        """The pipeline is done with these messages (their alarm changes are committed):
        acknowledge the QoS 1/2 ones to the broker.  One that is never acknowledged (the daemon
        died first) is delivered again when this client's session reconnects."""
        ack = self.link.client.ack
        for item in items:
            if len(item) > 4:
                ack(item[4], item[5])

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

    def health(self) -> dict[str, Any]:
        return {"type": "mqtt", "connected": self.link.connected.is_set(),
                "sensors": len(self.routes), "accepted": self.accepted,
                "rejected": dict(self.rejections.total)}
