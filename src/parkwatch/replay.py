"""`parkwatch replay`: run recorded readings through a config's rules and print the transitions.

For tuning limits offline: record a day of a real park (``parkwatch run --record``), change the
limits in a copy of the config, and see which alarms the new limits would have raised.  Time is
the recording's: durations, silences and stale cells are judged exactly when they fall due
between readings, as the running daemon would.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from parkwatch.alarms.event import alarm_unit
from parkwatch.alarms.timestamps import rfc3339_ms
from parkwatch.park import ParkModel
from parkwatch.recording import read_recording
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


class Printer:
    def __init__(self, park: ParkModel, out: TextIO, as_json: bool) -> None:
        self.park, self.out, self.as_json = park, out, as_json
        self.count: Counter[tuple[str, str]] = Counter()

    def __call__(self, tr: Transitions) -> None:
        for s, r, old, new, value, thr, ts in tr.rows():
            rule, ident = RULE_NAMES[r], self.park.ident(s)
            old_l, new_l = Severity(old).label, Severity(new).label
            self.count[(rule, "raised" if old == 0 else "cleared" if new == 0 else "changed")] += 1
            unit = alarm_unit(self.park, s, rule)
            if self.as_json:
                print(json.dumps({"ts": rfc3339_ms(ts), "source": ident, "rule": rule,
                                  "from": old_l, "to": new_l,
                                  "value": None if math.isnan(value) else value,
                                  "threshold": None if math.isnan(thr) else thr, "unit": unit},
                                 ensure_ascii=False), file=self.out)
                continue
            val = "" if math.isnan(value) else f"  value {value:g} {unit}".rstrip()
            lim = "" if math.isnan(thr) else f"  limit {thr:g} {unit}".rstrip()
            print(f"{rfc3339_ms(ts)}  {ident:<14} {rule:<15} {old_l:>8} → {new_l:<8}{val}{lim}",
                  file=self.out)


def replay(park: ParkModel, recording: Path, out: TextIO = sys.stdout, as_json: bool = False,
           until: float | None = None, err: TextIO = sys.stderr) -> int:
    rec = read_recording(recording, park)
    for bad in rec.bad[:10]:
        print(f"{recording}:{bad.line}: skipped: {bad.reason}", file=err)
    if len(rec.bad) > 10:
        print(f"{recording}: {len(rec.bad) - 10} more bad line(s) skipped", file=err)
    for sensor, n in sorted(rec.unknown_sensors.items()):
        print(f"{recording}: {n} reading(s) of '{sensor}' skipped: not a sensor of this config",
              file=err)
    if not rec.batches:
        print(f"{recording}: no readings to replay", file=err)
        return EXIT_FAILURE if rec.bad else EXIT_OK
    start = float(rec.batches[0].ts.min())
    engine = RuleEngine(park, start=start)
    show = Printer(park, out, as_json)

    def run_clock(to: float) -> None:
        while (due := engine.next_due()) <= to:
            show(engine.tick(due))
            if engine.next_due() <= due:  # nothing moved: never spin
                break

    for batch in rec.batches:
        run_clock(float(batch.ts.max()))
        show(engine.evaluate(batch))
    end = float(rec.batches[-1].ts.max()) if until is None else until
    run_clock(end)
    st = engine.stats
    summary = ", ".join(f"{rule} {kind} {n}" for (rule, kind), n in sorted(show.count.items()))
    print(f"replayed {rec.readings} reading(s) in {len(rec.batches)} batch(es) from "
          f"{rfc3339_ms(start)} to {rfc3339_ms(end)}: {sum(show.count.values())} transition(s)"
          f"{' (' + summary + ')' if summary else ''}; out of order {st['out_of_order']}, "
          f"unusable {st['unusable']}, bad lines {len(rec.bad)}", file=err)
    return EXIT_OK


def run_replay(config: str, recording: str, as_json: bool = False,
               until: float | None = None) -> int:
    from parkwatch.config import ConfigError
    from parkwatch.schema import load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    path = Path(recording)
    if not path.is_file():
        print(f"{recording}: no such recording", file=sys.stderr)
        return EXIT_FAILURE
    return replay(ParkModel(cfg), path, as_json=as_json, until=until)
