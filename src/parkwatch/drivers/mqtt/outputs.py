"""Outputs on an MQTT broker (wireless sounders and strobes, relay boxes): a command on the
output's topic, QoS 1 and retained, so a device that restarts takes its state from the broker;
read back from the state the device reports on its `state_topic`.

The connection is the outputs' own (client id ``…-outputs-<driver>``), not the driver's: the
driver's session acknowledges uplinks only after the alarm path (see
:mod:`parkwatch.drivers.mqtt.driver`), and a command must not wait for that.  One thread per
driver waits for the confirmations, so nothing on the alarm path ever blocks on the broker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from parkwatch.mqttlink.link import MqttLink
from parkwatch.outputs.port import Done, OutputPort
from parkwatch.park import OutputInfo

log = logging.getLogger("parkwatch.outputs")

_STOP = None


class MqttOutputs:
    """The outputs of one MQTT driver (:class:`~parkwatch.outputs.port.OutputPort`)."""

    def __init__(self, driver: Any, driver_cfg: Any, outputs: list[OutputInfo],
                 park_cfg: Any) -> None:
        broker = park_cfg.brokers[driver_cfg.broker]
        self.confirm_s: float = park_cfg.linkage.confirm_s
        self.points = {o.position: o.config for o in outputs}
        self.by_state = {o.config.state_topic: o.position for o in outputs
                         if o.config.state_topic}
        #: the state each device last reported, by output position
        self.reported: dict[int, str] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self.link = MqttLink(f"outputs {driver_cfg.id}", broker,
                             broker.client_id(park_cfg.gateway.id, f"outputs-{driver_cfg.id}"),
                             clean_session=True, on_connected=self._subscribe)
        self.link.client.on_message = self._on_message
        self._jobs: queue.SimpleQueue[tuple[str, int, bool, Done] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"parkwatch-outputs-{driver_cfg.id}")

    # --- OutputPort -----------------------------------------------------------------------
    def write(self, position: int, on: bool, done: Done) -> None:
        self._jobs.put(("write", position, on, done))

    def check(self, position: int, on: bool, done: Done) -> None:
        self._jobs.put(("check", position, on, done))

    def start(self) -> None:
        self.link.start()
        self._thread.start()

    def stop(self) -> None:
        self._jobs.put(_STOP)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(2.0)
        self.link.stop()

    # --- the broker's thread --------------------------------------------------------------
    def _subscribe(self, link: MqttLink) -> None:
        if self.by_state:
            link.client.subscribe([(t, 1) for t in self.by_state])

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        position = self.by_state.get(msg.topic)
        if position is None:
            return
        with self._cond:
            self.reported[position] = msg.payload.decode("utf-8", "replace").strip()
            self._cond.notify_all()

    # --- the outputs' thread --------------------------------------------------------------
    def _run(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            what, position, on, done = job
            try:
                ok, seen = self._write(position, on) if what == "write" else self._check(
                    position, on)
            except Exception as exc:  # a broken output must not stop the others
                log.exception("output %s: %s failed", self.points[position].id, what)
                ok, seen = False, str(exc)
            done(position, ok, seen)

    def _wanted(self, position: int, on: bool) -> str:
        c = self.points[position]
        return c.payload_on if on else c.payload_off

    def _write(self, position: int, on: bool) -> tuple[bool, str]:
        c = self.points[position]
        info = self.link.publish(c.topic or "", self._wanted(position, on).encode("utf-8"),
                                 qos=1, retain=True)
        deadline = time.monotonic() + self.confirm_s
        if c.state_topic is None:  # supervised to the broker only
            info.wait_for_publish(self.confirm_s)
            return (True, "acknowledged by the broker") if info.is_published() else (
                False, "not acknowledged by the broker")
        with self._cond:
            self._cond.wait_for(lambda: self.reported.get(position) == self._wanted(position, on)
                                or self._stopping or time.monotonic() >= deadline,
                                timeout=max(0.0, deadline - time.monotonic()))
        return self._check(position, on)

    def _check(self, position: int, on: bool) -> tuple[bool, str]:
        if self.points[position].state_topic is None:
            up = self.link.connected.is_set()
            return up, "broker connected" if up else "broker not connected"
        with self._cond:
            seen = self.reported.get(position)
        if seen is None:
            return False, "no state reported"
        return seen == self._wanted(position, on), f"reports {seen!r}"


_: type[OutputPort] = MqttOutputs
