"""Recordings of the daemon's input: one JSON line per reading, replayable offline.

A line is ``{"batch": 17, "ts": 1763800000.123, "sensor": "A-2F-LC1", "value": 812.5,
"quality": "good"}``; ``value`` is null when a reading has none (a heartbeat, a comm failure).
Readings that arrived together share a batch number, so a replay weighs them together just as
the daemon did.  ``parkwatch run --record FILE`` writes one; ``parkwatch replay`` reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch

QUALITY_NAMES = {q: q.name.lower() for q in Quality}
QUALITY_BY_NAME = {name: q for q, name in QUALITY_NAMES.items()}


class Recorder:
    """Appends every batch the pipeline evaluates to a JSONL file."""

    def __init__(self, path: Path, park: ParkModel) -> None:
        self.path = path
        self.ids = [s.id for s in park.sensors]
        self.file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.batches = 0
        self.readings = 0

    def repark(self, park: ParkModel) -> None:
        """A reload renumbered the sensors: name them by the new park from now on."""
        self.ids = [s.id for s in park.sensors]

    def write(self, batch: ReadingBatch) -> None:
        if len(batch) == 0:
            return
        self.batches += 1
        b, ids, names = self.batches, self.ids, QUALITY_NAMES
        lines = [
            json.dumps({"batch": b, "ts": t, "sensor": ids[s],
                        "value": None if math.isnan(v) else v, "quality": names[Quality(q)]},
                       ensure_ascii=False)
            for s, v, t, q in zip(batch.sensor.tolist(), batch.value.tolist(),
                                  batch.ts.tolist(), batch.quality.tolist(), strict=True)]
        self.file.write("\n".join(lines) + "\n")
        self.file.flush()
        self.readings += len(lines)

    def close(self) -> None:
        self.file.close()


@dataclass
class BadLine:
    line: int
    reason: str


@dataclass
class Recording:
    """A recording read back: batches in file order, and the lines that could not be used."""

    batches: list[ReadingBatch] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    unknown_sensors: dict[str, int] = field(default_factory=dict)
    readings: int = 0


def _lines(f: IO[str]) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(f, 1):
        if line.strip():
            yield n, line


def read_recording(path: Path, park: ParkModel) -> Recording:
    """Parse a recording; bad lines and unknown sensors are counted, never fatal."""
    out = Recording()
    cols: tuple[list[int], list[float], list[float], list[int]] = ([], [], [], [])
    current: object = None

    def flush() -> None:
        if cols[0]:
            out.batches.append(ReadingBatch.from_columns(*cols))
            out.readings += len(cols[0])
            for c in cols:
                c.clear()

    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in _lines(f):
            try:
                row = json.loads(line)
                sensor, ts = row["sensor"], float(row["ts"])
                value = row.get("value")
                value = math.nan if value is None else float(value)
                quality = QUALITY_BY_NAME[row.get("quality", "good")]
                if not math.isfinite(ts):
                    raise ValueError("ts is not a finite number")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                out.bad.append(BadLine(n, f"{type(exc).__name__}: {exc}"))
                continue
            index = park.index.get(sensor)
            if index is None:
                out.unknown_sensors[sensor] = out.unknown_sensors.get(sensor, 0) + 1
                continue
            batch = row.get("batch", n)  # lines without a batch number stand alone
            if batch != current:
                flush()
                current = batch
            cols[0].append(index)
            cols[1].append(value)
            cols[2].append(ts)
            cols[3].append(int(quality))
    flush()
    return out
