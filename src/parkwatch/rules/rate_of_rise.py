"""Rate of rise: water rising faster than so many cm a minute, a floor load growing fast.

Each sensor keeps two samples of its recent past, taken at least half a window apart.  The rate
at a reading is its change from the older kept sample no older than ``window_s`` (else the
newer one), per minute of time between them, and is judged only once that span is at least
half the window (a single noisy step is not a trend).  The rate is compared with rise limits
like a value with high limits: hysteresis deadband, then durations.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rules.duration import Durations, Fired
from parkwatch.rules.levels import LEVEL_SEVERITY, StateArray, high_level, limit, limit_of
from parkwatch.rules.transitions import Transitions

#: samples kept per sensor, oldest first (each a window / SLOTS after the one before)
SLOTS = 2


class RateOfRiseRule:
    rules: ClassVar[tuple[str, ...]] = ("rate_of_rise",)
    #: sensors without rate limits have NaN windows: never judged, never raised
    harmless_for_others: ClassVar[bool] = True

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        n = len(park)
        self.window, self.warn, self.crit, self.db = (np.full(n, np.nan) for _ in range(4))
        up, down = np.zeros(n), np.zeros(n)
        for info in park.sensors:
            rate = park.cfg.rate_for(info.config)
            if rate is None or (rate.rise_warning is None and rate.rise_critical is None):
                continue
            i = info.index
            self.window[i], self.db[i] = rate.window_s, rate.deadband
            self.warn[i], self.crit[i] = limit(rate.rise_warning), limit(rate.rise_critical)
            up[i], down[i] = rate.for_s, rate.clear_for_s
        self.warn = np.where(np.isnan(self.warn), self.crit, self.warn)
        self.enabled = ~np.isnan(self.window)
        self.step = self.window / SLOTS
        self.t = np.full((n, SLOTS), np.nan)  # sample times, oldest first; NaN: empty slot
        self.v = np.full((n, SLOTS), np.nan)
        self.level = np.zeros(n, np.int8)  # raw level of the rate
        self.durations = Durations(up, down)

    def state(self) -> dict[str, StateArray]:
        return {"t": StateArray(self.t), "v": StateArray(self.v),
                "level": StateArray(self.level), **self.durations.state("d")}

    def evaluate(self, batch: ReadingBatch) -> Transitions:
        idx, v, ts = batch.sensor, batch.value, batch.ts
        t_hist = np.take(self.t, idx, axis=0)
        v_hist = np.take(self.v, idx, axis=0)
        window = np.take(self.window, idx)
        # the baseline: the oldest sample inside the window (none: NaN, not judged)
        earliest = ts - window
        t0, v0 = np.full(idx.shape[0], np.nan), np.full(idx.shape[0], np.nan)
        for j in range(SLOTS - 1, -1, -1):
            inside = t_hist[:, j] >= earliest
            t0 = np.where(inside, t_hist[:, j], t0)
            v0 = np.where(inside, v_hist[:, j], v0)
        span = ts - t0
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = (v - v0) / span * 60.0
        judged = span >= window * 0.5  # False for no baseline (NaN span) too
        cur = np.take(self.level, idx)
        new = np.where(judged, high_level(rate, cur, np.take(self.warn, idx),
                                          np.take(self.crit, idx), np.take(self.db, idx)), cur)
        changed = np.flatnonzero(new != cur)
        self.level[idx[changed]] = new[changed]
        # keep this reading as a sample when the newest is a step old (or there is none)
        step = np.take(self.step, idx)  # NaN for sensors without rate limits: never kept
        push = np.flatnonzero(~(ts - t_hist[:, SLOTS - 1] < step) & (step < np.inf))
        if push.shape[0]:
            ip = idx[push]
            self.t[ip] = np.concatenate([t_hist[push, 1:], ts[push, None]], axis=1)
            self.v[ip] = np.concatenate([v_hist[push, 1:], v[push, None]], axis=1)
        # a pending rate alarm carries the latest judged rate
        shown = np.where(judged, rate, np.take(self.durations.value, idx))
        early, late = self.durations.observe(idx, new, shown, ts)
        return Transitions.concat([self._emit(idx, early), self._emit(idx, late)])

    def _emit(self, idx: np.ndarray, f: Fired) -> Transitions:
        if f.at.shape[0] == 0:
            return Transitions.empty()
        s = idx[f.at]
        thr = limit_of(np.maximum(f.old, f.new), self.warn[s], self.crit[s])
        return Transitions.build(s, self.code, LEVEL_SEVERITY[f.old], LEVEL_SEVERITY[f.new],
                                 f.value, thr, f.ts)

    def tick(self, now: float) -> Transitions:
        if not self.durations.active:
            return Transitions.empty()
        idx, fired = self.durations.due(now)
        return self._emit(idx, fired)

    def next_due(self) -> float:
        return self.durations.next_due() if self.durations.active else np.inf
