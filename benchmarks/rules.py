"""Rule engine speed: nanoseconds per sensor for a batch holding one reading of every sensor.

Issue 4, done-when 4: for 1e3 … 1e6 sensors, with the threshold rules alone and with every rule
kind on; targets at 1e5 sensors: ≤ 15 ns/sensor for thresholds and ≤ 50 ns/sensor for all kinds.
The same workload also goes through the plain per-sensor reference implementation of the tests
(``tests/rules_reference.py``) for the speed-up ratio.

The park is generated: buildings of floors with ten load cells, three water gauges and four fire
buttons each (60 / 20 / 20 % of the sensors, rounded).  Each batch holds one reading of every
sensor, either in a random order as MQTT devices deliver them ("arrival") or in sensor order as
a bus poll cycle does ("poll"); about 1 % of the values are beyond
a limit (and come back the next batch), so transitions are produced and delivered every batch.
"All kinds" means: limits with durations (for_s / clear_for_s), rate of rise on every measuring
sensor, no-data watching on every sensor, comm-fault on a fifth of them (a Modbus bus), flapping
detection, and floor and zone load sums against capacity.  The time measured is
``RuleEngine.evaluate(batch)``, from readings in to transitions out; ``next_due()`` (what the
pipeline asks between batches) is reported separately.

**The floor.**  Each figure is also given as a multiple of a floor timed in the same process on
the same batches: the least work any rule engine must do for a threshold check, which is to
gather each reading's limit (``limit[batch.sensor]``, numpy fancy indexing), compare the values
with it once and ``np.flatnonzero`` the result.  ``x_floor`` = ``ns_per_sensor`` /
``floor_ns_per_sensor``: how much the engine does beyond that, independent of how fast the
machine happens to be.

Run from the repository root::

    .venv/bin/python benchmarks/rules.py            # ~2 min, writes benchmarks/results/rules.json
    .venv/bin/python benchmarks/rules.py --sizes 1000 100000 --no-reference

The exit code is 0 whether or not the targets are met; the table says which pass.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
from benchinfo import command_line  # noqa: E402
from benchinfo import machine as bench_machine  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from parkwatch.park import ParkModel  # noqa: E402
from parkwatch.readings import Quality, ReadingBatch  # noqa: E402
from parkwatch.rules.engine import RuleEngine  # noqa: E402
from parkwatch.schema import ParkConfig  # noqa: E402

TARGETS_NS = {"thresholds": 15.0, "all": 50.0}  # at 1e5 sensors
TARGET_SIZE = 100_000
#: the critical high limit of each kind (the floor compares against it); a fire button is
#: pressed at 1
LIMITS = {"load_cell": {"high_warning": 8000.0, "high_critical": 10000.0, "deadband": 200.0},
          "water_level": {"high_warning": 30.0, "high_critical": 50.0, "deadband": 3.0}}
FIRE_PRESSED = 1.0
T0 = 1_763_800_000.0
PER_FLOOR = (10, 3, 4)  # load cells, water gauges, fire buttons: 17 sensors a floor
FLOORS_PER_BUILDING = 20


def park_config(n: int, mode: str, workdir: Path) -> ParkConfig:
    """A valid park of about n sensors (validated by the models; generated: not cross-checked)."""
    floors_needed = max(1, round(n / sum(PER_FLOOR)))
    buildings = []
    sensors: list[dict[str, Any]] = []
    every = mode == "all"
    for f in range(floors_needed):
        b, fl = f // FLOORS_PER_BUILDING, f % FLOORS_PER_BUILDING
        if fl == 0:
            buildings.append({"id": f"B{b}", "floors": []})
        buildings[-1]["floors"].append({
            "id": f"F{fl}", "rated_load_kn_m2": 4.0, "area_m2": 400.0,
            "zones": [{"id": "z1", "area_m2": 200.0}]})
        for kind, count in zip(("load_cell", "water_level", "fire_button"), PER_FLOOR,
                               strict=True):
            for k in range(count):
                i = len(sensors)
                s: dict[str, Any] = {"id": f"S{i}", "kind": kind, "building": f"B{b}",
                                     "floor": f"F{fl}", "driver": "lora"}
                if kind == "load_cell" and k < 5:
                    s["zone"] = "z1"
                if every and i % 5 == 4:  # a fifth on a Modbus bus: comm-fault watching
                    s["driver"] = "bus"
                    s["address"] = f"{1 + i % 247}/hr{i % 60000}"
                elif every:
                    s["report_interval_s"] = 60.0
                sensors.append(s)
    rules: dict[str, Any] = {k: dict(v) for k, v in LIMITS.items()}
    if every:
        for kind, rise in (("load_cell", 2000.0), ("water_level", 2.0)):
            rules[kind].update({"for_s": 3.0, "clear_for_s": 5.0,
                                "rate": {"window_s": 30.0, "rise_warning": rise,
                                         "rise_critical": rise * 3}})
        rules["floor_load"] = {"enabled": True, "stale_after_s": 120.0}
    else:
        rules["flapping"] = None
        rules["floor_load"] = {"enabled": False}
    data = {
        "park": {"id": "bench", "name": "bench"},
        "gateway": {"id": "gw", "state_dir": str(workdir)},
        "brokers": {"local": {"host": "127.0.0.1"}},
        "uplink": {"broker": "local"},
        "landlord": {"id": "l", "name": "L"},
        "buildings": buildings,
        "drivers": [{"id": "lora", "type": "mqtt", "broker": "local"},
                    {"id": "bus", "type": "modbus_rtu", "port": "/dev/null",
                     "comm_fault_after_s": 30.0}],
        "sensors": sensors,
        "rules": rules,
    }
    return ParkConfig.model_validate(data, context={"base_dir": workdir})


class Workload:
    """Batches of one reading per sensor, shuffled, ~1 % beyond a limit."""

    def __init__(self, park: ParkModel, seed: int = 4, shuffle: bool = True) -> None:
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.n = len(park)
        kinds = [s.config.kind for s in park.sensors]
        self.base = np.array([{"load_cell": 5000.0, "water_level": 10.0}.get(k, 0.0)
                              for k in kinds])
        self.high = np.array([{"load_cell": 10500.0, "water_level": 55.0}.get(k, 0.0)
                              for k in kinds])
        # measurement noise of such sensors: a couple of kg on a cell, a millimetre on a gauge
        self.noise = np.array([{"load_cell": 2.0, "water_level": 0.1}.get(k, 0.0)
                               for k in kinds])
        self.k = 0

    def batch(self) -> ReadingBatch:
        self.k += 1
        order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        order = order.astype(np.int32)
        value = self.base + self.rng.normal(0.0, 1.0, self.n) * self.noise
        over = self.rng.random(self.n) < 0.01
        value = np.where(over, self.high, value)
        return ReadingBatch(order, value[order], np.full(self.n, T0 + self.k),
                            np.full(self.n, Quality.GOOD, np.uint8), np.full(self.n, np.nan))


def floor_limits(park: ParkModel) -> np.ndarray:
    """Each sensor's critical high limit (a fire button's: pressed), float64 by sensor index."""
    return np.array([LIMITS[s.config.kind]["high_critical"] if s.config.kind in LIMITS
                     else FIRE_PRESSED for s in park.sensors], dtype=np.float64)


def floor_check(limit: np.ndarray, batch: ReadingBatch) -> np.ndarray:
    """The least work of any threshold check: gather each reading's limit, one compare,
    the indices of the readings at or beyond it."""
    return np.flatnonzero(batch.value >= limit[batch.sensor])


def measure_engine(park: ParkModel, reps: int, warmup: int, shuffle: bool) -> dict[str, float]:
    engine = RuleEngine(park, start=T0)
    work = Workload(park, shuffle=shuffle)
    batches = [work.batch() for _ in range(warmup + reps)]
    limit = floor_limits(park)
    times, due_times, floor_times, transitions = [], [], [], 0
    gc.disable()
    try:
        for i, b in enumerate(batches):
            t = time.perf_counter()
            tr = engine.evaluate(b)
            dt_eval = time.perf_counter() - t
            t = time.perf_counter()
            engine.next_due()
            dt_due = time.perf_counter() - t
            # the floor, interleaved so that both see the same moment of a shared machine, on
            # a batch half the list away: one as far from the CPU caches as the engine's
            other = batches[(i + len(batches) // 2) % len(batches)]
            t = time.perf_counter()
            floor_check(limit, other)
            dt_floor = time.perf_counter() - t
            if i >= warmup:
                times.append(dt_eval)
                due_times.append(dt_due)
                floor_times.append(dt_floor)
                transitions += len(tr)
    finally:
        gc.enable()
    n = len(park)
    ns = statistics.median(times) / n * 1e9
    floor_ns = statistics.median(floor_times) / n * 1e9
    return {"ns_per_sensor": ns,
            "ns_per_sensor_min": min(times) / n * 1e9,
            "ns_per_sensor_mean": statistics.mean(times) / n * 1e9,
            "floor_ns_per_sensor": floor_ns, "floor_ns_per_sensor_min": min(floor_times) / n * 1e9,
            "x_floor": ns / floor_ns,
            "next_due_ns_per_sensor": statistics.median(due_times) / n * 1e9,
            "transitions_per_batch": transitions / reps, "batches": reps}


def measure_reference(park: ParkModel, reps: int) -> float | None:
    try:
        from rules_reference import ReferenceEngine  # type: ignore[import-not-found]
    except ImportError:
        return None
    ref = ReferenceEngine(park, start=T0)
    work = Workload(park)
    batches = [work.batch() for _ in range(reps + 1)]
    ref.evaluate_batch(batches[0])
    times = []
    for b in batches[1:]:
        t = time.perf_counter()
        ref.evaluate_batch(b)
        times.append(time.perf_counter() - t)
    return statistics.median(times) / len(park) * 1e9


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--modes", nargs="+", default=["thresholds", "all"],
                    choices=["thresholds", "all"])
    ap.add_argument("--orders", nargs="+", default=["arrival", "poll"],
                    choices=["arrival", "poll"], help="readings shuffled (as MQTT devices "
                    "deliver them) or in sensor order (as a bus poll cycle delivers them)")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference ratio")
    ap.add_argument("--reference-max", type=int, default=100_000,
                    help="largest size run through the (slow) reference")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rules.json"))
    args = ap.parse_args(argv)
    started = time.monotonic()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            for size in args.sizes:
                t = time.perf_counter()
                park = ParkModel(park_config(size, mode, Path(tmp)))
                setup = time.perf_counter() - t
                reps = int(min(200, max(7, 3e6 / len(park))))
                # the first batches pay for first-touch page faults of big temporaries: the
                # daemon's steady state is what counts
                warmup = int(min(100, max(10, 2e6 / len(park))))
                for order in args.orders:
                    row: dict[str, Any] = {
                        "mode": mode, "order": order, "sensors": len(park),
                        "groups": len(park.groups), "setup_s": round(setup, 2),
                        **measure_engine(park, reps, warmup, shuffle=order == "arrival")}
                    if (not args.no_reference and len(park) <= args.reference_max
                            and order == "arrival"):
                        ref = measure_reference(park, reps=max(1, min(5, int(2e5 / len(park)))))
                        if ref is not None:
                            row["reference_ns_per_sensor"] = ref
                            row["speedup"] = ref / row["ns_per_sensor"]
                    if abs(len(park) - TARGET_SIZE) / TARGET_SIZE < 0.05:
                        row["target_ns"] = TARGETS_NS[mode]
                        row["meets_target"] = row["ns_per_sensor"] <= TARGETS_NS[mode]
                    rows.append(row)
                    ref_s = (f"{row['reference_ns_per_sensor']:>9.0f} ({row['speedup']:.0f}×)"
                             if "speedup" in row else f"{'—':>9}")
                    target = ("" if "target_ns" not in row else
                              f"  target ≤ {row['target_ns']:g}: "
                              f"{'PASS' if row['meets_target'] else 'FAIL'}")
                    print(f"{mode:<10} {order:<7} {len(park):>9} sensors "
                          f"{row['ns_per_sensor']:>7.1f} ns/sensor "
                          f"(min {row['ns_per_sensor_min']:.1f}, next_due "
                          f"{row['next_due_ns_per_sensor']:.1f}) "
                          f"floor {row['floor_ns_per_sensor']:>5.2f} ns "
                          f"({row['x_floor']:>5.1f}× floor) "
                          f"{row['transitions_per_batch']:>7.0f} tr/batch  reference {ref_s}"
                          f"{target}", flush=True)
                del park
                gc.collect()
    result = {"benchmark": "rules", "command": command_line(argv),
              "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": bench_machine(numpy=np.__version__),
              "runtime_s": round(time.monotonic() - started, 1),
              "targets_ns_at_1e5": TARGETS_NS,
              "floor": "np.flatnonzero(batch.value >= limit[batch.sensor]) on the same batches",
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
