"""What the rule engine emits: changes of an alarm condition, never repeats of a held state."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Severity(IntEnum):
    NORMAL = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return _LABELS[self]


#: every alarm change names its severity; Enum.name is a descriptor lookup each time
_LABELS = {s: s.name.lower() for s in Severity}


_EMPTY = (np.empty(0, np.int32), np.empty(0, np.int16), np.empty(0, np.int8),
          np.empty(0, np.int8), np.empty(0), np.empty(0), np.empty(0))


@dataclass(slots=True)
class Transitions:
    """Parallel arrays; row i says sensor[i]'s condition `rule[i]` went from old to new severity."""

    sensor: np.ndarray  # int32
    rule: np.ndarray  # int16 code, see parkwatch.rules.registry.RULE_NAMES
    old: np.ndarray  # int8 Severity
    new: np.ndarray  # int8 Severity
    value: np.ndarray  # float64 value of the reading that caused it
    threshold: np.ndarray  # float64 limit concerned, NaN when none
    #: float64 device time of that reading; value and time NaN when no reading caused it (an
    #: operator's reset of a fire button): the alarm keeps its last reading
    ts: np.ndarray

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    @staticmethod
    def empty() -> Transitions:
        # most rules change nothing in most rounds: their empty results share zero-length
        # columns (which hold no element to write) instead of allocating seven each time
        return Transitions(*_EMPTY)

    @staticmethod
    def build(sensor: np.ndarray, rule: int, old: np.ndarray, new: np.ndarray,
              value: np.ndarray, threshold: np.ndarray, ts: np.ndarray) -> Transitions:
        n = sensor.shape[0]
        return Transitions(sensor.astype(np.int32, copy=False), np.full(n, rule, np.int16),
                           old.astype(np.int8, copy=False), new.astype(np.int8, copy=False),
                           value, threshold, ts)

    @staticmethod
    def concat(parts: list[Transitions]) -> Transitions:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Transitions.empty()
        if len(parts) == 1:
            return parts[0]
        return Transitions(*(np.concatenate([getattr(p, f) for p in parts])
                             for f in ("sensor", "rule", "old", "new", "value", "threshold", "ts")))

    def take(self, order: np.ndarray | slice) -> Transitions:
        return Transitions(self.sensor[order], self.rule[order], self.old[order],
                           self.new[order], self.value[order], self.threshold[order],
                           self.ts[order])

    def rows(self) -> list[tuple[int, int, int, int, float, float, float]]:
        """Plain Python rows for the alarm path (transitions are few; readings are many)."""
        return list(zip(self.sensor.tolist(), self.rule.tolist(), self.old.tolist(),
                        self.new.tolist(), self.value.tolist(), self.threshold.tolist(),
                        self.ts.tolist(), strict=True))
