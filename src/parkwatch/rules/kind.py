"""The contract of a rule kind: arrays of state and readings in, new state and transitions out."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rules.transitions import Transitions


class RuleKind(Protocol):
    """One kind of rule, evaluated for every sensor of a batch at once.

    ``evaluate`` receives readings whose sensors are all distinct (the engine splits repeated
    sensors into ordered rounds) and that are usable (finite value, GOOD quality, in time order).
    It must not branch per reading in Python.
    """

    #: rule names this kind emits, in the order of the codes it uses (offset by the engine)
    rules: ClassVar[tuple[str, ...]]

    def __init__(self, park: ParkModel, rule_base: int) -> None: ...

    def evaluate(self, batch: ReadingBatch) -> Transitions: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...
