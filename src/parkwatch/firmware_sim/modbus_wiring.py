"""The simulated Modbus bus of one Modbus driver (``modbus_rtu``, ``modbus_rtu_tcp``,
``modbus_tcp``) of a park config, so ``parkwatch sim`` emulates that park's wiring: one slave
per device its sensors reference, each with a map that covers its sensors' registers, every
sensor at a plausible starting value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parkwatch.drivers.modbus_rtu.address import parse_address
from parkwatch.drivers.serialport import LineSettings
from parkwatch.firmware_sim.modbus_bus import SimBus
from parkwatch.firmware_sim.modbus_slave import SimSensor, SimSlave

DI_MODULE_CHANNELS = 8  # a digital-input module has its contacts in groups of 8


def build_bus_from_config(driver_cfg: Any, park_cfg: Any, path: str | Path | None = None,
                          **kwargs: Any) -> SimBus:
    """The simulated bus of one Modbus driver: a slave for every device it polls.

    Each slave's map covers, per table, the span from its lowest to its highest sensor
    register (so the driver may read across small gaps in one request, as real transmitters
    allow); a digital-input module exposes its contacts in whole groups of 8 channels.  Sensors
    start at a plausible baseline below their warning limits (fire buttons released); the
    outputs (sounders, strobes, relays: coils in modules of 8 channels, or holding registers)
    at rest.  Slaves
    listed under the driver's ``slaves`` without sensors are present with an empty map.
    The bus is not started; ``path`` overrides the driver's port (and is where the bus of a
    ``modbus_rtu_tcp`` driver puts its pty, behind its serial server).
    """
    from parkwatch.firmware_sim.scenarios import baseline

    # a Modbus TCP device has no serial line: its bus only holds the slaves (never started)
    line = driver_cfg if hasattr(driver_cfg, "baudrate") else LineSettings()
    bus = SimBus(path if path is not None else driver_cfg.port, line.baudrate,
                 line.bits_per_char, **kwargs)
    names = {s.slave: s.name for s in driver_cfg.slaves}
    sensors: list[SimSensor] = []
    for s in park_cfg.sensors:
        if s.driver != driver_cfg.id or not s.address:
            continue
        rng = park_cfg.range_for(s) if s.signal == "4-20mA" else None
        sensors.append(SimSensor(s.id, s.kind, parse_address(s.address), s.scale, s.offset,
                                 None if rng is None else (rng.min, rng.max)))
    outputs = [(o.id, parse_address(o.address), o.on_value) for o in park_cfg.outputs
               if o.driver == driver_cfg.id and o.address]
    for n in sorted({x.address.slave for x in sensors} | {a.slave for _, a, _ in outputs}
                    | set(names)):
        bus.add_slave(SimSlave(n, name=names.get(n)))
    spans: dict[tuple[int, str], tuple[int, int]] = {}
    for a in [x.address for x in sensors] + [a for _, a, _ in outputs]:
        key = (a.slave, a.table)
        lo, hi = spans.get(key, (a.register, a.register + a.width))
        spans[key] = (min(lo, a.register), max(hi, a.register + a.width))
    for (slave, table), (lo, hi) in spans.items():
        if table in ("di", "co"):
            lo = lo // DI_MODULE_CHANNELS * DI_MODULE_CHANNELS
            hi = -(-hi // DI_MODULE_CHANNELS) * DI_MODULE_CHANNELS
        bus.slaves[slave].map(table, lo, hi - lo)
    for oid, a, on_value in outputs:  # relay outputs start at rest
        bus.outputs[oid] = (a, on_value)
        if not a.is_bit:
            off = next(o.off_value for o in park_cfg.outputs if o.id == oid)
            bus.slaves[a.slave].set_registers(a.table, a.register, [off])
    by_id = {s.id: s for s in park_cfg.sensors}
    for x in sensors:
        bus.sensors[x.id] = x
        if x.address.is_bit:
            bus.set_sensor(x.id, False)
        else:
            bus.set_sensor(x.id, baseline(park_cfg, by_id[x.id]))
    return bus
