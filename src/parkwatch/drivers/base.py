"""What the daemon expects of a driver, and the helper serial drivers use to hand over readings.

A driver is constructed as ``Driver(driver_config, park_model, inbox, park_config)`` and has
``id``, ``start()``, ``stop()``, ``health() -> dict``, ``alive`` (its loop runs: the systemd
watchdog is fed only while every driver's is), ``accepted`` (count), ``rejections``
(:class:`parkwatch.ratelog.Rejections`) and ``decode(items) -> ReadingBatch``.  Drivers put
items into the inbox from their own threads (:mod:`parkwatch.daemon.inbox`): plain tuples, the
driver first, each driver's of a shape it names as a type (:data:`Reading` here); ``decode``
runs on the pipeline thread and turns a list of them into one batch.  A driver never evaluates
rules.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from parkwatch.ratelog import Rejections
from parkwatch.readings import Quality, ReadingBatch


class Driver(Protocol):
    id: str
    accepted: int
    rejections: Rejections

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def health(self) -> dict[str, Any]: ...

    @property
    def alive(self) -> bool: ...

    def decode(self, items: list[Any]) -> ReadingBatch: ...


#: a reading ready-made, as :class:`DirectReadings` puts it into the inbox:
#: (source, sensor, value, ts, quality)
Reading = tuple["DirectReadings", int, float, float, int]


class DirectReadings:
    """For drivers that decode on their own thread: readings go into the inbox ready-made
    (:data:`Reading`)."""

    def __init__(self, inbox: Any) -> None:
        self._put = inbox.put
        self.accepted = 0

    def put(self, sensor: int, value: float, ts: float, quality: int = Quality.GOOD) -> None:
        self._put((self, sensor, value, ts, quality))

    def put_many(self, sensors: list[int], values: list[float], ts: float,
                 quality: int = Quality.GOOD) -> None:
        for s, v in zip(sensors, values, strict=True):
            self._put((self, s, v, ts, quality))

    def comm_fail(self, sensors: list[int], ts: float) -> None:
        for s in sensors:
            self._put((self, s, math.nan, ts, Quality.COMM_FAIL))

    def decode(self, items: list[Reading]) -> ReadingBatch:
        if not items:
            return ReadingBatch.empty()
        _sources, sensors, values, times, qualities = zip(*items, strict=True)
        self.accepted += len(items) - qualities.count(Quality.COMM_FAIL)
        return ReadingBatch.from_columns(sensors, values, times, qualities)
