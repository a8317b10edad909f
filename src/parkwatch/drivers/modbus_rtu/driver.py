"""The Modbus driver: sensors on one bus, polled by its bus scheduler.

Every Modbus driver kind runs this class: ``modbus_rtu`` (the gateway's own RS-485 port),
``modbus_rtu_tcp`` (a serial server or DTU over TCP) and ``modbus_tcp``; what differs is the
:class:`~parkwatch.drivers.modbus_rtu.link.Link` its config builds (``cfg.link()``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from parkwatch.config.model import ParkConfig
from parkwatch.drivers.base import BrokerLink, DirectReadings, Driver
from parkwatch.drivers.metricfamily import MetricSample
from parkwatch.drivers.modbus_rtu import metrics
from parkwatch.drivers.modbus_rtu.address import parse_address
from parkwatch.drivers.modbus_rtu.blocks import PollBlock, build_blocks
from parkwatch.drivers.modbus_rtu.bus import BusScheduler, SlaveState
from parkwatch.drivers.modbus_rtu.config import ModbusMaster
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.drivers.modbus")


class ModbusRtuDriver:
    def __init__(self, cfg: ModbusMaster, park: ParkModel, inbox: Any,
                 park_cfg: ParkConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.out = DirectReadings(inbox, self, lambda i: park.sensors[i].id)
        self.rejections = Rejections(log, f"driver {cfg.id}")
        points = []
        loops: dict[int, tuple[float, float]] = {}  # 4-20 mA transmitters: their ranges
        for info in park.sensors:
            s = info.config
            if s.driver == cfg.id and s.address:
                points.append((info.index, parse_address(s.address), s.scale, s.offset))
                rng = park_cfg.range_for(s)
                if s.signal == "4-20mA" and rng is not None:
                    loops[info.index] = (rng.min, rng.max)
        interval = {sl.slave: sl.interval_s or cfg.poll_interval_s for sl in cfg.slaves}
        for _, a, _, _ in points:
            interval.setdefault(a.slave, cfg.poll_interval_s)
        self.blocks = build_blocks(points, interval, cfg.di_interval_s, cfg.max_block,
                                   loops)
        self.bus = BusScheduler(cfg, self.blocks, self._values, self._fail, cfg.link())
        for o in park_cfg.outputs:  # the relay modules of its outputs (parkwatch.outputs)
            if o.driver == cfg.id and o.address:
                slave = parse_address(o.address).slave
                self.bus.slaves.setdefault(slave, SlaveState(slave))
        self.state_listeners = self.bus.state_listeners

    @property
    def accepted(self) -> int:
        return self.out.accepted

    # --- bus thread -----------------------------------------------------------------------
    def _values(self, block: PollBlock, values: np.ndarray, ts: float) -> None:
        # a float32 register holding NaN (the device says "no value") is counted as not_finite
        # and dropped where the pipeline decodes it (DirectReadings, parkwatch.plausible)
        self.out.put_many(block.sensors, values.tolist(), ts, Quality.GOOD)

    def _fail(self, block: PollBlock, ts: float) -> None:
        self.out.comm_fail(block.sensors, ts)

    # --- pipeline thread ------------------------------------------------------------------
    def decode(self, items: list[Any]) -> ReadingBatch:
        return self.out.decode(items)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.bus.start()

    @property
    def alive(self) -> bool:
        """Its bus loop runs (the watchdog asks)."""
        return self.bus.alive

    def stop(self) -> None:
        self.bus.stop()
        self.rejections.flush()

    def health(self) -> dict[str, Any]:
        return {"type": getattr(self.cfg, "type", "modbus_rtu"), "connected": self.bus.is_open,
                "accepted": self.accepted, "rejected": dict(self.rejections.total),
                **self.bus.health()}

    # --- /metrics and /healthz (read from the HTTP server's threads) -----------------------
    def metric_samples(self) -> Iterator[MetricSample]:
        """Each slave's polls, timeouts and quarantine (:mod:`.metrics`)."""
        return metrics.samples(self.id, self.bus.slaves)

    def health_warnings(self) -> list[str]:
        return metrics.quarantine_warnings(self.bus.slaves)

    def broker_link(self) -> BrokerLink | None:
        return None


_: type[Driver] = ModbusRtuDriver  # mypy checks it has every member of the Driver protocol
