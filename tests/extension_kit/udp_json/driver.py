"""The udp_json driver: a thread receives datagrams, turns each into a reading of one of its
sensors, and hands it to the pipeline; anything else is a counted, logged rejection."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from extension_kit.udp_json.config import UdpJsonDriverConfig
from parkwatch.config.model import ParkConfig
from parkwatch.drivers.base import BrokerLink, DirectReadings, Driver
from parkwatch.drivers.metricfamily import MetricSample
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rejections import Rejections

log = logging.getLogger("extension_kit.udp_json")


class UdpJsonDriver:
    def __init__(self, cfg: UdpJsonDriverConfig, park: ParkModel, inbox: Any,
                 park_cfg: ParkConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.sensors = {i.id: (i.index, i.config.scale, i.config.offset) for i in park.sensors
                        if i.config.driver == cfg.id}
        self.readings = DirectReadings(inbox, self)
        self.rejections = Rejections(log, f"driver {cfg.id}")
        self.state_listeners: list[Callable[[bool], None]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((cfg.listen, cfg.port))
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def accepted(self) -> int:
        return self.readings.accepted

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"udp-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        self.sock.close()
        self.rejections.flush()

    def decode(self, items: list[Any]) -> ReadingBatch:
        return self.readings.decode(items)

    def health(self) -> dict[str, Any]:
        return {"type": "udp_json", "port": self.cfg.port, "connected": self.alive,
                "accepted": self.accepted, "rejected": dict(self.rejections.total)}

    def metric_samples(self) -> Iterable[MetricSample]:
        return ()  # its registry line declares no families of its own

    def health_warnings(self) -> list[str]:
        return []

    def broker_link(self) -> BrokerLink | None:
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                msg = json.loads(data)
                index, scale, offset = self.sensors[msg["sensor"]]
                value = float(msg["value"])
            except (ValueError, KeyError, TypeError) as exc:
                self.rejections.reject("bad_datagram", f"{exc!r}: {data[:100]!r}")
                continue
            self.readings.put(index, value * scale + offset, time.time())


_: type[Driver] = UdpJsonDriver  # the type checker holds the class to the Driver protocol
