"""Readings travel from drivers to rules as batches of parallel numpy arrays.

A reading is (sensor index, value, device time, quality).  Batches are what make the rule
engine fast: one numpy operation per rule over every reading that has arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Quality(IntEnum):
    """How far a reading can be trusted; only GOOD readings move process rules."""

    GOOD = 0
    UNSTABLE = 1  # weighing indicator still settling
    OVERLOAD = 2  # indicator over its range: the value is a floor, not the truth
    HEARTBEAT = 3  # device alive, no value (button heartbeat)
    TEST = 4  # button test press: proves the device works, raises nothing
    COMM_FAIL = 5  # no answer from the device
    BAD = 6


@dataclass(slots=True)
class ReadingBatch:
    sensor: np.ndarray  # int32 index into the park's sensor table
    value: np.ndarray  # float64, already scaled to the sensor's unit
    ts: np.ndarray  # float64 seconds since the epoch, device time (receive time if none)
    quality: np.ndarray  # uint8 Quality
    battery: np.ndarray  # float64 percent, NaN when not reported

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    @staticmethod
    def empty() -> ReadingBatch:
        return ReadingBatch(np.empty(0, np.int32), np.empty(0), np.empty(0),
                            np.empty(0, np.uint8), np.empty(0))

    @staticmethod
    def from_columns(sensor: Sequence[int], value: Sequence[float], ts: Sequence[float],
                     quality: Sequence[int],
                     battery: Sequence[float] | None = None) -> ReadingBatch:
        n = len(sensor)
        return ReadingBatch(
            np.fromiter(sensor, np.int32, n),
            np.fromiter(value, np.float64, n),
            np.fromiter(ts, np.float64, n),
            np.fromiter(quality, np.uint8, n),
            np.fromiter(battery, np.float64, n) if battery is not None else np.full(n, np.nan),
        )

    def take(self, where: np.ndarray | slice) -> ReadingBatch:
        """The readings selected by a boolean mask, an index array or a slice (views, not
        copies), order kept."""
        return ReadingBatch(self.sensor[where], self.value[where], self.ts[where],
                            self.quality[where], self.battery[where])

    @staticmethod
    def concat(batches: list[ReadingBatch]) -> ReadingBatch:
        batches = [b for b in batches if len(b)]
        if not batches:
            return ReadingBatch.empty()
        if len(batches) == 1:
            return batches[0]
        return ReadingBatch(*(np.concatenate([getattr(b, f) for b in batches])
                              for f in ("sensor", "value", "ts", "quality", "battery")))
