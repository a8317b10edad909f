"""The alarm service on the example 厂中厂 park with a controllable clock: every lifecycle
transition (fire reset rules included), the routing matrix, escalation ladders and reminders
across a restart, silences and drills.  What is checked is what the store commits: the events
as they will be delivered (validated against the contract schema) and who they go to."""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import VALIDATOR
from parkwatch.alarms.service import AlarmService, Outcome
from parkwatch.alarms.store import FOLD_EVERY, AlarmStore
from parkwatch.alarms.views import StoreReader
from parkwatch.config import ConfigError
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions
from parkwatch.schema import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "park.yaml"
T0 = 1_795_000_000.0  # 2026-11-18
N, W, C = int(Severity.NORMAL), int(Severity.WARNING), int(Severity.CRITICAL)
A_TENANTS = {"huaxin", "yongsheng", "ruifeng"}
B_TENANTS = {"jiali", "hengtong"}


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


class Gateway:
    """An engine, a store and the service around them, as the daemon builds them."""

    def __init__(self, tmp: Path, clock: Clock, overrides: dict[tuple[Any, ...], Any],
                 fresh: tuple[str, ...] = ()) -> None:
        self.cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp), **overrides})
        self.park = ParkModel(self.cfg)
        self.engine = RuleEngine(self.park, start=clock())
        self.path = tmp / "alarms.db"
        self.store = AlarmStore(self.path)
        self.armed: list[float | None] = []
        self.service = AlarmService(self.cfg, self.park, self.engine, self.store, clock=clock,
                                    on_due=self.armed.append)
        self.clock = clock
        self.service.restore({self.idx(ident) for ident in fresh})
        self.overrides = overrides

    def idx(self, ident: str) -> int:
        return self.park.idents().index(ident)

    def transition(self, ident: str, rule: str, old: int, new: int, value: float = 1.0,
                   threshold: float = math.nan) -> list[dict[str, Any]]:
        before = self.seen()
        self.service.apply(Transitions.build(
            np.array([self.idx(ident)]), RULE_NAMES.index(rule), np.array([old]),
            np.array([new]), np.array([value], float), np.array([threshold], float),
            np.array([self.clock()], float)))
        return self.events()[before:]

    def readings(self, ident: str, value: float) -> list[dict[str, Any]]:
        """A real reading through the rule engine (for the fire-button latch)."""
        before = self.seen()
        batch = ReadingBatch.from_columns([self.idx(ident)], [value], [self.clock()],
                                          [int(Quality.GOOD)])
        self.service.apply(self.engine.evaluate(batch))
        return self.events()[before:]

    def seen(self) -> int:
        return int(self.store.db.execute("SELECT count(*) FROM changes").fetchone()[0])

    def events(self) -> list[dict[str, Any]]:
        rows = self.store.db.execute("SELECT payload FROM changes ORDER BY rowid").fetchall()
        out = [json.loads(r[0]) for r in rows]
        for e in out:
            VALIDATOR.validate(e)  # every event the store will deliver fits the contract
        return out

    def told(self, event: dict[str, Any]) -> set[str]:
        """Subscribers a change is delivered to (the uplink contract left out)."""
        rows = self.store.db.execute(
            "SELECT subscriber FROM outbox WHERE alarm_id=? AND seq=?",
            (event["alarm_id"], event["seq"])).fetchall()
        subs = {r[0] for r in rows}
        assert "uplink" in subs, "the command-center contract receives every change"
        return subs - {"uplink"}

    def reasons(self, event: dict[str, Any]) -> dict[str, str]:
        return dict(self.store.db.execute(
            "SELECT subscriber, reason FROM outbox WHERE alarm_id=? AND seq=?",
            (event["alarm_id"], event["seq"])).fetchall())

    def row(self, alarm_id: str) -> sqlite3.Row:
        self.store.db.row_factory = sqlite3.Row
        try:
            return self.store.db.execute("SELECT * FROM alarms WHERE alarm_id=?",
                                         (alarm_id,)).fetchone()
        finally:
            self.store.db.row_factory = None

    def restart(self) -> Gateway:
        """A new process on the same state directory (rule state of buttons carried over)."""
        latched = self.engine.kinds["button_latch"].latched.copy()
        self.store.close()
        again = Gateway(self.path.parent, self.clock, self.overrides)
        again.engine.kinds["button_latch"].latched[:] = latched
        again.engine.restored()
        return again

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(tmp_path: Path, clock: Clock) -> Iterator[Any]:
    made: list[Gateway] = []

    def build(**overrides: Any) -> Gateway:
        ov = {tuple(k.split("__")): v for k, v in overrides.items()}
        g = Gateway(tmp_path, clock, ov)
        made.append(g)
        return g

    yield build
    for g in made:
        g.close()


def names(events: Iterable[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


# --- 1. the lifecycle ---------------------------------------------------------------------


def test_active_acknowledged_then_cleared_closes(make: Any, clock: Clock) -> None:
    g = make()
    raised = g.transition("A-1F-WL1", "high_threshold", N, W, 33, 30)
    clock.t += 5
    worse = g.transition("A-1F-WL1", "high_threshold", W, C, 52, 50)
    alarm_id = raised[0]["alarm_id"]
    row = g.row(alarm_id)
    assert (row["active"], row["acknowledged"], row["closed"]) == (1, 0, 0)
    clock.t += 5
    assert g.service.acknowledge(alarm_id, "王工", "pump started") is Outcome.DONE
    row = g.row(alarm_id)
    assert (row["active"], row["acknowledged"], row["closed"]) == (1, 1, 0)
    clock.t += 5
    cleared = g.transition("A-1F-WL1", "high_threshold", C, N, 20, 50)
    assert names(raised + worse) == ["raised", "severity_changed"]
    assert names(cleared) == ["cleared", "closed"]
    events = g.events()
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert {e["alarm_id"] for e in events} == {alarm_id}
    ack = events[2]
    assert (ack["event"], ack["acked_by"], ack["active"], ack["acknowledged"]) == (
        "acknowledged", "王工", True, True)
    row = g.row(alarm_id)
    assert (row["active"], row["acknowledged"], row["closed"]) == (0, 1, 1)
    assert alarm_id not in g.service.book.open


def test_cleared_unacknowledged_stays_open_until_acknowledged(make: Any, clock: Clock) -> None:
    g = make()
    alarm_id = g.transition("A-2F-LC1", "high_threshold", N, W, 8100, 8000)[0]["alarm_id"]
    clock.t += 30
    cleared = g.transition("A-2F-LC1", "high_threshold", W, N, 100, 8000)
    assert names(cleared) == ["cleared"]
    row = g.row(alarm_id)
    assert (row["active"], row["acknowledged"], row["closed"]) == (0, 0, 0)
    assert [a["alarm_id"] for a in StoreReader(g.path).alarms()] == [alarm_id]
    assert g.service.acknowledge(alarm_id, "张三") is Outcome.DONE
    assert names(g.events()[-2:]) == ["acknowledged", "closed"]
    assert g.events()[-1]["acknowledged"] and not g.events()[-1]["active"]
    assert StoreReader(g.path).alarms() == []
    assert [a["alarm_id"] for a in StoreReader(g.path).alarms(include_closed=True)] == [alarm_id]
    # a closed alarm is gone: acknowledging it again is refused as unknown
    assert g.service.acknowledge(alarm_id, "张三") is Outcome.UNKNOWN


def test_ack_refusals_change_nothing(make: Any) -> None:
    g = make()
    alarm_id = g.readings("A-1F-FB1", 1.0)[0]["alarm_id"]
    before = g.events()
    assert g.service.acknowledge(alarm_id, "mallory") is Outcome.NOT_OPERATOR
    assert g.service.acknowledge("01JDOESNOTEXIST0000000000A", "王工") is Outcome.UNKNOWN
    assert g.events() == before
    assert g.service.refused.total == {"not_operator": 1, "unknown_alarm": 1}
    assert g.service.acknowledge(alarm_id, "王工") is Outcome.DONE
    assert g.service.acknowledge(alarm_id, "张三") is Outcome.ALREADY  # no second ack event
    assert names(g.events()) == ["raised", "acknowledged"]
    assert g.events()[-1]["acked_by"] == "王工"


def test_a_cleared_alarm_nobody_acknowledged_is_closed_by_policy_and_recorded_so(
        make: Any, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="parkwatch.alarms")
    g = make(alarms__close_unacknowledged_after_s={"overload": 3600, "water": 7200})
    load = g.transition("A-2F-LC1", "high_threshold", N, W, 8100, 8000)[0]["alarm_id"]
    water = g.transition("A-1F-WL1", "high_threshold", N, W, 33, 30)[0]["alarm_id"]
    fire = g.readings("A-1F-FB1", 1.0)[0]["alarm_id"]
    clock.t += 10
    g.transition("A-2F-LC1", "high_threshold", W, N, 100, 8000)
    g.transition("A-1F-WL1", "high_threshold", W, N, 10, 30)
    assert g.service.acknowledge(fire, "王工") is Outcome.DONE  # a fire is acknowledged...
    g.readings("A-1F-FB1", 0.0)  # ...and reset: closed the usual way
    clock.t = T0 + 10 + 3599
    assert g.service.escalate_due() == 0
    clock.t = T0 + 10 + 3600
    assert g.service.escalate_due() == 1  # the load alarm, an hour after it cleared
    closed = g.events()[-1]
    assert (closed["alarm_id"], closed["event"], closed["acknowledged"], closed["active"],
            closed["acked_by"]) == (load, "closed", True, False, "parkwatch:auto_close")
    assert "自动关闭" in closed["message"]
    assert g.row(load)["closed"] == 1 and load not in g.service.book.open
    detail = StoreReader(g.path).alarm(load)
    assert detail is not None and detail["details"]["auto_closed"] is True
    assert f"alarm {load} closed automatically" in caplog.text
    # the water alarm is acknowledged before its time: closed by the person, not the policy
    assert g.service.acknowledge(water, "张三") is Outcome.DONE
    assert "自动关闭" not in g.events()[-1]["message"]
    clock.t = T0 + 10 + 7200
    assert g.service.escalate_due() == 0 and g.service.next_due() is None


def test_a_fire_alarm_is_never_closed_by_policy(make: Any, clock: Clock) -> None:
    with pytest.raises(ConfigError) as err:
        make(alarms__close_unacknowledged_after_s={"fire": 60, "fault": 60})
    assert "close_unacknowledged_after_s" in str(err.value)
    assert "never closed without an acknowledgement" in str(err.value)
    g = make(alarms__close_unacknowledged_after_s={"fault": 60, "overload": 60})
    fire = g.readings("A-1F-FB1", 1.0)[0]["alarm_id"]
    assert g.service.reset(fire, "王工") is Outcome.DONE  # cleared, not acknowledged
    clock.t = T0 + 30 * 86_400
    g.service.escalate_due()
    assert fire in g.service.book.open and not g.row(fire)["closed"]


def test_fire_alarm_clears_on_device_reset_only(make: Any, clock: Clock) -> None:
    g = make()
    raised = g.readings("A-3F-FB1", 1.0)
    assert names(raised) == ["raised"] and raised[0]["rule"] == "button_latch"
    alarm_id = raised[0]["alarm_id"]
    # time alone never clears it: hours pass (other sensors fall silent meanwhile)
    clock.t += 6 * 3600
    g.service.apply(g.engine.tick(clock()))
    # a config change of the button (its rule state starts afresh) does not clear it either
    g.service._commit(g.service.book.clear_sources({g.idx("A-3F-FB1")}))
    assert names(e for e in g.events() if e["alarm_id"] == alarm_id) == ["raised"]
    assert g.row(alarm_id)["active"] == 1
    # a heartbeat or a second press changes nothing; the device reset clears it
    assert g.readings("A-3F-FB1", 1.0) == []
    cleared = g.readings("A-3F-FB1", 0.0)
    assert names(cleared) == ["cleared"] and cleared[0]["alarm_id"] == alarm_id
    assert not cleared[0]["active"] and not cleared[0]["acknowledged"]


def test_fire_alarm_operator_reset(make: Any, clock: Clock) -> None:
    g = make()
    alarm_id = g.readings("B-2F-FB1", 1.0)[0]["alarm_id"]
    assert g.service.reset(alarm_id, "mallory") is Outcome.NOT_OPERATOR
    assert g.row(alarm_id)["active"] == 1
    assert g.service.acknowledge(alarm_id, "王工") is Outcome.DONE
    clock.t += 60
    assert g.service.reset(alarm_id, "王工", "button lost; checked on site") is Outcome.DONE
    assert names(g.events()) == ["raised", "acknowledged", "cleared", "closed"]
    assert g.service.reset(alarm_id, "王工") is Outcome.UNKNOWN  # closed now
    # the latch is reset too: the next press is a new fire alarm, and a device reset clears it
    again = g.readings("B-2F-FB1", 1.0)
    assert names(again) == ["raised"] and again[0]["alarm_id"] != alarm_id
    assert names(g.readings("B-2F-FB1", 0.0)) == ["cleared"]


def test_only_fire_alarms_are_reset(make: Any) -> None:
    g = make()
    alarm_id = g.transition("A-1F-WL1", "high_threshold", N, W, 33, 30)[0]["alarm_id"]
    assert g.service.reset(alarm_id, "王工") is Outcome.NOT_RESETTABLE
    assert g.row(alarm_id)["active"] == 1


def test_fire_alarm_survives_a_config_change_of_its_button(make: Any, clock: Clock) -> None:
    g = make()
    alarm_id = g.readings("A-4F-FB1", 1.0)[0]["alarm_id"]
    g.store.close()
    # restart with the button's rule state fresh (its config changed): the alarm stays active
    # and the latch is set again, so the device reset still clears it
    again = Gateway(g.path.parent, clock, {}, fresh=("A-4F-FB1",))
    try:
        assert again.row(alarm_id)["active"] == 1
        assert names(again.events()) == ["raised"]
        cleared = again.readings("A-4F-FB1", 0.0)
        assert names(cleared) == ["cleared"] and cleared[0]["alarm_id"] == alarm_id
    finally:
        again.close()


def test_non_fire_alarm_of_a_changed_sensor_is_cleared_at_restart(make: Any,
                                                                   clock: Clock) -> None:
    g = make()
    alarm_id = g.transition("A-2F-LC1", "high_threshold", N, W, 8100, 8000)[0]["alarm_id"]
    g.store.close()
    again = Gateway(g.path.parent, clock, {}, fresh=("A-2F-LC1",))
    try:
        assert names(again.events()) == ["raised", "cleared"]
        assert again.events()[-1]["alarm_id"] == alarm_id
    finally:
        again.close()


# --- 2. the routing matrix ------------------------------------------------------------------

LANDLORD = {"landlord"}
OFFICERS = {"safety-officers"}

MATRIX = [
    # (what, source, rule, severity, expected subscribers)
    ("fire in A", "A-3F-FB1", "button_latch", C, A_TENANTS | LANDLORD | OFFICERS),
    ("fire in A 2F west", "A-2F-FB2", "button_latch", C, A_TENANTS | LANDLORD | OFFICERS),
    ("fire in B basement", "B-B1-FB1", "button_latch", C, B_TENANTS | LANDLORD | OFFICERS),
    ("overload warning A 2F east", "A-2F-LC1", "high_threshold", W, {"huaxin"} | LANDLORD),
    ("overload critical A 2F west", "A-2F-LC2", "high_threshold", C,
     {"yongsheng"} | LANDLORD | OFFICERS),
    ("overload A 4F", "A-4F-LC1", "high_threshold", W, {"ruifeng"} | LANDLORD),
    ("overload B 3F", "B-3F-LC1", "high_threshold", W, {"hengtong"} | LANDLORD),
    ("floor load A 2F", "A/2F", "floor_load", W, {"huaxin", "yongsheng"} | LANDLORD),
    ("zone load A 2F west", "A/2F/west", "floor_load", C, {"yongsheng"} | LANDLORD | OFFICERS),
    ("floor load B 3F", "B/3F", "floor_load", W, {"hengtong"} | LANDLORD),
    ("water warning A 1F", "A-1F-WL1", "high_threshold", W, {"facilities"}),
    ("water critical B basement", "B-B1-WL1", "high_threshold", C, {"facilities"} | OFFICERS),
    ("water rising B basement", "B-B1-WL2", "rate_of_rise", W, {"facilities"}),
    ("silent fire button", "A-3F-FB1", "no_data", W, {"facilities"}),
    ("silent bus slave", "B-3F-LC2", "comm_fault", C, {"facilities"}),
    ("floor data", "A/3F", "floor_data", W, {"facilities"}),
]


@pytest.mark.parametrize(("what", "source", "rule", "severity", "expected"), MATRIX,
                         ids=[m[0] for m in MATRIX])
def test_routing_matrix(make: Any, what: str, source: str, rule: str, severity: int,
                        expected: set[str]) -> None:
    g = make()
    raised = g.transition(source, rule, N, severity, 1.0, 1.0)
    assert names(raised) == ["raised"]
    assert g.told(raised[0]) == expected, what
    # the rest of the alarm's story goes to the same people
    assert g.service.acknowledge(raised[0]["alarm_id"], "王工") is Outcome.DONE
    assert g.told(g.events()[-1]) == expected
    # "district" is an escalation subscriber: never told at once
    assert "district" not in g.told(raised[0])


def test_routing_reasons_are_recorded(make: Any) -> None:
    g = make()
    raised = g.readings("A-3F-FB1", 1.0)[0]
    reasons = g.reasons(raised)
    assert reasons["uplink"] == "command-center contract"
    assert reasons["landlord"] == "landlord: fire policy"
    assert reasons["ruifeng"] == "tenant (building): fire policy"
    assert reasons["safety-officers"] == "filter"
    detail = StoreReader(g.path).alarm(raised["alarm_id"])
    assert detail is not None
    assert {d["subscriber"]: d["reason"] for d in detail["deliveries"]} == reasons


def test_fire_policy_whole_park(make: Any) -> None:
    g = make(alarms__routing__fire={"tenants": "park", "landlord": True, "facilities": False})
    raised = g.readings("B-1F-FB1", 1.0)[0]
    assert g.told(raised) == A_TENANTS | B_TENANTS | LANDLORD | OFFICERS


def test_subscriber_filter_narrows(make: Any) -> None:
    cfg = load_config(EXAMPLE)
    subs = [s.model_dump(exclude_unset=True) for s in cfg.alarms.subscribers]
    subs.append({"id": "b-night-watch", "party": "any", "target": "journal",
                 "filter": {"buildings": ["B"], "kinds": ["fire", "water"],
                            "min_severity": "warning"}})
    g = make(alarms__subscribers=subs)
    assert "b-night-watch" in g.told(g.readings("B-3F-FB1", 1.0)[0])
    assert "b-night-watch" not in g.told(g.readings("A-3F-FB1", 1.0)[0])
    assert "b-night-watch" in g.told(g.transition("B-B1-WL1", "high_threshold", N, W, 41, 40)[0])
    assert "b-night-watch" not in g.told(
        g.transition("B-3F-LC1", "high_threshold", N, C, 10100, 10000)[0])


# --- 3. escalation and reminders ----------------------------------------------------------


def test_fire_ladder_escalates_and_reminds_until_acknowledged(make: Any, clock: Clock) -> None:
    g = make()
    raised = g.readings("A-1F-FB1", 1.0)[0]
    alarm_id = raised["alarm_id"]
    first = g.told(raised)
    assert "district" not in first
    assert g.armed[-1] == T0 + 60  # the escalation timer is armed for the first step
    clock.t = T0 + 59.9
    assert g.service.escalate_due() == 0
    clock.t = T0 + 60
    assert g.service.escalate_due() == 1
    escalated = g.events()[-1]
    assert (escalated["event"], escalated["escalation_level"]) == ("escalated", 1)
    assert g.told(escalated) == first | {"district"}
    assert g.reasons(escalated)["district"] == "escalation step 1 (unacknowledged 60 s)"
    assert g.service.escalate_due() == 0  # once
    assert g.armed[-1] == T0 + 120
    clock.t = T0 + 120
    assert g.service.escalate_due() == 1
    reminder = g.events()[-1]
    assert (reminder["event"], reminder["escalation_level"]) == ("reminder", 1)
    assert g.told(reminder) == first | {"district"}
    clock.t = T0 + 200
    assert g.service.escalate_due() == 0
    clock.t = T0 + 240
    assert g.service.escalate_due() == 1
    clock.t = T0 + 250
    assert g.service.acknowledge(alarm_id, "district-duty") is Outcome.DONE
    assert g.armed[-1] is None  # nothing left to escalate
    clock.t = T0 + 3600
    assert g.service.escalate_due() == 0
    assert names(g.events()) == ["raised", "escalated", "reminder", "reminder", "acknowledged"]
    assert [e["seq"] for e in g.events()] == [1, 2, 3, 4, 5]


def test_acknowledged_in_time_never_escalates(make: Any, clock: Clock) -> None:
    g = make()
    alarm_id = g.readings("A-1F-FB1", 1.0)[0]["alarm_id"]
    clock.t = T0 + 30
    g.service.acknowledge(alarm_id, "王工")
    clock.t = T0 + 600
    assert g.service.escalate_due() == 0
    assert "district" not in set().union(*(g.told(e) for e in g.events()))


def test_warning_overload_has_no_ladder(make: Any, clock: Clock) -> None:
    g = make()
    g.transition("A-2F-LC1", "high_threshold", N, W, 8100, 8000)
    assert g.service.next_due() is None
    clock.t = T0 + 3600
    assert g.service.escalate_due() == 0


def test_restart_mid_ladder_fires_the_next_step_on_time_once(make: Any, clock: Clock) -> None:
    g = make()
    alarm_id = g.readings("B-3F-FB1", 1.0)[0]["alarm_id"]
    clock.t = T0 + 30
    g = g.restart()  # the gateway restarts half-way to the first step
    assert g.service.next_due() == T0 + 60
    assert g.armed[-1] == T0 + 60  # the timer is re-armed from the store
    clock.t = T0 + 59
    assert g.service.escalate_due() == 0
    clock.t = T0 + 60
    assert g.service.escalate_due() == 1
    g = g.restart()  # restarting again right after the step does not repeat it
    assert g.service.escalate_due() == 0
    assert g.service.next_due() == T0 + 120
    assert names(g.events()) == ["raised", "escalated"]
    assert g.events()[-1]["alarm_id"] == alarm_id


def test_restart_after_a_long_outage_sends_each_step_once_and_one_reminder(
        make: Any, clock: Clock) -> None:
    g = make()
    g.readings("B-3F-FB1", 1.0)
    g.store.close()
    clock.t = T0 + 1000  # down for a quarter of an hour
    g = g.restart()
    assert g.armed[-1] == T0 + 60  # overdue: the job runs at once
    assert g.service.escalate_due() == 2
    assert names(g.events()) == ["raised", "escalated", "reminder"]
    assert g.service.next_due() == T0 + 1080  # reminders keep their 2-minute rhythm
    assert g.service.escalate_due() == 0


# --- 4. silences and drills --------------------------------------------------------------


def silence(**kw: Any) -> dict[str, Any]:
    return {"id": "a-maintenance", "start": datetime.fromtimestamp(T0 - 60, UTC),
            "end": datetime.fromtimestamp(T0 + 3600, UTC), "scope": {"buildings": ["A"]},
            "reason": "A栋 设备检修", **kw}


def test_silence_mutes_subscribers_but_never_a_fire_alarm(make: Any) -> None:
    g = make(alarms__silences=[silence()])
    water = g.transition("A-1F-WL1", "high_threshold", N, W, 33, 30)[0]
    assert g.told(water) == set()  # muted, but the command center still gets it
    fire = g.readings("A-3F-FB1", 1.0)[0]
    assert g.told(fire) == A_TENANTS | LANDLORD | OFFICERS  # no include_fire: not muted
    outside = g.transition("B-B1-WL1", "high_threshold", N, W, 41, 40)[0]
    assert g.told(outside) == {"facilities"}  # out of the silence's scope
    muted = StoreReader(g.path).suppressions()
    assert [(m["alarm_id"], m["subscriber"], m["cause"], m["ref"]) for m in muted] == [
        (water["alarm_id"], "facilities", "silence", "a-maintenance")]
    assert "A栋 设备检修" in muted[0]["reason"]


def test_silence_mutes_fire_only_when_it_says_so(make: Any) -> None:
    g = make(alarms__silences=[silence(include_fire=True, scope={"buildings": ["A"],
                                                                  "kinds": ["fire"]})])
    fire = g.readings("A-3F-FB1", 1.0)[0]
    assert g.told(fire) == set()
    assert {m["subscriber"] for m in StoreReader(g.path).suppressions()} == (
        A_TENANTS | LANDLORD | OFFICERS)


def test_silence_outside_its_span_mutes_nothing(make: Any, clock: Clock) -> None:
    g = make(alarms__silences=[silence()])
    clock.t = T0 + 3600  # the end is exclusive
    assert g.told(g.transition("A-1F-WL1", "high_threshold", N, W, 33, 30)[0]) == {"facilities"}


def test_silence_for_named_subscribers(make: Any) -> None:
    g = make(alarms__silences=[silence(subscribers=["landlord"], scope={})])
    over = g.transition("B-3F-LC1", "high_threshold", N, W, 8100, 8000)[0]
    assert g.told(over) == {"hengtong"}


def test_drill_events_carry_drill_and_follow_the_drill_policy(make: Any, clock: Clock) -> None:
    drill = {"id": "q4-fire-drill", "start": datetime.fromtimestamp(T0 - 60, UTC),
             "end": datetime.fromtimestamp(T0 + 1800, UTC),
             "scope": {"buildings": ["A"], "kinds": ["fire"]},
             "notify": ["landlord", "safety-officers"], "reason": "第四季度消防演练"}
    g = make(alarms__drills=[drill])
    raised = g.readings("A-2F-FB1", 1.0)
    assert raised[0]["drill"] is True
    assert g.told(raised[0]) == LANDLORD | OFFICERS
    assert {m["subscriber"] for m in StoreReader(g.path).suppressions()} == A_TENANTS
    assert g.reasons(raised[0])["landlord"] == "drill q4-fire-drill: drill policy"
    # no escalation for a drill unless it asks; the drill flag stays for the alarm's life
    assert g.service.next_due() is None
    clock.t = T0 + 3600  # the drill is over, but this alarm was raised during it
    g.service.acknowledge(raised[0]["alarm_id"], "王工")
    cleared = g.readings("A-2F-FB1", 0.0)
    assert [e["drill"] for e in g.events()] == [True, True, True, True]
    assert names(cleared) == ["cleared", "closed"]
    # a fire in building B during the drill is real
    real = g.readings("B-1F-FB1", 1.0)[0]
    assert real["drill"] is False


def test_drill_outside_scope_is_real(make: Any) -> None:
    drill = {"id": "a-drill", "start": datetime.fromtimestamp(T0 - 60, UTC),
             "end": datetime.fromtimestamp(T0 + 60, UTC), "scope": {"buildings": ["A"]},
             "notify": ["landlord"]}
    g = make(alarms__drills=[drill])
    real = g.readings("B-1F-FB1", 1.0)[0]
    assert real["drill"] is False
    assert g.told(real) == B_TENANTS | LANDLORD | OFFICERS
    assert g.service.next_due() == T0 + 60  # real fires escalate


def test_damaged_store_is_moved_aside_and_the_gateway_starts(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    from parkwatch.daemon.app import Daemon

    (tmp_path / "alarms.db").write_bytes(b"this is not a database" * 100)
    cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp_path), ("api",): None})
    d = Daemon(cfg)
    try:
        assert d.store.open_alarms() == []
        aside = list(tmp_path.glob("alarms.db.damaged-*"))
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
        assert "unreadable" in caplog.text
    finally:
        d.reader.close()
        d.store.close()


def test_a_failing_disk_delays_changes_but_loses_none(make: Any, clock: Clock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    g = make()
    real_commit = g.store.commit
    failing = [True]

    def commit(records: Any, marks: Any = ()) -> None:
        if failing[0]:
            raise sqlite3.OperationalError("disk I/O error")
        real_commit(records, marks)

    g.store.commit = commit  # type: ignore[method-assign]
    g.readings("A-1F-FB1", 1.0)
    clock.t += 1
    g.transition("A-1F-WL1", "high_threshold", N, W, 33, 30)
    g.service.retry_unsaved()
    assert g.events() == []  # nothing on disk yet: nothing can be delivered
    assert g.service.store_errors == 3
    assert caplog.text.count("cannot commit") == 1  # logged once for the outage
    failing[0] = False
    g.service.retry_unsaved()
    assert [(e["sensor_id"], e["event"]) for e in g.events()] == [
        ("A-1F-FB1", "raised"), ("A-1F-WL1", "raised")]
    assert g.told(g.events()[0]) == A_TENANTS | LANDLORD | OFFICERS
    assert "commits again; 2 held change(s)" in caplog.text


# --- the write-ahead log, folded after delivery starts ----------------------------------------


def folded_changes(path: Path) -> int:
    """Changes in the database file alone, its write-ahead log ignored: what folds (SQLite
    checkpoints) have copied there."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM changes").fetchone()[0])
    except sqlite3.DatabaseError:  # not even the table is in the file yet
        return 0
    finally:
        db.close()


def test_the_store_folds_its_log_every_so_many_commits(make: Any, clock: Clock) -> None:
    g = make()
    for k in range(FOLD_EVERY - 1):
        clock.t += 1
        g.transition("A-1F-WL1", "high_threshold", *((N, W) if k % 2 == 0 else (W, N)), 33, 30)
    assert g.store.folds == 0 and folded_changes(g.path) == 0  # all of it still in the log
    assert g.seen() == FOLD_EVERY - 1
    clock.t += 1
    g.transition("A-1F-WL1", "high_threshold", W, N, 20, 30)
    assert g.store.folds == 1 and folded_changes(g.path) == g.seen() >= FOLD_EVERY


def test_the_fold_comes_after_the_changes_are_handed_to_the_couriers(make: Any) -> None:
    """The fold's fsyncs of the database file must not delay the change that made it due."""
    g = make()
    g.store.unfolded = FOLD_EVERY - 1  # the next commit makes a fold due
    handed: list[tuple[int, int]] = []
    g.service.dispatcher.dispatch = (  # type: ignore[method-assign]
        lambda records, _ticket=None, _waits=None: handed.append(
            (len(records), folded_changes(g.path))))
    g.readings("A-1F-FB1", 1.0)
    assert handed == [(1, 0)]  # the couriers had it before the fold
    assert folded_changes(g.path) == 1 and g.store.unfolded == 0


def test_a_fold_the_disk_refuses_is_logged_once_and_loses_nothing(
        make: Any, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="parkwatch.alarms")
    g = make()
    real_db = g.store.db

    class FullDisk:  # the checkpoint cannot write the database file; commits still can
        def execute(self, sql: str, *args: Any) -> Any:
            if sql.startswith("PRAGMA wal_checkpoint"):
                raise sqlite3.OperationalError("database or disk is full")
            return real_db.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(real_db, name)

    g.store.db = FullDisk()  # type: ignore[assignment]
    for k in range(2 * FOLD_EVERY):
        clock.t += 1
        g.transition("A-1F-WL1", "high_threshold", *((N, W) if k % 2 == 0 else (W, N)), 33, 30)
    assert caplog.text.count("cannot fold the write-ahead log") == 1
    assert g.store.folds == 0 and g.seen() == 2 * FOLD_EVERY  # every change committed
    g.store.db = real_db
    for k in range(FOLD_EVERY):
        clock.t += 1
        g.transition("A-1F-WL1", "high_threshold", *((N, W) if k % 2 == 0 else (W, N)), 33, 30)
    assert g.store.folds == 1 and folded_changes(g.path) == 3 * FOLD_EVERY
    assert "folds into the database again" in caplog.text


def _walked(g: Gateway) -> Counter[tuple[str, str]]:
    """Open alarms by (hazard, state), the slow way: every open alarm looked at."""
    out: Counter[tuple[str, str]] = Counter()
    for a in g.service.book.open.values():
        state = f"{'active' if a.active else 'cleared'}_{'' if a.acknowledged else 'un'}" \
                "acknowledged"
        out[(g.service._hazard(a), state)] += 1
    return +out


def test_the_open_alarm_tally_is_kept_with_every_kind_of_change(make: Any,
                                                                 clock: Clock) -> None:
    """Metrics and the status read open alarms from a tally kept with each change (no walk of
    100,000 alarms per scrape); after any mix of raises, severity changes, acks, clears,
    resets, closings by policy and a restart, it is what walking the alarms counts."""
    g = make(alarms__close_unacknowledged_after_s={"overload": 60})
    rng = np.random.default_rng(7)
    measuring = ["A-2F-LC1", "A-3F-LC1", "B-2F-LC1", "A-1F-WL1", "B-B1-WL1"]
    level = dict.fromkeys(measuring, N)
    for _ in range(400):
        clock.t += float(rng.uniform(0, 20))
        what = rng.integers(0, 4)
        if what == 0:  # a sensor moves between normal, warning and critical
            s = measuring[int(rng.integers(len(measuring)))]
            new = int(rng.choice([N, W, C]))
            if new != level[s]:
                g.transition(s, "high_threshold", level[s], new, 1.0, 1.0)
                level[s] = new
        elif what == 1:  # a button pressed or reset at the device
            g.readings(["A-1F-FB1", "B-3F-FB1"][int(rng.integers(2))], float(rng.integers(2)))
        elif what == 2 and g.service.book.open:  # an operator acknowledges or resets
            alarm_id = list(g.service.book.open)[int(rng.integers(len(g.service.book.open)))]
            if rng.integers(3) == 0:
                g.service.reset(alarm_id, "王工")
            else:
                g.service.acknowledge(alarm_id, "王工")
        else:
            g.service.escalate_due()  # ladders, reminders and closings by policy
        assert +g.service.tally == _walked(g)
    counts = g.service.counts()
    assert sum(counts.values()) == len(g.service.book.open)
    again = g.restart()
    assert +again.service.tally == _walked(again) == +g.service.tally


def test_telemetry_gets_each_event_as_built_and_it_matches_the_delivered_bytes(
        make: Any, clock: Clock) -> None:
    """The dispatcher hands telemetry the event dicts (no second parse of the payload): each
    is, once committed, exactly the event the store delivers, so the telemetry line is the
    one the payload gives."""
    from parkwatch.alarms.routing import hazard as telemetry_hazard
    from parkwatch.telemetry.lineproto import event_line

    g = make()
    got: list[Any] = []
    g.service.committer.dispatcher.on_events = got.extend
    alarm_id = g.transition("A-1F-WL1", "high_threshold", N, W, 33, 30)[0]["alarm_id"]
    clock.t += 5
    g.transition("A-1F-WL1", "high_threshold", W, C, 52, 50)
    g.readings("A-3F-FB1", 1.0)  # a fire button's press
    clock.t += 5
    assert g.service.acknowledge(alarm_id, "王工", "pump started") is Outcome.DONE
    g.transition("A-1F-WL1", "high_threshold", C, N, 20, 50)
    delivered = g.events()
    assert len(got) == len(delivered) >= 5 and all(isinstance(e, dict) for e in got)
    for doc, event in zip(got, delivered, strict=True):
        assert json.loads(json.dumps(doc, ensure_ascii=False)) == event
        assert event_line(doc, telemetry_hazard(doc)) == event_line(event,
                                                                    telemetry_hazard(event))


def test_a_storms_changes_are_routed_in_chunks_with_fire_raises_first(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """A batch's changes go to the commit stage a chunk at a time (a storm's first changes are
    written and delivered while the rest are routed), fire alarms' first changes ahead of the
    others, except behind a change of their own sensor."""
    from parkwatch.alarms import chunks

    monkeypatch.setattr(chunks, "ROUTE_CHUNK", 2)
    g = Gateway(tmp_path, Clock(), {})
    cells = [i for i in g.park.idents() if "-LC" in i][:4]
    first, second = "A-3F-FB1", next(i for i in g.park.idents()
                                     if "-FB" in i and i != "A-3F-FB1")
    comm, latch, high = (RULE_NAMES.index(r) for r in ("comm_fault", "button_latch",
                                                       "high_threshold"))
    nan = math.nan

    def rows(sensors: list[str], rule: int, old: int, new: int) -> Transitions:
        n = len(sensors)
        return Transitions.build(np.array([g.idx(s) for s in sensors]), rule,
                                 np.full(n, old), np.full(n, new), np.full(n, 1.0),
                                 np.full(n, nan), np.full(n, g.clock()))

    g.service.apply(rows([first], comm, N, W))  # the button's link fault is open
    before = g.seen()
    groups = g.service.committer.groups
    g.service.apply(Transitions.concat([
        rows(cells[:2], high, N, C),
        rows([first], comm, W, N),  # the fault clears, then the same button is pressed
        rows([first], latch, N, C),
        rows(cells[2:], high, N, C),
        rows([second], latch, N, C)]))
    order = [(e["sensor_id"], e["rule"], e["event"]) for e in g.events()[before:]]
    assert order == [
        (second, "button_latch", "raised"),  # nothing of its sensor before it: first
        (cells[0], "high_threshold", "raised"), (cells[1], "high_threshold", "raised"),
        (first, "comm_fault", "cleared"), (first, "button_latch", "raised"),
        (cells[2], "high_threshold", "raised"), (cells[3], "high_threshold", "raised")]
    assert g.service.committer.groups - groups == 4  # 7 changes, 2 at a time


def test_a_storms_first_changes_are_committed_before_the_rest_become_alarms(
        tmp_path: Path, monkeypatch) -> None:
    """The lifecycle works through a big batch a chunk at a time too: the first chunk's
    changes reach the commit stage before the later rows of the batch are turned into
    alarms (a storm's first events are not held up by the work on its last)."""
    from parkwatch.alarms import chunks

    monkeypatch.setattr(chunks, "ROUTE_CHUNK", 2)
    g = Gateway(tmp_path, Clock(), {})
    cells = [g.idx(i) for i in g.park.idents() if "-LC" in i][:6]
    opened: list[int] = []
    submit = g.service.committer.submit

    def watched(records: list[Any]) -> None:
        opened.append(len(g.service.book.open))
        submit(records)

    monkeypatch.setattr(g.service.committer, "submit", watched)
    n = len(cells)
    changed = g.service.apply(Transitions.build(
        np.array(cells), RULE_NAMES.index("high_threshold"), np.full(n, N), np.full(n, C),
        np.full(n, 12_000.0), np.full(n, 10_000.0), np.full(n, g.clock())))
    assert changed == 6
    assert opened == [2, 4, 6]
    assert [e["event"] for e in g.events()] == ["raised"] * 6


def test_a_missing_limit_survives_a_restart_as_not_a_number(tmp_path: Path) -> None:
    """A fire button's alarm has no limit (NaN); its stored state says null, and the restored
    alarm has NaN again, not None."""
    clock = Clock()
    g = Gateway(tmp_path, clock, {})
    (raised,) = g.readings("A-3F-FB1", 1.0)
    assert raised["threshold"] is None
    (state,) = [json.loads(r[0]) for r in g.store.db.execute(
        "SELECT state FROM alarms WHERE alarm_id=?", (raised["alarm_id"],))]
    assert state["threshold"] is None
    g.store.close()
    again = Gateway(tmp_path, clock, {})
    alarm = again.service.book.open[raised["alarm_id"]]
    assert isinstance(alarm.threshold, float) and math.isnan(alarm.threshold)
    assert alarm.value == 1.0
    again.store.close()
