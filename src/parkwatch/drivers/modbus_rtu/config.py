"""Config model of the Modbus RTU driver (one RS-485 port, its slaves and their schedule), and
what every Modbus driver kind shares with it (:class:`ModbusMaster`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from parkwatch.config.base import Id, Strict
from parkwatch.drivers.modbus_rtu.address import parse_address
from parkwatch.drivers.serialport import SerialLine


class SlaveSchedule(Strict):
    slave: int = Field(ge=1, le=247)
    name: str | None = None
    interval_s: float | None = Field(None, gt=0, le=3600,
                                     description="poll interval; default poll_interval_s")


class ModbusMaster(Strict):
    """What every Modbus driver kind shares: its id and the bus scheduler's settings (poll
    schedule, timeouts, quarantine).  Its sensors name their register in `address`."""

    #: its sensors may be 4-20 mA transmitters behind an analogue input (``signal``)
    reads_loop_current: ClassVar[bool] = True

    id: Id
    poll_interval_s: float = Field(1.0, gt=0, le=3600, description="default poll interval of "
                                   "register blocks")
    di_interval_s: float = Field(0.2, gt=0, le=60, description="priority lane: how often the "
                                 "discrete inputs (fire-button contacts) are polled")
    timeout_s: float = Field(0.25, gt=0, le=10, description="how long a slave has to answer")
    retries: int = Field(1, ge=0, le=5, description="immediate retries of a failed poll")
    quarantine_after: int = Field(3, ge=1, le=100, description="failed polls in a row after "
                                  "which a slave is quarantined and only re-probed")
    reprobe_s: float = Field(5.0, gt=0, le=3600, description="first re-probe delay of a "
                             "quarantined slave; doubles up to backoff_max_s")
    backoff_max_s: float = Field(60.0, gt=0, le=3600)
    comm_fault_after_s: float = Field(30.0, gt=0, le=86_400, description="a communication-"
                                      "fault alarm is raised when a sensor has had no good "
                                      "reading for this long")
    max_block: int = Field(64, ge=1, le=125, description="most registers read in one request")
    slaves: list[SlaveSchedule] = Field(default_factory=list,
                                        description="per-slave settings (optional)")

    def report_interval(self, sensor: Any) -> float | None:
        """How often a sensor on this bus is polled: the no-data alarm's yardstick."""
        try:
            addr = parse_address(sensor.address or "")
        except ValueError:
            return None
        if addr.table == "di":
            return self.di_interval_s
        own = next((s.interval_s for s in self.slaves if s.slave == addr.slave), None)
        return own if own is not None else self.poll_interval_s

    @model_validator(mode="after")
    def _unique_slaves(self) -> Self:
        seen = [s.slave for s in self.slaves]
        if len(seen) != len(set(seen)):
            raise ValueError("a slave is listed twice under slaves")
        return self

    def link(self) -> Any:
        """What carries its requests (:class:`~parkwatch.drivers.modbus_rtu.link.Link`):
        each driver kind's own, built when its driver starts."""
        raise NotImplementedError


class ModbusRtuDriverConfig(ModbusMaster, SerialLine):
    """A Modbus RTU master on one RS-485 port of the gateway. Sensors name their register in
    `address`."""

    type: Literal["modbus_rtu"]

    def link(self) -> Any:
        from parkwatch.drivers.modbus_rtu.link import RtuLink, SerialStream

        return RtuLink(SerialStream(self, self.timeout_s), self.port, self.t35,
                       self.reopen_max_s)


def check_modbus_driver(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    """Every sensor on this bus has a valid, unshared address; one driver per port."""
    drv: ModbusRtuDriverConfig = park.drivers[index]
    out = check_modbus_addresses(park, index)
    for j, other in enumerate(park.drivers):
        if j < index and getattr(other, "port", None) == drv.port:
            out.append((("drivers", index, "port"), f"port {drv.port} is already used by "
                        f"driver '{other.id}': one owner per serial port"))
    return out


def check_modbus_addresses(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    """Every sensor of a Modbus driver has a valid address that no other sensor reads."""
    drv: ModbusMaster = park.drivers[index]
    out: list[tuple[tuple[str | int, ...], str]] = []
    taken: dict[tuple[int, str, int], str] = {}
    for si, s in enumerate(park.sensors):
        if s.driver != drv.id:
            continue
        if not s.address:
            out.append((("sensors", si, "address"), "a Modbus sensor needs an address like "
                        "'3/hr100:float32' or '5/di2'"))
            continue
        try:
            a = parse_address(s.address)
        except ValueError as exc:
            out.append((("sensors", si, "address"), str(exc)))
            continue
        if s.kind == "fire_button" and not a.is_bit:
            out.append((("sensors", si, "address"), "a fire button is a contact: use a "
                        "discrete input (di) or coil (co) address"))
        for r in range(a.register, a.register + a.width):
            key = (a.slave, a.table, r)
            if key in taken:
                out.append((("sensors", si, "address"), f"register {a.table}{r} of slave "
                            f"{a.slave} is already read by sensor '{taken[key]}'"))
                break
            taken[key] = s.id
    return out


def check_modbus_output(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    """An output on a Modbus bus: a coil or a 16-bit holding register of its own, which no
    sensor reads and no other output writes."""
    o = park.outputs[index]
    loc: tuple[str | int, ...] = ("outputs", index, "address")
    if not o.address:
        return [(loc, "a Modbus output needs the coil or register it writes, like '9/co0' or "
                 "'9/hr20'")]
    if o.topic is not None or o.state_topic is not None:
        return [(("outputs", index, "topic"), "topic and state_topic are for MQTT outputs; a "
                 "Modbus output is read back from its own address")]
    try:
        a = parse_address(o.address)
    except ValueError as exc:
        return [(loc, str(exc))]
    if a.table not in ("co", "hr"):
        return [(loc, f"'{a.table}' cannot be written: an output is a coil (co) or a holding "
                 "register (hr)")]
    if a.width != 1 or a.dtype == "int16":
        return [(loc, "an output register is one uint16 word (on_value / off_value)")]
    for j, other in enumerate(park.outputs[:index]):
        if other.driver == o.driver and other.address:
            try:
                b = parse_address(other.address)
            except ValueError:
                continue
            if (b.slave, b.table, b.register) == (a.slave, a.table, a.register):
                return [(loc, f"{a.table}{a.register} of slave {a.slave} is already written by "
                         f"output '{other.id}' (outputs[{j}]): one output per coil")]
    for s in park.sensors:
        if s.driver == o.driver and s.address:
            try:
                b = parse_address(s.address)
            except ValueError:
                continue
            if (b.slave, b.table) == (a.slave, a.table) and (
                    b.register <= a.register < b.register + b.width):
                return [(loc, f"{a.table}{a.register} of slave {a.slave} is read by sensor "
                         f"'{s.id}'; an output needs a coil or register of its own")]
    return []
