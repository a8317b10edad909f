"""Floor load: the sum of a floor's (or a zone's) load cells against its rated capacity.

Rated capacity = rated live load (kN/m²) × area (m²), the way a structural engineer checks a
slab (GB 50009); cells weighing in kg or t are converted with g.  The sum is only as good as
its weakest input: when a cell of the group has had no good reading for ``stale_after_s``, or
its driver reports it unreachable, summing the rest would under-count and look like a lighter
floor.  Instead a data-quality alarm (``floor_data``) is raised and the load alarm stays where
it was until every cell is back.

Groups are judged once per batch of readings, on the latest value of every cell, so readings of
one poll cycle are weighed together rather than one at a time.  Only the groups a batch touched
are judged, from their own cells: a batch of twenty readings in a park of 6,000 cells costs what
its few floors cost, not a pass over every cell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from parkwatch.config.base import Strict
from parkwatch.config.model import LOAD_UNITS_KN, ParkConfig, load_unit_kn
from parkwatch.park import GroupInfo, ParkModel, SensorInfo
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.duration import Durations, Fired
from parkwatch.rules.kind import Fingerprint, Problem, RuleKindBase, Settings
from parkwatch.rules.levels import LEVEL_SEVERITY, StateArray, high_level, limit_concerned
from parkwatch.rules.transitions import Severity, Transitions

#: plain ints for numpy comparisons: numpy asks an IntEnum member's class for a dozen
#: attributes it lacks, each through the enum metaclass (a microsecond a use)
_GOOD = int(Quality.GOOD)
_COMM_FAIL = int(Quality.COMM_FAIL)
_WARNING = int(Severity.WARNING)
_NORMAL = int(Severity.NORMAL)


#: members of some groups: positions (None: all), each one's group's place, each group's first
Selection = tuple[np.ndarray | None, np.ndarray, np.ndarray]


class FloorLoadSettings(Strict):
    """Floor (and zone) load: the sum of the load cells on it against its rated capacity.

    Rated capacity = rated live load (kN/m²) × area (m²); kg and t are converted to kN with
    g = 9.80665 m/s².  When any cell of a floor is silent for ``stale_after_s`` or has a
    communication failure, the sum would under-count: a data-quality alarm is raised instead
    and the load alarm is held where it was.
    """

    enabled: bool = Field(True, description="judge every floor (and zone with an area) that "
                          "has load cells")
    warning_ratio: float = Field(0.85, gt=0, le=10, description="warning at or above this share "
                                 "of rated capacity")
    critical_ratio: float = Field(1.0, gt=0, le=10, description="critical at or above this share")
    deadband_ratio: float = Field(0.02, ge=0, le=1, description="how far (share of capacity) "
                                  "below a limit clears it")
    stale_after_s: float = Field(300.0, gt=0, le=86_400, description="a cell without a good "
                                 "reading this long makes the floor's sum unknown; set it above "
                                 "the cells' report interval")
    for_s: float = Field(0.0, ge=0, le=86_400, description="a limit must stay crossed this long")
    clear_for_s: float = Field(0.0, ge=0, le=86_400, description="and stay back this long to "
                               "clear")

    @model_validator(mode="after")
    def _ratios(self) -> FloorLoadSettings:
        if self.critical_ratio <= self.warning_ratio:
            raise ValueError(f"critical_ratio ({self.critical_ratio:g}) must be above "
                             f"warning_ratio ({self.warning_ratio:g})")
        return self


class FloorLoadRule(RuleKindBase):
    settings: ClassVar[Settings | None] = Settings(
        'floor_load', FloorLoadSettings, 'floor and zone load against capacity')
    rules: ClassVar[tuple[str, ...]] = ("floor_load", "floor_data")
    units: ClassVar[Mapping[str, str]] = {"floor_load": "kN", "floor_data": ""}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"floor_load": "楼面荷载", "floor_data": "荷载数据不全"},
        "en": {"floor_load": "floor load", "floor_data": "floor load data incomplete"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "floor_load.raised": (
                "【楼面超载{severity}】{place} 楼面荷载 {value}，达到{severity}限值 {threshold}，"
                "请立即停止堆放并疏散货物"
            ),
            "floor_load.severity_changed": (
                "【楼面超载{severity}】{place} 楼面荷载 {value}，{severity}限值 {threshold}"
            ),
            "floor_load.cleared": "【楼面荷载恢复】{place} 楼面荷载 {value}，已低于限值",
            "floor_data.raised": (
                "【荷载数据不全】{place} 有 {value} 个称重传感器无有效数据，楼面荷载无法计算，请"
                "检查传感器"
            ),
            "floor_data.cleared": "【荷载数据恢复】{place} 全部称重传感器已恢复，楼面荷载重新计算",
        },
        "en": {
            "floor_load.raised": (
                "FLOOR OVERLOAD {severity} at {place}: load {value}, limit {threshold}; stop stac"
                "king and unload"
            ),
            "floor_load.cleared": "Floor load at {place} back below its limits: {value}",
            "floor_data.raised": (
                "Floor load at {place} unknown: {value} load cell(s) without good data; check the"
                "m"
            ),
            "floor_data.cleared": "Floor load at {place} complete again",
        },
    }
    #: COMM_FAIL matters here as much as values
    all_qualities: ClassVar[bool] = True
    #: judged once per batch, after every reading of it is in
    settles: ClassVar[bool] = True
    #: what it keeps of other sensors' readings is never read: only members are summed
    harmless_for_others: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        dumped = FloorLoadRule.settings_of(park.cfg).model_dump()

        def floor(info: SensorInfo) -> Fingerprint:
            return {"floor": dumped if info.config.kind == "load_cell" else None}
        return floor

    @staticmethod
    def group_fingerprint(park: ParkModel, group: GroupInfo) -> Fingerprint:
        return {"floor": FloorLoadRule.settings_of(park.cfg).model_dump()}

    @classmethod
    def cross_check(cls, cfg: ParkConfig) -> list[Problem]:
        """Every load cell's unit must be a mass or a force, or its floor cannot be summed."""
        if not cls.settings_of(cfg).enabled:
            return []
        return [(("sensors", i, "unit"), f"unit '{s.display_unit}' cannot be summed into a "
                 f"floor load: use one of {', '.join(LOAD_UNITS_KN)} (or turn off "
                 "rules.floor_load)")
                for i, s in enumerate(cfg.sensors)
                if s.kind == "load_cell" and load_unit_kn(s.display_unit) is None]

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.load_code, self.data_code = rule_base, rule_base + 1
        self.park = park
        n, groups = len(park), park.groups
        g = len(groups)
        self.base = n  # group j is alarm source n + j
        settings = FloorLoadRule.settings_of(park.cfg)
        self.stale_after = settings.stale_after_s
        self.kn = np.zeros(n)  # kN per unit of each cell
        self.enabled = np.zeros(n, bool)
        members = [m for grp in groups for m in grp.members]
        self.members = np.array(members, np.intp)
        self.member_group = np.repeat(np.arange(g), [len(grp.members) for grp in groups])
        self.sizes = np.array([len(grp.members) for grp in groups], np.intp)
        self.starts = (np.cumsum(self.sizes) - self.sizes).astype(np.intp)
        # a cell's member positions (a cell counts in its floor and in its zone), for
        # finding the groups a batch touched without scanning every member
        self._by_cell = np.argsort(self.members, kind="stable")
        self._cell_sorted = self.members[self._by_cell]
        self._mark = np.zeros(n, bool)
        # every group's members, as _select gives them, for a batch that touches them all
        self._everyone: Selection = (None, self.member_group, self.starts)
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
        # the cells with news since the last settle (their good or failed readings)
        self._news: list[np.ndarray] = []
        # per group: when its first cell goes stale, worked out again only for the groups
        # with news since (the pipeline asks between every two batches)
        self._stale_at = np.full(g, np.inf)
        self._outdated = np.ones(g, bool)
        self.restored()

    def restored(self) -> None:
        self.n_failed = int(np.count_nonzero(self.failed))
        self._outdated[:] = True

    def state(self) -> dict[str, StateArray]:
        d = self.durations
        return {"value": StateArray(self.value), "good_ts": StateArray(self.good_ts, clock=True),
                "failed": StateArray(self.failed), "fail_ts": StateArray(self.fail_ts),
                "level": StateArray(self.level, "group"),
                "data_raised": StateArray(self.data_raised, "group"),
                "total": StateArray(self.total, "group"),
                **{f"d.{k}": StateArray(getattr(d, k), "group")
                   for k in ("level", "pending", "since", "value")}}

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        """Take the cells' news; the groups are judged in :meth:`settle`."""
        idx, q, v, ts = batch.sensor, batch.quality, batch.value, batch.ts
        # a reading outside its cell's measuring range is no load (sensor_fault's): the cell
        # keeps its last good value until it goes stale
        good = (q == _GOOD) & self.park.in_range(idx, v)
        fail = q == _COMM_FAIL
        if good.all():
            g_idx, v_g, ts_g = idx, v, ts
            self._news.append(idx)
        else:
            g_idx, v_g, ts_g = idx[good], v[good], ts[good]
            self._news.append(idx[good | fail])
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
        news, self._news = self._news, []
        if self.members.shape[0] == 0 or not news:
            return Transitions.empty()
        cells = news[0] if len(news) == 1 else np.concatenate(news)
        if 8 * cells.shape[0] >= self.members.shape[0]:  # a large batch: one pass over all
            self._mark[cells] = True
            pos = self._mark[self.members].nonzero()[0]
            self._mark[cells] = False
        else:  # a few readings: look their cells up
            left = np.searchsorted(self._cell_sorted, cells, "left")
            pos = self._by_cell[_ranges(left, np.searchsorted(self._cell_sorted, cells,
                                                              "right") - left)]
        if pos.shape[0] == 0:  # no member among them
            return Transitions.empty()
        # a cell's latest news is its failure if it is failed, else its latest good reading
        m = self.members[pos]
        when = self.good_ts[m]
        if self.n_failed:
            when = np.where(self.failed[m], self.fail_ts[m], when)
        g_when = np.full(len(self.warn), -np.inf)
        np.maximum.at(g_when, self.member_group[pos], when)
        groups = (g_when > -np.inf).nonzero()[0]
        self._outdated[groups] = True
        return self._judge(groups, g_when[groups], *self._select(groups))

    def _select(self, groups: np.ndarray) -> Selection:
        """The members of `groups`: their positions, group after group (None: every member),
        each one's group as a place in `groups`, and where each group's members start.  The
        few groups a batch touched are judged without the rest."""
        if groups.shape[0] == self.sizes.shape[0]:
            return self._everyone
        lens = self.sizes[groups]
        return (_ranges(self.starts[groups], lens), np.repeat(np.arange(groups.shape[0]), lens),
                np.cumsum(lens) - lens)

    def _stale(self) -> np.ndarray:
        """Per group, when its first cell goes stale (failed cells aside)."""
        groups = self._outdated.nonzero()[0]
        if groups.shape[0]:
            sel, _local, firsts = self._select(groups)
            m = self.members if sel is None else self.members[sel]
            due = np.where(self.failed[m], np.inf, self.good_ts[m] + self.stale_after)
            self._stale_at[groups] = np.minimum.reduceat(due, firsts)  # no group is empty
            self._outdated[groups] = False
        return self._stale_at

    def _judge(self, groups: np.ndarray, at: np.ndarray, sel: np.ndarray | None,
               local: np.ndarray, _firsts: np.ndarray) -> Transitions:
        """Judge groups at times `at` (one per group) on the latest value of every cell;
        `sel`, `local` and `firsts` are the groups' members (:meth:`_select`)."""
        k = groups.shape[0]
        m, kn = (self.members, self.kn_m) if sel is None else (self.members[sel],
                                                                self.kn_m[sel])
        good_ts = self.good_ts[m]
        load = self.value[m] * kn
        unheard = np.isnan(load)
        # the usual case: every cell heard from, none lost, the oldest reading of all fresh
        # enough for the latest group judged; then every group's sum is complete
        if (not self.n_failed and not unheard.any()
                and good_ts.min() + self.stale_after > at.max()):
            n_bad = n_wait = np.zeros(k, np.int64)
            totals = np.bincount(local, weights=load, minlength=k)
        else:
            fresh = good_ts + self.stale_after > at[local]
            failed = self.failed[m]
            ok = ~failed & ~unheard & fresh
            # cells not heard from yet, within the grace after start, leave the group undecided
            waiting = unheard & ~failed & fresh
            n_bad = np.bincount(local[~ok & ~waiting], minlength=k)
            n_wait = np.bincount(local[waiting], minlength=k)
            totals = np.bincount(local[ok], weights=load[ok], minlength=k)
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
        thr = limit_concerned(f.old, f.new, self.warn[grp], self.crit[grp])
        return Transitions.build(self.base + grp, self.load_code, LEVEL_SEVERITY[f.old],
                                 LEVEL_SEVERITY[f.new], f.value, thr, f.ts)

    def tick(self, now: float) -> Transitions:
        parts: list[Transitions] = []
        if self.durations.active:
            idx, fired = self.durations.due(now)
            parts.append(self._emit(idx, fired))
        if self.members.shape[0]:
            stale = self._stale()
            groups = (~self.data_raised & (stale <= now)).nonzero()[0]
            if groups.shape[0]:
                parts.append(self._judge(groups, stale[groups], *self._select(groups)))
        return Transitions.concat(parts)

    def next_due(self) -> float:
        due = np.inf
        if self.durations.active:
            due = self.durations.next_due()
        if self.members.shape[0]:
            stale = self._stale()[~self.data_raised]
            if stale.shape[0]:
                due = min(due, float(stale.min()))
        return due


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``starts[i] .. starts[i] + lens[i] - 1`` for every i, one after the other."""
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, np.intp)
    return np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)
