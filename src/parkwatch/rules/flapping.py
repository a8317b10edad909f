"""Flapping: a sensor whose limit or rate alarms change too often gets one flapping alarm.

Kapacitor-style: each evaluation of a sensor (a usable reading) is remembered as changed or
not over its last ``history`` evaluations.  When the share of changes rises above ``high``, its
limit and rate transitions are held back and a flapping alarm is raised instead, at the highest
severity the sensor shows or reaches while flapping (never lower than warning: a flapping
sensor may be hiding a real problem).  When the share falls below ``low``, the sensor's alarms
are brought up to date in one go and the flapping alarm clears.  Fire buttons never flap: a
press is always delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from parkwatch.config.base import Strict
from parkwatch.park import ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.kind import Fingerprint, RuleKindBase, Settings
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Severity, Transitions

#: the rules whose changes count and are held back while flapping, in channel order
TRACKED: tuple[str, ...] = ("high_threshold", "low_threshold", "rate_of_rise")


def _last_per_key(key: np.ndarray) -> np.ndarray:
    """Positions of the last occurrence of each key (so a later change wins), in key order."""
    if key.shape[0] < 2:
        return np.arange(key.shape[0])
    order = np.argsort(key, kind="stable")
    k = key[order]
    last = np.ones(k.shape[0], bool)
    last[:-1] = k[1:] != k[:-1]
    return order[last]


class FlappingSettings(Strict):
    """Kapacitor-style flap detection over a sensor's last ``history`` evaluations.

    When more than ``high`` of them changed the sensor's limit or rate alarms, the changes are
    held back and one flapping alarm stands for them; when fewer than ``low`` did, the flapping
    alarm clears and the sensor's alarms are brought up to date.
    """

    history: int = Field(20, ge=2, le=64, description="evaluations remembered per sensor")
    high: float = Field(0.5, gt=0, le=1, description="flapping above this share of changes")
    low: float = Field(0.25, ge=0, lt=1, description="no longer flapping below this share")

    @model_validator(mode="after")
    def _ratios(self) -> FlappingSettings:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        return self


class FlappingRule(RuleKindBase):
    settings: ClassVar[Settings | None] = Settings(
        'flapping', FlappingSettings, 'flap detection; null turns it off', nullable=True)
    rules: ClassVar[tuple[str, ...]] = ("flapping",)
    units: ClassVar[Mapping[str, str]] = {"flapping": "%"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"flapping": "频繁波动"},
        "en": {"flapping": "flapping"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "flapping.raised": (
                "【频繁波动】{place} {sensor} 报警状态频繁变化（近期 {value}），已合并为一条报警"
                "，请现场核查"
            ),
            "flapping.cleared": "【波动结束】{place} {sensor} 已稳定，报警状态已更新",
        },
        "en": {
            "flapping.raised": (
                "{sensor} at {place} is flapping ({value} of recent readings changed its alarms);"
                " its alarms are held in this one"
            ),
            "flapping.cleared": "{sensor} at {place} has settled; its alarms are up to date",
        },
    }
    #: sees the transitions of the other kinds and may hold them back
    reviews: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        """The park-wide settings count only for the sensors they apply to: editing flap
        detection must not reset (and so clear) a latched fire alarm."""
        settings = FlappingRule.settings_of(park.cfg)
        dumped = settings.model_dump() if settings is not None else None

        def flapping(info: SensorInfo) -> Fingerprint:
            return {"flapping": dumped if info.config.kind != "fire_button" else None}
        return flapping

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        n = len(park)
        settings = FlappingRule.settings_of(park.cfg)
        self.slot = np.empty(0, np.int8)  # by rule code, once bound
        self.codes = np.empty(0, np.int16)
        self.enabled = np.zeros(n, bool)
        if settings is not None:
            for info in park.sensors:
                limits = park.cfg.thresholds_for(info.config)
                rate = park.cfg.rate_for(info.config)
                self.enabled[info.index] = bool(
                    (limits is not None and limits.any_limit)
                    or (rate is not None and (rate.rise_warning or rate.rise_critical)))
            self.history = settings.history
            self.high, self.low = settings.high, settings.low
        else:
            self.history, self.high, self.low = 1, 1.0, 0.0
        self.mask = np.uint64((1 << self.history) - 1)
        # bit k: the evaluation k before the `aligned`-th changed something.  Only sensors
        # with a change (or flapping) need their history moved on, so the others just count
        # evaluations and catch up when they next change: a sensor that is not flapping can
        # only start with a change
        self.hist = np.zeros(n, np.uint64)
        self.evaluations = np.zeros(n, np.uint32)  # usable readings seen (wrapping)
        self.aligned = np.zeros(n, np.uint32)  # evaluations the history is as of
        self.flapping = np.zeros(n, bool)
        self.true = np.zeros((n, len(TRACKED)), np.int8)  # severity per channel, held back or not
        self.shown = np.zeros((n, len(TRACKED)), np.int8)  # severity per channel as delivered
        # per channel, the warning and the critical limit as the latest changes named them
        self.thr = np.full((n, len(TRACKED), 2), np.nan)
        self.val = np.full((n, len(TRACKED)), np.nan)  # the value of the latest change
        self.peak = np.zeros(n, np.int8)  # severity of the flapping alarm
        self._mark = np.zeros(n, bool)
        self.restored()

    def bind(self, rule_names: tuple[str, ...]) -> None:
        """Which rule codes are the tracked rules' (their place in the engine's numbering)."""
        self.slot = np.full(len(rule_names), -1, np.int8)
        self.codes = np.array([rule_names.index(name) for name in TRACKED], np.int16)
        self.slot[self.codes] = np.arange(len(TRACKED))

    def state(self) -> dict[str, StateArray]:
        return {k: StateArray(getattr(self, k))
                for k in ("hist", "evaluations", "aligned", "flapping", "true", "shown", "thr",
                          "val", "peak")}

    def restored(self) -> None:
        self.n_flapping = int(np.count_nonzero(self.flapping))

    def review(self, sub: ReadingBatch | None, tr: Transitions) -> Transitions:
        """Hold back the changes of flapping sensors; `sub` is the round's usable readings (None
        for the clock's transitions, which are no evaluation)."""
        if not len(tr) and not self.n_flapping:  # most rounds: no change, and nobody flaps
            if sub is not None:  # the evaluations still count (the history catches up later)
                self.evaluations[sub.sensor] = self.evaluations.take(sub.sensor) + np.uint32(1)
            return tr
        slot = self.slot[tr.rule] if len(tr) else np.empty(0, np.int8)
        # limit and rate changes only: the clock's also carries floor alarms, whose sources
        # (groups, numbered after the sensors) are outside `enabled`
        tracked = (slot >= 0).nonzero()[0]
        tracked = tracked[self.enabled[tr.sensor[tracked]]]
        if not tracked.shape[0] and not self.n_flapping:  # e.g. a fire button's change alone
            if sub is not None:
                self.evaluations[sub.sensor] = self.evaluations.take(sub.sensor) + np.uint32(1)
            return tr
        s_t, c_t = tr.sensor[tracked], slot[tracked].astype(np.intp)
        last = tracked[_last_per_key(s_t * len(TRACKED) + c_t)] if tracked.shape[0] else tracked
        self.true[tr.sensor[last], self.slot[tr.rule[last]]] = tr.new[last]
        # the limit of a change is that of the higher of its two levels (WARNING 2, CRITICAL 3)
        top = np.maximum(tr.old[tracked], tr.new[tracked]).astype(np.intp) - 2
        self.thr[s_t, c_t, top] = tr.threshold[tracked]
        self.val[tr.sensor[last], self.slot[tr.rule[last]]] = tr.value[last]
        was_row = self.flapping[s_t]
        extra: list[Transitions] = []
        if sub is not None:
            r = sub.sensor
            before = self.evaluations.take(r)
            self.evaluations[r] = before + np.uint32(1)
            self._mark[s_t] = True
            changed = self._mark.take(r)
            self._mark[s_t] = False
            # only sensors with a change now, or flapping, can move
            live = changed | self.flapping.take(r) if self.n_flapping else changed
            r_pos = live.nonzero()[0]
            r, changed, before = r[r_pos], changed[r_pos], before[r_pos]
            gap = (before - self.aligned[r]).astype(np.uint64)  # evaluations not yet shifted in
            h = np.where(gap < 64, self.hist[r] << np.minimum(gap, np.uint64(63)), 0)
            h = ((h << np.uint64(1)) | changed.astype(np.uint64)) & self.mask
            self.hist[r] = h
            self.aligned[r] = before + np.uint32(1)
            share = np.bitwise_count(h) / self.history
            was = self.flapping[r]
            now = np.where(was, share >= self.low, share > self.high)
            self.flapping[r] = now
            self.n_flapping += int(np.count_nonzero(now)) - int(np.count_nonzero(was))
            enter, leave = (~was & now).nonzero()[0], (was & ~now).nonzero()[0]
            if enter.shape[0]:
                s = r[enter]
                peak = np.maximum(np.maximum(self.true[s].max(axis=1), self.shown[s].max(axis=1)),
                                  Severity.WARNING).astype(np.int8)
                self.peak[s] = peak
                extra.append(Transitions.build(s, self.code, np.zeros(s.shape[0]), peak,
                                               share[enter] * 100, np.full(s.shape[0],
                                                                           self.high * 100),
                                               sub.ts[r_pos[enter]]))
        now_row = self.flapping[s_t]
        # a sensor that stays flapping: the flapping alarm follows the worst it reaches
        stay = tracked[was_row & now_row]
        if stay.shape[0]:
            last_s = stay[_last_per_key(tr.sensor[stay])]
            s = tr.sensor[last_s]
            worst = self.true[s].max(axis=1)
            up = (worst > self.peak[s]).nonzero()[0]
            if up.shape[0]:
                s, new = s[up], worst[up]
                extra.append(Transitions.build(s, self.code, self.peak[s], new,
                                               np.full(s.shape[0], np.nan),
                                               np.full(s.shape[0], self.high * 100),
                                               tr.ts[last_s[up]]))
                self.peak[s] = new
        passed = tracked[~was_row & ~now_row]
        if passed.shape[0]:
            key = tr.sensor[passed] * len(TRACKED) + self.slot[tr.rule[passed]]
            keep = passed[_last_per_key(key)]
            self.shown[tr.sensor[keep], self.slot[tr.rule[keep]]] = tr.new[keep]
        if sub is not None and leave.shape[0]:
            extra.append(self._leave(r[leave], share[leave], sub.ts[r_pos[leave]]))
        held = np.zeros(len(tr), bool)
        held[tracked] = was_row | now_row
        out = tr.take((~held).nonzero()[0]) if held.any() else tr
        return Transitions.concat([out, *extra]) if extra else out

    def _leave(self, s: np.ndarray, share: np.ndarray, ts: np.ndarray) -> Transitions:
        """Bring the alarms of sensors that stopped flapping up to date, then clear flapping.

        Each caught-up alarm carries the value of the latest change of its channel and the
        limit of the level concerned."""
        row, ch = np.nonzero(self.shown[s] != self.true[s])
        sensors = s[row]
        old, new = self.shown[sensors, ch], self.true[sensors, ch]
        top = np.maximum(old, new).astype(np.intp) - 2
        catch_up = Transitions.build(sensors, 0, old, new, self.val[sensors, ch],
                                     self.thr[sensors, ch, top], ts[row])
        catch_up.rule = self.codes[ch]
        # per sensor: clears before raises, channels in order
        catch_up = catch_up.take(np.lexsort((ch, catch_up.new > 0, row)))
        self.shown[s] = self.true[s]
        cleared = Transitions.build(s, self.code, self.peak[s], np.zeros(s.shape[0]),
                                    share * 100, np.full(s.shape[0], self.low * 100), ts)
        self.peak[s] = 0
        both = Transitions.concat([catch_up, cleared])
        owner = np.concatenate([np.sort(row, kind="stable"), np.arange(s.shape[0])])
        return both.take(np.argsort(owner, kind="stable"))
