"""What a driver type declares in its registry line (see docs/drivers.md)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parkwatch.drivers.metricfamily import MetricFamily


@dataclass(frozen=True)
class DriverKind:
    config_model: type
    driver_path: str  # "module:Class" (or factory), imported when a daemon starts such a driver
    #: (park config, driver index) -> [(key path, message)]: checks across drivers and sensors
    cross_check: Callable[[Any, int], list[tuple[tuple[str | int, ...], str]]] | None = None
    #: the driver type's own metric families on /metrics (its drivers' ``metric_samples()``)
    metrics: tuple[MetricFamily, ...] = ()

    def driver_class(self) -> Any:
        """The driver class (or factory), imported only when a daemon starts such a driver: the
        config tools never load serial or MQTT code."""
        module, _, name = self.driver_path.partition(":")
        return getattr(importlib.import_module(module), name)
