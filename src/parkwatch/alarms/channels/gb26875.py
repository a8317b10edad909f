"""The GB/T 26875.3-2011 channel: the park's fire alarms and faults to a city fire remote
monitoring center (城市消防远程监控中心), parkwatch acting as the user information
transmission device (用户信息传输装置).

One outbox row is one alarm change; it becomes at most two frames (command 2, send data),
each confirmed by the center before the next (:mod:`parkwatch.alarms.gb26875.session`):

- a fire alarm (`button_latch`) raised: the component's running state (type 2) with 火警;
- that alarm cleared (the button reset): the component's state back to normal (恢复, type 2)
  and the fire alarm system's state with 复位 (type 1);
- a fault (`comm_fault`, `sensor_fault`, `no_data`, `output_fault`: 故障; `battery_low`:
  电源故障) raised, and cleared (normal again), as type 2;
- every other change (acknowledged, escalated, reminders, closed, and alarms that are neither
  fire nor fault) is not the center's business: taken without a frame.

The connection is kept from the daemon's start; the device's running state (type 21) goes out
on each new connection and whenever nothing else was sent for `heartbeat_s` (its heartbeat).
A deny, no confirm within `confirm_timeout_s` or a lost connection fails the delivery; the
courier sends it again after its backoff, in order.
"""

from __future__ import annotations

import json
import threading
import zlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import Field, field_validator

from parkwatch.alarms.channels.base import NOBODY, Carrier, Channel, People
from parkwatch.alarms.gb26875.codes import (
    FIRE_ALARM_SYSTEM,
    GENERIC_COMPONENT,
    MANUAL_CALL_POINT,
    ComponentBit,
    SystemBit,
    flags,
)
from parkwatch.alarms.gb26875.frame import ADDRESS_MAX, now_cst
from parkwatch.alarms.gb26875.objects import (
    DESCRIPTION_LEN,
    ComponentState,
    SystemState,
    data_unit,
)
from parkwatch.alarms.gb26875.session import Posted, Session
from parkwatch.alarms.senders import Publisher
from parkwatch.config.base import Strict
from parkwatch.config.delivery import Backoff, TargetBase

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending
    from parkwatch.mqttlink.link import MqttLink

#: rules reported as a component fault, and the state bit each sets
FAULT_RULES: dict[str, int] = {
    "comm_fault": ComponentBit.FAULT, "sensor_fault": ComponentBit.FAULT,
    "no_data": ComponentBit.FAULT, "output_fault": ComponentBit.FAULT,
    "battery_low": ComponentBit.POWER_FAULT,
}
FIRE_RULE = "button_latch"
#: component types (table 5) by sensor kind when `components` names none
DEFAULT_COMPONENT_TYPES = {"fire_button": MANUAL_CALL_POINT}



class ComponentCode(Strict):
    """How the center knows one of the park's sensors."""

    system_type: int = Field(FIRE_ALARM_SYSTEM, ge=0, le=255,
                             description="system type (table 4; 1: 火灾报警系统)")
    system_address: int = Field(1, ge=0, le=255, description="system address")
    component_type: int = Field(ge=0, le=255, description="component type (table 5; 23: "
                                "手动火灾报警按钮, 42: 点型光电感烟火灾探测器, 0: 通用)")
    component_address: int = Field(ge=0, le=0xFFFF_FFFF, description="component address "
                                   "(4 bytes), as registered with the center")
    description: str | None = Field(None, description="component description (at most 31 "
                                    "bytes in GB 18030); default: the sensor id and place")

    @field_validator("description")
    @classmethod
    def _fits(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            size = len(v.encode("gb18030"))
        except UnicodeEncodeError:
            raise ValueError("must be text GB 18030 can encode") from None
        if size > DESCRIPTION_LEN:
            raise ValueError(f"is {size} bytes in GB 18030; the standard allows "
                             f"{DESCRIPTION_LEN} (about 15 Chinese characters)")
        return v


class Gb26875Target(TargetBase):
    """Fire alarms and faults to a city fire monitoring center over GB/T 26875.3-2011."""

    type: Literal["gb26875"]
    host: str = Field(description="the monitoring center's address")
    port: int = Field(ge=1, le=65535, description="its TCP port")
    source_address: int = Field(ge=0, le=ADDRESS_MAX, description="this gateway's address "
                                "as the center registered it (6 bytes)")
    destination_address: int = Field(0, ge=0, le=ADDRESS_MAX,
                                     description="the center's address (6 bytes)")
    user_version: int = Field(0, ge=0, le=255, description="the protocol's user version byte "
                              "(the main version is 1)")
    system_address: int = Field(1, ge=0, le=255, description="the fire alarm system's "
                                "address for sensors `components` does not name")
    components: dict[str, ComponentCode] = Field(
        default_factory=dict, description="sensor id -> its codes at the center; a sensor not "
        "named is system type 1, `system_address`, component type 23 for a fire button (0 "
        "otherwise) and address the CRC-32 of its id")
    confirm_timeout_s: float = Field(5.0, gt=0, le=60, description="how long to wait for the "
                                     "center's confirm of a frame before it counts as lost")
    heartbeat_s: float | None = Field(60.0, gt=0, le=3600, description="send the device's "
                                      "running state on connecting and when nothing was sent "
                                      "this long; null: never")
    # short: after an outage of the center, however long, the waiting frames go out within
    # max_s of its return (the keeper reconnects on the same schedule)
    retry: Backoff = Field(default_factory=lambda: Backoff(initial_s=0.5, max_s=5.0),
                           description="between attempts of a change the center did not "
                           "confirm, and between connection attempts while it is down "
                           "(default: 0.5 s, doubling up to 5 s)")
    expire_after_s: float = Field(30 * 86_400.0, gt=0, le=30 * 86_400)


class Sending(NamedTuple):
    """A change on its way: its first frame sent (None: the change makes no frame), and the
    data units still to send once that one is confirmed."""

    first: Posted | None
    rest: list[bytes]


def component_of(target: Gb26875Target, event: dict[str, Any]) -> ComponentCode:
    """The codes of the event's sensor: configured, or the documented default."""
    sensor = str(event["sensor_id"])
    code = target.components.get(sensor)
    if code is not None:
        return code
    return ComponentCode(
        system_type=FIRE_ALARM_SYSTEM, system_address=target.system_address,
        component_type=DEFAULT_COMPONENT_TYPES.get(event.get("sensor_kind") or "",
                                                   GENERIC_COMPONENT),
        component_address=zlib.crc32(sensor.encode("utf-8")))


def _when(event: dict[str, Any]) -> datetime:
    stamp = event.get("observed_at") or event.get("changed_at")
    if not stamp:
        return now_cst()
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


def data_units(target: Gb26875Target, event: dict[str, Any]) -> list[bytes]:
    """The application data units one alarm change becomes, in order (none: not sent)."""
    rule, change = event.get("rule"), event.get("event")
    if event.get("sensor_id") is None or change not in ("raised", "cleared"):
        return []
    if rule == FIRE_RULE:
        bit = int(ComponentBit.FIRE)
    elif rule in FAULT_RULES:
        bit = FAULT_RULES[str(rule)]
    else:
        return []
    code = component_of(target, event)
    at = _when(event)
    state = flags(ComponentBit.NORMAL, bit) if change == "raised" else flags(
        ComponentBit.NORMAL)
    place = "-".join(str(event[k]) for k in ("building", "floor") if event.get(k))
    part = ComponentState(code.system_type, code.system_address, code.component_type,
                          code.component_address, state,
                          code.description or f"{event['sensor_id']} {place}".strip(), at)
    units = [data_unit([part])]
    if rule == FIRE_RULE and change == "cleared":
        units.append(data_unit([SystemState(code.system_type, code.system_address,
                                            flags(SystemBit.NORMAL, SystemBit.RESET), at)]))
    return units


class Gb26875Sender(Publisher):
    """Each change's frames, each confirmed by the center before the next of that change.

    A :class:`Publisher`: the commit stage may send a change's first frame the moment it is
    committed (express, on the connection the keeper holds; never connecting itself), and the
    courier waits for its confirm and sends the rest.  The courier's own rows go one at a time.
    """

    window = 1

    def __init__(self, name: str, target: Gb26875Target) -> None:
        self.name = name
        self.target = target
        self.session = Session(target.host, target.port, target.source_address,
                               target.destination_address, user_version=target.user_version,
                               timeout_s=target.confirm_timeout_s,
                               heartbeat_s=target.heartbeat_s)

    def open(self, owner: threading.Thread) -> None:
        """Online from the start: connected (again after a loss) while the courier runs."""
        self.session.open(owner, self.target.retry.initial_s, self.target.retry.max_s)

    def publish(self, row: Pending) -> Sending:
        """The change's first frame sent, on the connection there is (the committer's)."""
        return self._post(row, connect=False)

    def publish_rows(self, rows: list[Pending]) -> list[Sending]:
        """The courier's: it may open the connection first."""
        return [self._post(row, connect=True) for row in rows]

    def _post(self, row: Pending, connect: bool) -> Sending:
        units = data_units(self.target, json.loads(row.payload))
        if not units:
            return Sending(None, [])
        return Sending(self.session.post(units[0], connect), units[1:])

    def confirm(self, handle: Sending) -> None:
        if handle.first is not None:
            self.session.wait(handle.first)
        for unit in handle.rest:
            self.session.exchange(unit)


def _carrier(name: str, target: Gb26875Target, _link: MqttLink,
             _people: People = NOBODY) -> Carrier:
    return Carrier(Gb26875Sender(name, target), target.retry)


CHANNEL = Channel(Gb26875Target, _carrier)
