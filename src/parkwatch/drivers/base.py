"""What the daemon expects of a driver, and the helper serial drivers use to hand over readings.

A driver is constructed as ``Driver(driver_config, park_model, inbox, park_config)`` and has
every member of :class:`Driver`: ``id``, ``start()``, ``stop()``, ``health() -> dict``,
``alive`` (its loop runs: the systemd watchdog is fed only while every driver's is),
``accepted`` (count), ``rejections`` (:class:`parkwatch.rejections.Rejections`),
``state_listeners`` (told when its devices come and go), ``decode(items) -> ReadingBatch``, and
three hooks the daemon's ``/metrics`` and ``/healthz`` read: ``metric_samples()`` (its samples
of the metric families its registry entry declares, see
:class:`~parkwatch.drivers.metricfamily.MetricFamily`), ``health_warnings()`` and
``broker_link()``.  Drivers put items into the inbox from their own threads
(:mod:`parkwatch.daemon.inbox`): plain tuples, the driver first, each driver's of a shape it
names as a type (:data:`Reading` here); ``decode`` runs on the pipeline thread and turns a list
of them into one batch.  A driver never evaluates rules.  docs/drivers.md says how to write
one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

import numpy as np

from parkwatch.drivers.metricfamily import MetricSample
from parkwatch.plausible import screen
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rejections import Rejections


class BrokerLink(NamedTuple):
    """A driver's connection to an MQTT broker, as ``/metrics`` and ``/healthz`` show it."""

    broker: str  #: its name under ``brokers:`` in the config
    connected: bool


class Driver(Protocol):
    """Every member the daemon uses on a driver (docs/drivers.md explains each)."""

    id: str
    rejections: Rejections
    #: told True when the driver's devices can be heard again, False when they cannot (the
    #: daemon publishes its status on either)
    state_listeners: list[Callable[[bool], None]]

    @property
    def accepted(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def health(self) -> dict[str, Any]: ...

    @property
    def alive(self) -> bool: ...

    def decode(self, items: list[Any]) -> ReadingBatch: ...

    def metric_samples(self) -> Iterable[MetricSample]:
        """Samples of the families the driver's registry entry declares (none: empty)."""
        ...

    def health_warnings(self) -> list[str]:
        """What degrades the driver but loses no alarm, for ``/healthz`` (e.g. a quarantined
        Modbus slave); the daemon puts ``driver '<id>': `` before each."""
        ...

    def broker_link(self) -> BrokerLink | None:
        """The driver's MQTT broker link, or None for a driver that has none."""
        ...


_COMM_FAIL = int(Quality.COMM_FAIL)

#: a reading ready-made, as :class:`DirectReadings` puts it into the inbox:
#: (source, sensor, value, ts, quality)
Reading = tuple["DirectReadings", int, float, float, int]


class DirectReadings:
    """For drivers that decode on their own thread: readings go into the inbox ready-made
    (:data:`Reading`), each naming the driver (`source`) as the one that decodes it, whose
    ``decode`` hands them back here.  Naming the driver, not this helper, is what lets a reload
    renumber the readings a replaced driver queued before it stopped
    (:attr:`parkwatch.daemon.pipeline.Pipeline.retired` is keyed by driver).

    Readings no sensor can send (NaN, ±inf, absurd magnitudes) are counted in the source's
    ``rejections`` and dropped as they are decoded (:func:`parkwatch.plausible.screen`);
    `ident` names a sensor by its index in that log line."""

    def __init__(self, inbox: Any, source: Any,
                 ident: Callable[[int], str] | None = None) -> None:
        self._put = inbox.put
        self._source = source
        self._ident = ident
        self.accepted = 0

    def put(self, sensor: int, value: float, ts: float, quality: int = Quality.GOOD) -> None:
        self._put((self._source, sensor, value, ts, quality))

    def put_many(self, sensors: list[int], values: list[float], ts: float,
                 quality: int = Quality.GOOD) -> None:
        source = self._source
        for s, v in zip(sensors, values, strict=True):
            self._put((source, s, v, ts, quality))

    def comm_fail(self, sensors: list[int], ts: float) -> None:
        source = self._source
        for s in sensors:
            self._put((source, s, math.nan, ts, Quality.COMM_FAIL))

    def decode(self, items: list[Reading]) -> ReadingBatch:
        if not items:
            return ReadingBatch.empty()
        _sources, sensors, values, times, qualities = zip(*items, strict=True)
        batch = screen(ReadingBatch.from_columns(sensors, values, times, qualities),
                       getattr(self._source, "rejections", None), self._ident)
        self.accepted += len(batch) - int(np.count_nonzero(batch.quality == _COMM_FAIL))
        return batch
