"""Output faults: a sounder, strobe, PA trigger or relay that did not do what it was told.

Its input is not readings but the supervision of the outputs (:mod:`parkwatch.outputs.bank`):
every write is read back and every output is checked periodically; a failed write or a
read-back that disagrees raises `output_fault` for that output, and the first agreement
clears it (NFPA 72 and GB 26875 ask this of notification appliance circuits).  The alarm
sources are the outputs, numbered after the sensors and the groups (:class:`OutputInfo`).

No sensor has this rule (:mod:`parkwatch.rules.reported`); the daemon calls
:meth:`OutputFaultRule.report` on the pipeline thread.  Whether an output is in
fault is not saved with the rule state: after a restart it is seeded from the open alarms
(:meth:`seed`), and the first check decides again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from parkwatch.park import ParkModel
from parkwatch.rules.reported import ReportedRule
from parkwatch.rules.transitions import Severity, Transitions

_CRITICAL = int(Severity.CRITICAL)
_NORMAL = int(Severity.NORMAL)


class OutputFaultRule(ReportedRule):
    rules: ClassVar[tuple[str, ...]] = ("output_fault",)
    units: ClassVar[Mapping[str, str]] = {"output_fault": ""}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"output_fault": "输出故障"},
        "en": {"output_fault": "output fault"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "output_fault.raised": (
                "【输出故障】{place} {sensor} 未按指令动作（写入失败或回读不符），"
                "请立即检查线路、继电器与设备"
            ),
            "output_fault.cleared": "【输出恢复】{place} {sensor} 回读与指令一致",
        },
        "en": {
            "output_fault.raised": (
                "Output fault at {place}: {sensor} did not follow its command (write failed "
                "or read-back disagrees); check wiring, relay and device now"
            ),
            "output_fault.cleared": "Output {sensor} at {place} agrees with its command again",
        },
    }

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        super().__init__(park, rule_base, start)
        #: output sources (alarm source index) in fault now
        self.faulty: set[int] = set()
        self._first = park.size
        self._last = park.size + len(park.outputs)

    def seed(self, sources: Iterable[int]) -> None:
        """The outputs whose output_fault alarm is open and active (after a restart)."""
        self.faulty.update(s for s in sources if self._first <= s < self._last)

    def report(self, source: int, ok: bool, ts: float) -> Transitions:
        """An output's supervision result: a transition when its fault state changes."""
        was = source in self.faulty
        if was == (not ok):
            return Transitions.empty()
        if ok:
            self.faulty.discard(source)
        else:
            self.faulty.add(source)
        return self.change(source, _CRITICAL if was else _NORMAL, _NORMAL if ok else _CRITICAL,
                           float("nan"), ts)
