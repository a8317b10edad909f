"""The gateway's clock stepped: a fault of the gateway itself.

Its input is not readings but the daemon's watch over the wall clock
(:mod:`parkwatch.daemon.clockwatch`): a jump forwards or backwards skews the time of every
reading the gateway stamps and every duration a rule measures across it, so the operators and
facilities are told.  The alarm source is the gateway (:attr:`parkwatch.park.ParkModel.gateway`,
after the outputs).  A step is a moment, not a state: the alarm is raised and cleared at once,
with the step in seconds as its value, and stays open until someone acknowledges it.

No sensor has this rule, so the engine leaves it out of every pass over readings; the pipeline
calls :meth:`ClockStepRule.report` when its watch sees a step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np

from parkwatch.park import ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.kind import Fingerprint, RuleKindBase, no_fingerprint
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Severity, Transitions

_WARNING = int(Severity.WARNING)
_NORMAL = int(Severity.NORMAL)


class ClockStepRule(RuleKindBase):
    rules: ClassVar[tuple[str, ...]] = ("clock_step",)
    units: ClassVar[Mapping[str, str]] = {"clock_step": "s"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"clock_step": "时钟跳变"},
        "en": {"clock_step": "clock step"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "clock_step.raised": (
                "【网关时钟跳变】网关 {sensor} 的系统时钟跳变 {value}：跨越跳变的计时"
                "（持续时间、无数据判断）受影响，请检查网关的时间同步（chrony 或 "
                "systemd-timesyncd）"
            ),
            "clock_step.cleared": "【网关时钟跳变已记录】网关 {sensor} 的时钟跳变 {value}",
        },
        "en": {
            "clock_step.raised": (
                "The system clock of gateway {sensor} stepped {value}: durations running "
                "across the step are off by it; check the gateway's time sync (chrony or "
                "systemd-timesyncd)"
            ),
            "clock_step.cleared": "Clock step of {value} on gateway {sensor} recorded",
        },
    }

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        """No sensor has this rule: nothing of theirs shapes it."""
        return no_fingerprint

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        self.enabled = np.zeros(len(park), bool)
        self.source = park.gateway.index

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        return Transitions.empty()  # never handed readings (no sensor is enabled)

    def state(self) -> dict[str, StateArray]:
        return {}

    def report(self, step: float, ts: float) -> tuple[Transitions, Transitions]:
        """A step of ``step`` seconds seen at ``ts``: its raise, then its clearing."""
        one = np.array([self.source])
        value, limit, at = np.array([step]), np.array([np.nan]), np.array([ts])

        def change(old: int, new: int) -> Transitions:
            return Transitions.build(one, self.code, np.array([old]), np.array([new]), value,
                                     limit, at)

        return change(_NORMAL, _WARNING), change(_WARNING, _NORMAL)
