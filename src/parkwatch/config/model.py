"""The park config: one YAML file describes a park, its people, its brokers and its sensors.

Validation at load is fatal (exit 2 with file, line and key path); connecting is retryable.
Field-level rules live on the models; rules that relate one part of the file to another
(unknown floor, duplicate id, ...) live in :mod:`parkwatch.config.crosscheck`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from parkwatch.config.base import ConfigPath, Id, Strict
from parkwatch.config.brokers import BrokerConfig
from parkwatch.config.delivery import ApiConfig, DeliveryConfig
from parkwatch.config.inhibit import InhibitRule
from parkwatch.config.measuring import RangeSettings
from parkwatch.config.outputs import LinkageConfig, OutputConfig
from parkwatch.config.telemetry import TelemetryConfig

SensorKind = Literal["load_cell", "fire_button", "water_level"]
#: the languages of alarm messages (``alarms.language``); every rule kind has words in each
LANGUAGES: tuple[str, ...] = ("zh", "en")
SENSOR_KINDS: tuple[str, ...] = ("load_cell", "fire_button", "water_level")
DEFAULT_UNITS = {"load_cell": "kg", "fire_button": "", "water_level": "cm"}

#: standard gravity (m/s²): a mass of 1 kg loads a floor with 9.80665 N
G_N_PER_KG = 9.80665
#: load-cell units that can be summed into a floor load, as kN per unit
LOAD_UNITS_KN: dict[str, float] = {"kg": G_N_PER_KG / 1000.0, "t": G_N_PER_KG, "N": 0.001,
                                   "kN": 1.0}


def load_unit_kn(unit: str) -> float | None:
    """kN per one `unit` of a load cell, None when the unit is not a mass or a force."""
    return LOAD_UNITS_KN.get(unit)


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
    checkpoint_interval_s: float = Field(
        10.0, ge=1, le=3600, description="how often rule state (pending durations, latches, "
        "flapping history, rate samples, floor cell loads) is saved to state_dir besides after "
        "every alarm change"
    )


class UplinkConfig(Strict):
    broker: Id = Field(description="name of the command-center broker under `brokers`")
    topic_prefix: str = Field(
        "parkwatch/v1", pattern=r"^[^+#]+[^/+#]$", description="contract prefix; change only "
        "with the contract version"
    )
    process: bool = Field(
        False, description="carry the alarm events to the command center from a process of "
        "its own, on its own broker connection (client id …-uplink-alarms): a second core "
        "for the deliveries when many alarms change at once"
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
    limit by more than ``deadband``, so a value wobbling around a limit does not chatter.  With
    ``for_s`` the new state must hold that long before the alarm follows it (and ``clear_for_s``
    before it clears), the way Zabbix and Kapacitor express durations.
    """

    high_warning: float | None = Field(None, description="warning at or above this")
    high_critical: float | None = Field(None, description="critical at or above this")
    low_warning: float | None = Field(None, description="warning at or below this")
    low_critical: float | None = Field(None, description="critical at or below this")
    deadband: float = Field(0.0, ge=0, description="how far back past a limit clears it")
    for_s: float = Field(0.0, ge=0, le=86_400, description="a limit must stay crossed this long "
                         "before the alarm is raised (or escalated)")
    clear_for_s: float = Field(0.0, ge=0, le=86_400, description="the value must stay back "
                               "this long before the alarm clears (or de-escalates)")

    def merged(self, override: ThresholdSettings | None) -> ThresholdSettings:
        """These limits with every key the override sets explicitly (null disables a limit)."""
        if override is None:
            return _limits_only(self)
        values = {k: getattr(self, k) for k in ThresholdSettings.model_fields}
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

    @property
    def any_limit(self) -> bool:
        return any(x is not None for x in (self.high_warning, self.high_critical,
                                           self.low_warning, self.low_critical))


@functools.lru_cache(maxsize=64)
def _limits_only(settings: ThresholdSettings) -> ThresholdSettings:
    """The limit keys of a kind's rules (shared by every sensor without overrides)."""
    return ThresholdSettings(**{k: getattr(settings, k) for k in ThresholdSettings.model_fields})


class RateSettings(Strict):
    """Rate of rise: how fast the value grows, in the sensor's unit per minute.

    The rate is the change from the oldest reading kept within the last ``window_s`` to the
    newest, per minute of time between them; it is judged once readings span at least half
    the window.
    """

    window_s: float = Field(300.0, gt=0, le=86_400, description="look-back window")
    rise_warning: float | None = Field(None, gt=0, description="warning at or above this rise "
                                       "per minute")
    rise_critical: float | None = Field(None, gt=0, description="critical at or above this rise "
                                        "per minute")
    deadband: float = Field(0.0, ge=0, description="how far (per minute) below a limit clears it")
    for_s: float = Field(0.0, ge=0, le=86_400, description="the rise must last this long before "
                         "the alarm is raised")
    clear_for_s: float = Field(0.0, ge=0, le=86_400, description="it must stay below this long "
                               "before the alarm clears")

    def merged(self, override: RateSettings | None) -> RateSettings:
        if override is None:
            return self
        values = self.model_dump()
        values.update({k: getattr(override, k) for k in override.model_fields_set})
        return RateSettings(**values)

    def problems(self) -> list[tuple[str, str]]:
        w, c = self.rise_warning, self.rise_critical
        if w is not None and c is not None and c <= w:
            return [("rise_critical", f"must be above rise_warning ({w:g})")]
        return []


class NoDataSettings(Strict):
    """Deadman: a sensor that reports nothing at all for longer than expected is itself a fault.

    The expected interval of a sensor is its poll interval on a bus (fire-button contacts: the
    priority-lane interval), the indicator's silence limit, or its `report_interval_s` (MQTT
    devices: how often they report or send a heartbeat).  Sensors with none are not watched.
    """

    missed: int = Field(3, ge=1, le=1000, description="expected reports missed before the "
                        "no-data alarm is raised")
    min_s: float = Field(10.0, ge=0, le=86_400, description="never raise sooner than this")
    severity: Literal["warning", "critical"] = "warning"


class KindRules(ThresholdSettings):
    """Rules of one measuring sensor kind: limits and durations, rate of rise, no-data."""

    rate: RateSettings | None = Field(None, description="rate-of-rise limits; omit for none")
    range: RangeSettings | None = Field(
        None, description="measuring range of this kind's sensors (each may set its own); "
        "omit for none: a range depends on the transmitter and the unit")
    no_data: NoDataSettings = Field(default_factory=NoDataSettings,
                                    description="no-data (deadman) alarm")


class ButtonRules(Strict):
    """Rules of fire buttons beyond the latch: a silent button is a hazard."""

    no_data: NoDataSettings = Field(default_factory=NoDataSettings,
                                    description="no-data (deadman) alarm")


class RulesConfig(Strict):
    """Per-kind defaults (each sensor may override limits, rate and report interval) and the
    park-wide rules."""

    load_cell: KindRules = Field(default_factory=KindRules,
                                 description="limits in kg (or the sensor's unit)")
    water_level: KindRules = Field(default_factory=KindRules,
                                   description="limits in cm (or the sensor's unit)")
    fire_button: ButtonRules = Field(default_factory=ButtonRules,
                                     description="no-data alarm of fire buttons")

    def section(self, key: str) -> Any:
        """The settings section `key` a rule kind brought (see parkwatch.rules.kind.Settings);
        the sections themselves are added when the park config is assembled
        (parkwatch.schema)."""
        return getattr(self, key)


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
        None, description="overrides of rules.{kind} limits and durations; null disables a "
        "limit")
    rate: RateSettings | None = Field(None, description="overrides of rules.{kind}.rate")
    report_interval_s: float | None = Field(
        None, gt=0, le=604_800, description="how often this device reports or sends a heartbeat "
        "(MQTT devices); the no-data alarm waits for rules.{kind}.no_data.missed of them")
    range: RangeSettings | None = Field(
        None, description="the transmitter's measuring range, overriding rules.{kind}.range; "
        "null: none. A reading outside it is a sensor fault, not a measurement")
    signal: Literal["4-20mA"] | None = Field(
        None, description="what the driver reads: null, the value itself; '4-20mA', the loop "
        "current of a 4-20 mA transmitter in mA (after scale and offset), mapped onto `range` "
        "with NAMUR NE43's limits (the Modbus drivers)")

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


class AlarmsConfig(DeliveryConfig):
    language: Literal["zh", "en"] = Field("zh", description="language of the default messages")
    messages: dict[str, str] = Field(
        default_factory=dict,
        description="message templates by '{rule}.{event}', '{rule}', 'default' or "
        "'auto_closed' (an alarm closed by close_unacknowledged_after_s); "
        "placeholders are listed in docs/contract.md",
    )
    inhibit: list[InhibitRule] = Field(default_factory=list, description="inhibition rules: "
                                       "an active source alarm mutes the notifications of "
                                       "matching target alarms (never fire; docs/alarms.md)")


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
    #: each item is a model of a registered driver type; the assembled schema (parkwatch.schema)
    #: narrows this list to their union, discriminated by `type`
    drivers: list[Any] = Field(min_length=1, description="how readings arrive")
    sensors: list[SensorConfig] = Field(default_factory=list, description="every sensor")
    rules: RulesConfig = Field(default_factory=RulesConfig,
                               description="default limits per sensor kind")
    outputs: list[OutputConfig] = Field(default_factory=list, description="sounders, strobes, "
                                        "PA triggers and relays the gateway switches (联动)")
    linkage: LinkageConfig = Field(default_factory=LinkageConfig,
                                   description="which alarms switch which outputs")
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig,
                                 description="how alarm messages read, who is told and when")
    api: ApiConfig | None = Field(None, description="local HTTP API (alarms, acknowledgement, "
                                  "/metrics, /healthz); omit to run without it")
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig,
                                       description="trends for Grafana (InfluxDB and the spool)")

    @model_validator(mode="after")
    def _assembled(self) -> ParkConfig:
        if type(self) is ParkConfig:  # a programming error, not a field engineer's
            raise TypeError("validate a park config with parkwatch.schema (its drivers, rule "
                            "settings and delivery targets come from the registries)")
        return self

    def thresholds_for(self, sensor: SensorConfig) -> ThresholdSettings | None:
        """The effective limits of a sensor (kind defaults merged with its overrides)."""
        if sensor.kind == "fire_button":
            return None
        base: KindRules = getattr(self.rules, sensor.kind)
        return base.merged(sensor.thresholds)

    def rate_for(self, sensor: SensorConfig) -> RateSettings | None:
        """The effective rate-of-rise limits of a sensor, None when it has none."""
        if sensor.kind == "fire_button":
            return None
        base: RateSettings | None = getattr(self.rules, sensor.kind).rate
        if base is None:
            return RateSettings().merged(sensor.rate) if sensor.rate is not None else None
        return base.merged(sensor.rate)

    def range_for(self, sensor: SensorConfig) -> RangeSettings | None:
        """The effective measuring range of a sensor: its own (null: none), else its kind's;
        fire buttons have none (their values are press and reset)."""
        if sensor.kind == "fire_button":
            return None
        if "range" in sensor.model_fields_set:
            return sensor.range
        kind_range: RangeSettings | None = getattr(self.rules, sensor.kind).range
        return kind_range

    def no_data_for(self, sensor: SensorConfig) -> NoDataSettings:
        settings: NoDataSettings = getattr(self.rules, sensor.kind).no_data
        return settings
