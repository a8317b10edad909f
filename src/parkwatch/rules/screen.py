"""Screens: per sensor, the readings that cannot change anything, told apart in one gather.

In steady state almost every reading leaves its sensor where it was: below its limits, no
duration pending, no sample due.  A kind keeps, per sensor, one or two bounds derived from its state
such that a reading with ``x0 < bound0`` (and ``x1 < bound1``) provably changes nothing; the
hot path is one random gather of those bounds (side by side, so one cache line) and the
comparisons, and only the rest of the batch goes through the kind's full evaluation.  The
bounds err on the safe side (a reading near a bound is simply evaluated), so screening never
changes a result, only how much work finds it.  They are derived state: rebuilt from the kind's
persistent arrays after a restore, never saved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from parkwatch.readings import ReadingBatch
from parkwatch.rules.transitions import Transitions

#: a bound that lets everything through to the full evaluation
BUSY = -np.inf
#: a bound that nothing reaches
NEVER = np.inf


def _down32(x: np.ndarray | float) -> np.ndarray:
    """float64 bounds as float32, rounded towards -inf so they stay on the safe side."""
    x = np.asarray(x, np.float64)
    y = x.astype(np.float32)
    return np.where(y > x, np.nextafter(y, np.float32(-np.inf)), y)


class Screen:
    """The bounds of every sensor as float32 side by side: eight bytes a sensor (four with a
    single bound), so the random gather of a large batch touches as few cache lines as
    possible."""

    def __init__(self, n: int, bounds: int = 2) -> None:
        self.bounds = np.full((n, bounds), BUSY, np.float32)
        self._pairs = self.bounds.view(np.float64 if bounds == 2 else np.float32).ravel()

    def busy(self, idx: np.ndarray, x0: np.ndarray, x1: np.ndarray | None = None) -> np.ndarray:
        """Positions of the readings that must be evaluated (sensors `idx`, distinct); `x1`
        only with two bounds."""
        if x1 is None:
            return (~(x0 < self._pairs.take(idx))).nonzero()[0]
        b = self._pairs.take(idx).view(np.float32)
        quiet = x0 < b[0::2]
        quiet &= x1 < b[1::2]
        return (~quiet).nonzero()[0]

    def split(self, idx: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """The two tests apart: (``x0 < bound0``, ``x1 < bound1``) per reading."""
        b = self._pairs.take(idx).view(np.float32)
        return x0 < b[0::2], x1 < b[1::2]

    def set(self, idx: np.ndarray, b0: np.ndarray | float,
            b1: np.ndarray | float | None = None) -> None:
        if b1 is None:
            self._pairs[idx] = _down32(b0)
            return
        pairs = np.empty((idx.shape[0], 2), np.float32)
        pairs[:, 0], pairs[:, 1] = _down32(b0), _down32(b1)
        self._pairs[idx] = pairs.view(np.float64).ravel()


def evaluate_busy(batch: ReadingBatch, busy: np.ndarray,
                  evaluate: Callable[[ReadingBatch], Transitions],
                  rescreen: Callable[[np.ndarray], None]) -> Transitions:
    """A kind's full evaluation of the readings at positions `busy` only, then new bounds for
    their sensors (their state may have changed)."""
    if busy.shape[0] == 0:
        return Transitions.empty()
    if busy.shape[0] < len(batch):
        batch = batch.take(busy)
    out = evaluate(batch)
    rescreen(batch.sensor)
    return out
