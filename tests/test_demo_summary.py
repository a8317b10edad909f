"""The demo's duty officer and summary, on the events the command center saw: an alarm an
operator acknowledged from the console meanwhile is left alone (acknowledging it again was
refused and logged as a warning), and the summary counts every acknowledgement, by whom."""

from __future__ import annotations

import logging
from typing import Any

from parkwatch.demo import DUTY_OFFICER, _summary, unacknowledged


def _ev(alarm_id: str, seq: int, event: str, acknowledged: bool, kind: str = "load_cell",
        by: str | None = None) -> dict[str, Any]:
    return {"alarm_id": alarm_id, "seq": seq, "event": event, "acknowledged": acknowledged,
            "sensor_kind": kind, "acked_by": by}


EVENTS = [
    _ev("a1", 1, "raised", False, "fire_button"),
    _ev("a2", 1, "raised", False, "load_cell"),
    _ev("a3", 1, "raised", False, "water_level"),
    _ev("a2", 2, "cleared", False),
    # the console's operator acknowledged a2 (cleared: it closes) and a3
    _ev("a2", 3, "acknowledged", True, by="张三"),
    _ev("a2", 4, "closed", True, by="张三"),
    _ev("a3", 2, "acknowledged", True, "water_level", by="张三"),
]


def test_the_duty_officer_leaves_alone_what_an_operator_acknowledged():
    assert unacknowledged(EVENTS) == ["a1"]
    # events may arrive out of order (at-least-once): the highest seq says
    assert unacknowledged(list(reversed(EVENTS))) == ["a1"]


def test_the_summary_counts_every_acknowledgement_by_whom(capsys):
    events = [*EVENTS, _ev("a1", 2, "acknowledged", True, "fire_button", by=DUTY_OFFICER)]
    assert _summary(events, logging.getLogger("test")) == 0
    out = capsys.readouterr().out
    assert f"3 acknowledged (2 by 张三, 1 by {DUTY_OFFICER})" in out
    assert "1 closed" in out


def test_the_demos_rows_line_up_in_a_terminal():
    """Each column starts at the same terminal column whatever its Chinese words (two
    columns wide each): the message is where the eye expects it."""
    from rich.cells import cell_len

    from parkwatch.demo import row

    events = [
        {"severity": "critical", "event": "raised", "building": "A", "floor": "3F", "zone": None,
         "tenants": ["huaxin"], "message": "【火警】M"},
        {"severity": "warning", "event": "severity_changed", "building": "B", "floor": "B1",
         "zone": "east", "tenants": ["yongsheng", "ruifeng"], "message": "【水位预警】M"},
        {"severity": "info", "event": "acknowledged", "building": "A", "floor": "1F",
         "zone": None, "tenants": [], "message": "M"},
    ]
    rows = [row(e, "12:00:00") for e in events]
    starts = {cell_len(r[:r.rindex(e["message"])]) for e, r in zip(events, rows, strict=True)}
    assert len(starts) == 1, rows
