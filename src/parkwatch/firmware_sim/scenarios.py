"""Scenarios: timelines of device behaviour, derived from whatever park config is loaded.

Targets are chosen from the config (the building with the most tenants for a fire, its load
cells for an overload, the lowest water gauge for a flood) and values from each sensor's own
limits, so `parkwatch sim --scenario overload` exercises a field engineer's real config.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from parkwatch.config.model import ParkConfig, SensorConfig


class Fleet(Protocol):
    """What a scenario plays on: the simulated devices of a park
    (:class:`~parkwatch.firmware_sim.devices.SimulatedPark`)."""

    @property
    def cfg(self) -> ParkConfig: ...

    @property
    def devices(self) -> dict[str, Any]: ...

    @property
    def sent(self) -> int: ...

    def reading(self, sensor_id: str, value: float) -> None: ...

    def button(self, sensor_id: str, event: str) -> None: ...

    def raw(self, sensor_id: str, payload: bytes) -> None: ...

    def cut(self, driver_id: str) -> None: ...

    def restore(self, driver_id: str) -> None: ...

    def stick_output(self, output_id: str, stuck: bool = True) -> None: ...


@dataclass(frozen=True)
class Step:
    at: float  # seconds from the start
    sensor: str  # a sensor id; for cut / restore a serial driver's, for stick / free an output's
    #: value | press | reset | heartbeat | test | raw | cut | restore | stick | free | note
    action: str
    value: float | None = None
    payload: bytes = b""
    note: str = ""  # narration for whoever watches the simulation


@dataclass
class Scenario:
    name: str
    description: str
    steps: list[Step] = field(default_factory=list)
    duration: float = 0.0
    baseline_period_s: float = 2.0


def _limits(cfg: ParkConfig, s: SensorConfig) -> tuple[float, float]:
    """(warning, critical) high limits of a sensor, with sensible stand-ins when unset."""
    t = cfg.thresholds_for(s)
    hw = t.high_warning if t and t.high_warning is not None else None
    hc = t.high_critical if t and t.high_critical is not None else None
    if hw is None and hc is None:
        return 100.0, 200.0
    if hw is None:
        assert hc is not None  # one of the two is set (above)
        hw = hc * 0.8
    if hc is None:
        hc = hw * 1.25
    return float(hw), float(hc)


def baseline(cfg: ParkConfig, s: SensorConfig) -> float:
    hw, _ = _limits(cfg, s)
    return round(hw * (0.45 if s.kind == "load_cell" else 0.3), 2)


def _level(cfg: ParkConfig, s: SensorConfig) -> int:
    for b in cfg.buildings:
        for i, f in enumerate(b.floors):
            if b.id == s.building and f.id == s.floor:
                return f.level if f.level is not None else i
    return 0


def _busiest_building(cfg: ParkConfig) -> str:
    counts = {b.id: sum(any(o.building == b.id for o in t.occupies) for t in cfg.tenants)
              for b in cfg.buildings}
    return max(counts, key=lambda b: counts[b])


def _sensors(cfg: ParkConfig, kind: str, building: str | None = None) -> list[SensorConfig]:
    return [s for s in cfg.sensors if s.kind == kind
            and (building is None or s.building == building)]


def _ramp(s: SensorConfig, start_at: float, seconds: float, v0: float, v1: float,
          steps: int, note: str = "") -> list[Step]:
    out = []
    for i in range(steps + 1):
        v = v0 + (v1 - v0) * i / steps
        out.append(Step(start_at + seconds * i / steps, s.id, "value", round(v, 2),
                        note=note if i == steps else ""))
    return out


def fire(cfg: ParkConfig, start: float = 2.0, hold: float = 12.0) -> list[Step]:
    buttons = _sensors(cfg, "fire_button", _busiest_building(cfg)) or _sensors(cfg, "fire_button")
    if not buttons:
        return []
    b = sorted(buttons, key=lambda s: -_level(cfg, s))[len(buttons) // 2]
    return [Step(start - 1.0, b.id, "test", note=f"{b.id}: 月度按钮测试 (test press)"),
            Step(start, b.id, "press", note=f"{b.id}: 有人按下一键报警按钮 (button pressed)"),
            Step(start + hold, b.id, "reset", note=f"{b.id}: 现场确认后复位 (button reset)")]


def overload(cfg: ParkConfig, start: float = 2.0, seconds: float = 14.0) -> list[Step]:
    """Goods pile up floor by floor; the top loaded floor goes past warning, then critical."""
    building = _busiest_building(cfg)
    cells = sorted(_sensors(cfg, "load_cell", building) or _sensors(cfg, "load_cell"),
                   key=lambda s: _level(cfg, s))
    steps: list[Step] = []
    for k, s in enumerate(cells):
        hw, hc = _limits(cfg, s)
        top = k == len(cells) - 1
        t0 = start + seconds * k / max(1, len(cells)) * 0.5
        target = hc * 1.03 if top else hw * 0.9
        steps += _ramp(s, t0, seconds * 0.5, baseline(cfg, s), round(target, 1), 7,
                       f"{s.id}: 货物堆放超过额定荷载 (overloaded)" if top else "")
        steps += _ramp(s, start + seconds + 2.0, 3.0, round(target, 1), baseline(cfg, s), 3,
                       f"{s.id}: 货物已清运 (goods moved away)" if top else "")
    return steps


def flood(cfg: ParkConfig, start: float = 4.0, seconds: float = 10.0) -> list[Step]:
    """A rainstorm: the lowest gauge rises past its guarantee level, then the water recedes."""
    gauges = sorted(_sensors(cfg, "water_level"), key=lambda s: _level(cfg, s))
    steps: list[Step] = []
    lowest = _level(cfg, gauges[0]) if gauges else 0
    for s in gauges:
        hw, hc = _limits(cfg, s)
        low = _level(cfg, s) == lowest  # every gauge on the lowest level floods
        peak = hc * 1.05 if low else hw * 0.8
        steps += _ramp(s, start, seconds, baseline(cfg, s), round(peak, 2), 8,
                       f"{s.id}: 暴雨，水位快速上涨 (water rising fast)" if low else "")
        steps += _ramp(s, start + seconds + 4.0, 4.0, round(peak, 2), baseline(cfg, s), 4,
                       f"{s.id}: 排水后水位回落 (water receding)" if low else "")
    return steps


def cable_cut(cfg: ParkConfig, start: float = 3.0) -> list[Step]:
    """An RS-485 cable is cut long enough for a comm-fault alarm, then plugged back (without
    a serial driver: the network link of a serial server or Modbus TCP device is lost)."""
    wired = ("modbus_rtu", "serial_indicator", "modbus_rtu_tcp", "modbus_tcp")
    serial = sorted((d for d in cfg.drivers if d.type in wired),
                    key=lambda d: wired.index(d.type) > 1)  # a serial port's first
    if not serial:
        return []
    d = serial[0]
    outage = float(getattr(d, "comm_fault_after_s", 10.0)) + 4.0
    # after the repair the devices stay up long enough for the gateway's reopen backoff
    settle = min(float(getattr(d, "reopen_max_s", getattr(d, "reconnect_max_s", 30.0))),
                 30.0) + 3.0
    lost = (f"{d.id}: 网络中断 (link to {d.host}:{d.port} lost)" if hasattr(d, "host")
            else f"{d.id}: 电缆被挖断 (cable cut at {d.port})")
    return [Step(start, d.id, "cut", note=lost),
            Step(start + outage, d.id, "restore", note=f"{d.id}: 线路修复 (cable repaired)"),
            Step(start + outage + settle, d.id, "note",
                 note=f"{d.id}: 通讯已恢复 (link back)")]


def stuck_sounder(cfg: ParkConfig, start: float = 2.0) -> list[Step]:
    """A sounder's relay is welded open when a fire sounds its building: the gateway must
    report it (output_fault) and clear the fault once a technician frees it."""
    steps = fire(cfg, start, 16.0 + 2 * cfg.linkage.check_interval_s)
    if not steps:
        return []
    button = next(s for s in cfg.sensors if s.id == steps[0].sensor)
    sounders = [o for o in cfg.outputs if o.kind == "sounder"
                and (cfg.linkage.fire == "park" or o.building == button.building)]
    if not sounders:
        return []
    o = sounders[0]
    return [Step(start - 1.5, o.id, "stick", note=f"{o.id}: 继电器触点粘连 (relay stuck)"),
            *steps,
            Step(start + 6.0 + cfg.linkage.check_interval_s, o.id, "free",
                 note=f"{o.id}: 维修后继电器恢复 (relay freed)")]


def _scenario(name: str, description: str, steps: list[Step]) -> Scenario:
    steps = sorted(steps, key=lambda st: st.at)
    return Scenario(name, description, steps, (steps[-1].at + 2.0) if steps else 0.0)


SCENARIOS: dict[str, tuple[str, Callable[[ParkConfig], list[Step]]]] = {
    "demo": ("fire, creeping overload and a flash flood, then everything returns to normal",
             lambda cfg: fire(cfg, 3.0, 14.0) + overload(cfg, 1.0, 12.0) + flood(cfg, 4.0, 8.0)),
    "fire_drill": ("a one-touch fire button is pressed, held, then reset", fire),
    "overload": ("goods pile up floor by floor until a floor is overloaded", overload),
    "flood": ("a flash flood lifts the lowest water gauge past its guarantee level", flood),
    "cable_cut": ("an RS-485 cable is cut until a comm-fault alarm is raised, then repaired",
                  cable_cut),
    "stuck_sounder": ("a fire sounds its building while one sounder's relay is stuck, until "
                      "it is freed (output_fault raised, then cleared)", stuck_sounder),
}


def build(cfg: ParkConfig, name: str) -> Scenario:
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario '{name}' (known: {', '.join(SCENARIOS)})")
    description, make = SCENARIOS[name]
    return _scenario(name, description, make(cfg))


def play(scenario: Scenario, fleet: Fleet, *, speed: float = 1.0,
         stop: threading.Event | None = None,
         narrate: Callable[[str], None] | None = None) -> int:
    """Play a scenario on a :class:`~parkwatch.firmware_sim.devices.SimulatedPark` in real time
    (divided by ``speed``); returns the device messages sent.

    Between steps every value sensor keeps reporting its current value, so the daemon sees a
    living park, not only the interesting moments.
    """
    stop = stop or threading.Event()
    cfg = fleet.cfg
    current = {s.id: baseline(cfg, s) for s in cfg.sensors
               if s.id in fleet.devices and s.kind != "fire_button"}
    buttons = [s.id for s in cfg.sensors if s.id in fleet.devices and s.kind == "fire_button"]
    t0 = time.monotonic()
    next_round = 0.0
    rounds = 0
    pending = list(scenario.steps)
    while not stop.is_set():
        now = (time.monotonic() - t0) * speed
        if now >= next_round:
            for sensor_id, value in current.items():
                fleet.reading(sensor_id, value)
            if rounds % 5 == 0:
                for b in buttons:
                    fleet.button(b, "heartbeat")
            rounds += 1
            next_round += scenario.baseline_period_s
        while pending and pending[0].at <= now:
            step = pending.pop(0)
            if step.action == "value" and step.value is not None:
                current[step.sensor] = step.value
                fleet.reading(step.sensor, step.value)
            elif step.action == "raw":
                fleet.raw(step.sensor, step.payload)
            elif step.action == "cut":
                fleet.cut(step.sensor)
            elif step.action == "restore":
                fleet.restore(step.sensor)
            elif step.action in ("stick", "free"):
                fleet.stick_output(step.sensor, step.action == "stick")
            elif step.action == "note":
                pass  # a moment worth narrating, nothing to do
            else:
                fleet.button(step.sensor, step.action)
            if step.note and narrate is not None:
                narrate(step.note)
        if not pending and now >= scenario.duration:
            break
        wake = min([next_round] + ([pending[0].at] if pending else []))
        stop.wait(max(0.0, (wake - now) / speed))
    return fleet.sent
