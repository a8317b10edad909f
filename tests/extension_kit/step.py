"""A rule kind with settings: a value that jumps by ``rules.step.max_step`` or more from one
reading to the next (a load dropped on a floor, a sensor knocked) raises a warning, which
clears at the next reading that moves less."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np
from pydantic import Field

from parkwatch.config.base import Strict
from parkwatch.park import KIND_CODE, ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.kind import Fingerprint, RuleKindBase, Settings
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Severity, Transitions


class StepSettings(Strict):
    """Jumps between two readings of a load cell or a water gauge."""

    max_step: float = Field(1000.0, gt=0, description="a jump this large (sensor's unit) or "
                            "larger raises a warning")


class StepRule(RuleKindBase):
    settings: ClassVar[Settings | None] = Settings("step", StepSettings,
                                                   "jumps between two readings")
    rules: ClassVar[tuple[str, ...]] = ("step",)
    units: ClassVar[Mapping[str, str]] = {"step": "{}"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"step": "数值突变"}, "en": {"step": "sudden step"}}
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"step.raised": "【数值突变】{place} {sensor} 一次变化 {value}，达到限值 {threshold}",
               "step.cleared": "【突变恢复】{place} {sensor} 数值已平稳"},
        "en": {"step.raised": "Sudden step at {place}: {sensor} moved {value} at once, limit "
                              "{threshold}"},
    }

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        max_step = StepRule.settings_of(park.cfg).max_step
        return lambda info: {"step": max_step}

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        self.max_step = float(self.settings_of(park.cfg).max_step)
        self.enabled = park.kind != KIND_CODE["fire_button"]
        self.last = np.full(len(park), np.nan)
        self.raised = np.zeros(len(park), bool)

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        idx, value = batch.sensor, batch.value
        step = np.abs(value - self.last[idx])
        self.last[idx] = value
        was = self.raised[idx]
        now = np.where(np.isnan(step), was, step >= self.max_step)
        self.raised[idx] = now
        ch = np.flatnonzero(was != now)
        new = np.where(now[ch], int(Severity.WARNING), int(Severity.NORMAL))
        return Transitions.build(idx[ch], self.code, int(Severity.WARNING) - new, new, step[ch],
                                 np.full(ch.shape[0], self.max_step), batch.ts[ch])

    def state(self) -> dict[str, StateArray]:
        return {"last": StateArray(self.last), "raised": StateArray(self.raised)}
