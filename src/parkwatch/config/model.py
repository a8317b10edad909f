"""The park config: one YAML file describes a park, its people, its brokers and its sensors.

Validation at load is fatal (exit 2 with file, line and key path); connecting is retryable.
Field-level rules live on the models; rules that relate one part of the file to another
(unknown floor, duplicate id, ...) live in :mod:`parkwatch.config.crosscheck`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from parkwatch.config.base import ConfigPath, Id, Strict
from parkwatch.config.brokers import BrokerConfig
from parkwatch.drivers.registry import DriverConfig

SensorKind = Literal["load_cell", "fire_button", "water_level"]
SENSOR_KINDS: tuple[str, ...] = ("load_cell", "fire_button", "water_level")
DEFAULT_UNITS = {"load_cell": "kg", "fire_button": "", "water_level": "cm"}


class ParkInfo(Strict):
    id: Id = Field(description="park id; the {park} level of every command-center topic")
    name: str = Field(min_length=1, description="display name used in alarm messages")


class GatewayConfig(Strict):
    id: Id = Field(description="this gateway's id, carried in every alarm event")
    state_dir: ConfigPath = Field(Path("/var/lib/parkwatch"),
                                  description="durable state lives here")
    status_interval_s: float = Field(
        30.0, ge=1, le=3600, description="how often the retained gateway status is refreshed"
    )


class UplinkConfig(Strict):
    broker: Id = Field(description="name of the command-center broker under `brokers`")
    topic_prefix: str = Field(
        "parkwatch/v1", pattern=r"^[^+#]+[^/+#]$", description="contract prefix; change only "
        "with the contract version"
    )


class Party(Strict):
    id: Id
    name: str = Field(min_length=1)
    contact: str | None = Field(None, description="who to call, shown to operators")


class Zone(Strict):
    id: Id
    name: str | None = None
    area_m2: float | None = Field(None, gt=0, le=1_000_000)
    rated_load_kn_m2: float | None = Field(
        None, gt=0, le=100, description="defaults to the floor's rated load"
    )


class Floor(Strict):
    id: Id
    name: str | None = None
    level: int | None = Field(None, ge=-10, le=200, description="storey number; basements < 0")
    rated_load_kn_m2: float = Field(gt=0, le=100, description="rated live load (GB 50009)")
    area_m2: float = Field(gt=0, le=1_000_000)
    zones: list[Zone] = Field(default_factory=list, description="parts of the floor let "
                              "separately")


class Building(Strict):
    id: Id
    name: str | None = None
    floors: list[Floor] = Field(min_length=1, description="floors, lowest first by habit")


class Occupancy(Strict):
    building: Id
    floor: Id
    zone: Id | None = Field(None, description="omit when the tenant rents the whole floor")


class Tenant(Strict):
    id: Id
    name: str = Field(min_length=1)
    contact: str | None = None
    occupies: list[Occupancy] = Field(min_length=1, description="the floors and zones rented")


class ThresholdSettings(Strict):
    """High/low warning and critical limits with a hysteresis deadband (in the sensor's unit).

    An alarm is raised when a limit is crossed and cleared only when the value is back past the
    limit by more than ``deadband``, so a value wobbling around a limit does not chatter.
    """

    high_warning: float | None = Field(None, description="warning at or above this")
    high_critical: float | None = Field(None, description="critical at or above this")
    low_warning: float | None = Field(None, description="warning at or below this")
    low_critical: float | None = Field(None, description="critical at or below this")
    deadband: float = Field(0.0, ge=0, description="how far back past a limit clears it")

    def merged(self, override: ThresholdSettings | None) -> ThresholdSettings:
        """These defaults with every key the override sets explicitly (null disables a limit)."""
        if override is None:
            return self
        values = self.model_dump()
        values.update({k: getattr(override, k) for k in override.model_fields_set})
        return ThresholdSettings(**values)

    def problems(self) -> list[tuple[str, str]]:
        """(key, message) for limits that contradict each other."""
        out: list[tuple[str, str]] = []
        hw, hc, lw, lc, db = (self.high_warning, self.high_critical, self.low_warning,
                              self.low_critical, self.deadband)
        if hw is not None and hc is not None and hc <= hw:
            out.append(("high_critical", f"must be above high_warning ({hw:g})"))
        if lw is not None and lc is not None and lc >= lw:
            out.append(("low_critical", f"must be below low_warning ({lw:g})"))
        highs = [x for x in (hw, hc) if x is not None]
        lows = [x for x in (lw, lc) if x is not None]
        if highs and lows and max(lows) + db >= min(highs) - db:
            out.append(("deadband", f"low limits + deadband ({max(lows) + db:g}) must stay below "
                        f"high limits - deadband ({min(highs) - db:g})"))
        return out


class RulesConfig(Strict):
    """Per-kind defaults; each sensor may override any key under its own `thresholds`."""

    load_cell: ThresholdSettings = Field(default_factory=ThresholdSettings,
                                         description="limits in kg (or the sensor's unit)")
    water_level: ThresholdSettings = Field(default_factory=ThresholdSettings,
                                           description="limits in cm (or the sensor's unit)")


class SensorConfig(Strict):
    id: Id
    name: str | None = Field(None, description="display name used in alarm messages")
    kind: SensorKind
    building: Id | None = Field(None, description="building id (required but for water gauges)")
    floor: Id | None = Field(None, description="floor id (required for load cells)")
    zone: Id | None = None
    tenant: Id | None = Field(
        None, description="tenant responsible; default: whoever occupies the sensor's place"
    )
    driver: Id = Field(description="id of an entry under `drivers`")
    address: str | None = Field(None, description="driver-specific address (MQTT: full topic)")
    unit: str | None = Field(None, max_length=16, description="default kg / cm by kind")
    scale: float = Field(1.0, description="value = raw * scale + offset")
    offset: float = 0.0
    thresholds: ThresholdSettings | None = Field(
        None, description="overrides of rules.{kind}; null disables a limit")

    @model_validator(mode="after")
    def _shape(self) -> SensorConfig:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.zone is not None and self.floor is None:
            raise ValueError("a zone needs its floor")
        if self.floor is not None and self.building is None:
            raise ValueError("a floor needs its building")
        return self

    @property
    def display_unit(self) -> str:
        return self.unit if self.unit is not None else DEFAULT_UNITS[self.kind]


class AlarmsConfig(Strict):
    language: Literal["zh", "en"] = Field("zh", description="language of the default messages")
    messages: dict[str, str] = Field(
        default_factory=dict,
        description="message templates by '{rule}.{event}', '{rule}' or 'default'; "
        "placeholders are listed in docs/contract.md",
    )


class ParkConfig(Strict):
    park: ParkInfo = Field(description="which park this gateway watches")
    gateway: GatewayConfig = Field(description="this gateway")
    brokers: dict[Id, BrokerConfig] = Field(
        min_length=1, description="MQTT brokers by name (sensor side, command center)")
    uplink: UplinkConfig = Field(description="where alarm events and the gateway status go")
    landlord: Party = Field(description="the compound's owner (厂中厂 landlord)")
    buildings: list[Building] = Field(min_length=1, description="buildings with their floors")
    tenants: list[Tenant] = Field(default_factory=list,
                                  description="companies renting floors or zones")
    drivers: list[DriverConfig] = Field(min_length=1, description="how readings arrive")
    sensors: list[SensorConfig] = Field(default_factory=list, description="every sensor")
    rules: RulesConfig = Field(default_factory=RulesConfig,
                               description="default limits per sensor kind")
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig,
                                 description="how alarm messages read")

    def thresholds_for(self, sensor: SensorConfig) -> ThresholdSettings | None:
        """The effective limits of a sensor (kind defaults merged with its overrides)."""
        if sensor.kind == "fire_button":
            return None
        base: ThresholdSettings = getattr(self.rules, sensor.kind)
        return base.merged(sensor.thresholds)
