"""The base of rule kinds fed by the daemon rather than by readings (an output's supervision,
the gateway's clock watch): no sensor has them, so the engine leaves them out of every pass over
readings and keeps no state of theirs; the daemon calls the kind's own ``report`` on the
pipeline thread, and the transitions it returns go down the alarm path like any other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from parkwatch.park import ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.kind import Fingerprint, RuleKindBase, no_fingerprint
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Transitions


class ReportedRule(RuleKindBase, base=True):
    """A kind whose alarms the daemon reports (see the module); subclasses add ``report``."""

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        """No sensor has this rule: nothing of theirs shapes it."""
        return no_fingerprint

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        self.enabled = np.zeros(len(park), bool)

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        return Transitions.empty()  # never handed readings (no sensor is enabled)

    def state(self) -> dict[str, StateArray]:
        return {}

    def change(self, source: int, old: int, new: int, value: float, ts: float) -> Transitions:
        """One alarm source's transition from severity `old` to `new` at `ts`."""
        return Transitions.build(np.array([source]), self.code, np.array([old]),
                                 np.array([new]), np.array([value]), np.array([np.nan]),
                                 np.array([ts]))
