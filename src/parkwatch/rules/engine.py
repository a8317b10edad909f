"""Evaluates every rule kind over a batch of readings and returns the transitions.

Readings of one sensor that arrive in the same batch are evaluated in their order: the batch is
split into rounds by occurrence (first reading of each sensor, then the second, ...), and each
round is one vectorised pass per rule kind.  A lone fire-button press is one tiny round; a
flood of readings from thousands of sensors is a handful of large ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.registry import RULE_KINDS
from parkwatch.rules.transitions import Transitions


def occurrence_rank(sensor: np.ndarray) -> np.ndarray:
    """For each reading, how many earlier readings of the same sensor the batch holds."""
    n = sensor.shape[0]
    order = np.argsort(sensor, kind="stable")
    s = sensor[order]
    start = np.ones(n, bool)
    start[1:] = s[1:] != s[:-1]
    group_start = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - group_start
    return rank


def _run(kind: Any, sub: ReadingBatch) -> Transitions:
    """Evaluate one kind on the readings of the sensors it applies to (its ``enabled`` mask)."""
    on = kind.enabled[sub.sensor]
    if not on.all():
        if not on.any():
            return Transitions.empty()
        sub = sub.take(on)
    return kind.evaluate(sub)


class RuleEngine:
    def __init__(self, park: ParkModel) -> None:
        self.park = park
        self.kinds: list[Any] = []
        base = 0
        for cls in RULE_KINDS.values():
            self.kinds.append(cls(park, base))
            base += len(cls.rules)
        # kinds that want every fresh reading (e.g. COMM_FAIL ones) and those that want values
        self.kinds_all = [k for k in self.kinds if getattr(k, "all_qualities", False)]
        self.kinds_usable = [k for k in self.kinds if not getattr(k, "all_qualities", False)]
        n = len(park)
        self.last_ts = np.full(n, -np.inf)
        self.last_value = np.full(n, np.nan)
        self.stats = {"evaluated": 0, "out_of_order": 0, "unusable": 0, "liveness": 0}

    def evaluate(self, batch: ReadingBatch) -> Transitions:
        if len(batch) == 0:
            return Transitions.empty()
        rank = occurrence_rank(batch.sensor)
        rounds = int(rank.max()) + 1
        parts: list[Transitions] = []
        for r in range(rounds):
            sub = batch if rounds == 1 else batch.take(rank == r)
            parts.extend(self._round(sub))
        return Transitions.concat(parts)

    def _round(self, sub: ReadingBatch) -> list[Transitions]:
        fresh = sub.ts >= self.last_ts[sub.sensor]
        n_stale = int(sub.sensor.shape[0] - np.count_nonzero(fresh))
        if n_stale:
            self.stats["out_of_order"] += n_stale
            sub = sub.take(fresh)
        self.last_ts[sub.sensor] = sub.ts
        parts = [t for kind in self.kinds_all if len(t := _run(kind, sub))]
        usable = (sub.quality == Quality.GOOD) & np.isfinite(sub.value)
        n_unusable = int(sub.sensor.shape[0] - np.count_nonzero(usable))
        if n_unusable:
            # heartbeats and test presses only prove liveness; anything else is unusable data
            alive = (sub.quality == Quality.HEARTBEAT) | (sub.quality == Quality.TEST)
            self.stats["liveness"] += int(np.count_nonzero(alive))
            self.stats["unusable"] += n_unusable - int(np.count_nonzero(alive))
            sub = sub.take(usable)
        self.stats["evaluated"] += len(sub)
        if len(sub) == 0:
            return parts
        self.last_value[sub.sensor] = sub.value
        return parts + [t for kind in self.kinds_usable if len(t := _run(kind, sub))]
