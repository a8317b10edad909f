"""Park configuration: strict models, YAML line tracking, cross-checks."""

from parkwatch.config.loader import ConfigError, ConfigProblem, load_config
from parkwatch.config.model import ParkConfig, SensorConfig

__all__ = ["ConfigError", "ConfigProblem", "ParkConfig", "SensorConfig", "load_config"]
