"""`parkwatch sim`: play a scenario with the simulated devices of a park config."""

from __future__ import annotations

import signal
import sys
import threading
import time

from parkwatch.config import ConfigError
from parkwatch.firmware_sim import scenarios
from parkwatch.firmware_sim.devices import SimulatedPark
from parkwatch.schema import load_config


def run_sim(config: str, scenario: str, speed: float = 1.0, list_only: bool = False) -> int:
    if list_only:
        for name, (description, _) in scenarios.SCENARIOS.items():
            print(f"{name:12s} {description}")
        return 0
    try:
        cfg = load_config(config)
        plan = scenarios.build(cfg, scenario)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"parkwatch sim: {exc.args[0]}", file=sys.stderr)
        return 2
    try:
        fleet = SimulatedPark(cfg)
    except (FileExistsError, OSError) as exc:
        print(f"parkwatch sim: {exc}", file=sys.stderr)
        return 1
    if not fleet.devices:
        print("parkwatch sim: this config has no devices to simulate", file=sys.stderr)
        return 2
    try:
        fleet.start()
    except (ConnectionError, FileExistsError, OSError) as exc:
        fleet.stop()
        print(f"parkwatch sim: {exc}", file=sys.stderr)
        return 1
    for line in fleet.describe():
        print(f"  {line}")
    t0 = time.monotonic()
    names = {o.id: o.name or "" for o in cfg.outputs}
    fleet.watch_outputs(lambda oid, on: print(
        f"  +{time.monotonic() - t0:5.1f}s  联动 {oid} {names.get(oid, '')} → "
        f"{'ON' if on else 'OFF'}", flush=True))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"simulating {len(fleet.devices)} device(s): scenario '{plan.name}' — "
          f"{plan.description} ({plan.duration / speed:.0f} s)")
    try:
        sent = scenarios.play(plan, fleet, speed=speed, stop=stop, narrate=lambda note: print(
            f"  +{time.monotonic() - t0:5.1f}s  {note}", flush=True))
    except KeyboardInterrupt:
        sent = fleet.sent
    finally:
        fleet.stop()
    print(f"done: {sent} message(s) sent")
    return 0
