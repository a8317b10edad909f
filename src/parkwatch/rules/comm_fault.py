"""Communication faults: a sensor whose driver has had no answer from it for too long.

Drivers report a failed poll as a COMM_FAIL reading; when a sensor has had nothing but
COMM_FAIL for `comm_fault_after_s` (its driver's setting), a comm_fault alarm is raised — its
own kind, separate from process alarms — and it clears with the first reading that gets
through.  Drivers without the setting (MQTT devices) are left to the deadman rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np

from parkwatch.park import ParkModel, SensorInfo
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.kind import Fingerprint, RuleKindBase, no_fingerprint
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Severity, Transitions

#: plain ints for numpy comparisons: numpy asks an IntEnum member's class for a dozen
#: attributes it lacks, each through the enum metaclass (a microsecond a use)
_COMM_FAIL = int(Quality.COMM_FAIL)
_WARNING = int(Severity.WARNING)
_NORMAL = int(Severity.NORMAL)


class CommFaultRule(RuleKindBase):
    rules: ClassVar[tuple[str, ...]] = ("comm_fault",)
    units: ClassVar[Mapping[str, str]] = {"comm_fault": "s"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"comm_fault": "通讯故障"},
        "en": {"comm_fault": "communication fault"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "comm_fault.raised": (
                "【通讯故障】{place} {sensor} 超过 {threshold} 未收到有效数据，请检查线缆与设备"
            ),
            "comm_fault.cleared": "【通讯恢复】{place} {sensor} 已恢复通讯",
        },
        "en": {
            "comm_fault.raised": (
                "Communication fault at {place}: no data from {sensor} for {threshold}; check cab"
                "le and device"
            ),
            "comm_fault.cleared": "Communication with {sensor} at {place} restored",
        },
    }
    #: sees every fresh reading, not only the usable ones: COMM_FAIL is its input
    all_qualities: ClassVar[bool] = True
    #: sensors of drivers without the setting have a NaN limit: never raised
    harmless_for_others: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        """The fault clock depends on nothing configurable beyond the sensor itself."""
        return no_fingerprint

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        n = len(park)
        drivers = {d.id: d for d in park.cfg.drivers}
        self.after = np.full(n, np.nan)
        for info in park.sensors:
            limit = getattr(drivers[info.config.driver], "comm_fault_after_s", None)
            if limit is not None:
                self.after[info.index] = limit
        self.enabled = ~np.isnan(self.after)
        self.fail_since = np.full(n, np.nan)
        self.raised = np.zeros(n, bool)
        self.restored()

    def restored(self) -> None:
        # how many sensors are failing or raised: none, and a round without COMM_FAIL is
        # nothing to do (the usual case)
        self.watching = int(np.count_nonzero(~np.isnan(self.fail_since) | self.raised))

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        idx, ts = batch.sensor, batch.ts
        fail = batch.quality == _COMM_FAIL
        if self.watching == 0 and not fail.any():
            return Transitions.empty()
        since = self.fail_since.take(idx)
        was = self.raised.take(idx)
        before = int(np.count_nonzero(~np.isnan(since) | was))
        since = np.where(fail, np.where(np.isnan(since), ts, since), np.nan)
        self.fail_since[idx] = since
        now = np.where(fail, was | (ts - since >= self.after[idx]), False)
        self.raised[idx] = now
        self.watching += int(np.count_nonzero(~np.isnan(since) | now)) - before
        ch = (was != now).nonzero()[0]
        if ch.shape[0] == 0:
            return Transitions.empty()
        sev = np.where(now[ch], _WARNING, _NORMAL)
        old = np.where(now[ch], _NORMAL, _WARNING)
        return Transitions.build(idx[ch], self.code, old, sev, batch.value[ch],
                                 self.after[idx[ch]], ts[ch])

    def state(self) -> dict[str, StateArray]:
        return {"fail_since": StateArray(self.fail_since), "raised": StateArray(self.raised)}
