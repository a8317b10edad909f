"""Shaping of notifications for chat robots (issue 23): the rate window, folding what is over
into one summary, grouping per target, and a fire that never waits.

The couriers here are the daemon's own (:class:`parkwatch.alarms.shaped.ShapedCourier`) reading
a real alarm store and posting to the local robots of tests/chat_robots.py, which check the
vendors' signatures, length limits and rate; their clock is the test's, so a minute's window
or a 30 s group_wait passes when the test says so, not after a sleep.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chat_robots import DingTalkRobot, WeComRobot
from conftest import wait_until
from parkwatch.alarms.channels import dingtalk, wecom
from parkwatch.alarms.channels.robottext import summary_text
from parkwatch.alarms.channels.shaping import RateLimit
from parkwatch.alarms.ratewindow import RateWindow
from parkwatch.alarms.records import Delivery, Record
from parkwatch.alarms.shaped import ShapedCourier
from parkwatch.alarms.shaper import Message, Shaper
from parkwatch.alarms.store import AlarmStore, Pending
from parkwatch.config.delivery import Backoff

SECRET = "SEC" + "0123456789abcdef" * 4
T0 = 1_800_000_000.0


class Clock:
    """The couriers' clock, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def event(n: int, *, rule: str = "comm_fault", kind: str = "load_cell", building: str = "B",
          sensor: str | None = None, seq: int = 1, ev: str = "raised") -> dict[str, Any]:
    sensor = sensor or f"B-1F-S{n:02d}"
    what = {"comm_fault": "通讯故障，超过 30 s 未收到有效数据，请检查线缆与设备",
            "no_data": "无数据，超过 3 个上报周期未收到数据"}.get(rule, "被按下，请全楼疏散")
    return {"schema": "parkwatch.alarm/1", "alarm_id": f"01KTEST{n:019d}", "seq": seq,
            "event": ev, "park": "xinqiao", "building": building, "floor": "1F", "zone": None,
            "tenants": ["jiali"], "sensor_id": sensor, "sensor_kind": kind, "rule": rule,
            "severity": "critical" if kind == "fire_button" else "warning", "drill": False,
            "acked_by": None, "message": f"{building}栋 1F {sensor} {what}"}


def record(ev: dict[str, Any], at: float, targets: tuple[str, ...]) -> Record:
    payload = json.dumps(ev, ensure_ascii=False).encode("utf-8")
    return Record(ev["alarm_id"], ev["sensor_id"], ev["rule"], ev["seq"], ev["event"], True,
                  False, False, None, at, {}, payload,
                  [Delivery(f"officers-{t}", t, "test", at + 86_400) for t in targets], [], ev)


def pending(ev: dict[str, Any], at: float, i: int) -> Pending:
    return Pending(i, ev["alarm_id"], ev["seq"], "officers", "test", 0, at + 86_400, at, at,
                   json.dumps(ev, ensure_ascii=False).encode("utf-8"), ev["event"])


def courier(name: str, sender: Any, store: Path, clock: Clock, limits: list[RateLimit],
            group_by: list[str], group_wait_s: float,
            drivers: dict[str, str] | None = None) -> ShapedCourier:
    window = RateWindow(limits, store.parent / "shaping" / f"{name}.json")
    shaper = Shaper(window, group_by, group_wait_s, drivers or {}, fold=True)
    return ShapedCourier(name, sender, store, Backoff(initial_s=1.0), clock=clock,
                         shaper=shaper, timeout_s=5.0)


def listed_ids(messages: list[dict[str, Any]]) -> list[str]:
    return [a for m in messages for a in re.findall(r"编号：(\S+)", m["text"]["content"])]


def undelivered(store: AlarmStore, target: str) -> int:
    return int(store.db.execute("SELECT count(*) FROM outbox WHERE target=? AND "
                                "state='pending'", (target,)).fetchone()[0])


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "ding.secret"
    path.write_text(SECRET + "\n", encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlarmStore]:
    s = AlarmStore(tmp_path / "alarms.db")
    yield s
    s.close()


# --- the policy alone: a burst through a 20-a-minute window ------------------------------------


def test_a_burst_of_100_never_exceeds_20_a_minute_and_every_alarm_goes() -> None:
    """100 alarms at once, 20 a minute: they are folded, and every one is carried."""
    window = RateWindow([RateLimit(messages=20, per_s=60)], None)
    shaper = Shaper(window, ["rule", "building"], 0.0, {}, fold=True)
    rows = [pending(event(n, building="AB"[n % 2]), T0, n) for n in range(100)]
    now, sent, carried = T0, [], []
    while rows:
        choice = shaper.next(rows, now)
        if not isinstance(choice, Message):
            assert choice > now
            now = choice
            continue
        k = min(len(choice.rows), 30)  # what fits in a robot's text
        window.end(window.begin(now, 5.0), now + 0.1)
        sent.append(now)
        carried += choice.rows[:k]
        rows = [r for r in rows if r not in choice.rows[:k]]
        now += 0.1
    assert sorted(r.id for r in carried) == list(range(100))
    assert max(sum(1 for s in sent if t - 60 < s <= t) for t in sent) <= 20
    assert len(sent) <= 5  # folded, not 100 messages


def test_fire_uses_the_reserve_and_waits_only_when_even_that_is_used() -> None:
    """20 a minute, 5 kept for fire: 15 other alarms fill the window, a fire still goes at
    once; a sixth fire in that minute waits for the first free moment, never over 20."""
    window = RateWindow([RateLimit(messages=20, per_s=60)], None)
    shaper = Shaper(window, [], 0.0, {}, fold=True)
    for n in range(15):
        window.end(window.begin(T0 + n, 5.0), T0 + n)
    assert shaper.next([pending(event(1), T0 + 20, 1)], T0 + 20) == T0 + 60  # waits
    fires = [pending(event(50 + n, rule="button_latch", kind="fire_button", building="A",
                           sensor=f"A-1F-FB{n}"), T0 + 20, 50 + n) for n in range(6)]
    for n in range(5):  # each fire as it is pressed
        choice = shaper.next([pending(event(1), T0 + 20, 1), fires[n]], T0 + 20 + n)
        assert isinstance(choice, Message) and choice.urgent
        assert choice.rows == [fires[n]]  # alone, ahead of the other alarm
        window.end(window.begin(T0 + 20 + n, 5.0), T0 + 20 + n)
    assert shaper.next([fires[5]], T0 + 30) == T0 + 60  # the sixth: the window is full
    # fires waiting together, more than the room, go together in one message
    two = shaper.next(fires[4:], T0 + 60)
    assert isinstance(two, Message) and two.rows == fires[4:]


def test_a_webhook_is_paced_one_event_a_post_never_folded() -> None:
    window = RateWindow([RateLimit(messages=2, per_s=10, fire_reserve=0)], None)
    shaper = Shaper(window, [], 0.0, {}, fold=False)
    rows = [pending(event(n), T0, n) for n in range(5)]
    choice = shaper.next(rows, T0)
    assert isinstance(choice, Message) and choice.rows == rows[:1]
    window.begin(T0, 1.0)
    window.begin(T0, 1.0)
    assert shaper.next(rows[1:], T0 + 1) == T0 + 11


def test_the_window_is_kept_on_disk_before_the_request(tmp_path: Path) -> None:
    path = tmp_path / "shaping" / "ding.json"
    limits = [RateLimit(messages=3, per_s=60, fire_reserve=1)]
    window = RateWindow(limits, path)
    assert window.free(T0, urgent=False) == 2 and window.free(T0, urgent=True) == 3
    window.begin(T0, 5.0)  # killed while this request is in flight
    window.begin(T0 + 1, 5.0)
    again = RateWindow(limits, path)  # the restarted daemon
    assert again.free(T0 + 2, urgent=False) == 0 and again.free(T0 + 2, urgent=True) == 1
    # counted at the latest it could have reached the vendor: the start plus the timeout
    assert again.next_free(T0 + 2, urgent=False) == T0 + 5 + 60
    assert again.free(T0 + 5 + 60, urgent=False) == 1


def test_a_summary_lists_what_fits_and_says_how_many_more() -> None:
    payloads = [json.dumps(event(n, rule=("comm_fault", "no_data")[n % 2]),
                           ensure_ascii=False).encode() for n in range(60)]
    text, listed = summary_text(payloads, 2048)
    assert 5 < listed < 60 and len(text.encode("utf-8")) <= 2048
    assert text.startswith("【告警汇总】共 60 条告警")
    assert text.endswith(f"另有 {60 - listed} 条告警将在下一条消息中列出。")
    assert f"编号：{event(listed - 1)['alarm_id']}" in text
    assert event(listed)["alarm_id"] not in text


def test_a_group_of_one_rule_is_listed_short_to_fit_in_one_message() -> None:
    """20 comm faults of a cut cable in WeCom's 2,048 bytes: the first one's message in full,
    then where, which sensor and the id of each."""
    payloads = [json.dumps(event(n), ensure_ascii=False).encode() for n in range(20)]
    text, listed = summary_text(payloads, 2048)
    assert listed == 20 and len(text.encode("utf-8")) <= 2048
    assert text.startswith("【告警汇总】共 20 条同类告警（告警）\n"
                           "首条：B栋 1F B-1F-S00 通讯故障，超过")
    assert "\n20. B 1F B-1F-S19 编号：01KTEST0000000000000000019" in text


# --- a cut cable: one message per target; a fire meanwhile goes at once ------------------------


def test_a_cut_cable_gives_one_message_per_target_and_a_fire_does_not_wait(
        store: AlarmStore, tmp_path: Path, secret_file: Path) -> None:
    clock = Clock()
    with DingTalkRobot(SECRET) as ding, WeComRobot("", token="k") as wc:
        ding_sender = dingtalk.DingTalkSender("ding", dingtalk.DingTalkTarget.model_validate({
            "type": "dingtalk", "url": ding.url, "secret_file": str(secret_file)}))
        wc_sender = wecom.WeComSender("wc", wecom.WeComTarget.model_validate({
            "type": "wecom", "url": wc.url}))
        drivers = {f"B-1F-S{n:02d}": "rs485-b" for n in range(20)}
        couriers = [courier(name, sender, store.path, clock, [RateLimit(messages=20, per_s=60)],
                            ["rule", "driver"], 30.0, drivers)
                    for name, sender in (("ding", ding_sender), ("wc", wc_sender))]
        for c in couriers:
            c.start()
        try:
            # the RS-485 cable behind 20 sensors is cut: 20 comm faults at once
            store.commit([record(event(n), T0, ("ding", "wc")) for n in range(20)])
            for c in couriers:
                c.wake()
            # within group_wait a fire button is pressed in building A
            clock.now = T0 + 1
            fire = event(99, rule="button_latch", kind="fire_button", building="A",
                         sensor="A-3F-FB1")
            store.commit([record(fire, T0 + 1, ("ding", "wc"))])
            for c in couriers:
                c.wake()
            (first,) = ding.wait_for(lambda got: len(got) >= 1)
            (wc_first,) = wc.wait_for(lambda got: len(got) >= 1)
            # the fire arrived alone while the cable's group is still held
            assert first["text"]["content"].startswith("A栋 1F A-3F-FB1 被按下")
            assert "处置：请立即按疏散预案组织人员撤离" in first["text"]["content"]
            assert "A-3F-FB1" in wc_first["text"]["content"]
            assert undelivered(store, "ding") >= 20 and undelivered(store, "wc") >= 20
            # group_wait passes: one message per target for the whole cable
            clock.now = T0 + 31
            for c in couriers:
                c.wake()
            ding_got = ding.wait_for(lambda got: len(got) >= 2)
            wc_got = wc.wait_for(lambda got: len(got) >= 2)
            wait_until(lambda: undelivered(store, "ding") == 0 and undelivered(store, "wc") == 0,
                       10, "the group's rows marked delivered")
        finally:
            for c in couriers:
                c.stop(5)
    for texts in ([m["text"]["content"] for m in ding_got], [m["text"]["content"]
                                                             for m in wc_got]):
        assert len(texts) == 2
        group = texts[1]
        assert group.startswith("【告警汇总】共 20 条")
        assert all(event(n)["alarm_id"] in group for n in range(20))
    assert ding.refused == [] and wc.refused == []


def test_over_the_rate_the_rest_is_folded_and_what_does_not_fit_comes_next(
        store: AlarmStore) -> None:
    """60 alarms, two messages a minute: folded into summaries within WeCom's 2,048 bytes, the
    first saying how many more follow; the rest wait for the window, never dropped."""
    clock = Clock()
    with WeComRobot("", token="k") as wc:
        sender = wecom.WeComSender("wc", wecom.WeComTarget.model_validate({
            "type": "wecom", "url": wc.url}))
        c = courier("wc", sender, store.path, clock,
                    [RateLimit(messages=2, per_s=60, fire_reserve=0)], [], 0.0)
        c.start()
        try:
            store.commit([record(event(n, rule=("comm_fault", "no_data")[n % 2]), T0, ("wc",))
                          for n in range(60)])
            c.wake()
            got = wc.wait_for(lambda got: len(got) >= 2)
            assert len(got) == 2 and undelivered(store, "wc") > 0  # the window is full
            while len(listed_ids(wc.accepted)) < 60:
                clock.now += 61  # the next window
                c.wake()
                n = len(wc.accepted)
                wait_until(lambda n=n: len(wc.accepted) > n, 10, "the next message")
            wait_until(lambda: undelivered(store, "wc") == 0, 10, "every row marked")
        finally:
            c.stop(5)
    texts = [m["text"]["content"] for m in wc.accepted]
    assert all(len(t.encode("utf-8")) <= 2048 for t in texts)
    assert re.search(r"另有 \d+ 条告警将在下一条消息中列出。$", texts[0])
    listed = listed_ids(wc.accepted)
    assert sorted(listed) == sorted(event(n)["alarm_id"] for n in range(60))
    assert wc.refused == []


def test_a_failed_message_is_retried_and_its_rows_stay_pending(
        store: AlarmStore, tmp_path: Path) -> None:
    """The robot refuses (a wrong key): nothing is marked delivered, the target backs off."""
    clock = Clock()
    with WeComRobot("", token="right") as wc:
        sender = wecom.WeComSender("wc", wecom.WeComTarget.model_validate({
            "type": "wecom", "url": wc.url.replace("right", "wrong")}))
        c = courier("wc", sender, store.path, clock, [RateLimit(messages=20, per_s=60)],
                    ["rule"], 0.0)
        done = threading.Event()
        c.start()
        try:
            store.commit([record(event(n), T0, ("wc",)) for n in range(3)])
            c.wake()
            wait_until(lambda: c.failures >= 1, 10, "a failed attempt")
            done.set()
        finally:
            c.stop(5)
    assert undelivered(store, "wc") == 3 and c.failing
    attempts = store.db.execute("SELECT attempts FROM outbox WHERE target='wc'").fetchall()
    assert all(a >= 1 for (a,) in attempts)


def test_a_folded_sms_says_how_many_alarms_in_the_approved_template(secret_file: Path) -> None:
    from chat_robots import AliyunSms
    from parkwatch.alarms.channels import aliyun_sms

    target = aliyun_sms.AliyunSmsTarget.model_validate({
        "type": "aliyun_sms", "endpoint": "http://127.0.0.1:1/",
        "access_key_id": "LTAI-test-key-id",
        "secret_file": str(secret_file), "sign_name": "新桥园区", "template_code": "SMS_123456789",
        "phones": ["13800138000"], "template_params": {"what": "{message}", "where": "{place}",
                                                        "id": "{alarm_id}"},
        "max_param_chars": 100})
    rows = [pending(event(n, building="AB"[n % 2]), T0, n) for n in range(3)]
    with AliyunSms(SECRET) as sms:
        sender = aliyun_sms.AliyunSmsSender("sms", target.model_copy(
            update={"endpoint": sms.url}))
        assert sender.send_many(rows) == 3
        (got,) = sms.wait_for(lambda got: len(got) == 1)
    assert got["params"]["what"].startswith("共3条告警，首条：A栋 1F B-1F-S00 通讯故障")
    assert got["params"]["where"] == "多处"
    assert got["params"]["id"] == f"{event(0)['alarm_id']}等3条"


def test_an_sms_never_carries_another_subscribers_alarms() -> None:
    """SMS goes to one person's phone: folded rows of two tenants' officers are two messages,
    each with its own officer's alarms only (a chat group's message may carry both)."""
    window = RateWindow([RateLimit(messages=1, per_s=60)], None)
    rows = [Pending(n, f"01KTEST{n:019d}", 1, f"officer-{n % 2}", "sms", 0, T0 + 86_400, T0,
                    T0, json.dumps(event(n)).encode("utf-8"), "raised") for n in range(6)]
    personal = Shaper(window, ["rule", "building"], 0.0, {}, fold=True, personal=True)
    got = personal.next(rows, T0)
    assert isinstance(got, Message)
    assert {r.subscriber for r in got.rows} == {"officer-0"} and len(got.rows) == 3
    group = Shaper(window, ["rule", "building"], 0.0, {}, fold=True)
    got = group.next(rows, T0)
    assert isinstance(got, Message) and len(got.rows) == 6
