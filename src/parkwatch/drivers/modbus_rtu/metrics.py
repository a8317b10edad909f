"""The Modbus drivers' own metric families on ``/metrics`` (one series per slave), and
its samples of them: read from the bus scheduler's counters at scrape time, never counted
twice."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from parkwatch.drivers.metricfamily import MetricFamily, MetricSample

POLLS = "parkwatch_modbus_polls_total"
TIMEOUTS = "parkwatch_modbus_timeouts_total"
QUARANTINED = "parkwatch_modbus_quarantined"

#: the families, in the order the catalogue lists them (the registry entry carries them)
FAMILIES = (
    MetricFamily(POLLS, "counter", ("driver", "slave"),
                 "Modbus requests sent to a slave (RTU, RTU over TCP or TCP)."),
    MetricFamily(TIMEOUTS, "counter", ("driver", "slave"),
                 "Modbus requests a slave did not answer in time."),
    MetricFamily(QUARANTINED, "gauge", ("driver", "slave"),
                 "1 while a Modbus slave is quarantined (polled only now and then) after "
                 "timeouts."),
)


class SlaveCounts(Protocol):
    """What the samples read of a slave (the bus scheduler's ``SlaveState``)."""

    @property
    def polls(self) -> int: ...

    @property
    def timeouts(self) -> int: ...

    @property
    def quarantined(self) -> bool: ...


def samples(driver_id: str, slaves: Mapping[int, SlaveCounts]) -> Iterator[MetricSample]:
    """Each slave's polls, timeouts and quarantine, by slave address."""
    for slave, s in sorted(dict(slaves).items()):
        labels = (driver_id, str(slave))
        yield POLLS, labels, s.polls
        yield TIMEOUTS, labels, s.timeouts
        yield QUARANTINED, labels, int(s.quarantined)


def quarantine_warnings(slaves: Mapping[int, SlaveCounts]) -> list[str]:
    """A health warning for each quarantined slave (``/healthz``)."""
    return [f"modbus slave {slave} quarantined (not answering)"
            for slave, s in sorted(dict(slaves).items()) if s.quarantined]
