"""The store-and-forward spool: telemetry the server has not taken yet, kept on disk in order.

Layout: `{state_dir}/spool/{lane}/` holds append-only segment files `0000000000000001.seg`, ...,
and a `cursor` file naming the first record not yet delivered.  Two lanes, `events` (alarm
events) and `telemetry` (everything else), so a full spool can drop the oldest telemetry first
and alarm events last.  A record is a header (magic, payload length, CRC-32, points, time of
the first point, time spooled) and a zlib-compressed batch of line protocol.

Durability: every record is written with one `write()` to a file opened for appending, so a
SIGKILL loses nothing already appended; `fsync` (always / interval / never) decides what a power
loss may take.  A torn record at the tail of the newest segment (a crash in the middle of a
write, or zeros after a power loss) is cut off at start and logged.  The cursor is rewritten
after each delivered record; if a crash loses its last update, that record is delivered twice,
which InfluxDB absorbs (same series, same timestamp: the point is overwritten).

The spool is used by one thread (the sink's); `stats()` may be read from any thread.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

from parkwatch.config.telemetry import SpoolConfig
from parkwatch.statedir import FILE_MODE, private_dir, private_opener
from parkwatch.telemetry.spoolfiles import (
    HEADER,
    LANES,
    MAGIC,
    Lane,
    Record,
    Segment,
)

log = logging.getLogger("parkwatch.telemetry.spool")


class Spool:
    def __init__(self, directory: Path, cfg: SpoolConfig, clock: Any = time.time) -> None:
        self.dir = private_dir(directory)  # 0700, as the state directory it is in
        self.cfg = cfg
        self.clock = clock
        self.lanes = {name: Lane(name, directory / name) for name in LANES}
        self.corrupt_records = 0
        self.write_errors = 0
        self._last_fsync = time.monotonic()
        self._full_logged = False
        for lane in self.lanes.values():
            self._open(lane)

    # --- start ------------------------------------------------------------------------------

    def _open(self, lane: Lane) -> None:
        seqs = sorted(int(p.stem) for p in lane.dir.glob("*.seg") if p.stem.isdigit())
        for i, seq in enumerate(seqs):
            seg = self._scan(lane, seq, newest=i == len(seqs) - 1)
            lane.segments.append(seg)
            lane.count(seg)
            lane.last_seq = seq
        seq, offset, points, records = self._read_cursor(lane)
        lane.last_seq = max(lane.last_seq, seq)
        while lane.segments and lane.segments[0].seq < seq:  # delivered, not yet removed
            seg = lane.segments.popleft()
            lane.count(seg, -1)
            self._remove(seg)
        if lane.segments and lane.segments[0].seq == seq:
            first = lane.segments[0]
            if offset <= first.size:
                lane.offset = offset
                lane.consumed_points = min(points, first.points)
                lane.consumed_records = min(records, first.records)
        if len(lane.segments) == 1 and 0 < lane.segments[0].size <= lane.offset:
            self._drained(lane)  # delivered to its end by a run that kept it
        self._settle_head(lane)
        if lane.points:
            log.info("spool %s: %d point(s) in %d record(s), %d byte(s) waiting from an "
                     "earlier run", lane.name, lane.points, lane.records, lane.bytes)

    def _scan(self, lane: Lane, seq: int, newest: bool) -> Segment:
        """A segment's size, points and records from its headers; a torn tail is cut off."""
        seg = Segment(seq, lane.segment_path(seq))
        size = seg.path.stat().st_size
        with seg.path.open("rb") as f:
            pos = 0
            while pos < size:
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    break
                magic, length, _crc, points, _first, _spooled = HEADER.unpack(head)
                if magic != MAGIC or pos + HEADER.size + length > size:
                    break
                f.seek(length, os.SEEK_CUR)
                pos += HEADER.size + length
                seg.points += points
                seg.records += 1
        if pos < size:
            if newest:
                log.warning("spool %s: %s ends in a torn record (%d byte(s) after the last "
                            "whole one, from a crash during a write); cut off", lane.name,
                            seg.path.name, size - pos)
                os.truncate(seg.path, pos)
            else:
                self.corrupt_records += 1
                log.error("spool %s: %s is damaged after byte %d; the rest of it is skipped",
                          lane.name, seg.path.name, pos)
        seg.size = pos
        return seg

    def _read_cursor(self, lane: Lane) -> tuple[int, int, int, int]:
        try:
            seq, offset, points, records = (int(x) for x in
                                            lane.cursor_path.read_text().split()[:4])
            return seq, offset, points, records
        except (OSError, ValueError):
            return 0, 0, 0, 0

    # --- append -----------------------------------------------------------------------------

    def append(self, lane_name: str, payload: bytes, points: int, first_ms: int) -> bool:
        """Append a batch; False (counted, logged once) when the disk refuses it."""
        lane = self.lanes[lane_name]
        data = zlib.compress(payload, 1)
        record = HEADER.pack(MAGIC, len(data), zlib.crc32(data), points, first_ms,
                             int(self.clock() * 1000)) + data
        try:
            seg = self._writable(lane, len(record))
            assert lane.writer is not None  # _writable leaves the lane's newest segment open
            written = os.write(lane.writer, record)
            if written != len(record):
                raise OSError(f"short write ({written} of {len(record)} bytes)")
        except OSError as exc:
            self.write_errors += 1
            lane.dropped_points += points
            if self.write_errors == 1 or self.write_errors % 1000 == 0:
                log.error("spool %s: cannot append (%s); %d point(s) dropped (%d write "
                          "error(s) so far)", lane.name, exc, points, self.write_errors)
            self._close_writer(lane)  # a half-written record is cut off at the next start
            return False
        seg.size += len(record)
        seg.points += points
        seg.records += 1
        lane.total_bytes += len(record)
        lane.total_points += points
        lane.total_records += 1
        if lane.head_spooled_ms is None:
            self._settle_head(lane)
        lane.dirty = True
        if self.cfg.fsync == "always":
            self._fsync(lane)
        self._bound()
        return True

    def _writable(self, lane: Lane, size: int) -> Segment:
        if lane.writer is not None and lane.segments:
            seg = lane.segments[-1]
            if seg.size == 0 or seg.size + size <= self.cfg.segment_bytes:
                return seg
            self._close_writer(lane)
        if lane.segments and lane.segments[-1].size + size <= self.cfg.segment_bytes:
            seg = lane.segments[-1]  # reopen the newest segment after a restart
        else:
            lane.last_seq += 1
            seg = Segment(lane.last_seq, lane.segment_path(lane.last_seq))
            lane.segments.append(seg)
        lane.writer = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        return seg

    def _close_writer(self, lane: Lane) -> None:
        if lane.writer is None:
            return
        if lane.dirty and self.cfg.fsync != "never":
            self._fsync(lane)
        os.close(lane.writer)
        lane.writer = None

    def _fsync(self, lane: Lane) -> None:
        if lane.writer is not None:
            try:
                os.fsync(lane.writer)
            except OSError as exc:
                log.error("spool %s: fsync failed: %s", lane.name, exc)
        lane.dirty = False

    def sync(self) -> None:
        """The interval fsync policy: call often; forces appended data to disk when due."""
        if self.cfg.fsync != "interval":
            return
        now = time.monotonic()
        if now - self._last_fsync < self.cfg.fsync_interval_s:
            return
        self._last_fsync = now
        for lane in self.lanes.values():
            if lane.dirty:
                self._fsync(lane)

    def _bound(self) -> None:
        """Drop whole segments, oldest telemetry first, alarm events last, until under bound."""
        while self.bytes > self.cfg.max_bytes:
            lane = next((self.lanes[n] for n in reversed(LANES) if self.lanes[n].segments),
                        None)
            if lane is None:
                return
            if len(lane.segments) == 1:
                self._close_writer(lane)
            seg = lane.segments[0]
            lost = seg.points - lane.consumed_points
            lane.dropped_points += lost
            if not self._full_logged:
                log.warning("spool full (%d bytes, bound %d): dropping the oldest %s (%d "
                            "point(s) in %s); counted in parkwatch_spool_dropped_points_total, "
                            "logged once until the spool drains", self.bytes,
                            self.cfg.max_bytes, lane.name, lost, seg.path.name)
                self._full_logged = True
            self._advance(lane)

    # --- replay -----------------------------------------------------------------------------

    def peek(self) -> Record | None:
        """The oldest undelivered record, events lane first; None when the spool is empty."""
        for lane in self.lanes.values():
            rec = self._peek(lane)
            if rec is not None:
                return rec
        return None

    def _peek(self, lane: Lane) -> Record | None:
        while lane.segments:
            seg = lane.segments[0]
            if lane.offset < seg.size:
                rec = self._read(lane, seg)
                if rec is not None:
                    return rec
                continue  # damaged: the rest of the segment was skipped
            if len(lane.segments) == 1:
                return None  # caught up with the writer
            self._advance(lane)
        return None

    def _read(self, lane: Lane, seg: Segment) -> Record | None:
        try:
            with seg.path.open("rb") as f:
                f.seek(lane.offset)
                head = f.read(HEADER.size)
                magic, length, crc, points, first_ms, spooled_ms = HEADER.unpack(head)
                data = f.read(length)
            if magic != MAGIC or len(data) != length or zlib.crc32(data) != crc:
                raise ValueError("bad magic, length or CRC")
            payload = zlib.decompress(data)
        except (OSError, ValueError, struct.error, zlib.error) as exc:
            self.corrupt_records += 1
            lost = seg.points - lane.consumed_points
            lane.dropped_points += lost
            log.error("spool %s: %s unreadable at byte %d (%s); its remaining %d point(s) are "
                      "skipped", lane.name, seg.path.name, lane.offset, exc, lost)
            if len(lane.segments) == 1:
                self._close_writer(lane)
            self._advance(lane)
            return None
        return Record(lane.name, seg.seq, lane.offset + HEADER.size + length, points,
                      first_ms, spooled_ms, payload)

    def pop(self, rec: Record) -> None:
        """The record was delivered (or refused for good): move the cursor past it."""
        lane = self.lanes[rec.lane]
        if not lane.segments or lane.segments[0].seq != rec.seq or rec.end <= lane.offset:
            return  # its segment was dropped meanwhile: nothing to move
        lane.offset = rec.end
        lane.consumed_points += rec.points
        lane.consumed_records += 1
        seg = lane.segments[0]
        if lane.offset >= seg.size and len(lane.segments) > 1:
            self._advance(lane)
        elif lane.offset >= seg.size:
            self._drained(lane)
        else:
            self._write_cursor(lane)
            self._settle_head(lane)
        if self._full_logged and self.bytes <= self.cfg.max_bytes // 2:
            self._full_logged = False

    def _advance(self, lane: Lane) -> None:
        """Remove segments[0] (delivered or dropped); the cursor moves to the next one."""
        seg = lane.segments.popleft()
        lane.count(seg, -1)
        self._remove(seg)
        lane.offset = lane.consumed_points = lane.consumed_records = 0
        self._write_cursor(lane)
        self._settle_head(lane)

    def _drained(self, lane: Lane) -> None:
        """The lane's last segment is delivered to its end: it goes too (the next append opens
        a new one), the cursor naming the segment to come before the file goes."""
        self._close_writer(lane)
        seg = lane.segments.popleft()
        lane.count(seg, -1)
        lane.offset = lane.consumed_points = lane.consumed_records = 0
        self._write_cursor(lane)
        self._remove(seg)
        self._settle_head(lane)

    def _remove(self, seg: Segment) -> None:
        try:
            seg.path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("spool: cannot remove %s: %s", seg.path, exc)

    def _write_cursor(self, lane: Lane) -> None:
        # an empty lane's cursor names the segment to come: at the next start every segment
        # before it is known delivered, and numbers go on growing
        seq = lane.segments[0].seq if lane.segments else lane.last_seq + 1
        tmp = lane.cursor_path.with_suffix(".tmp")
        try:
            with open(tmp, "w", encoding="ascii", opener=private_opener) as f:
                f.write(f"{seq} {lane.offset} {lane.consumed_points} "
                        f"{lane.consumed_records}\n")
            tmp.replace(lane.cursor_path)
        except OSError as exc:  # the worst outcome is a record delivered twice
            log.error("spool %s: cannot save the cursor: %s", lane.name, exc)

    def _settle_head(self, lane: Lane) -> None:
        """Remember when the record at the cursor was spooled (for the oldest-age metric)."""
        lane.head_spooled_ms = None
        if not lane.segments or lane.offset >= lane.segments[0].size:
            if len(lane.segments) > 1:
                lane.head_spooled_ms = self._spooled_at(lane.segments[1], 0)
            return
        lane.head_spooled_ms = self._spooled_at(lane.segments[0], lane.offset)

    def _spooled_at(self, seg: Segment, offset: int) -> int | None:
        try:
            with seg.path.open("rb") as f:
                f.seek(offset)
                head = f.read(HEADER.size)
            return int(HEADER.unpack(head)[5]) if len(head) == HEADER.size else None
        except OSError:
            return None

    # --- views and stop ---------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        return sum(lane.bytes for lane in self.lanes.values())

    @property
    def points(self) -> int:
        return sum(lane.points for lane in self.lanes.values())

    def empty(self, lane: str | None = None) -> bool:
        lanes = [self.lanes[lane]] if lane else self.lanes.values()
        return all(x.records == 0 for x in lanes)

    def stats(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        now = self.clock() if now is None else now
        out = {}
        for name, lane in list(self.lanes.items()):
            head = lane.head_spooled_ms
            out[name] = {"bytes": lane.bytes, "points": lane.points, "records": lane.records,
                         "oldest_age_s": (round(max(0.0, now - head / 1000.0), 3)
                                          if head is not None and lane.records else None),
                         "dropped_points": lane.dropped_points}
        return out

    def close(self) -> None:
        for lane in self.lanes.values():
            self._close_writer(lane)
