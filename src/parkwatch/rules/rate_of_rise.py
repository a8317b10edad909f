"""Rate of rise: water rising faster than so many cm a minute, a floor load growing fast.

Each sensor keeps a few samples of its recent past (one per eighth of the window at most).  The
rate at a reading is its change from the oldest kept sample no older than ``window_s``, per
minute of time between them, and is judged only once that span is at least half the window (a
single noisy step is not a trend).  The rate is compared with rise limits like a value with
high limits: hysteresis deadband, then durations.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rules.duration import Durations, Fired
from parkwatch.rules.levels import LEVEL_SEVERITY, StateArray, high_level, limit_of
from parkwatch.rules.transitions import Transitions

#: samples kept per sensor
SLOTS = 8


def _nan(x: float | None) -> float:
    return np.nan if x is None else float(x)


class RateOfRiseRule:
    rules: ClassVar[tuple[str, ...]] = ("rate_of_rise",)

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
            self.warn[i], self.crit[i] = _nan(rate.rise_warning), _nan(rate.rise_critical)
            up[i], down[i] = rate.for_s, rate.clear_for_s
        self.warn = np.where(np.isnan(self.warn), self.crit, self.warn)
        self.enabled = ~np.isnan(self.window)
        self.step = self.window / SLOTS
        self.t = np.full((n, SLOTS), np.nan)  # sample times; NaN: empty slot
        self.v = np.full((n, SLOTS), np.nan)
        self.head = np.zeros(n, np.int8)  # slot of the newest sample
        self.level = np.zeros(n, np.int8)  # raw level of the rate
        self.durations = Durations(up, down)

    def state(self) -> dict[str, StateArray]:
        return {"t": StateArray(self.t), "v": StateArray(self.v), "head": StateArray(self.head),
                "level": StateArray(self.level), **self.durations.state("d")}

    def evaluate(self, batch: ReadingBatch) -> Transitions:
        idx, v, ts = batch.sensor, batch.value, batch.ts
        t_hist, v_hist = self.t[idx], self.v[idx]
        window = self.window[idx]
        # the oldest sample inside the window is the baseline
        inside = np.where(ts[:, None] - t_hist <= window[:, None], t_hist, np.inf)
        base = np.argmin(inside, axis=1)
        rows = np.arange(idx.shape[0])
        t0, v0 = inside[rows, base], v_hist[rows, base]
        span = ts - t0
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = (v - v0) / span * 60.0
        judged = span >= window * 0.5  # False for no baseline (inf span) too
        cur = self.level[idx]
        new = np.where(judged, high_level(rate, cur, self.warn[idx], self.crit[idx],
                                          self.db[idx]), cur)
        self.level[idx] = new
        # keep this reading as a sample when the newest is a step old (or there is none)
        head = self.head[idx].astype(np.intp)
        newest = t_hist[rows, head]
        push = ~(ts - newest < self.step[idx])
        head = np.where(push, (head + 1) % SLOTS, head)
        p = np.flatnonzero(push)
        self.t[idx[p], head[p]] = ts[p]
        self.v[idx[p], head[p]] = v[p]
        self.head[idx] = head
        shown = np.where(judged, rate, self.durations.value[idx])
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
