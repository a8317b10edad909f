"""Battery low: a wireless device (a fire button, a sensor) whose battery is running down.

Wireless devices report their battery in percent with their payloads (``ReadingBatch.battery``,
NaN when a payload says nothing), heartbeats and test presses included.  A battery below
``warning_below`` raises a warning ``battery_low`` alarm for the device, below
``critical_below`` a critical one; it clears once the battery is back above the limit by the
``deadband`` (a new battery, or a reading that was low by chance: batteries recover a little
when warm).  It is a fault of the monitoring, like ``no_data``: a dead battery ends in silence,
and this rule says so weeks before.  A reading without a battery changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from parkwatch.config.base import Strict
from parkwatch.park import ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.kind import Fingerprint, RuleKindBase, Settings
from parkwatch.rules.levels import LEVEL_SEVERITY, StateArray, limit
from parkwatch.rules.transitions import Transitions


class BatterySettings(Strict):
    """Battery limits in percent, for every device that reports its battery."""

    warning_below: float | None = Field(20.0, ge=0, le=100, description="a warning below this "
                                        "percentage; null: none")
    critical_below: float | None = Field(10.0, ge=0, le=100, description="critical below this "
                                         "percentage; null: none")
    deadband: float = Field(5.0, ge=0, le=50, description="cleared (or back to warning) only "
                            "this many points above the limit")

    @model_validator(mode="after")
    def _order(self) -> BatterySettings:
        w, c = self.warning_below, self.critical_below
        if w is None and c is None:
            raise ValueError("give warning_below or critical_below (set rules.battery_low to "
                             "null to turn the rule off)")
        if w is not None and c is not None and c >= w:
            raise ValueError(f"critical_below ({c:g}) must be below warning_below ({w:g})")
        return self


class BatteryLowRule(RuleKindBase):
    settings: ClassVar[Settings | None] = Settings(
        "battery_low", BatterySettings, "battery of wireless devices (from their payloads); "
        "null turns it off", nullable=True)
    rules: ClassVar[tuple[str, ...]] = ("battery_low",)
    units: ClassVar[Mapping[str, str]] = {"battery_low": "%"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"battery_low": "电池电量低"},
        "en": {"battery_low": "battery low"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "battery_low.raised": (
                "【电池电量低】{place} {sensor} 电池电量 {value}，低于 {threshold}，请尽快更换电池"
            ),
            "battery_low.severity_changed": (
                "【电池电量{severity}】{place} {sensor} 电池电量 {value}（界限 {threshold}），"
                "请尽快更换电池"
            ),
            "battery_low.cleared": "【电池恢复】{place} {sensor} 电池电量已恢复（{value}）",
        },
        "en": {
            "battery_low.raised": (
                "Battery low at {place}: {sensor} reports {value}, below {threshold}; replace "
                "its battery soon"
            ),
            "battery_low.severity_changed": (
                "Battery {severity} at {place}: {sensor} reports {value} (limit {threshold}); "
                "replace its battery soon"
            ),
            "battery_low.cleared": "Battery of {sensor} at {place} is fine again ({value})",
        },
    }
    #: heartbeats and test presses carry the battery too
    all_qualities: ClassVar[bool] = True
    #: a reading without a battery (NaN) changes nothing, whoever's it is
    harmless_for_others: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        """Changed limits (or the rule turned off) judge every battery afresh.  The default
        limits add nothing, so the fingerprints of a park that keeps them are those of a
        parkwatch without this kind: an upgrade keeps every sensor's rule state."""
        settings = BatteryLowRule.settings_of(park.cfg)
        own = {} if settings == BatterySettings() else {
            "battery_low": settings.model_dump() if settings is not None else None}

        def battery(info: SensorInfo) -> Fingerprint:
            return own
        return battery

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        n = len(park)
        settings = BatteryLowRule.settings_of(park.cfg)
        self.enabled = np.full(n, settings is not None)
        crit = limit(settings.critical_below) if settings is not None else np.nan
        warn = limit(settings.warning_below) if settings is not None else np.nan
        # a missing warning limit is stood in for by the critical one (as levels.high_level)
        self.warn, self.crit = (crit if np.isnan(warn) else warn), crit
        self.deadband = settings.deadband if settings is not None else 0.0
        #: each device's level: 0 fine, 1 warning, 2 critical
        self.level = np.zeros(n, np.int8)

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        reported = (~np.isnan(batch.battery)).nonzero()[0]
        if reported.shape[0] == 0:
            return Transitions.empty()  # the usual case: no battery in these payloads
        idx, b = batch.sensor[reported], batch.battery[reported]
        warn, crit, db = self.warn, self.crit, self.deadband
        cur = self.level.take(idx)
        raised = (b < crit).astype(np.int8) + (b < warn)
        held = (b < crit + db).astype(np.int8) + (b < warn + db)
        now = np.maximum(raised, np.minimum(cur, held)).astype(np.int8)
        self.level[idx] = now
        ch = (now != cur).nonzero()[0]
        if ch.shape[0] == 0:
            return Transitions.empty()
        old, new = cur[ch], now[ch]
        concerned = np.where(new > 0, new, old)  # the limit of the new level, or the one left
        thr = np.where(concerned == 2, crit, warn)
        return Transitions.build(idx[ch], self.code, LEVEL_SEVERITY[old], LEVEL_SEVERITY[new],
                                 b[ch], thr, batch.ts[reported[ch]])

    def state(self) -> dict[str, StateArray]:
        return {"level": StateArray(self.level)}
