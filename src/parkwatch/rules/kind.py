"""The contract of a rule kind: arrays of state and readings in, new state and transitions out."""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np

from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Transitions


class RuleKind(Protocol):
    """One kind of rule, evaluated for every sensor of a batch at once.

    ``evaluate`` receives a non-empty batch of readings, only of sensors in ``enabled`` (but see
    ``harmless_for_others``), whose sensors are all distinct (the engine splits repeated sensors
    into ordered rounds), in time order, and usable (finite value, GOOD quality) unless the kind
    sets ``all_qualities`` (then it sees COMM_FAIL, heartbeats and the rest too). It must not
    branch per reading in Python.

    Optional parts, found by name:

    * ``tick(now) -> Transitions`` and ``next_due() -> float``: the kind changes with time alone
      (durations, silence); the engine calls ``tick`` when ``next_due`` has come.  Transitions
      born of time are dated when their condition was met, not when the clock noticed.
    * ``settles = True`` and ``settle() -> Transitions``: judged once per batch, after every
      reading of it (aggregates over several sensors).
    * ``reviews = True`` and ``review(usable, transitions) -> Transitions``: sees every other
      kind's transitions of a round (``usable`` is None for the clock's) and may hold some back.
    * ``harmless_for_others = True``: the kind's state for sensors outside ``enabled`` is inert
      (NaN limits, never a transition), so the engine may hand it a whole round rather than
      splitting the batch when most of the round is the kind's.

    * ``uses_last_ts = True`` (with ``all_qualities``): the engine hands the kind its array of
      each sensor's latest reading time as ``last_ts`` (updated by the engine before the kinds
      of a round run) and calls ``evaluate(batch, previous)`` with each reading's previous
      time (-inf for a first reading), so the kind need not keep the same clock itself.
    * ``restored()``: called after the state arrays were overwritten by a restore, to rebuild
      what the kind derives from them (screens, counters); derived arrays are never saved.

    ``state()`` names the arrays that must survive a restart; their first axis is the sensor (or
    the group) so the engine can carry them over by id when the config changes.
    """

    #: rule names this kind emits, in the order of the codes it uses (offset by the engine)
    rules: ClassVar[tuple[str, ...]]
    #: which sensors (by index) this kind applies to
    enabled: np.ndarray

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None: ...

    def evaluate(self, batch: ReadingBatch) -> Transitions: ...

    def state(self) -> dict[str, StateArray]: ...
