"""The bulk line-protocol writer says exactly what influxdb-client's `Point` would say, point
for point, for readings, alarm events and aggregates; and it writes only the schema's names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.schema import load_config
from parkwatch.telemetry import lineproto
from parkwatch.telemetry.lineproto import ReadingLines, event_line
from parkwatch.telemetry.schema import MEASUREMENTS, READING_MEASUREMENT, markdown

EXAMPLE = Path(__file__).parents[1] / "src/parkwatch/examples/park.yaml"
PARK = ParkModel(load_config(EXAMPLE))

_SPLIT_SPACE = re.compile(r'(?<!\\) (?=(?:[^"]*"[^"]*")*[^"]*$)')
_SPLIT_COMMA = re.compile(r'(?<!\\),(?=(?:[^"]*"[^"]*")*[^"]*$)')
_SPLIT_EQ = re.compile(r"(?<!\\)=")


def parse(text: str) -> list[tuple[str, dict[str, str], dict[str, str], int]]:
    """Line protocol → (measurement, tags, fields, ms) per line, raw field values kept."""
    out = []
    for raw in text.splitlines():
        key, fields, ts = _SPLIT_SPACE.split(raw)
        measurement, *tags = _SPLIT_COMMA.split(key)
        out.append((measurement,
                    dict(_SPLIT_EQ.split(t, maxsplit=1) for t in tags),  # type: ignore[misc]
                    dict(_SPLIT_EQ.split(f, maxsplit=1)  # type: ignore[misc]
                         for f in _SPLIT_COMMA.split(fields)),
                    int(ts)))
    return out


def point_of(i: int, value: float, ms: int, quality: int, battery: float) -> str:
    """The reading as influxdb-client's Point writes it: the reference."""
    s = PARK.sensors[i]
    p = Point(READING_MEASUREMENT[s.config.kind].name).tag("park", PARK.cfg.park.id)
    for key, tag in (("building", s.config.building), ("floor", s.config.floor),
                     ("zone", s.config.zone), ("tenant", ",".join(s.tenants)),
                     ("sensor", s.id)):
        if tag:
            p = p.tag(key, tag)
    if np.isfinite(value):
        p = p.field("value", float(value))
    p = p.field("quality", int(quality))
    if np.isfinite(battery):
        p = p.field("battery", float(battery))
    return str(p.time(ms, WritePrecision.MS).to_line_protocol())


floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, -0.0, 1.0, 12.5, 1e20, -3.25e-7]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(PARK) - 1), floats,
                          st.floats(1.6e9, 2.2e9), st.sampled_from(list(Quality)),
                          st.one_of(st.just(float("nan")), st.floats(0, 100))),
                min_size=1, max_size=60))
def test_readings_match_influxdb_client_points(rows):
    batch = ReadingBatch.from_columns([r[0] for r in rows], [r[1] for r in rows],
                                      [r[2] for r in rows], [int(r[3]) for r in rows],
                                      [r[4] for r in rows])
    ours = "".join(text for text, _n in ReadingLines(PARK)(batch))
    ms = lineproto.to_ms(batch.ts)
    ref = "\n".join(point_of(int(s), float(v), int(t), int(q), float(b)) for s, v, t, q, b in
                    zip(batch.sensor, batch.value, ms, batch.quality, batch.battery,
                        strict=True))
    assert sorted(map(_canon, parse(ours))) == sorted(map(_canon, parse(ref)))


def _canon(p: tuple[str, dict[str, str], dict[str, str], int]) -> tuple[Any, ...]:
    m, tags, fields, ts = p
    # both write shortest-repr floats; compare field values as numbers where they are
    return m, sorted(tags.items()), sorted((k, _num(v)) for k, v in fields.items()), ts


def _num(v: str) -> Any:
    if v.endswith("i"):
        return int(v[:-1])
    try:
        return float(v)
    except ValueError:
        return v


def test_a_large_batch_comes_in_chunks_that_cover_every_reading():
    n = lineproto.CHUNK * 2 + 7
    sensors = np.arange(n) % len(PARK)
    batch = ReadingBatch.from_columns(sensors.tolist(), [1.0] * n,
                                      (1.7e9 + np.arange(n) * 1e-3).tolist(), [0] * n)
    chunks = list(ReadingLines(PARK)(batch))
    assert [k for _t, k in chunks] == [lineproto.CHUNK, lineproto.CHUNK, 7]
    assert sum(t.count("\n") for t, _k in chunks) == n


def test_escaping_of_tags_and_strings_agrees_with_the_client():
    pre = lineproto.prefix("alarm_event", {"park": "p q", "tenant": "a,b=c", "zone": None,
                                           "event": ""})
    text = lineproto.line(pre, {"message": 'he said "hi" \\ ok', "seq": 3,
                                "active": True, "value": float("nan")}, 5)
    ref = (Point("alarm_event").tag("park", "p q").tag("tenant", "a,b=c")
           .field("message", 'he said "hi" \\ ok').field("seq", 3).field("active", True)
           .time(5, WritePrecision.MS).to_line_protocol())
    assert text is not None
    assert _canon(parse(text.rstrip("\n"))[0]) == _canon(parse(ref)[0])
    assert lineproto.line(pre, {"value": None, "x": float("inf")}, 5) is None
    # a message with a line break stays one point (the client would break the line)
    assert lineproto.line(pre, {"message": "one\ntwo"}, 5).count("\n") == 1  # type: ignore[union-attr]


def _event(**over: Any) -> dict[str, Any]:
    event = {"schema": "parkwatch.alarm/1", "alarm_id": "xinqiao-A-3F-FB1-1", "seq": 2,
             "event": "acknowledged", "park": "xinqiao", "building": "A", "floor": "3F",
             "zone": None, "tenants": ["huaxin", "ruifeng"], "sensor_id": "A-3F-FB1",
             "sensor_kind": "fire_button", "rule": "button_latch", "severity": "critical",
             "active": True, "acknowledged": True, "value": 1.0, "threshold": None,
             "unit": None, "observed_at": "2026-11-22T08:00:00.000Z",
             "raised_at": "2026-11-22T08:00:00.000Z", "changed_at": "2026-11-22T08:00:05.250Z",
             "acked_by": "王工", "acked_at": "2026-11-22T08:00:05.250Z", "escalation_level": 1,
             "drill": False, "message": "A栋 3F 手动报警按钮 报警, 已确认", "gateway": "gw1"}
    event.update(over)
    return event


def test_an_alarm_event_becomes_one_point_at_its_change_time():
    (m, tags, fields, ts), = parse(event_line(_event(), "fire").rstrip("\n"))
    assert m == "alarm_event"
    assert tags == {"park": "xinqiao", "building": "A", "floor": "3F", "sensor": "A-3F-FB1",
                    "sensor_kind": "fire_button", "hazard": "fire", "rule": "button_latch",
                    "severity": "critical", "event": "acknowledged"}
    assert ts == 1795334405250  # 2026-11-22T08:00:05.250Z
    assert fields["alarm_id"] == '"xinqiao-A-3F-FB1-1"' and fields["seq"] == "2i"
    assert fields["tenants"] == '"huaxin,ruifeng"' and fields["acked_by"] == '"王工"'
    assert fields["active"] == "true" and fields["drill"] == "false"
    assert "threshold" not in fields  # null in the event: left out, not written as 0
    assert set(fields) <= set(MEASUREMENTS["alarm_event"].fields)
    assert set(tags) <= set(MEASUREMENTS["alarm_event"].tags)


def test_readings_use_only_the_schema_names():
    n = len(PARK)
    batch = ReadingBatch.from_columns(list(range(n)), [1.0] * n, [1.7e9] * n, [0] * n,
                                      [50.0] * n)
    for m, tags, fields, _ts in parse("".join(t for t, _ in ReadingLines(PARK)(batch))):
        schema = MEASUREMENTS[m]
        assert set(tags) <= set(schema.tags) and set(fields) <= set(schema.fields)


def test_the_schema_document_is_the_schema():
    doc = (Path(__file__).parents[1] / "docs/telemetry.md").read_text(encoding="utf-8")
    assert markdown() in doc, "docs/telemetry.md is out of date: paste schema.markdown()"


def test_slices_that_free_the_gil_write_the_same_text(monkeypatch):
    """A chunk is formatted SLICE readings at a time (another thread may take the GIL between
    two slices); the text is the same, line for line and in order, as in one go."""
    n = lineproto.SLICE * 3 + 11
    rng = np.random.default_rng(7)
    values = rng.normal(1000, 300, n)
    values[rng.random(n) < 0.2] = np.nan  # every line shape, interleaved
    battery = np.where(rng.random(n) < 0.3, rng.uniform(0, 100, n), np.nan)
    batch = ReadingBatch.from_columns((np.arange(n) % len(PARK)).tolist(), values.tolist(),
                                      (1.7e9 + np.arange(n) * 1e-3).tolist(),
                                      rng.integers(0, 3, n).tolist(), battery.tolist())
    plain = ReadingBatch.from_columns([0] * n, [1.0] * n, [1.7e9] * n, [0] * n)  # one shape

    def text(b: ReadingBatch) -> str:
        return "".join(t for t, _k in ReadingLines(PARK)(b))

    sliced, sliced_plain = text(batch), text(plain)
    # what the sink sends: the same text, as UTF-8 pieces of at most SLICE lines
    pieces = [p for ps, _k in ReadingLines(PARK).encoded(batch) for p in ps]
    assert b"".join(pieces).decode() == sliced
    assert len(pieces) > 3 and all(p.count(b"\n") <= lineproto.SLICE for p in pieces)
    monkeypatch.setattr(lineproto, "SLICE", n + 1)
    assert sliced == text(batch) and sliced_plain == text(plain)
    assert sliced.count("\n") == n


def _event_line_by_the_generic_path(event: dict[str, Any], hazard: str) -> str | None:
    """`event_line` as tags and fields handed to `prefix` and `line` (the fast path must write
    exactly this)."""
    tags = {k: event.get(k) for k in ("park", "building", "floor", "zone")}
    tags.update(sensor=event.get("sensor_id"), sensor_kind=event.get("sensor_kind"),
                hazard=hazard, rule=event.get("rule"), severity=event.get("severity"),
                event=event.get("event"))
    value, threshold = event.get("value"), event.get("threshold")
    fields = {
        "alarm_id": event["alarm_id"], "seq": int(event["seq"]),
        "active": bool(event.get("active")), "acknowledged": bool(event.get("acknowledged")),
        "value": float(value) if isinstance(value, int | float) else None,
        "threshold": float(threshold) if isinstance(threshold, int | float) else None,
        "escalation_level": int(event.get("escalation_level") or 0),
        "drill": bool(event.get("drill")),
        "tenants": ",".join(event.get("tenants") or []) or None,
        "acked_by": event.get("acked_by"), "message": event.get("message") or "",
    }
    return lineproto.line(lineproto.prefix("alarm_event", {
        k: str(v) if v is not None else None for k, v in tags.items()}), fields,
        lineproto.rfc3339_to_ms(event["changed_at"]))


def test_an_alarm_events_line_is_the_generic_paths_for_every_shape_of_event():
    rng = np.random.default_rng(26)
    texts = ["", "A", "a b", "x,y=z", 'say "hi"', "back\\slash", "one\ntwo", "王工 已确认"]
    numbers = [None, 0, 7, 1.5, -0.0, float("nan"), float("inf"), True, "12"]
    seen = 0
    for k in range(2000):
        def pick(options: list[Any]) -> Any:
            return options[int(rng.integers(len(options)))]
        event = _event(
            alarm_id=f"p-{pick(texts)}-{k}", seq=int(rng.integers(1, 9)),
            event=pick(["raised", "cleared", "acknowledged", "closed"]),
            park=pick(texts), building=pick([None, *texts]), floor=pick([None, *texts]),
            zone=pick([None, *texts]), sensor_id=pick(texts), rule=pick(["button_latch", None]),
            severity=pick(["critical", "warning", None, ""]), active=pick([True, False, None]),
            acknowledged=pick([True, False]), value=pick(numbers), threshold=pick(numbers),
            escalation_level=pick([None, 0, 2]), drill=pick([True, False, None]),
            tenants=pick([None, [], ["huaxin"], ["a,b", "c d"]]),
            acked_by=pick([None, *texts]), message=pick([None, *texts]),
            changed_at=f"2026-11-22T08:00:0{k % 10}.{k % 1000:03d}Z")
        hazard = pick(["fire", "water", "overload", "fault"])
        assert event_line(event, hazard) == _event_line_by_the_generic_path(event, hazard), event
        seen += 1
    assert seen == 2000
