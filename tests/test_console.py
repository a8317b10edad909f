"""The operator console `parkwatch watch`: the board model, its drawing, and the real thing in a
terminal (tmux) against a real broker and daemon — a raised fire alarm appears, the operator
selects it and presses `a`, the daemon acknowledges it and the board says so."""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.style import Style

from conftest import REPO, VALIDATOR, wait_until
from parkwatch.alarms.timestamps import rfc3339_ms
from parkwatch.cli import build_parser
from parkwatch.console.board import Board
from parkwatch.console.keys import parse_keys
from parkwatch.console.render import FIRE_ROW, Frame, render
from parkwatch.console.settings import SettingsError, options_from_args

NOW = 1_790_000_000.0  # a fixed "now" for the model tests
XQ = "parkwatch/v1/xinqiao"


def alarm_id(n: int) -> str:
    return f"01JB{n:022d}"


def event(n: int, *, park: str = "xinqiao", seq: int = 1, kind: str = "raised",
          age_s: float = 60.0, **fields: Any) -> dict[str, Any]:
    """A contract-valid alarm event (a fire button's latch unless told otherwise)."""
    e: dict[str, Any] = {
        "schema": "parkwatch.alarm/1", "alarm_id": alarm_id(n), "seq": seq, "event": kind,
        "park": park, "building": "A", "floor": "3F", "zone": None,
        "tenants": ["huaxin", "yongsheng"], "sensor_id": f"A-3F-FB{n}",
        "sensor_kind": "fire_button", "rule": "button_latch", "severity": "critical",
        "active": True, "acknowledged": False, "value": 1, "threshold": None, "unit": None,
        "observed_at": rfc3339_ms(NOW - age_s), "raised_at": rfc3339_ms(NOW - age_s),
        "changed_at": rfc3339_ms(NOW - age_s), "acked_by": None, "acked_at": None,
        "escalation_level": 0, "drill": False, "message": "A栋3F 火警", "gateway": "xinqiao-gw1"}
    e.update(fields)
    if e["acknowledged"] and e["acked_at"] is None:
        e["acked_by"] = e["acked_by"] or "王工"
        e["acked_at"] = rfc3339_ms(NOW)
    if kind == "closed":
        e.update(active=False, acknowledged=True, acked_by=e["acked_by"] or "王工",
                 acked_at=e["acked_at"] or rfc3339_ms(NOW))
    VALIDATOR.validate(e)
    return e


def load_alarm(n: int, **fields: Any) -> dict[str, Any]:
    return event(n, **{"severity": "warning", "sensor_id": f"A-2F-LC{n}",
                       "sensor_kind": "load_cell", "rule": "high_threshold", "value": 8_500.0,
                       "threshold": 8_000.0, "unit": "kg", "floor": "2F", "zone": "east",
                       **fields})


def feed_event(board: Board, e: dict[str, Any], *, retained_state: bool = False,
               now: float = NOW) -> bool:
    """Feed as the gateway publishes: the event, or the retained alarm state."""
    topic = (f"parkwatch/v1/{e['park']}/alarms/{e['alarm_id']}" if retained_state
             else f"parkwatch/v1/{e['park']}/events")
    return board.feed(topic, json.dumps(e, ensure_ascii=False).encode(), retained_state, now)


def ids(board: Board) -> list[str]:
    return [a.alarm_id for a in board.rows()]


# --- the board model ----------------------------------------------------------------------


def test_rows_are_sorted_by_severity_then_oldest_first_across_parks():
    b = Board()
    feed_event(b, load_alarm(1, age_s=500))                    # warning, oldest
    feed_event(b, event(2, age_s=10))                          # critical, newest
    feed_event(b, load_alarm(3, age_s=50, severity="info"))    # info
    feed_event(b, event(4, park="nanhu", age_s=100), retained_state=True)  # critical, older
    feed_event(b, load_alarm(5, age_s=200))                    # warning, younger
    assert ids(b) == [alarm_id(n) for n in (4, 2, 1, 5, 3)]
    assert [a.park for a in b.rows()] == ["nanhu", "xinqiao", "xinqiao", "xinqiao", "xinqiao"]


def test_highest_seq_wins_and_late_or_repeated_seqs_are_ignored():
    b = Board()
    assert feed_event(b, event(1, seq=1))
    assert feed_event(b, event(1, seq=3, kind="escalated", escalation_level=1))
    # seq 2 arrives late, and seq 3 again as the retained state: neither changes anything
    assert not feed_event(b, event(1, seq=2, kind="acknowledged", acknowledged=True))
    assert not feed_event(b, event(1, seq=3, kind="escalated", escalation_level=1),
                          retained_state=True)
    (a,) = b.rows()
    assert (a.seq, a.event["event"], a.event["escalation_level"], a.acknowledged) == (
        3, "escalated", 1, False)
    assert b.late == 2
    assert feed_event(b, event(1, seq=4, kind="acknowledged", acknowledged=True,
                               acked_by="张三"), retained_state=True)
    assert b.rows()[0].event["acked_by"] == "张三"


def test_closed_event_or_empty_retained_state_removes_an_alarm_for_good():
    b = Board()
    feed_event(b, event(1))
    feed_event(b, load_alarm(2))
    assert feed_event(b, event(1, seq=3, kind="closed"))
    assert ids(b) == [alarm_id(2)]
    assert b.feed(f"{XQ}/alarms/{alarm_id(2)}", b"", True, NOW)
    assert ids(b) == []
    # redeliveries of older states (at least once) do not bring them back
    assert not feed_event(b, event(1, seq=2, kind="acknowledged", acknowledged=True))
    assert not feed_event(b, load_alarm(2), retained_state=True)
    assert ids(b) == [] and b.late == 2
    # an empty state of an alarm never seen (closed before the console started): nothing
    assert not b.feed(f"{XQ}/alarms/{alarm_id(9)}", b"", True, NOW)


def test_malformed_payloads_are_counted_and_shown_never_raised():
    b = Board()
    feed_event(b, event(1))
    bad = [
        (f"{XQ}/events", b"{not json"),
        (f"{XQ}/events", b"[1, 2]"),
        (f"{XQ}/events", json.dumps({**event(2), "seq": "7"}).encode()),
        (f"{XQ}/events", json.dumps({**event(3), "severity": None}).encode()),
        (f"{XQ}/events", json.dumps({**event(4), "tenants": "huaxin"}).encode()),
        (f"{XQ}/events", b"\xff\xfe"),
        (f"{XQ}/alarms/{alarm_id(5)}", json.dumps(event(6)).encode()),  # id differs from topic
        ("parkwatch/v1/nanhu/events", json.dumps(event(7)).encode()),   # park differs
        (f"{XQ}/gateway", b"offline"),
        (f"{XQ}/gateway", b'{"gateway": "xinqiao-gw1"}'),
    ]
    for topic, payload in bad:
        assert b.feed(topic, payload, False, NOW)
    assert sum(b.malformed.values()) == len(bad)
    assert b.malformed["not JSON"] == 3
    assert b.last_malformed == f"{XQ}/gateway: gateway status without a 'state'"
    assert ids(b) == [alarm_id(1)] and b.gateways == {}
    # topics that are not the board's (the ack commands, other prefixes) are no concern
    assert not b.feed(f"{XQ}/commands/ack", b"{}", False, NOW)
    assert not b.feed("devices/A-3F-FB1/up", b"press", False, NOW)
    assert sum(b.malformed.values()) == len(bad)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([f"{XQ}/events", f"{XQ}/alarms/{alarm_id(1)}", f"{XQ}/gateway",
                        f"{XQ}/alarms", "parkwatch/v1//events", "parkwatch/v1"]),
       st.one_of(st.binary(max_size=64),
                 st.dictionaries(st.sampled_from(["alarm_id", "seq", "event", "severity",
                                                  "active", "acknowledged", "park", "state",
                                                  "tenants", "raised_at", "rule"]),
                                 st.one_of(st.none(), st.booleans(), st.integers(),
                                           st.text(max_size=8), st.lists(st.integers()),
                                           st.just(alarm_id(1)), st.just("xinqiao")))
                 .map(lambda d: json.dumps(d).encode())),
       st.booleans())
def test_no_payload_crashes_the_board(topic, payload, retained):
    """Whatever arrives is taken whole, counted as malformed (with its topic, and nothing of
    it kept), counted as late, or left as not the board's; the alarm already shown stays."""
    b = Board()
    feed_event(b, event(2))
    malformed, late = sum(b.malformed.values()), b.late
    alarms, gateways = dict(b.alarms), dict(b.gateways)
    changed = b.feed(topic, payload, retained, NOW)
    if sum(b.malformed.values()) == malformed + 1:
        assert changed and b.last_malformed.startswith(topic + ": ")
        assert b.alarms == alarms and b.gateways == gateways  # nothing half-taken
    else:
        assert sum(b.malformed.values()) == malformed
        taken = b.alarms != alarms or b.gateways != gateways
        assert changed == taken
        if not taken:  # late, an empty state of an alarm not shown, or not the board's topic
            assert b.late in (late, late + 1)
    assert alarm_id(2) in ids(b)
    render(b, NOW, Frame(None, "h:1", True, "connected"), 30)


def test_gateway_status_online_offline_by_last_will_and_stale():
    b = Board(stale_after_s=90)
    online = {"state": "online", "gateway": "xinqiao-gw1", "park": "xinqiao",
              "updated_at": rfc3339_ms(NOW - 10)}
    assert b.feed(f"{XQ}/gateway", json.dumps(online).encode(), True, NOW)
    assert [(g.park, v) for g, v in b.gateway_views(NOW)] == [("xinqiao", "online")]
    # silent for longer than stale_after_s: stale
    assert [v for _, v in b.gateway_views(NOW + 85)] == ["stale"]
    # a live refresh (whatever its own clock says) is fresh news
    b.feed(f"{XQ}/gateway", json.dumps({**online, "updated_at": rfc3339_ms(NOW - 999)}).encode(),
           False, NOW + 85)
    assert [v for _, v in b.gateway_views(NOW + 100)] == ["online"]
    # a retained status left long ago by a gateway that is not refreshing it: stale at once
    b.feed("parkwatch/v1/nanhu/gateway", json.dumps(
        {**online, "park": "nanhu", "updated_at": rfc3339_ms(NOW - 3600)}).encode(), True, NOW)
    # the broker's last will, then a clean stop
    b.feed(f"{XQ}/gateway", b'{"state":"offline"}', False, NOW + 101)
    views = {g.park: (v, g.reason) for g, v in b.gateway_views(NOW + 101)}
    assert views == {"nanhu": ("stale", None), "xinqiao": ("offline", None)}
    b.feed(f"{XQ}/gateway", b'{"state":"offline","reason":"stopped","gateway":"xinqiao-gw1"}',
           True, NOW + 200)
    assert b.gateways["xinqiao"].reason == "stopped"
    assert b.feed(f"{XQ}/gateway", b"", True, NOW + 201)  # retained status cleared
    assert list(b.gateways) == ["nanhu"]


def test_new_unacknowledged_fire_alarms_ring_once_each():
    b = Board()
    feed_event(b, event(1))
    feed_event(b, load_alarm(2, severity="critical"))                     # not a fire
    feed_event(b, event(3, rule="comm_fault", severity="warning"))        # a fire button's fault
    feed_event(b, event(4, acknowledged=True), retained_state=True)       # acknowledged already
    feed_event(b, event(5, park="nanhu"), retained_state=True)            # open at start: news
    assert sorted(a.alarm_id for a in b.take_new_fires()) == [alarm_id(1), alarm_id(5)]
    assert b.take_new_fires() == []
    feed_event(b, event(1, seq=2, kind="escalated", escalation_level=1))  # same alarm: quiet
    assert b.take_new_fires() == []
    feed_event(b, event(6, drill=True))                                   # drills ring too
    assert [a.alarm_id for a in b.take_new_fires()] == [alarm_id(6)]


def test_selection_stays_on_its_alarm_while_rows_move():
    b = Board()
    feed_event(b, load_alarm(1, age_s=300))
    feed_event(b, load_alarm(2, age_s=200))
    assert b.selected == ("xinqiao", alarm_id(1))  # the first row is selected at first
    assert b.move(1) and b.selected == ("xinqiao", alarm_id(2))
    feed_event(b, event(3, age_s=5))  # a critical alarm sorts above: the selection stays
    assert ids(b) == [alarm_id(3), alarm_id(1), alarm_id(2)]
    assert b.selected == ("xinqiao", alarm_id(2))
    assert not b.move(5) and b.selected == ("xinqiao", alarm_id(2))  # clamped at the end
    b.move(-1)
    assert b.selected == ("xinqiao", alarm_id(1))
    # the selected alarm closes: the row that takes its place is selected
    feed_event(b, load_alarm(1, seq=2, kind="closed"))
    assert b.selected == ("xinqiao", alarm_id(2))
    b.move(-10)
    assert b.selected == ("xinqiao", alarm_id(3))
    feed_event(b, event(3, seq=2, kind="closed"))
    feed_event(b, load_alarm(2, seq=2, kind="closed"))
    assert b.selected is None and b.selected_alarm() is None


def test_acknowledgement_is_pending_until_the_gateway_answers():
    b = Board(ack_timeout_s=15)
    feed_event(b, event(1))
    feed_event(b, load_alarm(2, active=False))
    a = b.begin_ack("district-duty", NOW)
    assert a is not None and a.alarm_id == alarm_id(1)
    assert set(b.pending) == {("xinqiao", alarm_id(1))}
    assert b.begin_ack("district-duty", NOW) is None  # not sent twice
    assert "waiting for the gateway" in b.last_ack.text
    feed_event(b, event(1, seq=2, kind="acknowledged", acknowledged=True,
                        acked_by="district-duty"))
    assert b.pending == {}
    assert b.last_ack.ok and b.last_ack.text.startswith(f"acknowledged …{alarm_id(1)[-6:]}")
    assert b.begin_ack("district-duty", NOW) is None and "already acknowledged" in (
        b.last_ack.text)

    b.move(1)  # the cleared warning: acknowledging it closes it
    assert b.begin_ack("district-duty", NOW) is not None
    feed_event(b, load_alarm(2, seq=2, kind="closed", acked_by="district-duty"))
    assert b.last_ack.text.endswith("; it had cleared, so it is closed")

    feed_event(b, event(3))
    b.move(1)
    b.begin_ack("district-duty", NOW)
    assert not b.tick(NOW + 10)
    assert b.tick(NOW + 16)  # no answer: refused (not an operator there) or lost
    assert not b.last_ack.ok and "alarms.operators" in b.last_ack.text and b.pending == {}


def test_after_a_reconnect_alarms_closed_meanwhile_are_dropped():
    b = Board()
    feed_event(b, event(1))
    feed_event(b, load_alarm(2))
    b.take_new_fires()
    b.begin_resync()  # subscribed again: the broker sends the retained states
    feed_event(b, event(1), retained_state=True)  # still open (the same seq)
    feed_event(b, load_alarm(3), retained_state=True)  # raised while away
    assert ids(b) == [alarm_id(1), alarm_id(2), alarm_id(3)]
    assert b.end_resync()  # alarm 2 closed while the console was away: no retained state
    assert ids(b) == [alarm_id(1), alarm_id(3)]
    assert b.take_new_fires() == []  # the fire it knew rings no second time
    assert not b.end_resync()


def test_an_unanswered_ack_to_an_offline_gateway_says_it_may_still_apply():
    b = Board(ack_timeout_s=15)
    feed_event(b, event(1))
    b.feed(f"{XQ}/gateway", b'{"state":"offline"}', False, NOW)
    b.begin_ack("op", NOW)
    assert b.tick(NOW + 16)
    assert "its gateway is offline: the broker keeps the acknowledgement" in b.last_ack.text


def test_keys_are_parsed_from_terminal_input():
    assert parse_keys("jk\x1b[A\x1bOB\x1b[5~\x1b[6~aq") == [
        "j", "k", "up", "down", "pageup", "pagedown", "a", "q"]
    assert parse_keys("\x1b[1;5Cx\x1b") == ["x"]  # unknown sequences and a lone ESC: dropped


# --- drawing ------------------------------------------------------------------------------


def draw(board: Board, frame: Frame, width: int = 150, height: int = 30,
         now: float = NOW) -> tuple[str, Console]:
    console = Console(record=True, width=width, height=height, force_terminal=True,
                      color_system="truecolor", file=io.StringIO())
    console.print(render(board, now, frame, height))
    return console.export_text(clear=False), console


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def test_render_shows_rows_gateways_and_footer():
    b = Board()
    b.feed(f"{XQ}/gateway", json.dumps({"state": "online", "gateway": "xinqiao-gw1",
                                        "updated_at": rfc3339_ms(NOW - 4)}).encode(), True, NOW)
    b.feed("parkwatch/v1/zhoushan/gateway", b'{"state":"offline"}', True, NOW)
    feed_event(b, load_alarm(1, age_s=312, escalation_level=2))
    feed_event(b, event(2, age_s=20, park="nanhu"))
    feed_event(b, event(3, age_s=30, acknowledged=True, acked_by="张三", active=False))
    text, _ = draw(b, Frame("district-duty", "127.0.0.1:1883", True, "connected"))
    lines = text.splitlines()
    assert lines[0] == ("parkwatch watch · 3 open alarm(s) (2 critical, 1 warning) in 2 park(s), "
                        "2 unacknowledged")
    # troubles first: with many parks the line is cut at the right
    assert lines[1] == ("gateways 1/2 online: zhoushan ○ offline (last will: connection lost) "
                        "· xinqiao ● online 4s")
    assert lines[2].split() == ["SEVERITY", "PARK", "PLACE", "SENSOR", "KIND", "TENANTS",
                                "STATE", "ESC", "AGE", "ID"]
    acked, nanhu, load = lines[3:6]  # critical oldest first, then the warning
    assert nanhu.split() == ["critical", "nanhu", "A/3F", "A-3F-FB2", "fire", "·",
                             "button_latch", "huaxin,", "yongsheng", "ACTIVE,", "UNACKED",
                             "0", "20s", alarm_id(2)[-6:]]
    assert "cleared, acked by 张三" in acked
    assert load.split()[:6] == ["▶", "warning", "xinqiao", "A/2F/east", "A-2F-LC1", "overload"]
    assert load.split()[-3:] == ["2", "5m12s", alarm_id(1)[-6:]]
    assert lines[6].startswith("▶ A栋3F 火警 · value 8500.0 kg / limit 8000.0")
    assert lines[7] == "operator: district-duty · broker 127.0.0.1:1883: connected"
    assert lines[8] == "↑/↓ or j/k select · PgUp/PgDn · a acknowledge · q quit"


def test_render_highlights_unacknowledged_fire_and_the_selection():
    b = Board()
    feed_event(b, event(1))
    feed_event(b, event(2, acknowledged=True, age_s=10))
    b.move(1)  # select the acknowledged one
    console = Console(width=150, height=30, force_terminal=True, file=io.StringIO())
    frame = Frame("op", "h:1", True, "connected")

    def styles(line_no: int) -> list[Style]:
        lines = console.render_lines(render(b, NOW, frame, 30), pad=False)
        return [seg.style for seg in lines[line_no] if seg.text.strip() and seg.style]

    fire, acked = styles(3), styles(4)
    assert fire and all(s.bgcolor is not None and s.bgcolor.name == "red" and s.bold
                        and not s.reverse for s in fire)       # white on red, not selected
    assert not any(s.bgcolor is not None for s in acked)
    assert all(s.reverse for s in acked)                       # the selection
    b.move(-1)
    assert all(s.bgcolor is not None and s.bgcolor.name == "red" and s.reverse
               for s in styles(3))
    assert FIRE_ROW == "bold white on red"


def test_render_read_only_disconnected_malformed_and_ack_result():
    b = Board()
    b.feed(f"{XQ}/events", b"nonsense", False, NOW)
    text, _ = draw(b, Frame(None, "10.0.0.9:8883", False, "disconnected, retrying",
                            notice="command-center broker 10.0.0.9:8883: connection lost"))
    assert "no open alarms" in text
    assert "gateways: no gateway status heard yet" in text
    assert ("READ-ONLY: start with --operator NAME to acknowledge · broker 10.0.0.9:8883: "
            "disconnected, retrying\n  command-center broker 10.0.0.9:8883: connection lost\n"
            ) in text
    assert f"1 malformed message(s) ignored (last: {XQ}/events: not JSON)" in text
    assert line_with(text, "select") == "↑/↓ or j/k select · PgUp/PgDn · q quit"
    feed_event(b, event(1))
    b.begin_ack("op", NOW)
    text, _ = draw(b, Frame("op", "h:1", True, "connected"))
    assert "ACTIVE, ack pending…" in text
    assert line_with(text, "ack:").startswith(f"ack: acknowledging …{alarm_id(1)[-6:]} "
                                              "(critical button_latch of A-3F-FB1) as op")


def test_render_keeps_the_selection_in_view_with_many_alarms():
    b = Board()
    for n in range(1, 61):
        feed_event(b, load_alarm(n, age_s=10_000 - n))
    b.move(45)
    text, _ = draw(b, Frame("op", "h:1", True, "connected"), height=24)
    assert len(text.splitlines()) <= 24
    assert line_with(text, "▶ ").split()[4] == "A-2F-LC46"
    assert "of 60 ·" in text and "above" in text and "below" in text


# --- command line -------------------------------------------------------------------------


def watch_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["watch", *argv])


def test_watch_settings_from_flags_and_from_a_config(tmp_path):
    opts = options_from_args(watch_args("--host", "127.0.0.1", "--operator", " 王工 "))
    assert (opts.broker.host, opts.broker.port, opts.operator, opts.prefix,
            opts.stale_after_s) == ("127.0.0.1", 1883, "王工", "parkwatch/v1", 90.0)
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    opts = options_from_args(watch_args("--host", "cc", "--port", "8883", "--username", "u",
                                        "--password-file", str(secret)))
    assert opts.operator is None and opts.broker.password() == "s3cret"

    opts = options_from_args(watch_args("--config", str(REPO / "examples" / "park.yaml")))
    assert (opts.broker.host, opts.broker.port, opts.stale_after_s) == ("127.0.0.1", 1883, 90.0)

    for argv, message in (
            (["--host", "cc", "--password-file", str(secret)], "a password needs a username"),
            (["--host", "cc", "--username", "u", "--password-file", str(tmp_path / "nope")],
             "--password-file: cannot read"),
            (["--host", "cc", "--ca-file", str(tmp_path / "ca.pem")], "--ca-file: file"),
            (["--host", "cc", "--cert-file", "c.pem"], "need --ca-file"),
            (["--host", "cc", "--port", "0"], "--port:"),
            (["--host", "cc", "--config", "x.yaml"], "not both"),
            (["--config", str(REPO / "examples" / "park.yaml"), "--port", "1"], "with --host"),
            (["--config", str(tmp_path / "missing.yaml")], "file not found"),
            (["--host", "cc", "--operator", " "], "--operator must name you")):
        with pytest.raises(SettingsError) as err:
            options_from_args(watch_args(*argv))
        assert message in str(err.value), (argv, err.value.lines)


def test_watch_with_an_unusable_config_exits_2_and_without_a_terminal_1(tmp_path, capsys):
    from parkwatch.cli import main

    assert main(["watch", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["watch", "--host", "127.0.0.1", "--port", "1"]) == 1  # output is captured
    assert "the board needs a terminal" in capsys.readouterr().err


# --- in a real terminal -------------------------------------------------------------------


class Tmux:
    """A private tmux server (its own socket) with one pane of a fixed size."""

    def __init__(self, workdir: Path) -> None:
        self.socket = f"pw-{os.getpid()}-{secrets.token_hex(4)}"
        self.bells = workdir / "bells"
        self.conf = workdir / "tmux.conf"
        self.conf.write_text(
            "set -g remain-on-exit on\nset -g monitor-bell on\nset -g bell-action any\n"
            f"set-hook -g alert-bell 'run-shell \"echo bell >> {self.bells}\"'\n",
            encoding="utf-8")
        self.env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TERM": "xterm"}
        self.socket_path: Path | None = None

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(["tmux", "-L", self.socket, "-f", str(self.conf), *args],
                              capture_output=True, text=True, env=self.env, timeout=10)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def start(self, command: str, width: int = 150, height: int = 30) -> None:
        self.tmux("new-session", "-d", "-s", "watch", "-x", str(width), "-y", str(height),
                  command)
        self.socket_path = Path(self.tmux("display-message", "-p", "#{socket_path}").strip())

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "watch")

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "watch", *keys)

    def wait_screen(self, pred: Callable[[str], bool], what: str,
                    timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if pred(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{text}")
            time.sleep(0.05)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)
        if self.socket_path is not None:  # tmux may leave its socket file behind
            self.socket_path.unlink(missing_ok=True)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    t = Tmux(tmp_path)
    yield t
    t.kill()


def start_watch(tmux: Tmux, workdir: Path, *options: str) -> None:
    """`parkwatch watch` in the pane, with the terminal's settings saved before and after and
    its exit code in workdir/rc (read from files: tmux may reap a dead pane late)."""
    watch = [sys.executable, "-m", "parkwatch", "watch", *options]
    tmux.start(f"cd {shlex.quote(str(REPO))} && stty -g > {workdir}/stty.before; "
               f"{shlex.join(watch)}; echo $? > {workdir}/rc.tmp; "
               f"stty -g > {workdir}/stty.after; mv {workdir}/rc.tmp {workdir}/rc")


def quit_watch(tmux: Tmux, workdir: Path) -> None:
    """Press q: the console ends with 0 and gives the terminal back as it found it."""
    tmux.send("q")
    wait_until(lambda: (workdir / "rc").exists(), what="the console to quit")
    assert (workdir / "rc").read_text().strip() == "0"
    assert (workdir / "stty.after").read_text() == (workdir / "stty.before").read_text()


def row_of(screen: str, sensor: str) -> str:
    return line_with(screen, f" {sensor} ")


def test_console_in_a_terminal_shows_a_fire_and_acknowledges_it(daemon, broker, device,
                                                                 subscriber, tmux, tmp_path):
    start_watch(tmux, tmp_path, "--host", "127.0.0.1", "--port", str(broker.port),
                "--operator", "district-duty")
    screen = tmux.wait_screen(lambda s: "xinqiao ● online" in s and "connected" in s,
                              "the gateway status and the connection")
    assert "no open alarms" in screen
    assert line_with(screen, "gateways").startswith("gateways 1/1 online: xinqiao ● online")
    assert "operator: district-duty · broker 127.0.0.1:" in screen

    device.send("A-2F-LC1", {"value": 8_500})  # a warning first: it gets the selection
    screen = tmux.wait_screen(lambda s: " A-2F-LC1 " in s, "the load alarm")
    assert row_of(screen, "A-2F-LC1").lstrip().startswith("▶")
    device.send("A-3F-FB1", {"event": "press"})
    events = subscriber.wait_events(lambda ev: any(e["sensor_id"] == "A-3F-FB1" for e in ev))
    fire = next(e["alarm_id"] for e in events if e["sensor_id"] == "A-3F-FB1")
    screen = tmux.wait_screen(lambda s: " A-3F-FB1 " in s, "the fire alarm")
    fire_row, load_row = row_of(screen, "A-3F-FB1"), row_of(screen, "A-2F-LC1")
    assert screen.index(fire_row) < screen.index(load_row)  # critical first
    for text in ("critical", "xinqiao", "A/3F", "fire · button_latch", "ACTIVE, UNACKED",
                 fire[-6:]):
        assert text in fire_row
    assert load_row.lstrip().startswith("▶")  # the selection stayed on its alarm
    wait_until(lambda: tmux.bells.exists(), what="the bell for the new fire alarm")
    colored = tmux.tmux("capture-pane", "-p", "-e", "-t", "watch")
    assert "41m" in line_with(colored, "A-3F-FB1")  # red background: the highlight

    tmux.send("Up")
    tmux.wait_screen(lambda s: row_of(s, "A-3F-FB1").lstrip().startswith("▶"),
                     "the fire alarm selected")
    tmux.send("a")
    wait_until(lambda: fire not in daemon.alarms.book.open
               or daemon.alarms.book.open[fire].acknowledged, what="the daemon's ack")
    assert daemon.alarms.book.open[fire].acked_by == "district-duty"
    acked = subscriber.wait_events(lambda ev: any(
        e["alarm_id"] == fire and e["event"] == "acknowledged" for e in ev))
    assert [e["acked_by"] for e in acked if e["event"] == "acknowledged"] == ["district-duty"]
    screen = tmux.wait_screen(lambda s: "acked by district-duty" in row_of(s, "A-3F-FB1"),
                              "the board showing the acknowledgement")
    assert "ACTIVE, acked by district-duty" in row_of(screen, "A-3F-FB1")
    assert f"ack: acknowledged …{fire[-6:]} (critical button_latch of A-3F-FB1) as " \
           "district-duty" in screen
    assert "ACTIVE, UNACKED" in row_of(screen, "A-2F-LC1")
    assert tmux.bells.read_text().count("bell") == 1  # one fire, one bell

    quit_watch(tmux, tmp_path)


def test_read_only_console_refuses_to_acknowledge(daemon, broker, device, subscriber, tmux,
                                                  tmp_path):
    device.send("A-3F-FB1", {"event": "press"})
    subscriber.wait_events(lambda ev: any(e["sensor_id"] == "A-3F-FB1" for e in ev))
    # started after the alarm: it comes from the retained state
    start_watch(tmux, tmp_path, "--host", "127.0.0.1", "--port", str(broker.port))
    screen = tmux.wait_screen(lambda s: " A-3F-FB1 " in s, "the retained fire alarm")
    assert "READ-ONLY: start with --operator NAME to acknowledge" in screen
    tmux.send("a")
    tmux.wait_screen(lambda s: "ack: read-only" in s, "the refusal")
    assert not any(e["event"] == "acknowledged" for e in subscriber.events())
    assert not next(iter(daemon.alarms.book.open.values())).acknowledged
    quit_watch(tmux, tmp_path)
