"""Park configuration: strict models, YAML line tracking, cross-checks.

The names below are imported on first use, so that ``parkwatch.config.base`` can be imported by
the driver config models without pulling in the whole loader (which imports those models).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parkwatch.config.loader import ConfigError, ConfigProblem, load_config
    from parkwatch.config.model import ParkConfig, SensorConfig

__all__ = ["ConfigError", "ConfigProblem", "ParkConfig", "SensorConfig", "load_config"]


def __getattr__(name: str) -> Any:
    if name in ("ConfigError", "ConfigProblem", "load_config"):
        from parkwatch.config import loader

        return getattr(loader, name)
    if name in ("ParkConfig", "SensorConfig"):
        from parkwatch.config import model

        return getattr(model, name)
    raise AttributeError(name)
