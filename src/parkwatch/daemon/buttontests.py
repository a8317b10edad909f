"""Test presses of the wireless fire buttons: confirmed, never alarmed.

A button's test press (payload event ``test``, :attr:`Quality.TEST`) proves that the button,
its radio and the whole path to the gateway work.  The rule engine takes it as a sign of life
only (the no-data deadman starts again; the latch never moves, so no alarm is raised), and this
module confirms it to the person who pressed: each test press is counted per button, its time
and battery kept, logged once (``button A-3F-FB1 test press received``) and listed by the
local API (``GET /api/tests``).

It watches the evaluated batches (the pipeline's readings tap, after the alarm path) and costs
one comparison per batch unless a test press is in it.  Its counts are kept by sensor id, so a
reload of the config keeps them; they start again with the daemon.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from parkwatch.alarms.timestamps import rfc3339_ms
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch

log = logging.getLogger("parkwatch.buttons")

_TEST = int(Quality.TEST)


@dataclass(slots=True)
class TestRecord:
    """The test presses of one button since the daemon started."""

    count: int
    last_at: float
    place: str
    battery: float


class ButtonTests:
    """Every button's test presses (pipeline thread writes, API workers read)."""

    def __init__(self, park: Callable[[], ParkModel]) -> None:
        #: the park in force (a reload swaps it): sensor indices are read against it
        self.park = park
        self._lock = threading.Lock()
        self._by_sensor: dict[str, TestRecord] = {}
        self.total = 0

    def observe(self, batch: ReadingBatch) -> None:
        """Confirm the test presses among an evaluated batch's readings."""
        tests = (batch.quality == _TEST).nonzero()[0]
        if tests.shape[0] == 0:
            return
        park = self.park()
        sensors = park.sensors
        for i, ts, battery in zip(batch.sensor[tests].tolist(), batch.ts[tests].tolist(),
                                  batch.battery[tests].tolist(), strict=True):
            if i >= len(sensors):
                continue
            info = sensors[i]
            with self._lock:
                rec = self._by_sensor.get(info.id)
                if rec is None:
                    rec = self._by_sensor[info.id] = TestRecord(0, ts, info.place, np.nan)
                rec.count += 1
                rec.last_at, rec.place = ts, info.place
                if not np.isnan(battery):
                    rec.battery = battery
                self.total += 1
            log.info("button %s test press received (%s, test %d since start%s): confirmed, "
                     "no alarm raised", info.id, info.place, rec.count,
                     "" if np.isnan(battery) else f", battery {battery:g} %")

    def view(self) -> dict[str, Any]:
        """``GET /api/tests``: each button's test presses, the latest first."""
        with self._lock:
            items = sorted(self._by_sensor.items(), key=lambda kv: -kv[1].last_at)
            return {"tests": [
                {"sensor_id": ident, "place": rec.place, "count": rec.count,
                 "last_test_at": rfc3339_ms(rec.last_at),
                 "battery": None if np.isnan(rec.battery) else rec.battery}
                for ident, rec in items]}
