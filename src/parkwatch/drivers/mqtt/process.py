"""The daemon's side of an MQTT driver with ``process: true`` (see :mod:`.worker`).

To the daemon it is a driver like any other: readings arrive in its inbox (fire buttons in the
urgent lane), QoS 1/2 messages are acknowledged to the broker once their alarm changes are
committed (:meth:`MqttProcessDriver.settle`), and its health and counters are the worker's.
What arrives is already decoded, a batch at a time, so the daemon's core spends nothing on the
network loop or on JSON.

A worker that dies (killed, out of memory) is logged and started again, at once the first time
and then with a growing pause; the broker's persistent session holds the QoS 1/2 messages
meanwhile, and the driver counts as disconnected (health, status, ``/metrics``) until the new
worker has subscribed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

from parkwatch.config.model import ParkConfig
from parkwatch.drivers.base import BrokerLink, Driver
from parkwatch.drivers.metricfamily import MetricSample
from parkwatch.drivers.mqtt import wire
from parkwatch.drivers.mqtt.config import MqttDriverConfig
from parkwatch.drivers.mqtt.driver import MqttDriver
from parkwatch.drivers.mqtt.worker import worker_main
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.drivers.mqtt")

#: pause before starting a dead worker again: doubled each time it dies young, up to the most
RESTART_S, RESTART_MAX_S = 1.0, 30.0
#: a worker that ran this long before dying was not crash-looping: the pause starts over
STABLE_S = 60.0


def mqtt_driver(cfg: MqttDriverConfig, park: ParkModel, inbox: Any,
                park_cfg: ParkConfig) -> Driver:
    """The registry's constructor: the driver in a worker process, or in the daemon's."""
    if cfg.process:
        return MqttProcessDriver(cfg, park, inbox, park_cfg)
    return MqttDriver(cfg, park, inbox, park_cfg)


#: one batch of the worker's readings as the daemon's inbox holds it: (driver, readings, ack id
#: of the QoS 1/2 messages behind them or None)
Frame = tuple["MqttProcessDriver", ReadingBatch, int | None]


class _Link:
    """The worker's broker link as the daemon sees it (health, ``/metrics``)."""

    def __init__(self) -> None:
        self.connected = threading.Event()


class MqttProcessDriver:
    def __init__(self, cfg: MqttDriverConfig, park: ParkModel, inbox: Any,
                 park_cfg: ParkConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.inbox = inbox
        self._park_cfg = park_cfg
        self.sensors = sum(1 for s in park_cfg.sensors if s.driver == cfg.id)
        self.accepted = 0
        #: the worker's totals (it logs each rejection itself, rate-limited)
        self.rejections = Rejections(log, f"driver {cfg.id}")
        self.link = _Link()
        self.state_listeners: list[Callable[[bool], None]] = []
        self.restarts = 0
        self._conn: Any = None
        self._proc: Any = None
        self._send_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"parkwatch-driver-{cfg.id}",
                                        daemon=True)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a threaded daemon
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=worker_main, name=f"parkwatch-driver-{self.id}",
                           args=(self._park_cfg, self.id, theirs, logging.getLogger().level),
                           daemon=True)
        proc.start()
        theirs.close()
        self._conn, self._proc = mine, proc
        self.started_at = time.monotonic()

    @property
    def alive(self) -> bool:
        """The reader runs (it restarts a dead worker itself); the watchdog asks."""
        return self._thread.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        self._stopping.set()
        self._send(("stop",))
        proc = self._proc
        if proc is not None:
            proc.join(5.0)
            if proc.is_alive():
                log.warning("driver %s: worker process did not stop; terminating it", self.id)
                proc.terminate()
                proc.join(2.0)
        self._thread.join(2.0)
        self._up(False)

    # --- the worker's messages --------------------------------------------------------------
    def _run(self) -> None:
        pause = RESTART_S
        while True:
            self._read(self._conn)
            if self._stopping.is_set():
                return
            self._up(False)
            self._proc.join(1.0)
            code = self._proc.exitcode
            lived = time.monotonic() - self.started_at
            pause = RESTART_S if lived >= STABLE_S else pause
            log.error("driver %s: worker process ended (exit code %s) after %.0f s; starting "
                      "it again in %.0f s", self.id, code, lived, pause if self.restarts else 0)
            if self.restarts and self._stopping.wait(pause):
                return
            if self.restarts:
                pause = min(pause * 2, RESTART_MAX_S)
            self.restarts += 1
            self._spawn()

    def _read(self, conn: Any) -> None:
        put, urgent_put = self.inbox.put, self.inbox.put_urgent
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return
            try:
                frame = wire.decode(data)
                msg: Any = ForkingPickler.loads(data) if frame is None else None
            except Exception:  # a worker's bug: never the daemon's end
                log.exception("driver %s: a message from the worker process is unreadable",
                              self.id)
                continue
            if frame is not None:
                urgent, batch, ack_id = frame
                item: Frame = (self, batch, ack_id)
                (urgent_put if urgent else put)(item)
            elif msg[0] == "rejected":
                total = self.rejections.total  # set, never cleared: a scrape reading it
                for reason, n in msg[1].items():  # meanwhile must not see a counter drop
                    total[reason] = n
            elif msg[0] == "state":
                self._up(bool(msg[1]))

    def _up(self, up: bool) -> None:
        if up == self.link.connected.is_set():
            return
        if up:
            self.link.connected.set()
        else:
            self.link.connected.clear()
        for listener in self.state_listeners:
            listener(up)

    def _send(self, msg: tuple[Any, ...]) -> None:
        # a worker gone: its unacknowledged messages come again, to the next one
        with self._send_lock, contextlib.suppress(OSError, ValueError, AttributeError):
            self._conn.send(msg)

    # --- pipeline thread ----------------------------------------------------------------
    def decode(self, items: list[Frame]) -> ReadingBatch:
        """The worker decoded them: one batch of the batches, in arrival order."""
        batch = ReadingBatch.concat([batch for _driver, batch, _ack in items])
        self.accepted += len(batch)
        return batch

    def settle(self, items: list[Frame]) -> None:
        """Their alarm changes are committed: the worker acknowledges the QoS 1/2 messages
        behind them to the broker."""
        acks = [ack for _driver, _batch, ack in items if ack is not None]
        if acks:
            self._send(("ack", acks))

    # --- diagnostics -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"type": "mqtt", "connected": self.link.connected.is_set(),
                "sensors": self.sensors, "accepted": self.accepted,
                "rejected": dict(self.rejections.total), "process": self.pid,
                "restarts": self.restarts}

    def metric_samples(self) -> tuple[MetricSample, ...]:
        """No families of its own: its broker link is shown through :meth:`broker_link`."""
        return ()

    def health_warnings(self) -> list[str]:
        return []

    def broker_link(self) -> BrokerLink:
        """The worker's broker and whether the worker last said its link is up."""
        return BrokerLink(self.cfg.broker, self.link.connected.is_set())
