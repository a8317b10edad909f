"""The `outputs` and `linkage` sections of the park config: what can be switched on site, where
it is, what drives it, and which alarms switch it.

Fire-panel words (GB 16806, NFPA 72): a *sounder* is audible, a *strobe* visual, a *pa* trigger
starts the building's broadcast (应急广播), a *relay* is anything else (a sump pump, a fan
shutdown).  *Silence* stops the audible ones (sounders and PA) and leaves the strobes on; only
clearing or resetting every alarm that demands an output returns it to rest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from parkwatch.config.base import Id, Strict

OutputKind = Literal["sounder", "strobe", "pa", "relay"]
#: the kinds a fire sounds by default (a relay only by a linkage rule)
ALARM_KINDS: tuple[str, ...] = ("sounder", "strobe", "pa")
#: the kinds an operator's silence turns off
AUDIBLE: tuple[str, ...] = ("sounder", "pa")


class OutputConfig(Strict):
    """One output: a sounder, strobe, PA trigger or relay, placed in the park and driven by a
    driver (a Modbus RTU coil or holding register, or an MQTT command topic)."""

    id: Id
    name: str | None = Field(None, description="display name used in messages and the log")
    kind: OutputKind = Field(description="sounder, strobe, pa (broadcast trigger) or relay")
    building: Id = Field(description="the building it serves")
    floor: Id | None = Field(None, description="its floor (optional)")
    zone: Id | None = Field(None, description="its zone (optional)")
    driver: Id = Field(description="id of the driver that switches it (a Modbus driver or mqtt)")
    address: str | None = Field(None, description="Modbus: the coil or holding register, e.g. "
                                "'9/co0' or '9/hr20'")
    on_value: int = Field(1, ge=0, le=65535, description="Modbus register: the value that "
                          "switches it on (a coil is simply on)")
    off_value: int = Field(0, ge=0, le=65535, description="Modbus register: its rest value")
    topic: str | None = Field(None, description="MQTT: the command topic, e.g. "
                              "'devices/A-SND-W1/set'")
    payload_on: str = Field("ON", min_length=1, description="MQTT: the command that switches "
                            "it on")
    payload_off: str = Field("OFF", min_length=1, description="MQTT: the command to rest")
    state_topic: str | None = Field(None, description="MQTT: where the device reports its "
                                    "state (payload_on or payload_off); without it only the "
                                    "broker's acknowledgement is checked")

    @model_validator(mode="after")
    def _values(self) -> OutputConfig:
        if self.on_value == self.off_value:
            raise ValueError("on_value and off_value must differ")
        if self.payload_on == self.payload_off:
            raise ValueError("payload_on and payload_off must differ")
        if self.floor is None and self.zone is not None:
            raise ValueError("a zone needs its floor")
        return self


class LinkageRule(Strict):
    """Alarms that switch outputs beyond the fire default (a flood starting a sump pump)."""

    id: Id
    kinds: list[Literal["overload", "water", "fault"]] = Field(
        default_factory=list, description="hazards that switch them; empty: any but fire")
    sensors: list[Id] = Field(default_factory=list, description="only alarms of these sensors "
                              "(empty: any)")
    rules: list[str] = Field(default_factory=list, description="only these rules (empty: any)")
    min_severity: Literal["info", "warning", "critical"] = "critical"
    outputs: list[Id] = Field(min_length=1, description="outputs switched on while such an "
                              "alarm is active")


class LinkageConfig(Strict):
    """Which alarms switch which outputs (联动).  Nothing else switches an output."""

    fire: Literal["building", "park", "none"] = Field(
        "building", description="a fire alarm (and a drill's) sounds every sounder, strobe and "
        "PA trigger of its building (厂中厂: everyone in the building evacuates), of the whole "
        "park, or none")
    check_interval_s: float = Field(10.0, ge=1, le=3600, description="how often every output "
                                    "is read back and compared with what it should be")
    confirm_s: float = Field(3.0, gt=0, le=60, description="MQTT outputs: how long a device "
                             "has to report the state it was commanded to")
    rules: list[LinkageRule] = Field(default_factory=list, description="further alarms that "
                                     "switch outputs (e.g. a flood starting a sump pump)")
