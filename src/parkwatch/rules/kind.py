"""The contract of a rule kind: arrays of state and readings in, new state and transitions out."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np

from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rules.transitions import Transitions


class RuleKind(Protocol):
    """One kind of rule, evaluated for every sensor of a batch at once.

    ``evaluate`` receives a non-empty batch of readings, only of sensors in ``enabled``, whose
    sensors are all distinct (the engine splits repeated sensors into ordered rounds), in time
    order, and usable (finite value, GOOD quality) unless the kind sets ``all_qualities`` (then
    it sees COMM_FAIL, heartbeats and the rest too). It must not branch per reading in Python.
    """

    #: rule names this kind emits, in the order of the codes it uses (offset by the engine)
    rules: ClassVar[tuple[str, ...]]
    #: which sensors (by index) this kind applies to
    enabled: np.ndarray

    def __init__(self, park: ParkModel, rule_base: int) -> None: ...

    def evaluate(self, batch: ReadingBatch) -> Transitions: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...
