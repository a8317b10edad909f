"""Readings no sensor can send, rejected before the rules: NaN, ±inf and absurd magnitudes.

A driver decodes what a device sent; a device (or whoever can publish on its topic) can send
anything a number can hold: ``1e308``, and through Python's json ``NaN``, ``Infinity`` and
``1e309`` (inf).  Such a value is no measurement of anything in a park, and believed it would
raise critical alarms, sum to absurd floor loads and overflow the rules' arithmetic.  So each
batch a driver decodes is screened here, vectorised, before it reaches the rule engine:

* ``not_finite``: a reading that should carry a value (quality GOOD) and carries NaN or ±inf,
  or any reading carrying ±inf;
* ``implausible``: a finite value beyond :data:`PLAUSIBLE_LIMIT` in magnitude, after scale
  and offset.

Both are counted per reason in the driver's rejections (the gateway status, ``/metrics``) and
dropped: they move no rule and prove no liveness, like a payload that cannot be decoded.
Readings that carry no value by design (COMM_FAIL, heartbeats, test presses: NaN) pass.

A plausible value outside its sensor's measuring range is another matter: the sensor spoke,
and said it is broken.  That is the ``sensor_fault`` rule's (:mod:`parkwatch.rules.sensor_fault`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from parkwatch.config.measuring import PLAUSIBLE_LIMIT
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rejections import Rejections

_GOOD = int(Quality.GOOD)

__all__ = ["PLAUSIBLE_LIMIT", "screen"]


def screen(batch: ReadingBatch, rejections: Rejections | None,
           ident: Callable[[int], str] | None = None) -> ReadingBatch:
    """`batch` without its implausible readings, each counted in `rejections` (if given);
    `ident` names a sensor by its index in the log line."""
    v = batch.value
    ok = np.abs(v) <= PLAUSIBLE_LIMIT  # False for NaN and ±inf: one pass over the batch
    if ok.all():
        return batch
    nan = np.isnan(v)
    bad = ~ok & ~(nan & (batch.quality != _GOOD))  # NaN without a value by design passes
    if not bad.any():
        return batch
    if rejections is not None:
        finite = np.isfinite(v)
        for reason, which in (("not_finite", bad & ~finite), ("implausible", bad & finite)):
            at = which.nonzero()[0]
            if at.shape[0]:
                i, s = int(at[0]), int(batch.sensor[at[0]])
                name = ident(s) if ident is not None else f"index {s}"
                rejections.reject_many(reason, int(at.shape[0]),
                                       f"sensor {name}: value {float(v[i])!r}")
    return batch.take((~bad).nonzero()[0])
