"""Floor load: the sum of a floor's (or a zone's) load cells against its rated capacity.

Rated capacity = rated live load (kN/m²) × area (m²), the way a structural engineer checks a
slab (GB 50009); cells weighing in kg or t are converted with g.  The sum is only as good as
its weakest input: when a cell of the group has had no good reading for ``stale_after_s``, or
its driver reports it unreachable, summing the rest would under-count and look like a lighter
floor.  Instead a data-quality alarm (``floor_data``) is raised and the load alarm stays where
it was until every cell is back.

Groups are judged once per batch of readings, on the latest value of every cell, so readings of
one poll cycle are weighed together rather than one at a time.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from parkwatch.config.model import load_unit_kn
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.duration import Durations, Fired
from parkwatch.rules.levels import LEVEL_SEVERITY, StateArray, high_level, limit_of
from parkwatch.rules.transitions import Severity, Transitions

#: plain ints for numpy comparisons: numpy asks an IntEnum member's class for a dozen
#: attributes it lacks, each through the enum metaclass (a microsecond a use)
_GOOD = int(Quality.GOOD)
_COMM_FAIL = int(Quality.COMM_FAIL)
_WARNING = int(Severity.WARNING)
_NORMAL = int(Severity.NORMAL)



class FloorLoadRule:
    rules: ClassVar[tuple[str, ...]] = ("floor_load", "floor_data")
    #: COMM_FAIL matters here as much as values
    all_qualities: ClassVar[bool] = True
    #: judged once per batch, after every reading of it is in
    settles: ClassVar[bool] = True
    #: what it keeps of other sensors' readings is never read: only members are summed
    harmless_for_others: ClassVar[bool] = True

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.load_code, self.data_code = rule_base, rule_base + 1
        n, groups = len(park), park.groups
        g = len(groups)
        self.base = n  # group j is alarm source n + j
        settings = park.cfg.rules.floor_load
        self.stale_after = settings.stale_after_s
        self.kn = np.zeros(n)  # kN per unit of each cell
        self.enabled = np.zeros(n, bool)
        members = [m for grp in groups for m in grp.members]
        self.members = np.array(members, np.intp)
        self.member_group = np.repeat(np.arange(g), [len(grp.members) for grp in groups])
        self.starts = np.cumsum([0] + [len(grp.members) for grp in groups])[:-1].astype(np.intp)
        for m in set(members):
            self.kn[m] = load_unit_kn(park.sensors[m].config.display_unit) or np.nan
            self.enabled[m] = True
        capacity = np.array([grp.capacity_kn for grp in groups], float)
        self.warn = capacity * settings.warning_ratio
        self.crit = capacity * settings.critical_ratio
        self.db = capacity * settings.deadband_ratio
        self.kn_m = self.kn[self.members]
        # per cell: latest good value and its time side by side (one 16-byte write per
        # reading), whether its driver lost it and when
        self.cell = np.full((n, 2), np.nan)
        self.cell[:, 1] = start
        self.value, self.good_ts = self.cell[:, 0], self.cell[:, 1]
        self._cell2 = self.cell.view(np.complex128).ravel()
        self.failed = np.zeros(n, bool)
        self.fail_ts = np.full(n, -np.inf)
        # per group: raw level, the data alarm, the sum last judged
        self.level = np.zeros(g, np.int8)
        self.data_raised = np.zeros(g, bool)
        self.total = np.full(g, np.nan)
        self.durations = Durations(np.full(g, settings.for_s), np.full(g, settings.clear_for_s))
        # which cells had news in the current batch: the batch number of their latest news
        self._news = np.full(n, -1, np.int32)
        self._batch = np.int32(0)
        self.restored()

    def restored(self) -> None:
        self.n_failed = int(np.count_nonzero(self.failed))

    def state(self) -> dict[str, StateArray]:
        d = self.durations
        return {"value": StateArray(self.value), "good_ts": StateArray(self.good_ts, clock=True),
                "failed": StateArray(self.failed), "fail_ts": StateArray(self.fail_ts),
                "level": StateArray(self.level, "group"),
                "data_raised": StateArray(self.data_raised, "group"),
                "total": StateArray(self.total, "group"),
                **{f"d.{k}": StateArray(getattr(d, k), "group")
                   for k in ("level", "pending", "since", "value")}}

    def evaluate(self, batch: ReadingBatch) -> Transitions:
        """Take the cells' news; the groups are judged in :meth:`settle`."""
        idx, q, v, ts = batch.sensor, batch.quality, batch.value, batch.ts
        good = (q == _GOOD) & np.isfinite(v)
        fail = q == _COMM_FAIL
        if good.all():
            g_idx, v_g, ts_g = idx, v, ts
            self._news[idx] = self._batch
        else:
            g_idx, v_g, ts_g = idx[good], v[good], ts[good]
            self._news[idx[good | fail]] = self._batch
        pair = np.empty(g_idx.shape[0], np.complex128)
        pair.real, pair.imag = v_g, ts_g
        self._cell2[g_idx] = pair
        if self.n_failed:
            self.failed[g_idx] = False
        if fail.any():
            f_idx = idx[fail]
            self.failed[f_idx] = True
            self.fail_ts[f_idx] = ts[fail]
        if self.n_failed or fail.any():
            self.n_failed = int(np.count_nonzero(self.failed))
        return Transitions.empty()

    def settle(self) -> Transitions:
        if self.members.shape[0] == 0:
            return Transitions.empty()
        m = self.members
        touched = self._news[m] == self._batch
        self._batch += 1
        if self._batch == np.iinfo(np.int32).max:
            self._news[:] = -1
            self._batch = np.int32(0)
        if not touched.any():
            return Transitions.empty()
        # a cell's latest news is its failure if it is failed, else its latest good reading
        when = self.good_ts[m]
        if self.n_failed:
            when = np.where(self.failed[m], self.fail_ts[m], when)
        g_when = np.full(len(self.warn), -np.inf)
        np.maximum.at(g_when, self.member_group[touched], when[touched])
        groups = (g_when > -np.inf).nonzero()[0]
        return self._judge(groups, g_when[groups])

    def _judge(self, groups: np.ndarray, at: np.ndarray) -> Transitions:
        """Judge groups at times `at` (one per group) on the latest value of every cell."""
        m = self.members
        g = len(self.warn)
        good_ts = self.good_ts[m]
        load = self.value[m] * self.kn_m
        unheard = np.isnan(load)
        at_group = np.full(g, np.nan)
        at_group[groups] = at
        # the usual case: every cell heard from, none lost, the oldest reading of all fresh
        # enough for the latest group judged; then every group's sum is complete
        if (not self.n_failed and not unheard.any()
                and good_ts.min() + self.stale_after > at.max()):
            n_bad = n_wait = np.zeros(groups.shape[0], np.int64)
            totals = np.bincount(self.member_group, weights=load, minlength=g)[groups]
        else:
            fresh = good_ts + self.stale_after > at_group[self.member_group]
            failed = self.failed[m]
            ok = ~failed & ~unheard & fresh
            # cells not heard from yet, within the grace after start, leave the group undecided
            waiting = unheard & ~failed & fresh
            n_bad = np.add.reduceat((~ok & ~waiting).astype(np.int32), self.starts)[groups]
            n_wait = np.add.reduceat(waiting.astype(np.int32), self.starts)[groups]
            totals = np.bincount(self.member_group[ok], weights=load[ok], minlength=g)[groups]
        complete = (n_bad == 0) & (n_wait == 0)
        parts: list[Transitions] = []
        # data quality: raised while a cell is stale or lost, cleared when all are good again
        was = self.data_raised[groups]
        bad = n_bad > 0
        now_data = np.where(bad, True, np.where(complete, False, was))
        ch = (was != now_data).nonzero()[0]
        if ch.shape[0]:
            sev = np.where(now_data[ch], _WARNING, _NORMAL)
            parts.append(Transitions.build(
                self.base + groups[ch], self.data_code, _WARNING - sev, sev,
                n_bad[ch].astype(float), np.full(ch.shape[0], np.nan), at[ch]))
        self.data_raised[groups] = now_data
        # load: only a complete sum is compared with the capacity
        judged = groups[complete]
        if judged.shape[0]:
            total = totals[complete]
            self.total[judged] = total
            cur = self.level[judged]
            new = high_level(total, cur, self.warn[judged], self.crit[judged], self.db[judged])
            self.level[judged] = new
            early, late = self.durations.observe(judged, new, total, at[complete])
            parts += [self._emit(judged, early), self._emit(judged, late)]
        out = Transitions.concat(parts)
        return out.take(np.argsort(out.sensor, kind="stable")) if len(parts) > 1 else out

    def _emit(self, groups: np.ndarray, f: Fired) -> Transitions:
        if f.at.shape[0] == 0:
            return Transitions.empty()
        grp = groups[f.at]
        thr = limit_of(np.maximum(f.old, f.new), self.warn[grp], self.crit[grp])
        return Transitions.build(self.base + grp, self.load_code, LEVEL_SEVERITY[f.old],
                                 LEVEL_SEVERITY[f.new], f.value, thr, f.ts)

    def _stale_due(self) -> np.ndarray:
        """Per group, when its first cell goes stale (inf when one is already out)."""
        m = self.members
        due = np.where(self.failed[m], np.inf, self.good_ts[m] + self.stale_after)
        return np.minimum.reduceat(due, self.starts)

    def tick(self, now: float) -> Transitions:
        parts: list[Transitions] = []
        if self.durations.active:
            idx, fired = self.durations.due(now)
            parts.append(self._emit(idx, fired))
        if self.members.shape[0]:
            due = self._stale_due()
            groups = (~self.data_raised & (due <= now)).nonzero()[0]
            if groups.shape[0]:
                parts.append(self._judge(groups, due[groups]))
        return Transitions.concat(parts)

    def next_due(self) -> float:
        due = np.inf
        if self.durations.active:
            due = self.durations.next_due()
        if self.members.shape[0]:
            stale = self._stale_due()[~self.data_raised]
            if stale.shape[0]:
                due = min(due, float(stale.min()))
        return due
