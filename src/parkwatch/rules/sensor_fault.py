"""Sensor faults: a reading outside the sensor's measuring range is a broken sensor, not a flood.

A transmitter measures within its range (``sensors[].range``, else ``rules.{kind}.range``);
what it reports outside it is a fault of the sensor, its wiring or its loop: a 4-20 mA loop
broken or shorted (NAMUR NE43, see the Modbus RTU driver), a probe out of the water, a
mis-set scale.  Such a reading raises a warning ``sensor_fault`` alarm for the sensor (its own
kind, like ``comm_fault``), carrying the reading and the bound it crossed, and the rule engine
keeps it from every process rule (limits, rate of rise, flapping, floor load).  The first
good reading back inside the range clears it.

Readings that carry no value (COMM_FAIL, heartbeats) and values beyond PLAUSIBLE_LIMIT (which
the drivers reject before the rules) leave the alarm as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np

from parkwatch.config.measuring import PLAUSIBLE_LIMIT
from parkwatch.config.model import ParkConfig
from parkwatch.park import ParkModel, SensorInfo
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.kind import Fingerprint, Problem, RuleKindBase
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Severity, Transitions

_GOOD = int(Quality.GOOD)
_WARNING = int(Severity.WARNING)
_NORMAL = int(Severity.NORMAL)


class SensorFaultRule(RuleKindBase):
    rules: ClassVar[tuple[str, ...]] = ("sensor_fault",)
    units: ClassVar[Mapping[str, str]] = {"sensor_fault": "{}"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"sensor_fault": "传感器故障"},
        "en": {"sensor_fault": "sensor fault"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "sensor_fault.raised": (
                "【传感器故障】{place} {sensor} 读数 {value} 超出量程（界限 {threshold}），"
                "不作为测量值；请检查变送器与接线"
            ),
            "sensor_fault.cleared": "【传感器恢复】{place} {sensor} 读数已回到量程内",
        },
        "en": {
            "sensor_fault.raised": (
                "Sensor fault at {place}: {sensor} reads {value}, outside its measuring range "
                "(limit {threshold}); not taken as a measurement, check transmitter and wiring"
            ),
            "sensor_fault.cleared": "Sensor {sensor} at {place} reads within its range again",
        },
    }
    #: sees every fresh reading: the out-of-range ones are taken from the usable batch
    all_qualities: ClassVar[bool] = True
    #: sensors without a range have NaN bounds: never raised
    harmless_for_others: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        """A changed range starts the fault afresh; a sensor without one adds nothing, so the
        fingerprints of a park without ranges are those of a parkwatch without this kind."""
        def measuring_range(info: SensorInfo) -> Fingerprint:
            rng = park.cfg.range_for(info.config)
            if rng is None and info.config.signal is None:
                return {}
            return {"range": None if rng is None else [rng.min, rng.max],
                    "signal": info.config.signal}
        return measuring_range

    @classmethod
    def cross_check(cls, cfg: ParkConfig) -> list[Problem]:
        """Ranges belong to measuring sensors; a 4-20 mA signal needs a range to map onto and
        a driver that reads the loop current."""
        out: list[Problem] = []
        drivers = {d.id: d for d in cfg.drivers}
        for i, s in enumerate(cfg.sensors):
            if s.kind == "fire_button":
                if s.range is not None:
                    out.append((("sensors", i, "range"), "a fire button has no measuring "
                                "range (its values are press and reset)"))
                if s.signal is not None:
                    out.append((("sensors", i, "signal"), "a fire button is a contact, not "
                                "a 4-20 mA transmitter"))
                continue
            if s.signal is None:
                continue
            if cfg.range_for(s) is None:
                out.append((("sensors", i, "signal"), f"a {s.signal} transmitter needs a "
                            "range (4 mA is its min, 20 mA its max): set range or "
                            f"rules.{s.kind}.range"))
            driver = drivers.get(s.driver)
            if driver is not None and not getattr(driver, "reads_loop_current", False):
                out.append((("sensors", i, "signal"), f"driver '{s.driver}' (type "
                            f"{getattr(driver, 'type', '?')}) does not read a loop current; "
                            "only the Modbus drivers do"))
        return out

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        n = len(park)
        self.enabled = park.ranged.copy()
        self.lo = np.where(self.enabled, park.bounds[:, 0], np.nan)
        self.hi = np.where(self.enabled, park.bounds[:, 1], np.nan)
        #: the side of the range the sensor's last judged reading was off: -1 below, +1 above
        self.side = np.zeros(n, np.int8)
        self.restored()

    def restored(self) -> None:
        self.faulty = int(np.count_nonzero(self.side))

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        idx, v = batch.sensor, batch.value
        lo, hi = self.lo.take(idx), self.hi.take(idx)
        below, above = v < lo, v > hi  # False for NaN values and NaN bounds
        if self.faulty == 0 and not (below.any() or above.any()):
            return Transitions.empty()  # the usual case: every sensor within its range
        judged = (batch.quality == _GOOD) & (np.abs(v) <= PLAUSIBLE_LIMIT) & ~np.isnan(lo)
        was = self.side.take(idx)
        now = np.where(judged, above.astype(np.int8) - below.astype(np.int8), was)
        self.side[idx] = now
        self.faulty += int(np.count_nonzero(now)) - int(np.count_nonzero(was))
        ch = ((was != 0) != (now != 0)).nonzero()[0]
        if ch.shape[0] == 0:
            return Transitions.empty()
        raised = now[ch] != 0
        side = np.where(raised, now[ch], was[ch])  # the bound crossed, or crossed back
        thr = np.where(side < 0, lo[ch], hi[ch])
        sev = np.where(raised, _WARNING, _NORMAL)
        old = np.where(raised, _NORMAL, _WARNING)
        return Transitions.build(idx[ch], self.code, old, sev, v[ch], thr, batch.ts[ch])

    def state(self) -> dict[str, StateArray]:
        return {"side": StateArray(self.side)}
