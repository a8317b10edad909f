"""The gateway's clock stepped: a fault of the gateway itself.

Its input is not readings but the daemon's watch over the wall clock
(:mod:`parkwatch.daemon.clockwatch`): a jump forwards or backwards skews the time of every
reading the gateway stamps and every duration a rule measures across it, so the operators and
facilities are told.  The alarm source is the gateway (:attr:`parkwatch.park.ParkModel.gateway`,
after the outputs).  A step is a moment, not a state: the alarm is raised and cleared at once,
with the step in seconds as its value, and stays open until someone acknowledges it.

No sensor has this rule (:mod:`parkwatch.rules.reported`); the pipeline calls
:meth:`ClockStepRule.report` when its watch sees a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from parkwatch.park import ParkModel
from parkwatch.rules.reported import ReportedRule
from parkwatch.rules.transitions import Severity, Transitions

_WARNING = int(Severity.WARNING)
_NORMAL = int(Severity.NORMAL)


class ClockStepRule(ReportedRule):
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

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        super().__init__(park, rule_base, start)
        self.source = park.gateway.index

    def report(self, step: float, ts: float) -> tuple[Transitions, Transitions]:
        """A step of ``step`` seconds seen at ``ts``: its raise, then its clearing."""
        return (self.change(self.source, _NORMAL, _WARNING, step, ts),
                self.change(self.source, _WARNING, _NORMAL, step, ts))
