"""Park configuration: strict models, YAML line tracking, cross-checks.

This package never imports the rule kinds, drivers or alarm channels: the park config as the
gateway validates it, with what those bring, is assembled in :mod:`parkwatch.schema` (its
``load_config``).  The names below are imported on first use, so that
``parkwatch.config.base`` stays light for the models of the extensions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parkwatch.config.loader import ConfigError, ConfigProblem
    from parkwatch.config.model import ParkConfig, SensorConfig

__all__ = ["ConfigError", "ConfigProblem", "ParkConfig", "SensorConfig"]


def __getattr__(name: str) -> Any:
    if name in ("ConfigError", "ConfigProblem"):
        from parkwatch.config import loader

        return getattr(loader, name)
    if name in ("ParkConfig", "SensorConfig"):
        from parkwatch.config import model

        return getattr(model, name)
    raise AttributeError(name)
