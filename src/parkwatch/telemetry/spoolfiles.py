"""The spool's files: the record format, and each lane's segments as the spool keeps count of
them (see :mod:`parkwatch.telemetry.spool` for the layout and the durability rules)."""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from parkwatch.statedir import private_dir

MAGIC = b"PWR1"
HEADER = struct.Struct("<4sIIIqq")  # magic, payload bytes, crc32, points, first ms, spooled ms
EVENTS, TELEMETRY = "events", "telemetry"
LANES = (EVENTS, TELEMETRY)  # in the order they are replayed and the reverse of dropping


@dataclass
class Record:
    """One spooled batch, as read back for replay."""

    lane: str
    seq: int  # segment
    end: int  # offset just past the record
    points: int
    first_ms: int
    spooled_ms: int
    payload: bytes  # line protocol, uncompressed


@dataclass
class Segment:
    seq: int
    path: Path
    size: int = 0
    points: int = 0
    records: int = 0


class Lane:
    """The segments of one lane, a cursor into the oldest, and the file being appended to."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.dir = directory
        private_dir(self.dir)
        self.segments: deque[Segment] = deque()
        self.offset = 0  # cursor: the first undelivered record in segments[0]
        self.consumed_points = 0  # points of segments[0] before the cursor
        self.consumed_records = 0
        self.head_spooled_ms: int | None = None  # when the record at the cursor was spooled
        self.writer: int | None = None  # fd of segments[-1], opened for appending
        self.dropped_points = 0
        self.dirty = False
        # sums over the segments, kept as they change so other threads can read them
        self.total_bytes = self.total_points = self.total_records = 0
        self.last_seq = 0  # segment numbers only grow, even when a lane empties

    def count(self, seg: Segment, sign: int = 1) -> None:
        self.total_bytes += sign * seg.size
        self.total_points += sign * seg.points
        self.total_records += sign * seg.records

    @property
    def bytes(self) -> int:
        return self.total_bytes

    @property
    def points(self) -> int:
        return self.total_points - self.consumed_points

    @property
    def records(self) -> int:
        return self.total_records - self.consumed_records

    def segment_path(self, seq: int) -> Path:
        return self.dir / f"{seq:016d}.seg"

    @property
    def cursor_path(self) -> Path:
        return self.dir / "cursor"
