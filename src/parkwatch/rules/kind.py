"""The contract of a rule kind: what it declares, and how it is evaluated.

A rule kind is one module holding one class derived from :class:`RuleKindBase`, plus one line
in :mod:`parkwatch.rules.registry`.  The class declares, besides its evaluation, everything the
rest of the gateway needs to know about it, so that config, rule-state snapshots, alarm events
and messages read the registry instead of a table per place (docs/rules.md, "Adding a rule
kind"):

* ``rules``: the rule names it emits, in the order of the codes it uses;
* ``settings``: its park-wide settings section under ``rules:`` (a pydantic model), if any;
* ``units``: the unit of each rule's value and limit, as a format of the sensor's unit;
* ``words`` and ``templates``: each rule in words and its default messages, per language;
* ``fingerprinter``: what of a sensor's (and a group's) config shapes the kind's state, so a
  changed setting starts that state afresh after a restart or a reload;
* ``cross_check``: problems of the park config only the kind can see.

A missing declaration fails when the class is defined, not at the first alarm.

Evaluation: ``evaluate`` receives a non-empty batch of readings, only of sensors in
``enabled`` (but see ``harmless_for_others``), whose sensors are all distinct (the engine
splits repeated sensors into ordered rounds), in time order, and usable (finite value, GOOD
quality) unless the kind sets ``all_qualities`` (then it sees COMM_FAIL, heartbeats and the
rest too).  It must not branch per reading in Python.  The optional parts have defaults here:

* ``tick(now)`` and ``next_due()``: the kind changes with time alone (durations, silence); the
  engine calls ``tick`` when ``next_due`` has come.  Transitions born of time are dated when
  their condition was met, not when the clock noticed.
* ``settles = True`` and ``settle()``: judged once per batch, after every reading of it
  (aggregates over several sensors).
* ``reviews = True`` and ``review(usable, transitions)``: sees every other kind's transitions
  of a round (``usable`` is None for the clock's) and may hold some back.
* ``harmless_for_others = True``: the kind's state for sensors outside ``enabled`` is inert
  (NaN limits, never a transition), so the engine may hand it a whole round rather than
  splitting the batch when most of the round is the kind's.
* ``uses_last_ts = True`` (with ``all_qualities``): the engine hands the kind its array of
  each sensor's latest reading time as ``last_ts`` and calls ``evaluate(batch, previous)``
  with each reading's previous time (-inf for a first reading).
* ``restored()``: called after the state arrays were overwritten by a restore, to rebuild what
  the kind derives from them (screens, counters); derived arrays are never saved.

``state()`` names the arrays that must survive a restart; their first axis is the sensor (or
the group) so the engine can carry them over by id when the config changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from parkwatch.config.model import LANGUAGES, ParkConfig
from parkwatch.config.yamlsource import Loc
from parkwatch.park import GroupInfo, ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Transitions

#: a problem of the park config: (key path, message)
Problem = tuple[Loc, str]
#: what of one sensor's (or group's) config shapes a kind's state, as plain JSON-able data
Fingerprint = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """A kind's park-wide settings: the section ``rules.<key>`` of the park config."""

    key: str
    model: type[BaseModel]
    description: str
    #: ``null`` turns the kind off (its default is on, with the model's defaults)
    nullable: bool = False

    def of(self, cfg: ParkConfig) -> Any:
        """This section of a validated config (None when it was set to null)."""
        return cfg.rules.section(self.key)


class RuleKindBase:
    """One kind of rule, evaluated for every sensor of a batch at once (see the module)."""

    rules: ClassVar[tuple[str, ...]]
    settings: ClassVar[Settings | None] = None
    #: rule name -> unit of its value and limit, "{}" standing for the sensor's own unit
    units: ClassVar[Mapping[str, str]]
    #: language -> rule name -> the rule in words (the `{rule}` placeholder)
    words: ClassVar[Mapping[str, Mapping[str, str]]]
    #: language -> template key ('{rule}.{event}' or '{rule}') -> default message
    templates: ClassVar[Mapping[str, Mapping[str, str]]]

    all_qualities: ClassVar[bool] = False
    settles: ClassVar[bool] = False
    reviews: ClassVar[bool] = False
    harmless_for_others: ClassVar[bool] = False
    uses_last_ts: ClassVar[bool] = False

    #: which sensors (by index) this kind applies to
    enabled: np.ndarray
    #: each sensor's latest reading time, handed over by the engine (``uses_last_ts``)
    last_ts: np.ndarray

    def __init_subclass__(cls, base: bool = False, **kwargs: Any) -> None:
        """Checks a kind's declarations (`base`: a shared base of kinds, not a kind)."""
        super().__init_subclass__(**kwargs)
        if base:
            return
        missing = [name for name in ("rules", "units", "words", "templates")
                   if not hasattr(cls, name)]
        if not any("fingerprinter" in vars(c) for c in cls.__mro__ if c is not RuleKindBase):
            missing.append("fingerprinter")
        if missing:
            raise TypeError(f"rule kind {cls.__name__} does not declare {', '.join(missing)} "
                            "(see parkwatch.rules.kind)")
        for rule in cls.rules:
            if rule not in cls.units:
                raise TypeError(f"rule kind {cls.__name__}: no unit for rule {rule!r}")
            for language in LANGUAGES:
                if rule not in cls.words.get(language, {}):
                    raise TypeError(f"rule kind {cls.__name__}: rule {rule!r} has no words in "
                                    f"language {language!r}")
            zh = cls.templates.get("zh", {})
            if f"{rule}.raised" not in zh and rule not in zh:
                raise TypeError(f"rule kind {cls.__name__}: rule {rule!r} has no Chinese "
                                "message for a raise ('{rule}.raised' or '{rule}')")
        for language, templates in cls.templates.items():
            strays = [k for k in templates if k.partition(".")[0] not in cls.rules]
            if strays:
                raise TypeError(f"rule kind {cls.__name__}: templates of {language!r} for "
                                f"rules it does not emit: {', '.join(strays)}")

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        raise NotImplementedError

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        """What shapes this kind's state for each sensor (worked out once per park)."""
        raise NotImplementedError

    @staticmethod
    def group_fingerprint(park: ParkModel, group: GroupInfo) -> Fingerprint:
        """What shapes this kind's state for a group (a floor or a zone), if it has any."""
        return {}

    @classmethod
    def settings_of(cls, cfg: ParkConfig) -> Any:
        """The kind's settings section of a validated config (None: set to null)."""
        if cls.settings is None:
            raise TypeError(f"rule kind {cls.__name__} has no settings")
        return cls.settings.of(cfg)

    @classmethod
    def cross_check(cls, cfg: ParkConfig) -> list[Problem]:
        """Problems of the park config this kind alone can see."""
        return []

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        raise NotImplementedError

    def state(self) -> dict[str, StateArray]:
        raise NotImplementedError

    def bind(self, rule_names: tuple[str, ...]) -> None:
        """Called once every kind is built, with every rule name in code order (for kinds that
        act on other kinds' transitions)."""

    def restored(self) -> None:
        """Rebuild what is derived from the state arrays (nothing by default)."""

    def tick(self, now: float) -> Transitions:
        return Transitions.empty()

    def next_due(self) -> float:
        return math.inf

    def settle(self) -> Transitions:
        return Transitions.empty()

    def review(self, usable: ReadingBatch | None, tr: Transitions) -> Transitions:
        return tr



def no_fingerprint(info: SensorInfo) -> Fingerprint:
    """For kinds whose state depends on nothing configurable beyond the sensor itself."""
    return {}
