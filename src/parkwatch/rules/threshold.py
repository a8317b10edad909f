"""High/low warning and critical limits with a hysteresis deadband, and durations.

A limit is crossed on the way out at the limit itself and on the way back only past the limit
by the deadband, so a value oscillating inside the band produces no events.  A jump from the
high side to the low side clears one alarm and raises the other.  With ``for_s`` /
``clear_for_s`` the alarm follows a new level only once it has held (see
:mod:`parkwatch.rules.duration`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np

from parkwatch.park import ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.duration import Durations, Fired
from parkwatch.rules.kind import Fingerprint, RuleKindBase
from parkwatch.rules.levels import LEVEL_SEVERITY, StateArray, high_level, limit, limit_concerned
from parkwatch.rules.screen import BUSY, NEVER, Screen, evaluate_busy
from parkwatch.rules.transitions import Transitions


def _in_order(tr: Transitions) -> Transitions:
    """Both sides changed: in time order, and at one moment (a jump across) the side that was
    left is cleared before the side entered is raised."""
    return tr.take(np.lexsort((tr.new > 0, tr.ts)))


class ThresholdRule(RuleKindBase):
    rules: ClassVar[tuple[str, ...]] = ("high_threshold", "low_threshold")
    units: ClassVar[Mapping[str, str]] = {"high_threshold": "{}", "low_threshold": "{}"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"high_threshold": "超上限", "low_threshold": "低于下限"},
        "en": {"high_threshold": "above limit", "low_threshold": "below limit"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "high_threshold.raised": (
                "【{kind}{severity}】{place} {sensor} 当前 {value}，超过{severity}限值 {threshold}"
            ),
            "high_threshold.severity_changed": (
                "【{kind}{severity}】{place} {sensor} 当前 {value}，{severity}限值 {threshold}"
            ),
            "low_threshold.raised": (
                "【{kind}{severity}】{place} {sensor} 当前 {value}，低于{severity}限值 {threshold}"
            ),
            "low_threshold.severity_changed": (
                "【{kind}{severity}】{place} {sensor} 当前 {value}，{severity}限值 {threshold}"
            ),
        },
        "en": {
            "high_threshold.raised": (
                "{kind} {severity} at {place}: {sensor} reads {value}, above {threshold}"
            ),
            "low_threshold.raised": (
                "{kind} {severity} at {place}: {sensor} reads {value}, below {threshold}"
            ),
        },
    }
    #: sensors without limits have NaN limits: evaluating them changes nothing
    harmless_for_others: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        def limits(info: SensorInfo) -> Fingerprint:
            settings = park.cfg.thresholds_for(info.config)
            return {"limits": settings.model_dump() if settings else None}
        return limits

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        n = len(park)
        self.high_code, self.low_code = rule_base, rule_base + 1
        self.hw, self.hc, self.lw, self.lc = (np.full(n, np.nan) for _ in range(4))
        self.db, up, down = np.zeros(n), np.zeros(n), np.zeros(n)
        self.enabled = np.zeros(n, bool)
        for info in park.sensors:
            limits = park.cfg.thresholds_for(info.config)
            if limits is None:
                continue
            i = info.index
            self.hw[i], self.hc[i] = limit(limits.high_warning), limit(limits.high_critical)
            self.lw[i], self.lc[i] = limit(limits.low_warning), limit(limits.low_critical)
            self.db[i], up[i], down[i] = limits.deadband, limits.for_s, limits.clear_for_s
            self.enabled[i] = limits.any_limit
        # a critical limit without a warning limit: crossing it goes straight to level 2
        self.hw = np.where(np.isnan(self.hw), self.hc, self.hw)
        self.lw = np.where(np.isnan(self.lw), self.lc, self.lw)
        # low limits negated, so the low side is the high side of -value
        self.nlw, self.nlc = -self.lw, -self.lc
        self.any_low = bool(np.any(~np.isnan(self.lw) & self.enabled))
        # the high limits side by side, for one gather per reading
        self.high = np.stack([self.hw, self.hc, self.db, np.zeros(n)], axis=1)
        # raw signed level per sensor: +2 high critical, +1 high warning, 0, -1, -2 low
        self.level = np.zeros(n, np.int8)
        self.hi = Durations(up, down)
        self.lo = Durations(up.copy(), down.copy())
        self.timed = self.hi.active
        # a sensor at rest (level 0, nothing pending) ignores values strictly between its
        # innermost low and high limits: screened as -v < -low and v < high (v < high alone
        # when no sensor has low limits)
        with np.errstate(invalid="ignore"):
            low, high = np.fmax(self.lw, self.lc), np.fmin(self.hw, self.hc)
        self.rest = (np.where(np.isnan(low), NEVER, -low), np.where(np.isnan(high), NEVER, high))
        self.screen = Screen(n, 2 if self.any_low else 1)
        self.restored()

    def restored(self) -> None:
        """Rebuild the screen from the (restored) state."""
        self._rescreen(np.arange(self.level.shape[0]))

    def _rescreen(self, s: np.ndarray) -> None:
        rest = self.level[s] == 0
        if self.timed:
            for d in (self.hi, self.lo):
                rest &= (d.level[s] == 0) & (d.pending[s] == 0)
        high = np.where(rest, self.rest[1][s], BUSY)
        if self.any_low:
            self.screen.set(s, np.where(rest, self.rest[0][s], BUSY), high)
        else:
            self.screen.set(s, high)

    def state(self) -> dict[str, StateArray]:
        out = {"level": StateArray(self.level)}
        if self.timed:
            out |= self.hi.state("hi") | self.lo.state("lo")
        return out

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        busy = (self.screen.busy(batch.sensor, -batch.value, batch.value) if self.any_low
                else self.screen.busy(batch.sensor, batch.value))
        return evaluate_busy(batch, busy, self._evaluate, self._rescreen)

    def _evaluate(self, batch: ReadingBatch) -> Transitions:
        idx, v, ts = batch.sensor, batch.value, batch.ts
        cur = self.level.take(idx)
        hw, hc, db, _ = self.high.take(idx, axis=0).T
        new_hi = high_level(v, np.maximum(cur, 0), hw, hc, db)
        if self.any_low:
            new_lo = high_level(-v, np.maximum(-cur, 0), self.nlw.take(idx),
                                self.nlc.take(idx), db)
            new_lo = np.where(new_hi > 0, 0, new_lo)
            new = np.where(new_hi > 0, new_hi, -new_lo)
        else:
            new_lo, new = None, new_hi
        changed = (new != cur).nonzero()[0]
        self.level[idx[changed]] = new[changed]
        if not self.timed:
            return self._plain(idx, v, ts, cur, new_hi, new_lo)
        early_hi, late_hi = self.hi.observe(idx, new_hi, v, ts)
        if new_lo is None:  # no low limits anywhere: the low side never leaves 0
            early_lo = late_lo = Fired.none()
        else:
            early_lo, late_lo = self.lo.observe(idx, new_lo, v, ts)
        return Transitions.concat([self._fired(idx, early_hi, early_lo),
                                   self._fired(idx, late_hi, late_lo)])

    def _plain(self, idx: np.ndarray, v: np.ndarray, ts: np.ndarray, cur: np.ndarray,
               new_hi: np.ndarray, new_lo: np.ndarray | None) -> Transitions:
        old_hi = np.maximum(cur, 0)
        ch = (old_hi != new_hi).nonzero()[0]
        hi = Fired(ch, old_hi[ch], new_hi[ch], v[ch], ts[ch])
        if new_lo is None:
            return self._emit(idx, hi, self.high_code, self.hw, self.hc)
        old_lo = np.maximum(-cur, 0)
        ch = (old_lo != new_lo).nonzero()[0]
        return self._fired(idx, hi, Fired(ch, old_lo[ch], new_lo[ch], v[ch], ts[ch]))

    def _fired(self, idx: np.ndarray, hi: Fired, lo: Fired) -> Transitions:
        out = Transitions.concat([self._emit(idx, hi, self.high_code, self.hw, self.hc),
                                  self._emit(idx, lo, self.low_code, self.lw, self.lc)])
        if len(hi.at) and len(lo.at):
            out = _in_order(out)
        return out

    @staticmethod
    def _emit(idx: np.ndarray, f: Fired, code: int, warn: np.ndarray,
              crit: np.ndarray) -> Transitions:
        if f.at.shape[0] == 0:
            return Transitions.empty()
        s = idx[f.at]
        thr = limit_concerned(f.old, f.new, warn[s], crit[s])
        return Transitions.build(s, code, LEVEL_SEVERITY[f.old], LEVEL_SEVERITY[f.new], f.value,
                                 thr, f.ts)

    def tick(self, now: float) -> Transitions:
        if not self.timed:
            return Transitions.empty()
        hi_idx, hi = self.hi.due(now)
        lo_idx, lo = self.lo.due(now)
        self._rescreen(np.concatenate([hi_idx, lo_idx]))
        out = Transitions.concat([self._emit(hi_idx, hi, self.high_code, self.hw, self.hc),
                                  self._emit(lo_idx, lo, self.low_code, self.lw, self.lc)])
        if len(hi_idx) and len(lo_idx):
            out = _in_order(out)
        return out

    def next_due(self) -> float:
        if not self.timed:
            return np.inf
        return min(self.hi.next_due(), self.lo.next_due())
