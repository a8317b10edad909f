"""High/low warning and critical limits with a hysteresis deadband.

A limit is crossed on the way out at the limit itself and on the way back only past the limit
by the deadband, so a value oscillating inside the band produces no events.  A jump from the
high side to the low side clears one alarm and raises the other.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rules.transitions import Severity, Transitions

_LEVEL_TO_SEVERITY = np.array([Severity.NORMAL, Severity.WARNING, Severity.CRITICAL], np.int8)


def _nan(x: float | None) -> float:
    return np.nan if x is None else float(x)


class ThresholdRule:
    rules: ClassVar[tuple[str, ...]] = ("high_threshold", "low_threshold")

    def __init__(self, park: ParkModel, rule_base: int) -> None:
        n = len(park)
        self.high_code, self.low_code = rule_base, rule_base + 1
        self.hw, self.hc, self.lw, self.lc = (np.full(n, np.nan) for _ in range(4))
        self.db = np.zeros(n)
        self.enabled = np.zeros(n, bool)
        for info in park.sensors:
            limits = park.cfg.thresholds_for(info.config)
            if limits is None:
                continue
            i = info.index
            self.hw[i], self.hc[i] = _nan(limits.high_warning), _nan(limits.high_critical)
            self.lw[i], self.lc[i] = _nan(limits.low_warning), _nan(limits.low_critical)
            self.db[i] = limits.deadband
            self.enabled[i] = not all(
                x is None for x in (limits.high_warning, limits.high_critical,
                                    limits.low_warning, limits.low_critical))
        # a critical limit without a warning limit: crossing it goes straight to level 2
        self.hw = np.where(np.isnan(self.hw), self.hc, self.hw)
        self.lw = np.where(np.isnan(self.lw), self.lc, self.lw)
        # signed level per sensor: +2 high critical, +1 high warning, 0 normal, -1, -2 low
        self.level = np.zeros(n, np.int8)

    def evaluate(self, batch: ReadingBatch) -> Transitions:
        idx, v = batch.sensor, batch.value
        hw, hc, lw, lc, d = self.hw[idx], self.hc[idx], self.lw[idx], self.lc[idx], self.db[idx]
        cur = self.level[idx]
        cur_hi = np.maximum(cur, 0)
        cur_lo = np.maximum(-cur, 0)
        # NaN limits compare False, so a disabled limit never triggers
        raise_hi = (v >= hc).astype(np.int8) + (v >= hw)
        hold_hi = (v >= hc - d).astype(np.int8) + (v >= hw - d)
        raise_lo = (v <= lc).astype(np.int8) + (v <= lw)
        hold_lo = (v <= lc + d).astype(np.int8) + (v <= lw + d)
        new_hi = np.maximum(raise_hi, np.minimum(cur_hi, hold_hi))
        new_lo = np.maximum(raise_lo, np.minimum(cur_lo, hold_lo))
        new_lo = np.where(new_hi > 0, 0, new_lo)
        self.level[idx] = np.where(new_hi > 0, new_hi, -new_lo)

        parts = []
        for code, old, new, warn, crit in ((self.high_code, cur_hi, new_hi, hw, hc),
                                           (self.low_code, cur_lo, new_lo, lw, lc)):
            ch = np.flatnonzero(old != new)
            if ch.shape[0] == 0:
                continue
            lvl = np.maximum(new[ch], old[ch])  # the limit concerned: the new one, or the one left
            thr = np.where(lvl == 2, crit[ch], warn[ch])
            parts.append(Transitions.build(
                idx[ch], code, _LEVEL_TO_SEVERITY[old[ch]], _LEVEL_TO_SEVERITY[new[ch]],
                v[ch], thr, batch.ts[ch]))
        out = Transitions.concat(parts)
        if len(parts) > 1:
            # a jump across: clear the side that was left before raising the side entered
            out = out.take(np.argsort(out.new > 0, kind="stable"))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"level": self.level.copy()}

    def restore(self, state: dict[str, Any]) -> None:
        self.level[:] = state["level"]
