"""Evaluates every rule kind over a batch of readings and returns the transitions.

Readings of one sensor that arrive in the same batch are evaluated in their order: the batch is
split into rounds by occurrence (first reading of each sensor, then the second, ...), and each
round is one vectorised pass per rule kind.  A lone fire-button press is one tiny round; a
flood of readings from thousands of sensors is usually one large one.

Per round: out-of-order readings are dropped and counted; kinds that want every reading see it;
kinds that want values see the usable ones (GOOD, and inside the sensor's measuring range, or
within PLAUSIBLE_LIMIT for a sensor without one); reviewers (flapping) see the transitions.  After
the last round, aggregate kinds settle.  Time passes in :meth:`tick`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from parkwatch.config.measuring import PLAUSIBLE_LIMIT
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.button_latch import ButtonLatchRule
from parkwatch.rules.kind import RuleKindBase
from parkwatch.rules.levels import StateArray
from parkwatch.rules.registry import RULE_KINDS
from parkwatch.rules.transitions import Transitions

#: plain ints for numpy comparisons: numpy asks an IntEnum member's class for a dozen
#: attributes it lacks, each through the enum metaclass (a microsecond a use)
_GOOD = int(Quality.GOOD)
_HEARTBEAT = int(Quality.HEARTBEAT)
_TEST = int(Quality.TEST)


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


def _run(kind: RuleKindBase, bit: int, bits: np.ndarray | None, sub: ReadingBatch,
         previous: np.ndarray | None = None) -> Transitions:
    """Evaluate one kind on the readings of the sensors it applies to (its ``enabled`` mask).

    Kinds that set ``harmless_for_others`` are given the whole round when most of it is
    theirs (or when no kind needs splitting: `bits` None): their state for other sensors is
    inert, and not splitting the batch is cheaper.  Kinds that set ``uses_last_ts`` also get
    each reading's `previous` reading time."""
    if bits is not None:
        on = (bits & bit) != 0
        count = int(np.count_nonzero(on))
        if count == 0:
            return Transitions.empty()
        if count < on.shape[0] and not (kind.harmless_for_others and count * 2 >= on.shape[0]):
            keep = on.nonzero()[0]
            sub = sub.take(keep)
            previous = None if previous is None else previous[keep]
    return kind.evaluate(sub, previous) if kind.uses_last_ts else kind.evaluate(sub)


class RuleEngine:
    def __init__(self, park: ParkModel, start: float | None = None) -> None:
        self.park = park
        self.start = time.time() if start is None else start
        self.kinds: dict[str, RuleKindBase] = {}
        base = 0
        for name, cls in RULE_KINDS.items():
            self.kinds[name] = cls(park, base, self.start)
            base += len(cls.rules)
        names = tuple(rule for cls in RULE_KINDS.values() for rule in cls.rules)
        for kind in self.kinds.values():
            kind.bind(names)
        # kinds with nothing to do in this park are left out of every pass
        live = [k for k in self.kinds.values() if k.enabled.any()]
        # one bit per kind and sensor: a round looks up which kinds apply with one gather
        # (only needed when a kind must not see other sensors' readings)
        self.bits = np.zeros(len(park), np.uint16)
        bit_of = {}
        for j, kind in enumerate(live):
            bit_of[id(kind)] = 1 << j
            self.bits[kind.enabled] |= np.uint16(1 << j)
        self.kinds_all = [(k, bit_of[id(k)]) for k in live if k.all_qualities]
        self.kinds_usable = [(k, bit_of[id(k)]) for k in live
                             if not k.all_qualities and not k.reviews]
        self.reviewers = [k for k in live if k.reviews]
        self.settlers = [k for k in live if k.settles]
        # kinds that change with time alone: those with a tick of their own
        self.tickers = [k for k in live if type(k).tick is not RuleKindBase.tick]
        self.split = any(not k.harmless_for_others for k, _ in self.kinds_all + self.kinds_usable)
        n = len(park)
        self.last_ts = np.full(n, -np.inf)
        for kind in live:
            if kind.uses_last_ts:
                kind.last_ts = self.last_ts
        self._stamp = np.full(n, -1, np.int32)
        #: next_due() as of the last change of state (None: to be worked out again); the
        #: pipeline asks before and after every batch, and some kinds scan every sensor
        self._due: float | None = None
        self.stats = {"evaluated": 0, "out_of_order": 0, "unusable": 0, "liveness": 0,
                      "out_of_range": 0}

    def state(self) -> dict[str, StateArray]:
        """Every array of rule state, by name, for saving and restoring."""
        out = {"engine.last_ts": StateArray(self.last_ts)}
        for name, kind in self.kinds.items():
            out |= {f"{name}.{key}": arr for key, arr in kind.state().items()}
        return out

    def restored(self) -> None:
        """The state arrays were overwritten (a restore): kinds rebuild what they derive."""
        self._due = None
        for kind in self.kinds.values():
            kind.restored()

    @property
    def button_latch(self) -> ButtonLatchRule:
        """The fire buttons' latch (the one kind whose state an operator may set)."""
        latch = self.kinds["button_latch"]
        if not isinstance(latch, ButtonLatchRule):
            raise TypeError("the button_latch kind is not ButtonLatchRule")
        return latch

    def reset_latch(self, sensor: int) -> Transitions:
        """An operator's reset of a fire button (it could not be reset at the device): its
        transition to normal, carrying no reading (see ButtonLatchRule.reset)."""
        self._due = None
        return self.button_latch.reset(sensor)

    def relatch(self, sensors: Sequence[int], at: float) -> Transitions:
        """Fire buttons whose alarm outlives their rule state, latched again: the
        transitions to critical of those that were not, dated `at` (see
        ButtonLatchRule.relatch)."""
        self._due = None
        return self.button_latch.relatch(sensors, at)

    def _distinct(self, sensor: np.ndarray) -> bool:
        pos = np.arange(sensor.shape[0], dtype=np.int32)
        self._stamp[sensor] = pos
        return bool(np.array_equal(self._stamp.take(sensor), pos))

    def rebase(self, step: float) -> None:
        """The wall clock stepped by ``step`` seconds (:mod:`parkwatch.daemon.clockwatch`):
        each sensor's last reading time moves with it, so that a reading the gateway stamps
        after a backward step is not taken for older than the last and dropped as out of
        order (a fire button pressed just after the step would be).  In place: the kinds
        that read ``last_ts`` share the array."""
        np.add(self.last_ts, step, out=self.last_ts)  # -inf (never read) stays -inf

    def evaluate(self, batch: ReadingBatch) -> Transitions:
        if len(batch) == 0:
            return Transitions.empty()
        self._due = None
        if batch.sensor.dtype != np.intp:  # the index type numpy gathers fastest with
            batch = ReadingBatch(batch.sensor.astype(np.intp), batch.value, batch.ts,
                                 batch.quality, batch.battery)
        if self._distinct(batch.sensor):
            parts = self._round(batch)
        else:
            rank = occurrence_rank(batch.sensor)
            parts = []
            for r in range(int(rank.max()) + 1):
                parts.extend(self._round(batch.take(rank == r)))
        for kind in self.settlers:
            parts.append(kind.settle())
        return Transitions.concat(parts)

    def _round(self, sub: ReadingBatch) -> list[Transitions]:
        previous = self.last_ts.take(sub.sensor)
        fresh = sub.ts >= previous
        if not fresh.all():
            self.stats["out_of_order"] += int(fresh.shape[0] - np.count_nonzero(fresh))
            keep = fresh.nonzero()[0]
            sub, previous = sub.take(keep), previous[keep]
        self.last_ts[sub.sensor] = sub.ts
        bits = self.bits.take(sub.sensor) if self.split else None
        parts = [t for kind, bit in self.kinds_all
                 if len(t := _run(kind, bit, bits, sub, previous))]
        v = sub.value
        inside = self.park.in_range(sub.sensor, v)  # False for NaN and ±inf
        good = sub.quality == _GOOD
        usable = good & inside
        if not usable.all():
            # heartbeats and test presses only prove liveness; a good reading outside its
            # sensor's range is the sensor_fault rule's; anything else is unusable data
            alive = (sub.quality == _HEARTBEAT) | (sub.quality == _TEST)
            n_alive = int(np.count_nonzero(alive))
            n_out = int(np.count_nonzero(good & ~inside & (np.abs(v) <= PLAUSIBLE_LIMIT)))
            self.stats["liveness"] += n_alive
            self.stats["out_of_range"] += n_out
            self.stats["unusable"] += (int(usable.shape[0] - np.count_nonzero(usable)) - n_alive
                                       - n_out)
            keep = usable.nonzero()[0]
            sub = sub.take(keep)
            bits = None if bits is None else bits[keep]
        self.stats["evaluated"] += len(sub)
        if len(sub):
            parts += [t for kind, bit in self.kinds_usable
                      if len(t := _run(kind, bit, bits, sub))]
        if not self.reviewers:
            return parts
        tr = Transitions.concat(parts)
        for kind in self.reviewers:
            tr = kind.review(sub, tr)
        return [tr]

    def tick(self, now: float) -> Transitions:
        """Let time pass to `now`: durations elapse, silences grow, cells go stale."""
        self._due = None
        tr = Transitions.concat([kind.tick(now) for kind in self.tickers])
        for kind in self.reviewers:
            if len(tr):
                tr = kind.review(None, tr)
        return tr

    def next_due(self) -> float:
        """When :meth:`tick` would next change anything (inf: never without readings)."""
        if self._due is None:
            self._due = min((kind.next_due() for kind in self.tickers), default=np.inf)
        return self._due
