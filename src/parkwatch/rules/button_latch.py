"""The fire-button latch: a press raises a critical fire alarm that holds until a reset.

Heartbeats and test presses prove the button is alive but never raise or clear anything.

Besides readings, two things move a latch, and this kind owns what they mean: an operator's
reset of a button that cannot be reset at the device (:meth:`ButtonLatchRule.reset`), and a
fire alarm that outlives the rule state, latched again without its press being read
(:meth:`ButtonLatchRule.relatch`).  Both return transitions, which the alarm path applies as
it does a reading's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import numpy as np

from parkwatch.park import KIND_CODE, ParkModel, SensorInfo
from parkwatch.readings import ReadingBatch
from parkwatch.rules.kind import Fingerprint, RuleKindBase, no_fingerprint
from parkwatch.rules.levels import StateArray
from parkwatch.rules.transitions import Severity, Transitions

#: plain ints for numpy comparisons: numpy asks an IntEnum member's class for a dozen
#: attributes it lacks, each through the enum metaclass (a microsecond a use)
_NORMAL = int(Severity.NORMAL)
_CRITICAL = int(Severity.CRITICAL)


PRESS = 1.0
RESET = 0.0


#: what a sensor's next reading must be to change its latch: PRESS, RESET, or (not a button) a
#: value no reading of a button has
_NOT_A_BUTTON = -1


class ButtonLatchRule(RuleKindBase):
    rules: ClassVar[tuple[str, ...]] = ("button_latch",)
    units: ClassVar[Mapping[str, str]] = {"button_latch": "{}"}
    words: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {"button_latch": "火警"},
        "en": {"button_latch": "fire"},
    }
    templates: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "zh": {
            "button_latch.raised": (
                "【火警】{place} 一键报警按钮（{sensor}）被按下，请立即核实并组织疏散！"
            ),
            "button_latch.cleared": "【火警复位】{place} 一键报警按钮（{sensor}）已复位",
            "button_latch.escalated": (
                "【火警升级】{place} 一键报警按钮（{sensor}）报警长时间未确认，已逐级上报，请立即"
                "处置！"
            ),
            "button_latch.reminder": (
                "【火警未确认】{place} 一键报警按钮（{sensor}）报警仍未确认，请立即核实处置！"
            ),
            "button_latch": "【火警{event}】{place} 一键报警按钮（{sensor}）",
        },
        "en": {
            "button_latch.raised": (
                "FIRE: alarm button {sensor} pressed at {place}; verify and evacuate now!"
            ),
            "button_latch.cleared": "Fire alarm button {sensor} at {place} has been reset",
            "button_latch.escalated": (
                "FIRE alarm at {place} ({sensor}) still unacknowledged: escalated; act now!"
            ),
            "button_latch.reminder": (
                "FIRE alarm at {place} ({sensor}) is still unacknowledged; verify and act now!"
            ),
            "button_latch": "Fire alarm button {sensor} at {place}: {event}",
        },
    }
    #: a reading of another sensor never matches what the latch waits for
    harmless_for_others: ClassVar[bool] = True

    @staticmethod
    def fingerprinter(park: ParkModel) -> Callable[[SensorInfo], Fingerprint]:
        """A latch depends on nothing configurable beyond the sensor itself."""
        return no_fingerprint

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None:
        self.code = rule_base
        self.enabled = park.kind == KIND_CODE["fire_button"]
        self.latched = np.zeros(len(park), bool)
        self.awaits = np.zeros(len(park), np.int8)
        self.restored()

    def restored(self) -> None:
        self.awaits[:] = np.where(self.enabled, np.where(self.latched, RESET, PRESS),
                                  _NOT_A_BUTTON)

    def evaluate(self, batch: ReadingBatch, previous: np.ndarray | None = None) -> Transitions:
        busy = (batch.value == self.awaits.take(batch.sensor)).nonzero()[0]
        if busy.shape[0] == 0:
            return Transitions.empty()
        batch = batch.take(busy)
        idx, v = batch.sensor, batch.value
        was = self.latched[idx]
        now = np.where(v == PRESS, True, np.where(v == RESET, False, was))
        self.latched[idx] = now
        self.awaits[idx] = np.where(self.enabled[idx], np.where(now, RESET, PRESS), _NOT_A_BUTTON)
        ch = (was != now).nonzero()[0]
        if ch.shape[0] == 0:
            return Transitions.empty()
        sev = np.where(now[ch], _CRITICAL, _NORMAL)
        return Transitions.build(idx[ch], self.code, _CRITICAL - sev, sev, v[ch],
                                 np.full(ch.shape[0], np.nan), batch.ts[ch])

    def reset(self, sensor: int) -> Transitions:
        """An operator's reset of a button that could not be reset at the device: unlatched,
        as a reset reading would.  Its transition to normal (none when it was not latched) is
        born of no reading: NaN value and time, so the alarm keeps the press that raised it."""
        if not self.latched[sensor]:
            return Transitions.empty()
        self.latched[sensor] = False
        self.awaits[sensor] = PRESS
        nan = np.full(1, np.nan)
        return Transitions.build(np.full(1, sensor), self.code, np.full(1, _CRITICAL),
                                 np.full(1, _NORMAL), nan, nan, nan)

    def relatch(self, sensors: Sequence[int], at: float) -> Transitions:
        """Buttons latched again without their press being read: a fire alarm outlives a
        config change of its button, a lost rule state or a lost alarm store.  The
        transitions to critical of those not latched already, as their press would give,
        dated `at`."""
        idx = np.unique(np.asarray(sensors, np.int64))
        idx = idx[~self.latched[idx]]
        self.latched[idx] = True
        self.awaits[idx] = np.where(self.enabled[idx], RESET, _NOT_A_BUTTON)
        n = idx.shape[0]
        return Transitions.build(idx, self.code, np.full(n, _NORMAL), np.full(n, _CRITICAL),
                                 np.full(n, PRESS), np.full(n, np.nan), np.full(n, at))

    def state(self) -> dict[str, StateArray]:
        return {"latched": StateArray(self.latched)}
