"""No data (deadman): a sensor that has sent nothing at all for longer than expected.

Any reading counts as a sign of life, a heartbeat or a COMM_FAIL from a bus driver included:
a bus driver that reports failures is alive, and its dead slaves are the comm_fault rule's
business.  What this rule catches is silence: a wireless button whose battery died, a device
that fell off the network, a driver that stopped.  The alarm is dated when the silence passed
the limit (``missed`` × the sensor's report interval), whether the clock or the next reading
notices it, and clears with the next reading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np

from parkwatch.park import ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.kind import Fingerprint, RuleKindBase
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Severity, Transitions

_SEVERITY = {"warning": Severity.WARNING, "critical": Severity.CRITICAL}


class NoDataRule(RuleKindBase):
    rules: ClassVar[tuple[str, ...]] = ("no_data",)
    units: ClassVar[Mapping[str, str]] = {"no_data": "s"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"no_data": "无数据"},
        "en": {"no_data": "no data"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "no_data.raised": (
                "【无数据】{place} {sensor} 超过 {threshold} 未上报任何数据，请检查设备电池与网络"
            ),
            "no_data.cleared": "【数据恢复】{place} {sensor} 已恢复上报",
        },
        "en": {
            "no_data.raised": (
                "No data at {place}: {sensor} has sent nothing for {threshold}; check its battery"
                " and network"
            ),
            "no_data.cleared": "{sensor} at {place} reports again",
        },
    }
    #: every reading is a sign of life, whatever its quality
    all_qualities: ClassVar[bool] = True
    #: sensors without an expected interval have a NaN limit: never overdue
    harmless_for_others: ClassVar[bool] = True
    #: a sensor was last heard at its latest reading (or the start): the engine's clock
    uses_last_ts: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        def no_data(info: SensorInfo) -> Fingerprint:
            return {"no_data": park.cfg.no_data_for(info.config).model_dump()}
        return no_data

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        n = len(park)
        self.start = start
        self.after = np.full(n, np.nan)
        self.severity = np.zeros(n, np.int8)
        for info in park.sensors:
            settings = park.cfg.no_data_for(info.config)
            interval = park.report_interval[info.index]
            if not np.isnan(interval):
                self.after[info.index] = max(settings.missed * interval, settings.min_s)
                self.severity[info.index] = _SEVERITY[settings.severity]
        self.enabled = ~np.isnan(self.after)
        # a silence shorter than every limit (less a millisecond, for rounding) is no news
        self.shortest = float(np.min(self.after[self.enabled])) - 1e-3 if self.enabled.any() \
            else np.inf
        self.last_ts = np.full(n, -np.inf)  # the engine's, once it binds it
        self.raised = np.zeros(n, bool)
        self.restored()

    def restored(self) -> None:
        self.n_raised = int(np.count_nonzero(self.raised))

    @property
    def heard(self) -> np.ndarray:
        """When each sensor was last heard from: its latest reading, or the engine's start."""
        heard: np.ndarray = np.maximum(self.last_ts, self.start)
        return heard

    def state(self) -> dict[str, StateArray]:
        return {"raised": StateArray(self.raised)}

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        if previous is None:
            raise TypeError("no_data needs each reading's previous time (uses_last_ts)")
        idx, ts = batch.sensor, batch.ts
        heard = np.maximum(previous, self.start)
        if not self.n_raised and not (ts - heard >= self.shortest).any():
            return Transitions.empty()  # the usual case: nobody was silent, nobody raised
        after = self.after.take(idx)
        # a silence that ended with this reading but was not noticed in time is still reported
        overdue = heard + after <= ts
        was = self.raised.take(idx)
        ended = (was | overdue).nonzero()[0]
        if ended.shape[0] == 0:
            return Transitions.empty()
        late = (~was & overdue).nonzero()[0]
        self.raised[idx[ended]] = False
        self.n_raised = int(np.count_nonzero(self.raised))
        s = idx[late]
        raised = Transitions.build(s, self.code, np.zeros(late.shape[0]), self.severity[s],
                                   np.full(late.shape[0], np.nan), after[late],
                                   heard[late] + after[late])
        s = idx[ended]
        cleared = Transitions.build(s, self.code, self.severity[s], np.zeros(ended.shape[0]),
                                    np.full(ended.shape[0], np.nan), after[ended], ts[ended])
        return Transitions.concat([raised, cleared]).take(
            np.argsort(np.concatenate([late, ended]), kind="stable"))

    def tick(self, now: float) -> Transitions:
        heard = self.heard
        s = (self.enabled & ~self.raised & (heard + self.after <= now)).nonzero()[0]
        if s.shape[0] == 0:
            return Transitions.empty()
        self.raised[s] = True
        self.n_raised += s.shape[0]
        return Transitions.build(s, self.code, np.zeros(s.shape[0]), self.severity[s],
                                 np.full(s.shape[0], np.nan), self.after[s],
                                 heard[s] + self.after[s])

    def next_due(self) -> float:
        waiting = self.enabled & ~self.raised
        if not waiting.any():
            return np.inf
        return float(np.min((self.heard + self.after)[waiting]))
