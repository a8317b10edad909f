"""The vectorised rule engine against a plain per-reading reference (tests/rules_reference.py).

For every rule kind a hypothesis test feeds the same random sequences of batches and clock ticks
to :class:`RuleEngine` and to :class:`ReferenceEngine` (NaN and non-GOOD readings, gaps long
enough for silences, stale cells and durations, out-of-order times, repeated sensors in a batch,
values at and around limits and deadbands) and asserts identical transitions per sensor after
every call, bit for bit, the same ``next_due()`` and the same stats.  Scenarios also restart
the engine from its saved state in the middle.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.snapshot import snapshot_arrays
from parkwatch.schema import load_config
from rules_reference import (
    CRITICAL,
    NORMAL,
    WARNING,
    ReferenceEngine,
    Transition,
    bits,
    by_sensor,
    engine_rows,
)

T0 = 1_763_800_000.0
NAN, INF = math.nan, math.inf

# a pass takes seconds; a failure may shrink for minutes (hypothesis stops at five): let it report
pytestmark = pytest.mark.timeout(600)

HEAD = """
park: {id: p, name: P}
gateway: {id: gw, state_dir: state}
brokers: {local: {host: 127.0.0.1}}
uplink: {broker: local}
landlord: {id: l, name: L}
buildings:
  - id: A
    floors:
      - {id: 1F, rated_load_kn_m2: 1.0, area_m2: 10}
      - id: 2F
        rated_load_kn_m2: 2.5
        area_m2: 4.4
        zones: [{id: east, area_m2: 2.2}, {id: west, area_m2: 1.3, rated_load_kn_m2: 3.3}]
  - id: B
    floors: [{id: 1F, rated_load_kn_m2: 0.7, area_m2: 3}]
"""
LORA = "  - {id: lora, type: mqtt, broker: local}\n"
BUS = ("  - {id: bus, type: modbus_rtu, port: /dev/ttyUSB0, poll_interval_s: 0.7, "
       "di_interval_s: 0.3, comm_fault_after_s: 2.5, slaves: [{slave: 3, interval_s: 1.1}]}\n")
IND = ("  - {id: ind, type: serial_indicator, port: /dev/ttyUSB1, format: xk3190_a9, "
       "comm_fault_after_s: 1.7, silence_s: 0.9}\n")


def config(drivers: str, rules: str, sensors: str) -> str:
    return f"{HEAD}drivers:\n{drivers}rules:\n{rules}sensors:\n{sensors}"


THRESHOLD = config(LORA, """
  flapping: null
  floor_load: {enabled: false}
  load_cell: {high_warning: 8, high_critical: 10, deadband: 0.5, for_s: 2, clear_for_s: 3}
  water_level: {high_warning: 30, high_critical: 50, low_warning: 10, low_critical: 5,
                deadband: 3, for_s: 2.5, clear_for_s: 0}
""", """
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora}
  - {id: LC2, kind: load_cell, building: A, floor: 1F, driver: lora,
     thresholds: {high_warning: null, deadband: 0, for_s: 0, clear_for_s: 4}}
  - {id: WL1, kind: water_level, building: A, driver: lora}
  - {id: WL2, kind: water_level, driver: lora,
     thresholds: {high_warning: null, low_critical: null, deadband: 1.5, for_s: 2.3,
                  clear_for_s: 1.9}}
  - {id: WL3, kind: water_level, driver: lora,
     thresholds: {deadband: 0, for_s: 0, clear_for_s: 0}}
  - {id: WL4, kind: water_level, driver: lora,
     thresholds: {high_warning: null, high_critical: null, for_s: 3, clear_for_s: 3}}
  - {id: WL5, kind: water_level, driver: lora,
     thresholds: {high_warning: 1.1, high_critical: 1.3, low_warning: 0.7, low_critical: 0.3,
                  deadband: 0.1, for_s: 0.7, clear_for_s: 0.3}}
""")

# high limits only, nowhere a low one: the engine screens with one bound a sensor
THRESHOLD_HIGH = config(LORA, """
  flapping: null
  floor_load: {enabled: false}
  load_cell: {high_warning: 8, high_critical: 10, deadband: 0.5, for_s: 2, clear_for_s: 3}
""", """
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora}
  - {id: LC2, kind: load_cell, building: A, floor: 1F, driver: lora,
     thresholds: {high_warning: null, deadband: 0, for_s: 0, clear_for_s: 4}}
  - {id: LC3, kind: load_cell, building: A, floor: 1F, driver: lora,
     thresholds: {high_warning: 1.1, high_critical: 1.3, deadband: 0.1, for_s: 0.7,
                  clear_for_s: 0.3}}
  - {id: FB1, kind: fire_button, building: A, floor: 1F, driver: lora}
""")

# the same limits without any duration: the engine's plain (untimed) path
THRESHOLD_PLAIN = config(LORA, """
  flapping: null
  floor_load: {enabled: false}
  load_cell: {high_warning: 8, high_critical: 10, deadband: 0.5}
  water_level: {high_warning: 30, high_critical: 50, low_warning: 10, low_critical: 5,
                deadband: 3}
""", """
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora}
  - {id: LC2, kind: load_cell, building: A, floor: 1F, driver: lora,
     thresholds: {high_warning: null, deadband: 0}}
  - {id: WL1, kind: water_level, building: A, driver: lora}
  - {id: WL2, kind: water_level, driver: lora,
     thresholds: {high_warning: null, low_critical: null, deadband: 1.5}}
  - {id: WL3, kind: water_level, driver: lora, thresholds: {deadband: 0}}
  - {id: WL4, kind: water_level, driver: lora,
     thresholds: {high_warning: null, high_critical: null}}
  - {id: WL5, kind: water_level, driver: lora,
     thresholds: {high_warning: 1.1, high_critical: 1.3, low_warning: 0.7, low_critical: 0.3,
                  deadband: 0.1}}
""")

RATE = config(LORA, """
  flapping: null
  floor_load: {enabled: false}
  water_level:
    rate: {window_s: 8, rise_warning: 20, rise_critical: 60, deadband: 5, for_s: 2,
           clear_for_s: 3}
""", """
  - {id: WL1, kind: water_level, driver: lora}
  - {id: WL2, kind: water_level, driver: lora,
     rate: {window_s: 4, rise_warning: null, deadband: 0, for_s: 0, clear_for_s: 0}}
  - {id: WL3, kind: water_level, driver: lora, rate: {window_s: 6.5, for_s: 1.3, clear_for_s: 0}}
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora,
     rate: {window_s: 10, rise_warning: 30}}
""")

BUTTON = config(LORA + BUS, """
  floor_load: {enabled: false}
  water_level: {high_warning: 0.5, high_critical: 1}
""", """
  - {id: FB1, kind: fire_button, building: A, floor: 1F, driver: lora}
  - {id: FB2, kind: fire_button, building: A, driver: lora}
  - {id: FB3, kind: fire_button, building: B, floor: 1F, driver: bus, address: "5/di0"}
  - {id: WL1, kind: water_level, driver: lora}
""")

COMM = config(LORA + BUS + IND, """
  floor_load: {enabled: false}
  water_level: {high_warning: 30, high_critical: 50, deadband: 2}
""", """
  - {id: WL1, kind: water_level, driver: bus, address: "1/hr0:float32"}
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: bus, address: "3/hr0"}
  - {id: FB1, kind: fire_button, building: A, driver: bus, address: "5/di0"}
  - {id: LC2, kind: load_cell, building: A, floor: 2F, driver: ind}
  - {id: WL2, kind: water_level, driver: lora}
""")

NO_DATA = config(LORA + BUS, """
  floor_load: {enabled: false}
  water_level: {no_data: {missed: 2, min_s: 0}}
  load_cell: {no_data: {missed: 1, min_s: 3, severity: critical}}
  fire_button: {no_data: {missed: 3, min_s: 0, severity: critical}}
""", """
  - {id: WL1, kind: water_level, driver: lora, report_interval_s: 1.5}
  - {id: WL2, kind: water_level, driver: lora, report_interval_s: 0.7}
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora, report_interval_s: 2}
  - {id: FB1, kind: fire_button, building: A, driver: lora, report_interval_s: 1.1}
  - {id: FB2, kind: fire_button, building: A, driver: bus, address: "5/di0"}
  - {id: WL3, kind: water_level, driver: bus, address: "3/hr0"}
  - {id: WL4, kind: water_level, driver: lora}
""")


def flapping_config(history: int, high: float, low: float) -> str:
    return config(LORA, f"""
  floor_load: {{enabled: false}}
  flapping: {{history: {history}, high: {high}, low: {low}}}
  water_level:
    high_warning: 30
    high_critical: 50
    low_warning: 10
    low_critical: 5
    deadband: 1
    rate: {{window_s: 4, rise_warning: 60, rise_critical: 200, deadband: 10}}
  load_cell: {{high_warning: 8, high_critical: 10, deadband: 0, for_s: 1, clear_for_s: 1.5}}
""", """
  - {id: WL1, kind: water_level, driver: lora}
  - {id: WL2, kind: water_level, driver: lora, thresholds: {deadband: 0}}
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora}
  - {id: LC2, kind: load_cell, building: A, floor: 1F, driver: lora,
     thresholds: {for_s: 0, clear_for_s: 0}}
  - {id: FB1, kind: fire_button, building: A, driver: lora}
""")


def floor_config(stale: float, for_s: float, clear_for_s: float) -> str:
    return config(LORA + BUS + IND, f"""
  flapping: null
  floor_load: {{warning_ratio: 0.85, critical_ratio: 1.0, deadband_ratio: 0.05,
                stale_after_s: {stale}, for_s: {for_s}, clear_for_s: {clear_for_s}}}
""", """
  - {id: C1, kind: load_cell, building: A, floor: 1F, driver: lora, unit: kN}
  - {id: C2, kind: load_cell, building: A, floor: 1F, driver: lora}
  - {id: C3, kind: load_cell, building: A, floor: 2F, zone: east, driver: lora, unit: t}
  - {id: C4, kind: load_cell, building: A, floor: 2F, zone: east, driver: bus, address: "3/hr0",
     unit: N}
  - {id: C5, kind: load_cell, building: A, floor: 2F, zone: west, driver: ind, unit: kN}
  - {id: C6, kind: load_cell, building: A, floor: 2F, driver: lora, unit: kN}
  - {id: C7, kind: load_cell, building: B, floor: 1F, driver: lora, unit: kN}
""")


EVERYTHING = config(LORA + BUS + IND, """
  flapping: {history: 5, high: 0.5, low: 0.25}
  floor_load: {warning_ratio: 0.85, critical_ratio: 1.0, deadband_ratio: 0.05,
               stale_after_s: 4, for_s: 1.5, clear_for_s: 2}
  load_cell: {high_warning: 300, high_critical: 400, deadband: 20, for_s: 1, clear_for_s: 2,
              no_data: {missed: 2, min_s: 0}}
  water_level:
    high_warning: 30
    high_critical: 50
    low_warning: 10
    low_critical: 5
    deadband: 2
    for_s: 1.5
    clear_for_s: 0
    rate: {window_s: 6, rise_warning: 20, rise_critical: 60, deadband: 5, for_s: 1,
           clear_for_s: 2}
    no_data: {missed: 3, min_s: 2}
    range: {min: 0, max: 70}
  fire_button: {no_data: {missed: 2, min_s: 0, severity: critical}}
""", """
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora, report_interval_s: 2,
     range: {min: -5, max: 450}}
  - {id: LC2, kind: load_cell, building: A, floor: 1F, driver: bus, address: "3/hr0"}
  - {id: LC3, kind: load_cell, building: A, floor: 2F, zone: east, driver: lora,
     report_interval_s: 1.5}
  - {id: LC4, kind: load_cell, building: A, floor: 2F, zone: west, driver: ind, unit: kN,
     thresholds: {high_warning: 3, high_critical: 4, deadband: 0.2}}
  - {id: WL1, kind: water_level, building: A, driver: lora, report_interval_s: 1}
  - {id: WL2, kind: water_level, driver: bus, address: "1/hr0:float32"}
  - {id: WL3, kind: water_level, driver: lora, thresholds: {deadband: 0, for_s: 0}}
  - {id: FB1, kind: fire_button, building: A, driver: lora, report_interval_s: 1.3}
  - {id: FB2, kind: fire_button, building: A, driver: bus, address: "5/di0"}
  - {id: LC5, kind: load_cell, building: B, floor: 1F, driver: lora, unit: t,
     thresholds: {high_warning: 0.15, high_critical: 0.2, deadband: 0.01}}
""")

# measuring ranges: out-of-range readings raise sensor_fault and move no process rule
SENSOR_FAULT = config(LORA + BUS, """
  flapping: {history: 4, high: 0.5, low: 0.25}
  floor_load: {warning_ratio: 0.85, critical_ratio: 1.0, deadband_ratio: 0.05,
               stale_after_s: 4, for_s: 0, clear_for_s: 0}
  load_cell: {high_warning: 8, high_critical: 10, deadband: 0.5, range: {min: -1, max: 12}}
  water_level:
    high_warning: 30
    high_critical: 50
    low_warning: 10
    low_critical: 5
    deadband: 2
    rate: {window_s: 4, rise_warning: 60, rise_critical: 200}
    range: {min: 0, max: 55}
""", """
  - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora, unit: kN}
  - {id: LC2, kind: load_cell, building: A, floor: 1F, driver: bus, address: "3/hr0", unit: kN,
     range: null}
  - {id: WL1, kind: water_level, driver: lora}
  - {id: WL2, kind: water_level, driver: bus, address: "1/hr0", range: {min: 4, max: 51}}
  - {id: FB1, kind: fire_button, building: A, driver: lora}
""")

# batteries with a critical limit alone (it stands in for the warning one)
BATTERY = config(LORA + BUS, """
  flapping: null
  floor_load: {enabled: false}
  battery_low: {warning_below: null, critical_below: 15, deadband: 5}
""", """
  - {id: FB1, kind: fire_button, building: A, floor: 1F, driver: lora}
  - {id: FB2, kind: fire_button, building: A, driver: bus, address: "5/di0"}
  - {id: WL1, kind: water_level, driver: lora}
""")

CONFIGS = {
    "threshold": THRESHOLD, "threshold_plain": THRESHOLD_PLAIN, "threshold_high": THRESHOLD_HIGH,
    "rate": RATE, "button": BUTTON, "comm": COMM, "no_data": NO_DATA,
    "flapping4": flapping_config(4, 0.5, 0.25), "flapping8": flapping_config(8, 0.4, 0.2),
    "floor": floor_config(4, 2, 3), "floor_odd": floor_config(3.3, 0, 1.7),
    "everything": EVERYTHING, "sensor_fault": SENSOR_FAULT, "battery": BATTERY,
}


@pytest.fixture(scope="module")
def parks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ParkModel]:
    root = tmp_path_factory.mktemp("parks")
    out = {}
    for name, text in CONFIGS.items():
        path = root / f"{name}.yaml"
        path.write_text(text)
        out[name] = ParkModel(load_config(path))
    return out


# --- scenarios -------------------------------------------------------------------------------

GOOD = int(Quality.GOOD)
BAD_QUALITIES = [int(q) for q in (Quality.UNSTABLE, Quality.OVERLOAD, Quality.HEARTBEAT,
                                  Quality.TEST, Quality.COMM_FAIL, Quality.BAD)]
STEPS = [0.0, 0.0, 0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0, 3.0]
GAPS = [2.0, 4.0, 5.0, 10.0, 30.0, 100.0]


def _around(*edges: float) -> list[float]:
    """Edges (a limit, where its deadband ends) and the floats on either side of each."""
    return [y for x in edges for y in (x, math.nextafter(x, -INF), math.nextafter(x, INF))]


def value_points(ref: ReferenceEngine, s: int) -> list[float]:
    """Values worth trying for sensor `s`: limits, deadband edges, press/reset, rises, loads."""
    pts: list[float] = []
    if ref.th_on[s]:
        for lim in (ref.hw[s], ref.hc[s]):
            if not math.isnan(lim):
                pts += [*_around(lim, lim - ref.db[s]), lim + 1]
        for lim in (ref.lw[s], ref.lc[s]):
            if not math.isnan(lim):
                # the engine holds a low level while -v >= -limit - deadband
                pts += [*_around(lim, lim + ref.db[s], -(-lim - ref.db[s])), lim - 1]
        finite = [x for x in (ref.hw[s], ref.hc[s], ref.lw[s], ref.lc[s]) if not math.isnan(x)]
        pts += [(min(finite) + max(finite)) / 2]
    if ref.rate_on[s]:
        pts += [0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0]
    if ref.button[s]:
        pts += [0.0, 1.0, 0.5, 2.0, -0.0]
    for g in ref.cell_groups[s]:
        share = len(ref.members[g]) * ref.kn[s]
        for lim in (ref.g_warn[g], ref.g_crit[g]):
            pts += [lim / share, (lim - ref.g_db[g]) / share, lim / share * 1.2]
        pts += [0.0, ref.g_warn[g] / share * 0.5]
    if ref.ranged[s]:
        pts += [*_around(ref.lo[s], ref.hi[s]), ref.lo[s] - 1, ref.hi[s] + 1, 1e12, -1e13]
    return pts or [0.0, 1.0]


@dataclass
class Spec:
    """What to draw: the sensors, per sensor the values, and the odds of each quality."""

    sensors: list[int]
    points: dict[int, list[float]]
    lost: list[int]  # sensors whose driver reports COMM_FAIL (outage runs)
    ramps: list[int]  # sensors with rate limits (ramp runs)
    bad_odds: int  # one reading in `bad_odds` has a non-GOOD quality
    comm_fail_odds: int  # ... of which one in `comm_fail_odds` is COMM_FAIL
    max_ops: int = 18
    max_batch: int = 10


_SPECS: dict[tuple[int, int, int, tuple[Any, ...]], Spec] = {}


def spec_for(park: ParkModel, bad_odds: int = 6, comm_fail_odds: int = 4, **kw: Any) -> Spec:
    key = (id(park), bad_odds, comm_fail_odds, tuple(sorted(kw.items())))
    if key not in _SPECS:
        _SPECS[key] = _spec(park, bad_odds, comm_fail_odds, **kw)
    return _SPECS[key]


def _spec(park: ParkModel, bad_odds: int, comm_fail_odds: int, **kw: Any) -> Spec:
    ref = ReferenceEngine(park, T0)
    sensors = list(range(len(park)))
    lost = [s for s in sensors if not math.isnan(ref.comm_after[s])] or sensors
    ramps = [s for s in sensors if ref.rate_on[s]] or sensors
    return Spec(sensors, {s: value_points(ref, s) for s in sensors}, lost, ramps, bad_odds,
                comm_fail_odds, **kw)


Op = tuple[Any, ...]


BACKS = [0.0] * 10 + [0.25, 1.0, 4.0]  # how far a reading's time lags (out of order)
SPECIAL = [NAN, NAN, INF, -INF]
#: batteries a reading may carry: mostly none, else at and around the default limits (10 and
#: 20 %) and their deadband edges (15, 25)
BATTERIES = [NAN] * 12 + [*_around(10.0, 15.0, 20.0, 25.0), 0.0, 50.0, 100.0]
OPS = ["batch"] * 5 + ["run", "run", "tick", "tick", "due", "due-", "gap", "restart"]
TICK_AT = [0.0, 0.5, 2.0, 5.0, -1.0]


#: the raw material of one reading's (or one run's) choices: uniform bytes, shrinking to zeros
CODE = st.binary(min_size=8, max_size=8)


class Digits:
    """One drawn integer read as mixed-radix digits: many small choices for one draw (drawing
    each on its own makes generation, not the rules, the cost of these tests)."""

    def __init__(self, code: bytes) -> None:
        self.code = int.from_bytes(code, "little")

    def __call__(self, base: int) -> int:
        self.code, digit = divmod(self.code, base)
        return digit


def _value(draw: st.DrawFn, d: Digits, points: list[float]) -> float:
    kind = d(10)
    if kind < 6:
        return points[d(len(points))]
    if kind < 9:
        return draw(st.floats(min(points) - 1, max(points) + 1))
    return SPECIAL[d(len(SPECIAL))]


def _quality(d: Digits, spec: Spec) -> int:
    if d(spec.bad_odds):
        return GOOD
    if d(spec.comm_fail_odds) == 0:
        return int(Quality.COMM_FAIL)
    return BAD_QUALITIES[d(len(BAD_QUALITIES))]


@st.composite
def scenarios(draw: st.DrawFn, spec: Spec) -> list[Op]:
    """Batches of readings, runs of one sensor (an outage, a ramp, a steady value), clock ticks
    and silences, in a plausible order of time."""
    t = T0 + draw(st.sampled_from([0.0, 0.1, 1.0]))
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, spec.max_ops))):
        what = OPS[draw(st.integers(0, len(OPS) - 1))]
        if what == "gap":
            t += draw(st.sampled_from(GAPS))
        elif what == "tick":
            ops.append(("tick", t + draw(st.sampled_from(TICK_AT))))
        elif what in ("due", "due-", "restart"):
            ops.append((what,))
        elif what == "run":
            d = Digits(draw(CODE))
            n, mode, split = 2 + d(7), d(3), d(2)
            pick = (spec.lost, spec.ramps, spec.sensors)[mode]
            s = pick[d(len(pick))]
            v = spec.points[s][d(len(spec.points[s]))]
            slope = (0.25, 1.0, 3.0, -1.0)[d(4)]
            readings = []
            for _ in range(n):
                t += (0.5, 1.0, 1.0, 1.5)[d(4)]
                if mode == 0:  # the driver lost it
                    readings.append((s, NAN, t, int(Quality.COMM_FAIL)))
                else:  # a ramp or a steady value
                    v += slope if mode == 1 else 0.0
                    readings.append((s, v, t, GOOD))
            ops += [("batch", [r]) for r in readings] if split else [("batch", readings)]
        else:
            readings = []
            for _ in range(draw(st.integers(1, spec.max_batch))):
                d = Digits(draw(CODE))
                s = spec.sensors[d(len(spec.sensors))]
                t += draw(st.floats(0, 3)) if d(8) == 0 else STEPS[d(len(STEPS))]
                back = BACKS[d(len(BACKS))]
                v = _value(draw, d, spec.points[s])
                q = _quality(d, spec)
                readings.append((s, v, t - back, q, BATTERIES[d(len(BATTERIES))]))
            ops.append(("batch", readings))
    return ops


def batch_of(readings: list[Any]) -> ReadingBatch:
    return ReadingBatch.from_columns([r[0] for r in readings], [r[1] for r in readings],
                                     [r[2] for r in readings], [r[3] for r in readings],
                                     [r[4] if len(r) > 4 else NAN for r in readings])


def restarted(engine: RuleEngine) -> RuleEngine:
    """A new engine given the old one's saved state, as the daemon's restart does (same start,
    so no clock moves): what a kind derives from its state must come back with it."""
    arrays = snapshot_arrays(engine)
    new = RuleEngine(engine.park, start=engine.start)
    for name, sa in new.state().items():
        sa.array[...] = arrays[name]
    new.restored()
    new.stats = dict(engine.stats)
    return new


def run_both(park: ParkModel, ops: list[Op]) -> collections.Counter[str]:
    """Feed `ops` to the engine and the reference; both must agree after every call.

    Returns how often each rule changed (to check the settings make the rules fire)."""
    engine, ref = RuleEngine(park, start=T0), ReferenceEngine(park, T0)
    fired: collections.Counter[str] = collections.Counter()
    assert engine.next_due() == ref.next_due()
    for op in ops:
        now = None
        if op[0] == "restart":
            engine = restarted(engine)
            continue
        if op[0] == "batch":
            got, want = engine_rows(engine.evaluate(batch_of(op[1]))), ref.evaluate(op[1])
        else:
            if op[0] == "tick":
                now = op[1]
            else:
                due = ref.next_due()
                if math.isinf(due):
                    continue
                now = due if op[0] == "due" else math.nextafter(due, -INF)
            got, want = engine_rows(engine.tick(now)), ref.tick(now)
        g, w = by_sensor(got), by_sensor(want)
        assert g == w, f"after {op}"
        assert bits(g) == bits(w), f"after {op}"
        assert engine.next_due() == ref.next_due(), f"after {op}"
        if now is not None:
            # a tick does everything due by then: next_due never lies in the past after it
            assert engine.next_due() > now, f"after {op}"
        fired.update(r[1] for r in want)
    assert engine.stats == ref.stats
    return fired


SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def check(park: ParkModel, spec: Spec, rules: tuple[str, ...], examples: int = 250) -> None:
    """The property over `examples` scenarios; `rules` must each have changed in some."""
    fired: collections.Counter[str] = collections.Counter()

    @settings(SETTINGS, max_examples=examples)
    @given(ops=scenarios(spec))
    def engine_matches_reference(ops: list[Op]) -> None:
        fired.update(run_both(park, ops))

    engine_matches_reference()
    assert all(fired[r] for r in rules), fired


# --- one property per rule kind -------------------------------------------------------------


@pytest.mark.parametrize("name", ["threshold", "threshold_plain", "threshold_high"])
def test_threshold_and_durations(parks: dict[str, ParkModel], name: str) -> None:
    park = parks[name]
    check(park, spec_for(park), ("high_threshold",) if name == "threshold_high" else
          ("high_threshold", "low_threshold"))


def test_rate_of_rise(parks: dict[str, ParkModel]) -> None:
    park = parks["rate"]
    check(park, spec_for(park, max_ops=22), ("rate_of_rise",))


def test_rate_of_rise_across_screen_rebases(parks: dict[str, ParkModel]) -> None:
    """The rate screen keeps times as float32 from a base it moves every 2**20 s: rises either
    side of such moves are judged as the reference judges them."""
    park = parks["rate"]
    ops: list[Op] = []
    for base in (T0, T0 + 2.0**21, T0 + 2.0**22 + 0.5):
        values = [5.0] * 6 + [5.0 + k for k in range(1, 7)] + [11.0] * 10
        ops += [("batch", [(0, v, base + k, GOOD)]) for k, v in enumerate(values)]
    fired = run_both(park, ops)
    assert fired["rate_of_rise"] >= 6  # raised and cleared after each move


def test_battery_low(parks: dict[str, ParkModel]) -> None:
    park = parks["battery"]
    check(park, spec_for(park, bad_odds=3), ("battery_low",))


def test_button_latch(parks: dict[str, ParkModel]) -> None:
    park = parks["button"]
    check(park, spec_for(park, bad_odds=4), ("button_latch",))


def test_comm_fault(parks: dict[str, ParkModel]) -> None:
    park = parks["comm"]
    check(park, spec_for(park, bad_odds=2, comm_fail_odds=1), ("comm_fault",))


def test_no_data(parks: dict[str, ParkModel]) -> None:
    park = parks["no_data"]
    check(park, spec_for(park, bad_odds=3, max_batch=5), ("no_data",))


@pytest.mark.parametrize("name", ["flapping4", "flapping8"])
def test_flapping(parks: dict[str, ParkModel], name: str) -> None:
    park = parks[name]
    check(park, spec_for(park, bad_odds=10, max_ops=24), ("flapping",))


@pytest.mark.parametrize("name", ["floor", "floor_odd"])
def test_floor_load(parks: dict[str, ParkModel], name: str) -> None:
    park = parks[name]
    check(park, spec_for(park, bad_odds=5, comm_fail_odds=2), ("floor_load", "floor_data"))


def test_sensor_fault(parks: dict[str, ParkModel]) -> None:
    park = parks["sensor_fault"]
    check(park, spec_for(park, bad_odds=5, comm_fail_odds=3),
          ("sensor_fault", "high_threshold", "floor_load"))


def test_everything_at_once(parks: dict[str, ParkModel]) -> None:
    from parkwatch.rules.registry import RULE_NAMES

    park = parks["everything"]
    # output_fault is raised by the outputs' supervision (test_outputs_e2e) and clock_step by
    # the watch over the gateway's clock (test_clock), not by readings
    from_readings = tuple(r for r in RULE_NAMES if r not in ("output_fault", "clock_step"))
    check(park, spec_for(park, max_ops=24, max_batch=14), from_readings, examples=300)


# --- the reference itself, on hand-checked cases ---------------------------------------------


def rows_of(ref_out: list[Transition]) -> list[tuple[Any, ...]]:
    return [r[1:] for r in ref_out]


def test_reference_durations_raise_at_the_severity_reached(parks: dict[str, ParkModel]) -> None:
    """for_s 2: warning at 0, critical at 1 -> critical confirmed at 2, dated 2, by the next
    reading; clear_for_s 3 then holds the clear back."""
    park = parks["threshold"]
    ref, lc = ReferenceEngine(park, T0), park.index["LC1"]
    assert ref.evaluate([(lc, 9.0, T0, GOOD)]) == []
    assert ref.evaluate([(lc, 11.0, T0 + 1, GOOD)]) == []
    assert ref.next_due() == T0 + 2
    assert rows_of(ref.evaluate([(lc, 11.0, T0 + 2.5, GOOD)])) == [
        ("high_threshold", NORMAL, CRITICAL, 11.0, 10.0, T0 + 2)]
    assert ref.evaluate([(lc, 9.6, T0 + 3, GOOD)]) == []  # inside the deadband: held
    assert ref.evaluate([(lc, 0.0, T0 + 4, GOOD)]) == []  # below: pending clear
    assert rows_of(ref.tick(T0 + 6.9)) == []
    assert rows_of(ref.tick(T0 + 7)) == [("high_threshold", CRITICAL, NORMAL, 0.0, 10.0, T0 + 7)]
    assert ref.next_due() == INF


def test_reference_low_side_and_jump_across(parks: dict[str, ParkModel]) -> None:
    park = parks["threshold_plain"]
    ref, wl = ReferenceEngine(park, T0), park.index["WL1"]
    assert rows_of(ref.evaluate([(wl, 55.0, T0, GOOD), (wl, 2.0, T0 + 1, GOOD),
                                 (wl, 7.9, T0 + 2, GOOD), (wl, 8.0, T0 + 3, GOOD),
                                 (wl, 8.1, T0 + 4, GOOD)])) == [
        ("high_threshold", NORMAL, CRITICAL, 55.0, 50.0, T0),
        ("high_threshold", CRITICAL, NORMAL, 2.0, 50.0, T0 + 1),
        ("low_threshold", NORMAL, CRITICAL, 2.0, 5.0, T0 + 1),
        ("low_threshold", CRITICAL, WARNING, 8.1, 10.0, T0 + 4)]  # the warning limit


def test_reference_rate_of_rise_by_hand(parks: dict[str, ParkModel]) -> None:
    """WL2: window 4 s, critical only at 60/min, no deadband or durations."""
    park = parks["rate"]
    ref, wl = ReferenceEngine(park, T0), park.index["WL2"]
    # 1 cm in 1 s: no trend yet (span < half the window); 2 cm in 2 s = 60/min: critical
    assert ref.evaluate([(wl, 0.0, T0, GOOD), (wl, 1.0, T0 + 1, GOOD)]) == []
    assert rows_of(ref.evaluate([(wl, 2.0, T0 + 2, GOOD)])) == [
        ("rate_of_rise", NORMAL, CRITICAL, 60.0, 60.0, T0 + 2)]
    # samples are kept half a window apart (T0, T0 + 2; not T0 + 1) and T0 is now out of the
    # window: the baseline is T0 + 2, 0.5 cm in 3 s = 10/min, cleared
    assert rows_of(ref.evaluate([(wl, 2.5, T0 + 5, GOOD)])) == [
        ("rate_of_rise", CRITICAL, NORMAL, 10.0, 60.0, T0 + 5)]


def test_reference_no_data_and_comm_fault(parks: dict[str, ParkModel]) -> None:
    park = parks["no_data"]
    ref, wl = ReferenceEngine(park, T0), park.index["WL1"]  # 2 missed × 1.5 s
    ref.evaluate([(wl, 1.0, T0 + 1, GOOD)])
    assert [r for r in ref.tick(T0 + 3.9) if r[0] == wl] == []
    assert [r for r in ref.tick(T0 + 4) if r[0] == wl] == [
        (wl, "no_data", NORMAL, WARNING, None, 3.0, T0 + 4)]
    assert ref.evaluate([(wl, math.nan, T0 + 9, int(Quality.HEARTBEAT))]) == [
        (wl, "no_data", WARNING, NORMAL, None, 3.0, T0 + 9)]
    # a reading after a silence nobody ticked through: raised (dated) and cleared at once
    assert ref.evaluate([(wl, 1.0, T0 + 20, GOOD)]) == [
        (wl, "no_data", NORMAL, WARNING, None, 3.0, T0 + 12),
        (wl, "no_data", WARNING, NORMAL, None, 3.0, T0 + 20)]
    park = parks["comm"]
    ref, lc = ReferenceEngine(park, T0), park.index["LC1"]  # 2.5 s on the bus
    fail = int(Quality.COMM_FAIL)
    assert ref.evaluate([(lc, NAN, T0, fail), (lc, NAN, T0 + 2, fail)]) == []
    assert ref.evaluate([(lc, NAN, T0 + 2.5, fail), (lc, NAN, T0 + 3, fail)]) == [
        (lc, "comm_fault", NORMAL, WARNING, None, 2.5, T0 + 2.5)]
    assert ref.evaluate([(lc, NAN, T0 + 4, int(Quality.BAD))]) == [
        (lc, "comm_fault", WARNING, NORMAL, None, 2.5, T0 + 4)]


def test_reference_flapping_holds_back_then_catches_up(parks: dict[str, ParkModel]) -> None:
    """history 4, above 0.5 flapping, below 0.25 not: LC2 (8 / 10, no deadband) toggling."""
    park = parks["flapping4"]
    ref, lc = ReferenceEngine(park, T0), park.index["LC2"]
    out = [rows_of(ref.evaluate([(lc, v, T0 + i, GOOD)]))
           for i, v in enumerate([9.0, 5.0, 9.0, 11.0, 5.0, 8.5, 9.0, 9.0, 9.0, 9.0])]
    assert out == [
        [("high_threshold", NORMAL, WARNING, 9.0, 8.0, T0)],
        [("high_threshold", WARNING, NORMAL, 5.0, 8.0, T0 + 1)],
        # third change in four: 0.75 > 0.5, held back; flapping at least warning
        [("flapping", NORMAL, WARNING, 75.0, 50.0, T0 + 2)],
        # still flapping; it reached critical: the flapping alarm follows
        [("flapping", WARNING, CRITICAL, None, 50.0, T0 + 3)],
        [], [],  # changes held back
        [], [], [],  # steady: 0.75, 0.5, then 0.25 is not below low
        # four steady evaluations: share 0 < 0.25: caught up (to warning, with the value and
        # limit of the change that set it), cleared
        [("high_threshold", NORMAL, WARNING, 8.5, 8.0, T0 + 9),
         ("flapping", CRITICAL, NORMAL, 0.0, 25.0, T0 + 9)]]


def test_reference_floor_sum_and_stale_cell(parks: dict[str, ParkModel]) -> None:
    """B/1F (capacity 2.1 kN, one cell in kN): warning at 0.85, stale after 4 s."""
    park = parks["floor_odd"]  # for_s 0, clear_for_s 1.7, stale_after_s 3.3
    ref, c7 = ReferenceEngine(park, T0), park.index["C7"]
    grp = next(g.index for g in park.groups if g.id == "B/1F")
    cap = 0.7 * 3
    assert ref.evaluate([(c7, 1.0, T0 + 1, GOOD)]) == []
    assert ref.evaluate([(c7, 2.0, T0 + 2, GOOD)]) == [
        (grp, "floor_load", NORMAL, WARNING, 2.0, cap * 0.85, T0 + 2)]
    assert [r for r in ref.tick(T0 + 6) if r[0] == grp] == [
        (grp, "floor_data", NORMAL, WARNING, 1.0, None, T0 + 2 + 3.3)]
    assert ref.evaluate([(c7, 0.5, T0 + 7, GOOD)]) == [
        (grp, "floor_data", WARNING, NORMAL, 0.0, None, T0 + 7)]
    assert [r for r in ref.tick(T0 + 8.7) if r[0] == grp] == [
        (grp, "floor_load", WARNING, NORMAL, 0.5, cap * 0.85, T0 + 7 + 1.7)]
