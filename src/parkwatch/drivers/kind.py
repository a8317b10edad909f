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
    #: (park config, output index) -> [(key path, message)]: the driver type can switch
    #: outputs (parkwatch.outputs) and this checks one that names a driver of the type
    check_output: Callable[[Any, int], list[tuple[tuple[str | int, ...], str]]] | None = None
    #: "module:factory" of what switches its outputs: factory(driver, outputs, park config)
    #: returns a :class:`parkwatch.outputs.port.OutputPort`
    outputs_path: str | None = None

    def output_port(self) -> Any:
        """The output factory, imported only when a daemon switches such outputs."""
        if self.outputs_path is None:
            raise TypeError("this driver type cannot switch outputs")
        module, _, name = self.outputs_path.partition(":")
        return getattr(importlib.import_module(module), name)

    def driver_class(self) -> Any:
        """The driver class (or factory), imported only when a daemon starts such a driver: the
        config tools never load serial or MQTT code."""
        module, _, name = self.driver_path.partition(":")
        return getattr(importlib.import_module(module), name)
