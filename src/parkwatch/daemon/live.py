"""The parts built from the park's config, which a reload replaces together.

The config, the park model, the rule engine, the alarm service, the drivers and the telemetry
aggregates all follow the config file: a reload (:mod:`parkwatch.daemon.reloader`) builds new
ones and swaps them in here, on the pipeline thread between two batches.  Every job of the daemon
that needs one of them (status, commands, the timers) holds this object, not the part itself,
and reads the part when it runs: none of them can keep using a part a reload has retired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parkwatch.alarms.service import AlarmService
from parkwatch.config.model import ParkConfig
from parkwatch.park import ParkModel
from parkwatch.rules.engine import RuleEngine
from parkwatch.telemetry.aggregates import Aggregates


@dataclass(eq=False)
class LiveParts:
    """What the running config built; swapped field by field by a reload only."""

    cfg: ParkConfig
    park: ParkModel
    engine: RuleEngine
    alarms: AlarmService
    #: the running drivers, in config order (each a driver of its kind, see drivers/registry)
    drivers: list[Any]
    #: floor loads, sensor limits and the gateway's counters for Grafana, over this park
    aggregates: Aggregates
