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

import paho.mqtt.client as mqtt

from parkwatch.config.model import ParkConfig
from parkwatch.drivers.mqtt.config import MqttDriverConfig, sensor_topic, subscription
from parkwatch.drivers.mqtt.payload import PayloadDecoder, Rejected
from parkwatch.mqtt.link import MqttLink
from parkwatch.park import KIND_CODE, ParkModel
from parkwatch.ratelog import Rejections, excerpt
from parkwatch.readings import ReadingBatch

log = logging.getLogger("parkwatch.drivers.mqtt")


class MqttDriver:
    def __init__(self, cfg: MqttDriverConfig, park: ParkModel, inbox: Any,
                 park_cfg: ParkConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.inbox = inbox
        self.topic_index: dict[str, int] = {}
        self.scale: dict[int, tuple[float, float]] = {}
        self.is_button: dict[int, bool] = {}
        self.filters: list[str] = []
        templated = False
        for info in park.sensors:
            s = info.config
            if s.driver != cfg.id:
                continue
            topic = sensor_topic(cfg, s.id, s.address)
            self.topic_index[topic] = info.index
            button = bool(park.kind[info.index] == KIND_CODE["fire_button"])
            self.is_button[info.index] = button
            self.scale[info.index] = (1.0, 0.0) if button else (s.scale, s.offset)
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
                     len(self.topic_index))

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
        values: list[float] = []
        times: list[float] = []
        qualities: list[int] = []
        batteries: list[float] = []
        index, scale, is_button, decode = (self.topic_index, self.scale, self.is_button,
                                           self.decoder.decode)
        for item in items:
            topic, payload, received = item[1], item[2], item[3]
            idx = index.get(topic)
            if idx is None:
                self.rejections.reject("unknown_sensor", f"topic {excerpt(topic)}")
                continue
            try:
                value, ts, quality, battery = decode(payload, is_button[idx], received)
            except Rejected as exc:
                self.rejections.reject(exc.reason, f"topic {topic}: {exc.detail}; payload "
                                       f"{excerpt(payload)}")
                continue
            except Exception as exc:  # a decoder bug must cost one payload, not the driver
                log.exception("driver %s: unexpected error decoding %s", self.id, topic)
                self.rejections.reject("internal_error", f"{type(exc).__name__} on {topic}")
                continue
            k, off = scale[idx]
            scaled = value * k + off
            if math.isinf(scaled):
                # a finite payload value that the sensor's scale/offset push past float range
                # (1e308 x 10) must not reach the rules as infinity (found by tests/test_fuzz.py)
                self.rejections.reject("bad_value", f"topic {topic}: {value!r} scaled is "
                                       "out of range")
                continue
            sensors.append(idx)
            values.append(scaled)
            times.append(ts)
            qualities.append(quality)
            batteries.append(battery)
        self.accepted += len(sensors)
        return ReadingBatch.from_columns(sensors, values, times, qualities, batteries)

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
                "sensors": len(self.topic_index), "accepted": self.accepted,
                "rejected": dict(self.rejections.total)}
