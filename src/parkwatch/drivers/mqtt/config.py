"""Config model of the MQTT device driver (LoRaWAN / NB-IoT network servers, Wi-Fi devices)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from parkwatch.config.base import Id, Strict


class MqttDriverConfig(Strict):
    """Devices that publish on a broker: one subscription per topic template."""

    id: Id
    type: Literal["mqtt"]
    broker: Id = Field(description="name of an entry under `brokers`")
    topic: str = Field(
        "devices/{sensor_id}/up",
        description="topic template; {sensor_id} stands for one topic level. A sensor's "
        "`address` replaces it with a fixed topic.",
    )
    qos: Literal[0, 1, 2] = 1
    value_field: str = Field(
        "value", description="dotted path of the value in a JSON payload; '' for bare numbers"
    )
    time_field: str | None = Field("ts", description="dotted path of the device timestamp")
    time_unit: Literal["auto", "s", "ms"] = Field(
        "auto", description="unit of the device timestamp; auto: above 1e11 means ms"
    )
    event_field: str = Field("event", description="button event: press/reset/heartbeat/test")
    battery_field: str | None = Field("battery", description="battery percentage, optional")
    max_payload_bytes: int = Field(4096, ge=16, le=1_048_576)
    max_clock_skew_s: float = Field(
        86_400.0, gt=0, description="device timestamps further than this from now are rejected"
    )

    process: bool = Field(
        False, description="receive and decode in a process of its own: a second core for a "
        "flood of readings (thousands a second); the daemon gets them decoded, a batch at a "
        "time. A worker that dies is started again.")

    report_interval_s: float | None = Field(
        None, gt=0, le=604_800, description="how often the devices report or send a heartbeat "
        "(a sensor's own report_interval_s wins); unset: their silence is not watched")

    def report_interval(self, sensor: Any) -> float | None:
        """Devices report on their own schedule: the one configured here, if any."""
        return self.report_interval_s

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not v or any(c in v for c in "+#"):
            raise ValueError("must be a topic without MQTT wildcards ('+', '#')")
        if v.count("{sensor_id}") > 1:
            raise ValueError("may contain {sensor_id} at most once")
        levels = v.split("/")
        if "{sensor_id}" in v and "{sensor_id}" not in levels:
            raise ValueError("{sensor_id} must be a whole topic level, like devices/{sensor_id}/up")
        return v


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT topic-filter match ('+' one level, '#' the rest), as a broker would decide."""
    f_levels, t_levels = filter_.split("/"), topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels) or (f != "+" and f != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


def subscription(cfg: MqttDriverConfig) -> str:
    """The one subscription filter that serves every templated sensor of this driver."""
    return cfg.topic.replace("{sensor_id}", "+")


def sensor_topic(cfg: MqttDriverConfig, sensor_id: str, address: str | None) -> str:
    return address if address else cfg.topic.replace("{sensor_id}", sensor_id)


def check_mqtt_driver(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    """Every sensor of this driver resolves to one topic no other sensor or driver claims."""
    drv: MqttDriverConfig = park.drivers[index]
    out: list[tuple[tuple[str | int, ...], str]] = []
    others = [(j, d) for j, d in enumerate(park.drivers)
              if j != index and d.type == "mqtt" and d.broker == drv.broker]
    claimed: dict[str, int] = {}
    for si, s in enumerate(park.sensors):
        if s.driver != drv.id:
            continue
        if s.address is not None and (not s.address or any(c in s.address for c in "+#")):
            out.append((("sensors", si, "address"), "must be a full MQTT topic without "
                        "wildcards"))
            continue
        if s.address is None and "{sensor_id}" not in drv.topic:
            out.append((("sensors", si, "address"), f"driver '{drv.id}' has a fixed topic "
                        "without {sensor_id}; give this sensor its own topic as address"))
            continue
        topic = sensor_topic(drv, s.id, s.address)
        if topic in claimed and park.sensors[claimed[topic]].id == s.id:
            continue  # a duplicate sensor id, reported as such already
        if topic in claimed:
            out.append((("sensors", si, "address" if s.address else "id"),
                        f"topic '{topic}' is already used by sensor "
                        f"'{park.sensors[claimed[topic]].id}'"))
        claimed[topic] = si
        for j, other in others:
            if "{sensor_id}" in other.topic and topic_matches(subscription(other), topic):
                out.append((("sensors", si, "driver"), f"topic '{topic}' would also be "
                            f"received by driver '{other.id}' (drivers[{j}]) on the same broker"))
    return out


def check_mqtt_output(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    """An output on an MQTT broker (a wireless sounder): a command topic of its own that no
    sensor's uplink uses, and a state topic, if any, likewise."""
    o = park.outputs[index]
    loc: tuple[str | int, ...] = ("outputs", index)
    if o.address is not None:
        return [((*loc, "address"), "an MQTT output has a command topic, not an address")]
    if not o.topic:
        return [((*loc, "topic"), "an MQTT output needs its command topic, e.g. "
                 "'devices/A-SND-W1/set'")]
    drivers = {d.id: d for d in park.drivers}
    uplinks = {sensor_topic(drivers[s.driver], s.id, s.address)
               for s in park.sensors if getattr(drivers.get(s.driver), "type", "") == "mqtt"}
    for key in ("topic", "state_topic"):
        topic = getattr(o, key)
        if topic is None:
            continue
        if any(c in topic for c in "+#") or not topic or topic.startswith("$"):
            return [((*loc, key), "must be a topic without MQTT wildcards ('+', '#')")]
        if topic in uplinks:
            return [((*loc, key), f"'{topic}' is a sensor's uplink topic")]
        for j, other in enumerate(park.outputs[:index]):
            if topic in (other.topic, other.state_topic):
                return [((*loc, key), f"'{topic}' is already used by output '{other.id}' "
                         f"(outputs[{j}])")]
    return []
