"""The on-disk spool: order, restarts, torn writes, and what a full spool gives up first."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from parkwatch.config.telemetry import SpoolConfig
from parkwatch.telemetry.spool import Spool
from parkwatch.telemetry.spoolfiles import EVENTS, TELEMETRY


def cfg(**over: object) -> SpoolConfig:
    base: dict[str, object] = {"max_bytes": 1 << 20, "segment_bytes": 16 * 1024,
                               "fsync": "never"}
    return SpoolConfig(**{**base, **over})  # type: ignore[arg-type]


def payload(i: int, size: int = 200) -> bytes:
    """Hard to compress, so sizes on disk are predictable."""
    return f"m,n={i} v={i}i {i}\n".encode() + os.urandom(size)


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (rec := spool.peek()) is not None:
        out.append(rec.payload)
        spool.pop(rec)
    return out


def test_records_come_back_in_order_across_segments_and_restarts(tmp_path: Path):
    spool = Spool(tmp_path, cfg())
    sent = [payload(i) for i in range(300)]  # ~ 70 kB: several segments
    for i, p in enumerate(sent[:200]):
        assert spool.append(TELEMETRY, p, 1, i)
    got = [spool.peek()]
    spool.pop(got[0])  # type: ignore[arg-type]
    spool.close()
    spool = Spool(tmp_path, cfg())  # a restart between two pops
    for i, p in enumerate(sent[200:], 200):
        spool.append(TELEMETRY, p, 1, i)
    assert spool.stats()[TELEMETRY]["points"] == 299
    assert [r.payload for r in got] + drain(spool) == sent  # type: ignore[union-attr]
    assert spool.empty() and spool.stats()[TELEMETRY]["points"] == 0
    # delivered segments are removed; the one being appended to may stay
    assert len(list((tmp_path / TELEMETRY).glob("*.seg"))) <= 1


def test_alarm_events_are_replayed_before_telemetry(tmp_path: Path):
    spool = Spool(tmp_path, cfg())
    spool.append(TELEMETRY, b"t1", 1, 0)
    spool.append(EVENTS, b"e1", 1, 0)
    spool.append(TELEMETRY, b"t2", 1, 0)
    spool.append(EVENTS, b"e2", 1, 0)
    assert drain(spool) == [b"e1", b"e2", b"t1", b"t2"]


def test_a_torn_record_at_the_tail_is_cut_off_and_the_rest_kept(tmp_path: Path, caplog):
    spool = Spool(tmp_path, cfg())
    for i in range(5):
        spool.append(TELEMETRY, payload(i), 1, i)
    spool.close()
    seg = sorted((tmp_path / TELEMETRY).glob("*.seg"))[-1]
    whole = seg.stat().st_size
    with seg.open("ab") as f:  # a crash in the middle of a write: half a record
        f.write(b"PWR1" + b"\x00" * 20)
    with caplog.at_level(logging.WARNING):
        spool = Spool(tmp_path, cfg())
    assert "torn record" in caplog.text
    assert seg.stat().st_size == whole
    assert spool.stats()[TELEMETRY]["records"] == 5


def test_after_a_torn_tail_every_whole_record_and_new_ones_are_delivered(tmp_path: Path):
    spool = Spool(tmp_path, cfg())
    sent = [payload(i) for i in range(5)]
    for i, p in enumerate(sent):
        spool.append(TELEMETRY, p, 1, i)
    spool.close()
    seg = sorted((tmp_path / TELEMETRY).glob("*.seg"))[-1]
    with seg.open("ab") as f:
        f.write(b"\x00" * 100)  # zeros after a power loss
    spool = Spool(tmp_path, cfg())
    spool.append(TELEMETRY, b"after", 1, 9)
    assert drain(spool) == [*sent, b"after"]
    assert spool.corrupt_records == 0


def test_a_damaged_record_is_skipped_counted_and_the_next_segment_still_read(tmp_path: Path):
    spool = Spool(tmp_path, cfg(segment_bytes=4096, max_bytes=64 * 1024))
    sent = [payload(i, 1500) for i in range(6)]  # two per segment
    for i, p in enumerate(sent):
        spool.append(TELEMETRY, p, 10, i)
    spool.close()
    first = sorted((tmp_path / TELEMETRY).glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[40] ^= 0xFF  # a flipped byte inside the first record's payload
    first.write_bytes(bytes(data))
    spool = Spool(tmp_path, cfg(segment_bytes=4096, max_bytes=64 * 1024))
    assert drain(spool) == sent[2:]
    assert spool.corrupt_records == 1
    assert spool.stats()[TELEMETRY]["dropped_points"] == 20


def test_a_full_spool_drops_the_oldest_telemetry_first_and_events_last(tmp_path: Path):
    c = cfg(max_bytes=64 * 1024, segment_bytes=8 * 1024)
    spool = Spool(tmp_path, c)
    events = [payload(i, 1000) for i in range(20)]  # ~ 20 kB of alarm events
    for i, p in enumerate(events):
        spool.append(EVENTS, p, 1, i)
    telemetry = [payload(1000 + i, 1000) for i in range(100)]  # ~ 100 kB: too much
    for i, p in enumerate(telemetry):
        spool.append(TELEMETRY, p, 5, i)
    st = spool.stats()
    assert spool.bytes <= c.max_bytes
    assert st[EVENTS]["dropped_points"] == 0
    assert st[TELEMETRY]["dropped_points"] > 0
    kept = drain(spool)
    assert kept[:20] == events  # every alarm event survives
    rest = kept[20:]
    assert rest == telemetry[-len(rest):]  # the newest telemetry, in order, no gaps
    assert st[TELEMETRY]["dropped_points"] == 5 * (len(telemetry) - len(rest))
    # only when no telemetry is left do alarm events go, oldest first
    for i in range(100):
        spool.append(EVENTS, payload(5000 + i, 1000), 1, i)
    assert spool.stats()[EVENTS]["dropped_points"] > 0
    assert spool.bytes <= c.max_bytes


def test_a_full_disk_is_counted_and_logged_not_raised(tmp_path: Path, caplog):
    lane = tmp_path / TELEMETRY
    lane.mkdir(parents=True)
    (lane / f"{1:016d}.seg").symlink_to("/dev/full")  # every write: ENOSPC
    spool = Spool(tmp_path, cfg())
    with caplog.at_level(logging.ERROR):
        assert not spool.append(TELEMETRY, payload(1), 7, 0)
        assert not spool.append(TELEMETRY, payload(2), 3, 0)
    assert spool.stats()[TELEMETRY]["dropped_points"] == 10
    assert spool.write_errors == 2
    assert caplog.text.count("cannot append") == 1  # logged once, counted always
    assert "No space left" in caplog.text
    assert spool.append(EVENTS, b"events have their own lane", 1, 0)
    assert drain(spool) == [b"events have their own lane"]


def test_oldest_age_follows_the_record_at_the_cursor(tmp_path: Path):
    now = [1000.0]
    spool = Spool(tmp_path, cfg(), clock=lambda: now[0])
    assert spool.stats()[TELEMETRY]["oldest_age_s"] is None
    spool.append(TELEMETRY, b"a", 1, 0)
    now[0] = 1010.0
    spool.append(TELEMETRY, b"b", 1, 0)
    now[0] = 1030.0
    assert spool.stats()[TELEMETRY]["oldest_age_s"] == 30.0
    spool.pop(spool.peek())  # type: ignore[arg-type]
    assert spool.stats()[TELEMETRY]["oldest_age_s"] == 20.0
    spool.close()
    again = Spool(tmp_path, cfg(), clock=lambda: now[0])
    assert again.stats()[TELEMETRY]["oldest_age_s"] == 20.0


def test_segments_must_be_small_enough_to_drop():
    with pytest.raises(ValueError, match="quarter of max_bytes"):
        SpoolConfig(max_bytes=1 << 20, segment_bytes=512 * 1024)


def test_a_drained_segment_is_removed_from_disk(tmp_path: Path):
    """Delivered to its end, the segment being appended to goes too: an idle spool holds no
    delivered data (only its cursor), and numbers go on growing after it."""
    spool = Spool(tmp_path, cfg())
    for i in range(5):
        spool.append(TELEMETRY, payload(i), 1, i)
    (first,) = sorted((tmp_path / TELEMETRY).glob("*.seg"))
    assert len(drain(spool)) == 5
    assert not list((tmp_path / TELEMETRY).glob("*.seg"))
    assert spool.stats()[TELEMETRY]["bytes"] == 0
    spool.append(TELEMETRY, b"after", 1, 0)
    (second,) = sorted((tmp_path / TELEMETRY).glob("*.seg"))
    assert int(second.stem) > int(first.stem)
    spool.close()
    again = Spool(tmp_path, cfg())  # a restart: the cursor names the new segment's start
    assert drain(again) == [b"after"]
    assert not list((tmp_path / TELEMETRY).glob("*.seg"))
    again.append(TELEMETRY, b"later", 1, 0)
    (third,) = sorted((tmp_path / TELEMETRY).glob("*.seg"))
    assert int(third.stem) > int(second.stem)
    again.close()
    assert drain(Spool(tmp_path, cfg())) == [b"later"]


def test_a_segment_an_earlier_run_left_drained_is_removed_at_start(tmp_path: Path):
    spool = Spool(tmp_path, cfg())
    spool.append(TELEMETRY, b"one", 1, 0)
    spool.append(TELEMETRY, b"two", 1, 0)
    rec = spool.peek()
    assert rec is not None
    spool.pop(rec)
    spool.close()
    lane = tmp_path / TELEMETRY
    (seg,) = lane.glob("*.seg")
    # as an earlier version left it: the cursor at the end of its only segment
    (lane / "cursor").write_text(f"{int(seg.stem)} {seg.stat().st_size} 2 2\n")
    again = Spool(tmp_path, cfg())
    assert again.empty() and not list(lane.glob("*.seg"))
    again.append(TELEMETRY, b"three", 1, 0)
    assert drain(again) == [b"three"]
