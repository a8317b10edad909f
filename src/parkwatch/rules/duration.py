"""Durations: a confirmed level follows the raw level only after the new level has held.

Per channel (one sensor's one rule) there is a confirmed level (what alarms show), a pending
level and the time the raw level left the confirmed one.  Moving away from the confirmed level
in one direction keeps the clock running even when the raw level changes on the way (a value
passing warning into critical raises after ``for_s`` from the first crossing, at the severity
it then has).  Holding ``up_s`` (for a rise) or ``down_s`` (for a fall) confirms the pending
level.  A confirmation is dated when the hold elapsed (``since + hold``, compared as a deadline
``since + hold <= t`` so that ``due(next_due())`` always fires), whether a later reading or the
clock (``due``) notices it, so the result does not depend on when the engine looks.

The pending level is always the latest raw level, so a channel whose raw level did not change
and that has nothing pending cannot change either: only the others are worked on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from parkwatch.rules.levels import StateArray

_NONE = np.empty(0, np.intp)


@dataclass(slots=True)
class Fired:
    """Confirmations: at positions ``at`` of the input, old -> new, dated ts, caused by value."""

    at: np.ndarray
    old: np.ndarray
    new: np.ndarray
    value: np.ndarray
    ts: np.ndarray

    @staticmethod
    def none() -> Fired:
        return Fired(_NONE, _NONE, _NONE, np.empty(0), np.empty(0))


class Durations:
    def __init__(self, up_s: np.ndarray, down_s: np.ndarray) -> None:
        n = up_s.shape[0]
        self.up_s, self.down_s = up_s, down_s
        self.active = bool(np.any(up_s > 0) or np.any(down_s > 0))
        self.level = np.zeros(n, np.int8)  # confirmed
        self.pending = np.zeros(n, np.int8)  # the latest raw level
        self.since = np.full(n, np.nan)
        self.value = np.full(n, np.nan)  # of the latest reading while pending

    def state(self, prefix: str) -> dict[str, StateArray]:
        return {f"{prefix}.{k}": StateArray(getattr(self, k))
                for k in ("level", "pending", "since", "value")}

    def observe(self, idx: np.ndarray, raw: np.ndarray, value: np.ndarray,
                ts: np.ndarray) -> tuple[Fired, Fired]:
        """Feed raw levels of distinct channels; (confirmations that were already due before
        these readings, confirmations they cause at once)."""
        p_all = self.pending.take(idx)
        work = ((raw != p_all) | (p_all != self.level.take(idx))).nonzero()[0]
        if work.shape[0] == 0:
            return Fired.none(), Fired.none()
        i = idx[work]
        raw, value, ts, p = raw[work], value[work], ts[work], p_all[work]
        c, s, pv = self.level[i], self.since[i], self.value[i]
        up, down = self.up_s[i], self.down_s[i]
        due = (p != c) & (s + np.where(p > c, up, down) <= ts)
        f1 = due.nonzero()[0]
        early = Fired(work[f1], c[f1], p[f1], pv[f1],
                      s[f1] + np.where(p[f1] > c[f1], up[f1], down[f1]))
        c = np.where(due, p, c)
        same_way = (p != c) & (np.sign(raw - c) == np.sign(p - c))
        s = np.where(raw == c, np.nan, np.where(same_way, s, ts))
        hold = np.where(raw > c, up, down)
        now = (raw != c) & (s + hold <= ts)
        f2 = now.nonzero()[0]
        late = Fired(work[f2], c[f2], raw[f2], value[f2], s[f2] + hold[f2])
        self.level[i] = np.where(now, raw, c)
        self.pending[i] = raw
        self.since[i] = np.where(now, np.nan, s)
        self.value[i] = value
        return early, late

    def due(self, now: float) -> tuple[np.ndarray, Fired]:
        """Confirm every pending level whose hold has elapsed by `now`; (channels, fired)."""
        p, c = self.pending, self.level
        hold = np.where(p > c, self.up_s, self.down_s)
        idx = ((p != c) & (self.since + hold <= now)).nonzero()[0]
        fired = Fired(np.arange(idx.shape[0]), c[idx], p[idx], self.value[idx],
                      self.since[idx] + hold[idx])
        self.level[idx] = p[idx]
        self.since[idx] = np.nan
        return idx, fired

    def next_due(self) -> float:
        pend = self.pending != self.level
        if not pend.any():
            return np.inf
        hold = np.where(self.pending > self.level, self.up_s, self.down_s)
        return float(np.min((self.since + hold)[pend]))
