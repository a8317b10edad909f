"""Open alarms on disk, so a restarted gateway continues the same alarms under the same ids.

A small JSON file rewritten atomically after every batch of changes; alarms name their sensor
(or floor) by id, so they survive a config change that renumbers sensors.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from parkwatch.alarms.lifecycle import Alarm, AlarmBook
from parkwatch.park import ParkModel
from parkwatch.rules.transitions import Severity

FORMAT = 1


def save_book(book: AlarmBook, park: ParkModel, path: Path) -> None:
    alarms = []
    for alarm in book.open.values():
        row: dict[str, Any] = asdict(alarm)
        row["sensor"] = park.ident(alarm.sensor)
        row["severity"] = int(alarm.severity)
        alarms.append(row)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "open": alarms}, f, ensure_ascii=False, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_book(book: AlarmBook, park: ParkModel, path: Path) -> list[dict[str, Any]]:
    """Put the saved open alarms back; returns those whose sensor is no longer configured."""
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: alarm file format {data.get('format')}, expected {FORMAT}")
    index = {ident: i for i, ident in enumerate(park.idents())}
    orphans = []
    for row in data["open"]:
        i = index.get(row["sensor"])
        if i is None:
            orphans.append(row)
            continue
        alarm = Alarm(**{**row, "sensor": i, "severity": Severity(row["severity"])})
        book.open[alarm.alarm_id] = alarm
        if alarm.active:
            book.active_by_key[(alarm.sensor, alarm.rule)] = alarm
    return orphans
