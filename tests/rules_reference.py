"""A plain-Python reference of the whole rule engine, one reading at a time, sensor by sensor.

Written from the semantics the modules of :mod:`parkwatch.rules` state in their docstrings, with
ordinary Python objects (lists, deques, floats, ``math``): no numpy in the logic.  It exists to be
compared with the vectorised :class:`parkwatch.rules.engine.RuleEngine` (see
``tests/test_rules_reference.py``) and to give the rules benchmark a per-reading baseline
(``benchmarks/rules.py`` puts ``tests/`` on ``sys.path`` and imports this module).

Arithmetic is done in the same order as the engine so floats come out bit-identical: a rate is
``(v - v0) / (t - t0) * 60.0``; a floor sum adds the loads (``value * kN per unit``) of its
cells in member order starting from ``0.0``; a low limit is the high limit of ``-value``
(``-v >= -low`` raises, ``-v >= -low - deadband`` holds).  Whatever is dated ``a + b`` (a hold,
a silence, a cell going stale) is compared as that deadline, ``a + b <= t``, so a tick at
:meth:`ReferenceEngine.next_due` always does what is due.

A transition is a tuple ``(sensor, rule name, old severity, new severity, value, threshold,
ts)`` with ``None`` standing for NaN in ``value`` and ``threshold``; floor and zone groups are
sensors ``len(park) + j`` like in the engine.  Per sensor the order of transitions is the
engine's; across sensors it may differ (compare with :func:`by_sensor`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

from parkwatch.config.measuring import PLAUSIBLE_LIMIT
from parkwatch.config.model import load_unit_kn
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.rate_of_rise import SLOTS

NAN = math.nan
INF = math.inf

NORMAL, WARNING, CRITICAL = 0, 2, 3
#: level (0 normal, 1 warning, 2 critical) -> severity
LEVEL_SEVERITY = (NORMAL, WARNING, CRITICAL)
NO_DATA_SEVERITY = {"warning": WARNING, "critical": CRITICAL}

GOOD = int(Quality.GOOD)
HEARTBEAT = int(Quality.HEARTBEAT)
TEST = int(Quality.TEST)
COMM_FAIL = int(Quality.COMM_FAIL)

#: channels the flapping rule counts and holds back, in channel order
TRACKED = ("high_threshold", "low_threshold", "rate_of_rise")
TRACKED_SLOT = {name: i for i, name in enumerate(TRACKED)}

#: fire-button values
PRESS, RESET = 1.0, 0.0

Transition = tuple[int, str, int, int, float | None, float | None, float]
#: sensor, value, device time, quality (and the battery in %, NaN when left out)
Reading = tuple[int, float, float, int] | tuple[int, float, float, int, float]


def _none(x: float) -> float | None:
    return None if x != x else x


def _f(x: float | None) -> float:
    return NAN if x is None else float(x)


def level(v: float, cur: int, warn: float, crit: float, deadband: float) -> int:
    """0/1/2 of a value against high limits with hysteresis (NaN limits never trigger).

    A limit is crossed on the way out at the limit itself, and held on the way back until the
    value is past it by more than the deadband.
    """
    raised = (v >= crit) + (v >= warn)
    held = (v >= crit - deadband) + (v >= warn - deadband)
    return max(raised, min(cur, held))


class Hold:
    """Durations of one channel: a confirmed level follows the raw one once it has held.

    Moving away from the confirmed level in one direction keeps the clock running even when
    the raw level changes on the way; ``up`` (rise) or ``down`` (fall) confirms the pending
    level, dated when the hold elapsed.  A fired confirmation is ``(old, new, value, ts)``.
    """

    __slots__ = ("down", "level", "pending", "since", "up", "value")

    def __init__(self, up: float, down: float) -> None:
        self.up, self.down = up, down
        self.level = 0  # confirmed
        self.pending = 0
        self.since = NAN  # when the raw level left the confirmed one
        self.value = NAN  # of the latest reading

    def _hold(self, to: int, frm: int) -> float:
        return self.up if to > frm else self.down

    def observe(self, raw: int, value: float, ts: float) -> tuple[Any, Any]:
        """(confirmation due before this reading, confirmation it causes at once)."""
        c, p, s = self.level, self.pending, self.since
        early = late = None
        if p != c:
            hold = self._hold(p, c)
            if s + hold <= ts:  # the hold elapsed before this reading: confirm what was pending
                early = (c, p, self.value, s + hold)
                c = p
        if raw == c:
            s = NAN
        elif not (p != c and (raw > c) == (p > c)):  # a new departure: its clock starts now
            s = ts
        if raw != c:
            hold = self._hold(raw, c)
            if s + hold <= ts:
                late = (c, raw, value, s + hold)
                c, s = raw, NAN
        self.level, self.pending, self.since, self.value = c, raw, s, value
        return early, late

    def due(self, now: float) -> tuple[int, int, float, float] | None:
        if self.pending == self.level:
            return None
        hold = self._hold(self.pending, self.level)
        if not self.since + hold <= now:
            return None
        fired = (self.level, self.pending, self.value, self.since + hold)
        self.level, self.since = self.pending, NAN
        return fired

    def next_due(self) -> float:
        if self.pending == self.level:
            return INF
        return self.since + self._hold(self.pending, self.level)


def _limit(old: int, new: int, warn: float, crit: float) -> float:
    """The limit a change names: the one in force at the new level, or the one left when the
    alarm clears."""
    return crit if (new if new > 0 else old) == 2 else warn


def _in_order(rows: list[Transition]) -> list[Transition]:
    """Several changes of one sensor at once: by time, and a side left before a side entered."""
    if len(rows) > 1:
        rows.sort(key=lambda r: (r[6], r[3] > 0))
    return rows


class ReferenceEngine:
    """Every rule kind of :mod:`parkwatch.rules`, one reading at a time, in plain Python.

    ``evaluate`` takes a batch (a :class:`ReadingBatch` or an iterable of ``(sensor, value, ts,
    quality)``) and returns its transitions; ``tick(now)`` lets time pass; ``next_due()`` says
    when a tick would change something; ``stats`` counts like the engine's.
    """

    def __init__(self, park: ParkModel, start: float) -> None:
        self.park = park
        self.start = float(start)
        cfg = park.cfg
        n = self.n = len(park)
        self.stats = {"evaluated": 0, "out_of_order": 0, "unusable": 0, "liveness": 0,
                      "out_of_range": 0}
        self.last_ts = [-INF] * n
        drivers = {d.id: d for d in cfg.drivers}

        # threshold: limits per sensor, a signed raw level (+ high, - low), a hold per side
        self.th_on = [False] * n
        self.hw, self.hc, self.lw, self.lc = ([NAN] * n for _ in range(4))
        self.db = [0.0] * n
        self.th_level = [0] * n
        self.th_hi: list[Hold | None] = [None] * n
        self.th_lo: list[Hold | None] = [None] * n
        # rate of rise
        self.rate_on = [False] * n
        self.window, self.step = [NAN] * n, [NAN] * n
        self.rw, self.rc, self.rdb = [NAN] * n, [NAN] * n, [0.0] * n
        self.samples: list[deque[tuple[float, float]] | None] = [None] * n
        self.rate_level = [0] * n
        self.rate_hold: list[Hold | None] = [None] * n
        # button latch
        self.button = [info.config.kind == "fire_button" for info in park.sensors]
        self.latched = [False] * n
        # comm fault
        self.comm_after = [NAN] * n
        self.fail_since = [NAN] * n
        self.comm_raised = [False] * n
        # sensor fault: the measuring range, and the side of it the last reading was off
        self.ranged = [False] * n
        self.lo, self.hi = [-PLAUSIBLE_LIMIT] * n, [PLAUSIBLE_LIMIT] * n
        self.sf_side = [0] * n
        # no data
        self.nd_after = [NAN] * n
        self.nd_severity = [0] * n
        self.heard = [self.start] * n
        self.nd_raised = [False] * n
        # battery low: park-wide limits, a level (0, 1 warning, 2 critical) per device
        bat = cfg.rules.battery_low
        self.bat_on = bat is not None
        self.bat_crit = _f(bat.critical_below) if bat is not None else NAN
        self.bat_warn = (_f(bat.warning_below) if bat is not None and bat.warning_below
                         is not None else self.bat_crit)
        self.bat_db = bat.deadband if bat is not None else 0.0
        self.bat_level = [0] * n
        # flapping
        flap = cfg.rules.flapping
        self.flap_on = [False] * n
        self.history = flap.history if flap is not None else 1
        self.flap_high = flap.high if flap is not None else 1.0
        self.flap_low = flap.low if flap is not None else 0.0
        self.flap_mask = (1 << self.history) - 1
        self.hist = [0] * n
        self.flapping = [False] * n
        self.true = [[0, 0, 0] for _ in range(n)]  # severity per channel, held back or not
        self.shown = [[0, 0, 0] for _ in range(n)]  # severity per channel as delivered
        # per channel, [warning limit, critical limit] as the latest changes named them
        self.thr = [[[NAN, NAN] for _ in TRACKED] for _ in range(n)]
        self.val = [[NAN, NAN, NAN] for _ in range(n)]  # the value of the latest change
        self.peak = [0] * n

        for info in park.sensors:
            i, sc = info.index, info.config
            limits = cfg.thresholds_for(sc)
            if limits is not None and limits.any_limit:
                self.th_on[i] = True
                self.hc[i], self.lc[i] = _f(limits.high_critical), _f(limits.low_critical)
                # a critical limit alone: crossing it goes straight to critical
                self.hw[i] = _f(limits.high_warning) if limits.high_warning is not None \
                    else self.hc[i]
                self.lw[i] = _f(limits.low_warning) if limits.low_warning is not None \
                    else self.lc[i]
                self.db[i] = float(limits.deadband)
                self.th_hi[i] = Hold(limits.for_s, limits.clear_for_s)
                self.th_lo[i] = Hold(limits.for_s, limits.clear_for_s)
            rate = cfg.rate_for(sc)
            rate_limits = rate is not None and (rate.rise_warning is not None
                                                or rate.rise_critical is not None)
            if rate is not None and rate_limits:
                self.rate_on[i] = True
                self.window[i], self.step[i] = rate.window_s, rate.window_s / SLOTS
                self.rc[i] = _f(rate.rise_critical)
                self.rw[i] = _f(rate.rise_warning) if rate.rise_warning is not None \
                    else self.rc[i]
                self.rdb[i] = float(rate.deadband)
                self.samples[i] = deque(maxlen=SLOTS)
                self.rate_hold[i] = Hold(rate.for_s, rate.clear_for_s)
            if flap is not None:
                self.flap_on[i] = self.th_on[i] or rate_limits
            after = getattr(drivers[sc.driver], "comm_fault_after_s", None)
            if after is not None:
                self.comm_after[i] = float(after)
            measuring = cfg.range_for(sc)
            if measuring is not None:
                self.ranged[i] = True
                self.lo[i], self.hi[i] = measuring.min, measuring.max
            interval = float(park.report_interval[i])
            if not math.isnan(interval):
                nd = cfg.no_data_for(sc)
                self.nd_after[i] = max(nd.missed * interval, nd.min_s)
                self.nd_severity[i] = NO_DATA_SEVERITY[nd.severity]
        self.th_sensors = [i for i in range(n) if self.th_on[i]]
        self.rate_sensors = [i for i in range(n) if self.rate_on[i]]
        self.nd_sensors = [i for i in range(n) if self.nd_after[i] == self.nd_after[i]]

        # floor load: groups (floors, zones with an area) of load cells
        fl = cfg.rules.floor_load
        self.stale_after = fl.stale_after_s
        self.members = [list(g.members) for g in park.groups]
        self.cell_groups: list[list[int]] = [[] for _ in range(n)]
        for j, g in enumerate(park.groups):
            for m in g.members:
                self.cell_groups[m].append(j)
        self.kn = [NAN] * n
        for m in range(n):
            if self.cell_groups[m]:
                self.kn[m] = load_unit_kn(park.sensors[m].config.display_unit) or NAN
        self.load = [NAN] * n  # latest load of each cell in kN
        self.good_ts = [self.start] * n  # when it last read good
        self.failed = [False] * n  # its driver lost it
        self.news: dict[int, float] = {}  # cells with news in the current batch -> its time
        cap = [g.capacity_kn for g in park.groups]
        self.g_warn = [c * fl.warning_ratio for c in cap]
        self.g_crit = [c * fl.critical_ratio for c in cap]
        self.g_db = [c * fl.deadband_ratio for c in cap]
        self.g_level = [0] * len(cap)
        self.g_data = [False] * len(cap)
        self.g_total = [NAN] * len(cap)
        self.g_hold = [Hold(fl.for_s, fl.clear_for_s) for _ in cap]

    # --- readings -------------------------------------------------------------------------

    def evaluate(self, readings: ReadingBatch | Iterable[Reading]) -> list[Transition]:
        """One batch: each reading in turn, then the floors it touched are judged."""
        if isinstance(readings, ReadingBatch):
            rows: Iterable[Reading] = zip(readings.sensor.tolist(), readings.value.tolist(),
                                          readings.ts.tolist(), readings.quality.tolist(),
                                          readings.battery.tolist(), strict=True)
        else:
            rows = readings
        out: list[Transition] = []
        reading = self._reading
        for row in rows:
            reading(row[0], row[1], row[2], row[3], out, row[4] if len(row) > 4 else NAN)
        if self.news:
            self._settle(out)
        return out

    def evaluate_batch(self, batch: ReadingBatch) -> list[Transition]:
        """The engine's own input, a :class:`ReadingBatch` (what the benchmark feeds both)."""
        return self.evaluate(batch)

    def evaluate_columns(self, sensor: list[int], value: list[float], ts: list[float],
                         quality: list[int]) -> list[Transition]:
        """Plain parallel lists, like :meth:`ReadingBatch.from_columns` takes them."""
        return self.evaluate(zip(sensor, value, ts, quality, strict=True))

    def _reading(self, s: int, v: float, ts: float, q: int, out: list[Transition],
                 battery: float = NAN) -> None:
        if ts < self.last_ts[s]:
            self.stats["out_of_order"] += 1
            return
        self.last_ts[s] = ts
        plausible = abs(v) <= PLAUSIBLE_LIMIT  # False for NaN and ±inf
        inside = self.lo[s] <= v <= self.hi[s]
        usable = q == GOOD and inside
        trs: list[Transition] = []
        if self.comm_after[s] == self.comm_after[s]:
            self._comm_fault(s, v, ts, q, trs)
        if self.ranged[s] and q == GOOD and plausible:
            self._sensor_fault(s, v, ts, trs)
        if self.nd_after[s] == self.nd_after[s]:
            self._no_data(s, ts, trs)
        if self.bat_on and battery == battery:
            self._battery(s, battery, ts, trs)
        if self.cell_groups[s]:
            if usable:
                self.load[s] = v * self.kn[s]
                self.good_ts[s] = ts
                self.failed[s] = False
                self.news[s] = ts
            elif q == COMM_FAIL:
                self.failed[s] = True
                self.news[s] = ts
        if not usable:
            if q in (HEARTBEAT, TEST):  # they only prove liveness
                self.stats["liveness"] += 1
            elif q == GOOD and plausible:  # outside the measuring range: a sensor fault
                self.stats["out_of_range"] += 1
            else:
                self.stats["unusable"] += 1
            out += trs
            return
        self.stats["evaluated"] += 1
        if self.th_on[s]:
            self._threshold(s, v, ts, trs)
        if self.rate_on[s]:
            self._rate(s, v, ts, trs)
        if self.button[s]:
            self._latch(s, v, ts, trs)
        if self.flap_on[s]:
            trs = self._flap_review(s, trs, ts)
        out += trs

    def _comm_fault(self, s: int, v: float, ts: float, q: int, trs: list[Transition]) -> None:
        """Raised when a sensor has had nothing but COMM_FAIL for comm_fault_after_s, cleared
        by the first reading that gets through."""
        after, was = self.comm_after[s], self.comm_raised[s]
        if q == COMM_FAIL:
            if self.fail_since[s] != self.fail_since[s]:
                self.fail_since[s] = ts
            now = was or ts - self.fail_since[s] >= after
        else:
            self.fail_since[s] = NAN
            now = False
        self.comm_raised[s] = now
        if now != was:
            trs.append((s, "comm_fault", NORMAL if now else WARNING, WARNING if now else NORMAL,
                        _none(v), after, ts))

    def _sensor_fault(self, s: int, v: float, ts: float, trs: list[Transition]) -> None:
        """Raised by a good reading outside the range, cleared by one inside; the threshold is
        the bound crossed (when cleared, the one crossed back)."""
        was = self.sf_side[s]
        now = 1 if v > self.hi[s] else -1 if v < self.lo[s] else 0
        self.sf_side[s] = now
        if (was != 0) != (now != 0):
            side = now or was
            trs.append((s, "sensor_fault", WARNING if was else NORMAL,
                        WARNING if now else NORMAL, v,
                        self.lo[s] if side < 0 else self.hi[s], ts))

    def _no_data(self, s: int, ts: float, trs: list[Transition]) -> None:
        """Any reading is a sign of life; a silence past the limit is reported (dated when it
        passed the limit) even when only this reading notices it, and cleared by it."""
        heard, after, sev = self.heard[s], self.nd_after[s], self.nd_severity[s]
        silent = heard + after <= ts
        if not self.nd_raised[s] and silent:
            trs.append((s, "no_data", NORMAL, sev, None, after, heard + after))
        if self.nd_raised[s] or silent:
            trs.append((s, "no_data", sev, NORMAL, None, after, ts))
        self.heard[s] = max(heard, ts)
        self.nd_raised[s] = False

    def _battery(self, s: int, b: float, ts: float, trs: list[Transition]) -> None:
        """A level below the limits, held until the battery is above them by the deadband;
        the threshold is the limit of the new level (when cleared, the one left)."""
        cur, warn, crit, db = self.bat_level[s], self.bat_warn, self.bat_crit, self.bat_db
        raised = (b < crit) + (b < warn)
        held = (b < crit + db) + (b < warn + db)
        new = max(raised, min(cur, held))
        self.bat_level[s] = new
        if new != cur:
            concerned = new if new > 0 else cur
            trs.append((s, "battery_low", LEVEL_SEVERITY[cur], LEVEL_SEVERITY[new], b,
                        _none(crit if concerned == 2 else warn), ts))

    def _threshold(self, s: int, v: float, ts: float, trs: list[Transition]) -> None:
        cur, db = self.th_level[s], self.db[s]
        new_hi = level(v, max(cur, 0), self.hw[s], self.hc[s], db)
        # the low side is the high side of -value
        new_lo = 0 if new_hi > 0 else level(-v, max(-cur, 0), -self.lw[s], -self.lc[s], db)
        self.th_level[s] = new_hi if new_hi > 0 else -new_lo
        hi, lo = self.th_hi[s], self.th_lo[s]
        assert hi is not None and lo is not None
        early_hi, late_hi = hi.observe(new_hi, v, ts)
        early_lo, late_lo = lo.observe(new_lo, v, ts)
        for f_hi, f_lo in ((early_hi, early_lo), (late_hi, late_lo)):
            rows = []
            if f_hi is not None:
                rows.append(self._level_row(s, "high_threshold", f_hi, self.hw[s], self.hc[s]))
            if f_lo is not None:
                rows.append(self._level_row(s, "low_threshold", f_lo, self.lw[s], self.lc[s]))
            trs += _in_order(rows)

    @staticmethod
    def _level_row(s: int, rule: str, fired: tuple[int, int, float, float], warn: float,
                   crit: float) -> Transition:
        old, new, value, ts = fired
        return (s, rule, LEVEL_SEVERITY[old], LEVEL_SEVERITY[new], _none(value),
                _none(_limit(old, new, warn, crit)), ts)

    def _rate(self, s: int, v: float, ts: float, trs: list[Transition]) -> None:
        """The change from the oldest kept sample no older than the window, per minute, judged
        once the span is at least half the window."""
        samples, window = self.samples[s], self.window[s]
        assert samples is not None
        judged, rate = False, NAN
        earliest = ts - window
        for t0, v0 in samples:  # oldest first: the first inside the window is the baseline
            if t0 >= earliest:
                span = ts - t0
                if span >= window * 0.5:
                    judged, rate = True, (v - v0) / span * 60.0
                break
        new = self.rate_level[s]
        if judged:
            new = level(rate, new, self.rw[s], self.rc[s], self.rdb[s])
        self.rate_level[s] = new
        if not samples or not ts - samples[-1][0] < self.step[s]:
            samples.append((ts, v))
        hold = self.rate_hold[s]
        assert hold is not None
        for fired in hold.observe(new, rate if judged else hold.value, ts):
            if fired is not None:
                trs.append(self._level_row(s, "rate_of_rise", fired, self.rw[s], self.rc[s]))

    def _latch(self, s: int, v: float, ts: float, trs: list[Transition]) -> None:
        was = self.latched[s]
        now = True if v == PRESS else False if v == RESET else was
        self.latched[s] = now
        if now != was:
            trs.append((s, "button_latch", NORMAL if now else CRITICAL,
                        CRITICAL if now else NORMAL, v, None, ts))

    def _flap_review(self, s: int, trs: list[Transition], ts: float | None) -> list[Transition]:
        """Flapping of one sensor over one evaluation (a usable reading; ``ts`` None for the
        clock's transitions, which are no evaluation): hold back its limit and rate changes
        while it flaps, raise, escalate or clear the flapping alarm."""
        if not trs and not self.hist[s] and not self.flapping[s]:
            return trs  # nothing changed, nothing remembered: nothing can move
        tracked = [i for i, t in enumerate(trs) if t[1] in TRACKED_SLOT]
        true, shown = self.true[s], self.shown[s]
        for i in tracked:
            t = trs[i]
            ch = TRACKED_SLOT[t[1]]
            true[ch] = t[3]
            # a change names the limit of the higher of its two levels
            self.thr[s][ch][max(t[2], t[3]) - WARNING] = _f(t[5])
            self.val[s][ch] = _f(t[4])
        was = now = self.flapping[s]
        extra: list[Transition] = []
        share = 0.0
        if ts is not None:
            self.hist[s] = h = ((self.hist[s] << 1) | bool(tracked)) & self.flap_mask
            share = h.bit_count() / self.history
            now = share >= self.flap_low if was else share > self.flap_high
            self.flapping[s] = now
            if now and not was:
                self.peak[s] = max(max(true), max(shown), WARNING)
                extra.append((s, "flapping", NORMAL, self.peak[s], share * 100,
                              self.flap_high * 100, ts))
        if was and now and tracked:  # still flapping: the alarm follows the worst it reaches
            worst = max(true)
            if worst > self.peak[s]:
                extra.append((s, "flapping", self.peak[s], worst, None, self.flap_high * 100,
                              trs[tracked[-1]][6]))
                self.peak[s] = worst
        if not was and not now:
            for i in tracked:
                shown[TRACKED_SLOT[trs[i][1]]] = trs[i][3]
        if was and not now:
            assert ts is not None
            # bring the alarms up to date, each with the value of its channel's latest change and
            # the limit of the level concerned: clears before raises, channels in order
            catch = sorted((ch for ch in range(len(TRACKED)) if shown[ch] != true[ch]),
                           key=lambda ch: (true[ch] > 0, ch))
            for ch in catch:
                limit = self.thr[s][ch][max(shown[ch], true[ch]) - WARNING]
                extra.append((s, TRACKED[ch], shown[ch], true[ch], _none(self.val[s][ch]),
                              _none(limit), ts))
            shown[:] = true
            extra.append((s, "flapping", self.peak[s], NORMAL, share * 100,
                          self.flap_low * 100, ts))
            self.peak[s] = 0
        if was or now:
            held = set(tracked)
            trs = [t for i, t in enumerate(trs) if i not in held]
        return trs + extra

    # --- floors ---------------------------------------------------------------------------

    def _settle(self, out: list[Transition]) -> None:
        """Judge every group with news in this batch, at the time of its latest news."""
        at: dict[int, float] = {}
        for cell, t in self.news.items():
            for g in self.cell_groups[cell]:
                at[g] = max(at.get(g, -INF), t)
        self.news.clear()
        for g, t in at.items():
            self._judge(g, t, out)

    def _judge(self, g: int, t: float, out: list[Transition]) -> None:
        n_bad = n_wait = 0
        total = 0.0
        for m in self.members[g]:
            load, failed = self.load[m], self.failed[m]
            fresh = self.good_ts[m] + self.stale_after > t
            if not failed and load == load and fresh:
                total += load
            elif load != load and not failed and fresh:
                n_wait += 1  # not heard from yet, within the grace after start
            else:
                n_bad += 1  # stale or lost: the sum would under-count
        complete = n_bad == 0 and n_wait == 0
        src = self.n + g
        was = self.g_data[g]
        now = True if n_bad else (False if complete else was)
        if now != was:
            out.append((src, "floor_data", NORMAL if now else WARNING,
                        WARNING if now else NORMAL, float(n_bad), None, t))
        self.g_data[g] = now
        if not complete:
            return  # the load alarm stays where it was
        self.g_total[g] = total
        new = level(total, self.g_level[g], self.g_warn[g], self.g_crit[g], self.g_db[g])
        self.g_level[g] = new
        for fired in self.g_hold[g].observe(new, total, t):
            if fired is not None:
                out.append(self._level_row(src, "floor_load", fired, self.g_warn[g],
                                           self.g_crit[g]))

    def _stale_due(self, g: int) -> float:
        """When the group's first cell goes stale (inf when one is already lost)."""
        return min(INF if self.failed[m] else self.good_ts[m] + self.stale_after
                   for m in self.members[g])

    # --- time -----------------------------------------------------------------------------

    def tick(self, now: float) -> list[Transition]:
        """Let time pass to `now`: durations elapse, silences grow, cells go stale."""
        per: dict[int, list[Transition]] = {}
        for s in self.th_sensors:
            hi, lo = self.th_hi[s], self.th_lo[s]
            assert hi is not None and lo is not None
            f_hi, f_lo = hi.due(now), lo.due(now)
            if f_hi is None and f_lo is None:
                continue
            rows = []
            if f_hi is not None:
                rows.append(self._level_row(s, "high_threshold", f_hi, self.hw[s], self.hc[s]))
            if f_lo is not None:
                rows.append(self._level_row(s, "low_threshold", f_lo, self.lw[s], self.lc[s]))
            per.setdefault(s, []).extend(_in_order(rows))
        for s in self.rate_sensors:
            hold = self.rate_hold[s]
            assert hold is not None
            fired = hold.due(now)
            if fired is not None:
                per.setdefault(s, []).append(
                    self._level_row(s, "rate_of_rise", fired, self.rw[s], self.rc[s]))
        for s in self.nd_sensors:
            if not self.nd_raised[s] and self.heard[s] + self.nd_after[s] <= now:
                self.nd_raised[s] = True
                per.setdefault(s, []).append(
                    (s, "no_data", NORMAL, self.nd_severity[s], None, self.nd_after[s],
                     self.heard[s] + self.nd_after[s]))
        out: list[Transition] = []
        for s, rows in per.items():
            out += self._flap_review(s, rows, None) if self.flap_on[s] else rows
        for g in range(len(self.members)):
            fired = self.g_hold[g].due(now)
            if fired is not None:
                out.append(self._level_row(self.n + g, "floor_load", fired, self.g_warn[g],
                                           self.g_crit[g]))
            if not self.g_data[g]:
                due = self._stale_due(g)
                if due <= now:
                    self._judge(g, due, out)
        return out

    def next_due(self) -> float:
        """When :meth:`tick` would next change anything (inf: never without readings)."""
        due = INF
        for s in self.th_sensors:
            hi, lo = self.th_hi[s], self.th_lo[s]
            assert hi is not None and lo is not None
            due = min(due, hi.next_due(), lo.next_due())
        for s in self.rate_sensors:
            hold = self.rate_hold[s]
            assert hold is not None
            due = min(due, hold.next_due())
        for s in self.nd_sensors:
            if not self.nd_raised[s]:
                due = min(due, self.heard[s] + self.nd_after[s])
        for g in range(len(self.members)):
            due = min(due, self.g_hold[g].next_due())
            if not self.g_data[g]:
                due = min(due, self._stale_due(g))
        return due


# --- helpers for comparing with the engine ---------------------------------------------------


def engine_rows(tr: Any) -> list[Transition]:
    """The engine's :class:`~parkwatch.rules.transitions.Transitions` as reference tuples."""
    from parkwatch.rules.registry import RULE_NAMES

    return [(s, RULE_NAMES[r], o, n, _none(v), _none(t), ts) for s, r, o, n, v, t, ts in tr.rows()]


def by_sensor(rows: Iterable[Transition]) -> dict[int, list[Transition]]:
    """Transitions per sensor, each sensor's in emitted order."""
    out: dict[int, list[Transition]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(r)
    return out


def bits(rows: dict[int, list[Transition]]) -> dict[int, list[tuple[Any, ...]]]:
    """Floats as their exact hex spelling, for a bit-identical comparison (-0.0 != 0.0)."""
    return {s: [tuple(x.hex() if isinstance(x, float) else x for x in r) for r in rs]
            for s, rs in rows.items()}
