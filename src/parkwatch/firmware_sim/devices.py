"""Every simulated device of a park config, behind one interface the scenarios drive.

MQTT devices publish on the config's brokers; Modbus RTU slaves answer on a pty at each
`modbus_rtu` driver's port path, and behind a simulated serial server at each
`modbus_rtu_tcp` driver's host and port; Modbus TCP devices at each `modbus_tcp` driver's host
and port; weighing indicators stream on a pty at each `serial_indicator` driver's port path.
A scenario only says "this sensor now reads X" or "this button is pressed"; how that reaches the
daemon is the device's business, as in the field.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parkwatch.config.model import ParkConfig
from parkwatch.devtools.localbroker import free_port
from parkwatch.drivers.tcpstream import TcpEndpoint
from parkwatch.firmware_sim.indicators import SimIndicator
from parkwatch.firmware_sim.modbus_bus import SimBus
from parkwatch.firmware_sim.modbus_tcp_server import SimModbusTcpServer
from parkwatch.firmware_sim.modbus_wiring import build_bus_from_config
from parkwatch.firmware_sim.mqtt_devices import MqttDeviceFleet
from parkwatch.firmware_sim.mqtt_outputs import MqttOutputDevices
from parkwatch.firmware_sim.serial_server import SimSerialServer
from parkwatch.firmware_sim.tcp_listener import TcpListener

if TYPE_CHECKING:  # only its alias: the simulator need not load the YAML reader
    from parkwatch.config.yamlsource import Loc


class SimulatedPark:
    def __init__(self, cfg: ParkConfig, *, mqtt: bool = True,
                 client_prefix: str = "parkwatch-sim",
                 logins: Mapping[str, str] | None = None) -> None:
        """``logins`` (sensor id -> password): each MQTT device logs in as itself (see
        :class:`~parkwatch.firmware_sim.mqtt_devices.MqttDeviceFleet`)."""
        self.cfg = cfg
        self.mqtt = MqttDeviceFleet(cfg, client_prefix, logins) if mqtt else None
        #: wireless sounders, strobes and relay boxes (None without MQTT)
        self.outputs = MqttOutputDevices(cfg, client_prefix, logins) if mqtt else None
        self.buses: dict[str, SimBus] = {}
        #: the serial servers and Modbus TCP devices, by driver id (their slaves: `buses`)
        self.servers: dict[str, TcpListener] = {}
        self._ptys: str | None = None  # where the buses behind serial servers put their ptys
        self.indicators: dict[str, SimIndicator] = {}
        self.route: dict[str, tuple[str, str]] = {}  # sensor id -> (device kind, driver id)
        drivers = {d.id: d for d in cfg.drivers}
        for d in cfg.drivers:
            if d.type == "modbus_rtu":
                self.buses[d.id] = build_bus_from_config(d, cfg)
            elif d.type == "modbus_rtu_tcp":
                self._ptys = self._ptys or tempfile.mkdtemp(prefix="parkwatch-sim-")
                bus = build_bus_from_config(d, cfg, os.path.join(self._ptys, d.id))
                self.buses[d.id] = bus
                self.servers[d.id] = SimSerialServer(bus, d.host, d.port)
            elif d.type == "modbus_tcp":
                self.buses[d.id] = bus = build_bus_from_config(d, cfg, f"modbus-tcp-{d.id}")
                self.servers[d.id] = SimModbusTcpServer(bus, d.host, d.port)
            elif d.type == "serial_indicator":
                self.indicators[d.id] = SimIndicator(d.port, d.baudrate, d.format,
                                                     bits_per_char=d.bits_per_char)
        for s in cfg.sensors:
            kind = drivers[s.driver].type
            if kind == "mqtt" and self.mqtt is not None:
                self.route[s.id] = ("mqtt", s.driver)
            elif kind in _MODBUS:
                self.route[s.id] = ("modbus_rtu", s.driver)
            elif kind == "serial_indicator":
                self.route[s.id] = (kind, s.driver)
        self._sent = 0

    @property
    def devices(self) -> dict[str, tuple[str, str]]:
        return self.route

    @property
    def sent(self) -> int:
        return self._sent + (self.mqtt.sent if self.mqtt else 0)

    def describe(self) -> list[str]:
        out = []
        if self.mqtt and self.mqtt.devices:
            out.append(f"{len(self.mqtt.devices)} MQTT device(s) on broker(s) "
                       f"{', '.join(sorted(set(self.mqtt.brokers.values())))}"
                       + (", each with its own login" if self.mqtt.own_logins else ""))
        for did, bus in self.buses.items():
            outputs = f", outputs {', '.join(bus.outputs)}" if bus.outputs else ""
            server = self.servers.get(did)
            where = (f"Modbus RTU bus '{did}' at {bus.path}" if server is None
                     else f"{server.name} '{did}' on {server.host}:{server.port}")
            out.append(f"{where} ({len(bus.slaves)} slave(s){outputs})")
        if self.outputs is not None and self.outputs.outputs:
            out.append(f"wireless output(s) {', '.join(self.outputs.outputs)} on MQTT, "
                       "switching on their command topics and reporting their state")
        for did, ind in self.indicators.items():
            out.append(f"weighing indicator '{did}' at {ind.port.path}")
        return out

    def start(self) -> None:
        for did, bus in self.buses.items():
            if not isinstance(self.servers.get(did), SimModbusTcpServer):
                bus.start()  # a Modbus TCP device's bus only holds its slaves
        for server in self.servers.values():
            server.start()
        for ind in self.indicators.values():
            ind.start()
        if self.mqtt is not None and self.mqtt.devices:
            self.mqtt.start()
        if self.outputs is not None and self.outputs.outputs:
            self.outputs.start()

    def stop(self) -> None:
        if self.outputs is not None and self.outputs.outputs:
            self.outputs.stop()
        if self.mqtt is not None and self.mqtt.devices:
            self.mqtt.stop()
        for server in self.servers.values():
            server.stop()
        for bus in self.buses.values():
            if bus.running:
                bus.stop()
        for ind in self.indicators.values():
            ind.stop()
        if self._ptys is not None:
            shutil.rmtree(self._ptys, ignore_errors=True)

    def reading(self, sensor_id: str, value: float) -> None:
        kind, driver = self.route[sensor_id]
        if kind == "mqtt":
            assert self.mqtt is not None  # routed to MQTT only with a fleet
            self.mqtt.reading(sensor_id, value)
        elif kind == "modbus_rtu":
            self.buses[driver].set_sensor(sensor_id, value)
            self._sent += 1
        else:
            s = next(x for x in self.cfg.sensors if x.id == sensor_id)
            self.indicators[driver].set_weight((value - s.offset) / s.scale)
            self._sent += 1

    def button(self, sensor_id: str, event: str) -> None:
        kind, driver = self.route[sensor_id]
        if kind == "mqtt":
            assert self.mqtt is not None  # routed to MQTT only with a fleet
            self.mqtt.button(sensor_id, event)
        elif kind == "modbus_rtu" and event in ("press", "reset"):
            # a contact: closed while pressed; heartbeats and tests have no wire of their own
            self.buses[driver].set_sensor(sensor_id, event == "press")
            self._sent += 1

    def raw(self, sensor_id: str, payload: bytes) -> None:
        kind, driver = self.route[sensor_id]
        if kind == "mqtt":
            assert self.mqtt is not None  # routed to MQTT only with a fleet
            self.mqtt.raw(sensor_id, payload)
        elif kind == "serial_indicator":
            self.indicators[driver].inject_garbage(data=payload)

    # --- outputs: sounders, strobes, relays ---------------------------------------------------
    def output_ids(self) -> list[str]:
        """Every simulated output, in the config's order."""
        have = {oid for bus in self.buses.values() for oid in bus.outputs}
        have |= set(self.outputs.outputs) if self.outputs is not None else set()
        return [o.id for o in self.cfg.outputs if o.id in have]

    def output_on(self, output_id: str) -> bool:
        """Whether an output is on, as the device itself is (a relay's coil, a siren)."""
        for bus in self.buses.values():
            if output_id in bus.outputs:
                return bus.output_on(output_id)
        if self.outputs is not None and output_id in self.outputs.outputs:
            return self.outputs.on[output_id]
        raise KeyError(f"'{output_id}' is not a simulated output")

    def stick_output(self, output_id: str, stuck: bool = True) -> None:
        """Make an output stick where it is (a welded relay, a dead siren), or free it."""
        for bus in self.buses.values():
            if output_id in bus.outputs:
                bus.stick_output(output_id, stuck)
                return
        if self.outputs is not None and output_id in self.outputs.outputs:
            self.outputs.stick(output_id, stuck)
            return
        raise KeyError(f"'{output_id}' is not a simulated output")

    def watch_outputs(self, on_change: Callable[[str, bool], None]) -> None:
        """Be told (output id, on) whenever a simulated output switches."""
        for bus in self.buses.values():
            by_place = {(a.slave, a.table, a.register): (oid, on_value)
                        for oid, (a, on_value) in bus.outputs.items()}
            for slave in bus.slaves.values():
                slave.on_write = _switched(slave.address, by_place, on_change)
        if self.outputs is not None:
            self.outputs.on_change = on_change

    def cut(self, driver_id: str) -> None:
        """Pull the cable of a serial driver's port; a serial server or Modbus TCP device
        goes off the network (its connections close, new ones are refused)."""
        self._serial(driver_id).cut()

    def restore(self, driver_id: str) -> None:
        self._serial(driver_id).restore()

    def _serial(self, driver_id: str) -> Any:
        if driver_id in self.servers:
            return self.servers[driver_id]
        if driver_id in self.buses:
            return self.buses[driver_id]
        if driver_id in self.indicators:
            return self.indicators[driver_id]
        raise KeyError(f"'{driver_id}' is not a simulated serial port")


#: the Modbus driver kinds, whose devices the simulator plays as slaves of a SimBus
_MODBUS = ("modbus_rtu", "modbus_rtu_tcp", "modbus_tcp")


def _switched(slave: int, by_place: dict[tuple[int, str, int], tuple[str, int]],
              on_change: Callable[[str, bool], None]) -> Callable[[str, int, int], None]:
    def written(table: str, register: int, value: int) -> None:
        known = by_place.get((slave, table, register))
        if known is not None:
            on_change(known[0], bool(value) if table == "co" else value == known[1])
    return written


def bench_overrides(cfg: ParkConfig, broker_port: int, workdir: Any) -> dict[Loc, Any]:
    """Config overrides that put a whole park on a bench: every broker on the private
    loopback broker, every serial port on a pty path in ``workdir``, state in ``workdir``."""
    work = Path(workdir)
    out: dict[Loc, Any] = {("gateway", "state_dir"): str(work / "state")}
    for name in cfg.brokers:
        out[("brokers", name, "host")] = "127.0.0.1"
        out[("brokers", name, "port")] = broker_port
    for i, d in enumerate(cfg.drivers):
        if isinstance(d, TcpEndpoint):  # serial servers, Modbus TCP devices: on loopback
            out[("drivers", i, "host")] = "127.0.0.1"
            out[("drivers", i, "port")] = free_port()
        elif hasattr(d, "port") and d.type != "mqtt":
            out[("drivers", i, "port")] = str(work / f"tty-{d.id}")
    if cfg.api is not None:
        out[("api", "port")] = 0  # a free port: benches run side by side
    return out


#: the logins of the shipped ACL (examples/mosquitto/parkwatch.acl) that a bench uses besides
#: the devices' own (their sensor ids)
DAEMON_LOGIN = "parkwatch"
OPERATOR_LOGIN = "operator"
CENTER_LOGIN = "center"  # a command center on the gateway's broker (the demo's)


def bench_logins(cfg: ParkConfig) -> dict[str, str]:
    """Fresh random passwords for a bench broker run with the shipped ACL: the daemon, an
    operator, a command center, and every MQTT device of `cfg` under its sensor id."""
    mqtt_drivers = {d.id for d in cfg.drivers if d.type == "mqtt"}
    users = [DAEMON_LOGIN, OPERATOR_LOGIN, CENTER_LOGIN,
             *(s.id for s in cfg.sensors if s.driver in mqtt_drivers),
             *(o.id for o in cfg.outputs if o.driver in mqtt_drivers and o.topic)]
    return {user: secrets.token_hex(16) for user in users}


def login_overrides(cfg: ParkConfig, logins: Mapping[str, str],
                    workdir: Any) -> dict[Loc, Any]:
    """Config overrides that log the daemon in to every broker of `cfg` as
    :data:`DAEMON_LOGIN`, its password in a file of its own in ``workdir`` (as on a gateway)."""
    secret = Path(workdir) / f"{DAEMON_LOGIN}.pass"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(logins[DAEMON_LOGIN] + "\n")
    out: dict[Loc, Any] = {}
    for name in cfg.brokers:
        out[("brokers", name, "username")] = DAEMON_LOGIN
        out[("brokers", name, "password_file")] = str(secret)
        out[("brokers", name, "password_env")] = None
    return out
