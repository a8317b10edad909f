"""Rate of rise: water rising faster than so many cm a minute, a floor load growing fast.

Each sensor keeps two samples of its recent past, taken at least half a window apart.  The rate
at a reading is its change from the older kept sample no older than ``window_s`` (else the
newer one), per minute of time between them, and is judged only once that span is at least
half the window (a single noisy step is not a trend).  The rate is compared with rise limits
like a value with high limits: hysteresis deadband, then durations.
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

#: samples kept per sensor, oldest first (each a window / SLOTS after the one before); two,
#: stored side by side as one complex number so a sensor's samples are one 16-byte gather
SLOTS = 2
#: the screen holds times as float32 seconds from a base moved along every 2**20 s (12 days),
#: so they stay exact to an eighth of a second; a sample is screened as due this early
_REBASE_S = 2.0**20
_EARLY_S = 1e-3


def _pair(older: np.ndarray, newer: np.ndarray) -> np.ndarray:
    out = np.empty(older.shape[0], np.complex128)
    out.real, out.imag = older, newer
    return out


class RateOfRiseRule(RuleKindBase):
    rules: ClassVar[tuple[str, ...]] = ("rate_of_rise",)
    units: ClassVar[Mapping[str, str]] = {"rate_of_rise": "{}/min"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"rate_of_rise": "上涨过快"},
        "en": {"rate_of_rise": "rising fast"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "rate_of_rise.raised": (
                "【{kind}上涨过快】{place} {sensor} 每分钟上涨 {value}，超过{severity}限值 {thres"
                "hold}"
            ),
            "rate_of_rise.severity_changed": (
                "【{kind}上涨过快】{place} {sensor} 每分钟上涨 {value}，{severity}限值 {threshold}"
            ),
            "rate_of_rise.cleared": "【{kind}上涨恢复】{place} {sensor} 上涨速度已回落",
        },
        "en": {
            "rate_of_rise.raised": (
                "{kind} rising fast at {place}: {sensor} rises {value}, {severity} limit {thresho"
                "ld}"
            ),
            "rate_of_rise.cleared": "{kind} at {place}: {sensor} no longer rising fast",
        },
    }
    #: sensors without rate limits have NaN windows: never judged, never raised
    harmless_for_others: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        def rate(info: SensorInfo) -> Fingerprint:
            settings = park.cfg.rate_for(info.config)
            return {"rate": settings.model_dump() if settings else None}
        return rate

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
        self._t2, self._v2 = (a.view(np.complex128).ravel() for a in (self.t, self.v))
        self.level = np.zeros(n, np.int8)  # raw level of the rate
        self.durations = Durations(up, down)
        # at rest (no level, nothing pending) a reading changes nothing while it is below the
        # lowest kept sample plus the rise the lowest limit allows over half a window (the
        # shortest span judged), and no sample is due: screened as v < bound, ts < next sample
        lowest = np.fmin(self.warn, self.crit)
        self.margin = np.where(lowest > 0, lowest * self.window / (SLOTS * 60.0) * (1 - 1e-6),
                               np.nan)
        self.base = start
        self.screen = Screen(n)
        self.restored()

    def restored(self) -> None:
        self._rescreen(np.arange(self.level.shape[0]))

    def _rescreen(self, s: np.ndarray) -> None:
        d = self.durations
        rest = (self.level[s] == 0) & (d.level[s] == 0) & (d.pending[s] == 0)
        lowest = np.fmin(self.v[s, 0], self.v[s, SLOTS - 1])  # NaN: no sample, never judged
        margin = self.margin[s]
        bound = np.where(np.isnan(lowest), NEVER, np.where(np.isnan(margin), BUSY,
                                                           lowest + margin))
        t_last = self.t[s, SLOTS - 1]
        due = np.where(np.isnan(t_last), BUSY, t_last + self.step[s] - _EARLY_S - self.base)
        off = ~self.enabled[s]
        self.screen.set(s, np.where(off, NEVER, np.where(rest, bound, BUSY)),
                        np.where(off, NEVER, due))

    def _rebase(self, t: float) -> None:
        self.base = t
        self.restored()

    def state(self) -> dict[str, StateArray]:
        return {"t": StateArray(self.t), "v": StateArray(self.v),
                "level": StateArray(self.level), **self.durations.state("d")}

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        # the first reading stands for the batch: drivers reject device times further than
        # their max skew from the gateway clock, so no device can drag the base around (and a
        # base far off only makes the screen pass more readings to the full evaluation)
        if abs(batch.ts[0] - self.base) > _REBASE_S:
            self._rebase(float(batch.ts[0]))
        low, early = self.screen.split(batch.sensor, batch.value, batch.ts - self.base)
        # low but a sample may be due: nothing to judge, maybe a sample to keep
        sample = (low & ~early).nonzero()[0]
        if sample.shape[0]:
            self._keep_samples(batch.take(sample))
        busy = (~low).nonzero()[0]
        return evaluate_busy(batch, busy, self._evaluate, self._rescreen)

    def _keep_samples(self, batch: ReadingBatch) -> None:
        """Readings at rest whose value is too low to judge: only keep them as samples when
        the newest is a step old (and screen the next one)."""
        idx, ts = batch.sensor, batch.ts
        t_last = self._t2.take(idx).imag
        step = self.step.take(idx)
        push = (~(ts - t_last < step) & (step < np.inf)).nonzero()[0]
        if push.shape[0] == 0:
            return
        ip, tp, vp = idx[push], ts[push], batch.value[push]
        v_last = self._v2.take(ip).imag
        self._t2[ip] = _pair(t_last[push], tp)
        self._v2[ip] = _pair(v_last, vp)
        lowest = np.fmin(v_last, vp)
        margin = self.margin[ip]
        self.screen.set(ip, np.where(np.isnan(margin), BUSY, lowest + margin),
                        tp + step[push] - _EARLY_S - self.base)

    def _evaluate(self, batch: ReadingBatch) -> Transitions:
        idx, v, ts = batch.sensor, batch.value, batch.ts
        t_hist = self._t2.take(idx).view(np.float64).reshape(-1, SLOTS)
        v_hist = self._v2.take(idx).view(np.float64).reshape(-1, SLOTS)
        window = self.window.take(idx)
        # the baseline: the oldest sample inside the window (none: NaN, not judged)
        earliest = ts - window
        t0, v0 = np.full(idx.shape[0], np.nan), np.full(idx.shape[0], np.nan)
        for j in range(SLOTS - 1, -1, -1):
            inside = t_hist[:, j] >= earliest
            t0 = np.where(inside, t_hist[:, j], t0)
            v0 = np.where(inside, v_hist[:, j], v0)
        span = ts - t0
        # no baseline (NaN) or no time between (0) is not judged below; values reach here
        # only within PLAUSIBLE_LIMIT, but a span of a few ulps (two readings 1e-300 s apart
        # in a replay) would still overflow to an infinite rate, judged as such, silently
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            rate = (v - v0) / span * 60.0
        judged = span >= window * 0.5  # False for no baseline (NaN span) too
        cur = self.level.take(idx)
        new = np.where(judged, high_level(rate, cur, self.warn.take(idx),
                                          self.crit.take(idx), self.db.take(idx)), cur)
        changed = (new != cur).nonzero()[0]
        self.level[idx[changed]] = new[changed]
        # keep this reading as a sample when the newest is a step old (or there is none)
        step = self.step.take(idx)  # NaN for sensors without rate limits: never kept
        push = (~(ts - t_hist[:, SLOTS - 1] < step) & (step < np.inf)).nonzero()[0]
        if push.shape[0]:
            ip = idx[push]
            self._t2[ip] = _pair(t_hist[push, 1], ts[push])
            self._v2[ip] = _pair(v_hist[push, 1], v[push])
        # a pending rate alarm carries the latest judged rate
        shown = np.where(judged, rate, self.durations.value.take(idx))
        early, late = self.durations.observe(idx, new, shown, ts)
        return Transitions.concat([self._emit(idx, early), self._emit(idx, late)])

    def _emit(self, idx: np.ndarray, f: Fired) -> Transitions:
        if f.at.shape[0] == 0:
            return Transitions.empty()
        s = idx[f.at]
        thr = limit_concerned(f.old, f.new, self.warn[s], self.crit[s])
        return Transitions.build(s, self.code, LEVEL_SEVERITY[f.old], LEVEL_SEVERITY[f.new],
                                 f.value, thr, f.ts)

    def tick(self, now: float) -> Transitions:
        if not self.durations.active:
            return Transitions.empty()
        idx, fired = self.durations.due(now)
        self._rescreen(idx)
        return self._emit(idx, fired)

    def next_due(self) -> float:
        return self.durations.next_due() if self.durations.active else np.inf
