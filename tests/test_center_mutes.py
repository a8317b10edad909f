"""Mutes set from the console reach the gateway over a real broker (docs/contract.md,
"Mutes"): the gateway holds back a non-fire alarm's notifications, its reply and its list of
mutes in force come back to the console, the operator ends it; a viewer, a missing CSRF token
and a fire mute without the explicit flag are refused by the console."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from center_web import Client, console  # noqa: F401  (console: the fixture)
from conftest import Device, Subscriber, wait_until
from parkwatch.center.service import CenterService
from test_api import call, raise_alarm
from test_center_web import port_of


def local(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M")


def form(c: Client, **fields: str) -> dict[str, str]:
    now = datetime.now().astimezone()
    return {"csrf": c.get("/mutes").csrf(), "park": "xinqiao",
            "start": local(now - timedelta(minutes=2)), "end": local(now + timedelta(hours=1)),
            "floors": "A/2F", "reason": "二层称重传感器检修", **fields}


def test_a_mute_set_in_the_console_holds_back_notifications_at_the_gateway(
        console: CenterService, daemon: Any, subscriber: Subscriber,  # noqa: F811
        device: Device) -> None:
    ops = Client(port_of(console))
    assert ops.login("王工").status == 303
    r = ops.post("/mutes", form(ops))
    assert r.status == 303, r.body
    (sent,) = console.store.mute_commands()
    assert (sent["park"], sent["command"], sent["by_user"]) == ("xinqiao", "mute", "王工")
    wait_until(lambda: console.store.mute_commands()[0]["state"] == "done", 10,
               "the gateway's reply")
    wait_until(lambda: [m["id"] for m in console.store.gateway_mutes().get("xinqiao", [])]
               == [sent["mute_id"]], 10, "the gateway's list of mutes in force")
    page = ops.get("/mutes")
    assert "网关已执行" in page.body and f'data-mute="{sent["mute_id"]}"' in page.body

    load = raise_alarm(subscriber, device, "A-2F-LC1", {"value": 10_250})
    _status, body = call(daemon, "GET", f"/api/alarms/{load['alarm_id']}")
    assert body["suppressions"]
    assert {s["ref"] for s in body["suppressions"]} == {sent["mute_id"]}
    assert {d["subscriber"] for d in body["deliveries"]} == {"uplink"}

    token = ops.get("/mutes").csrf()
    assert ops.post("/mutes/end", {"csrf": token, "park": "xinqiao",
                                   "mute_id": sent["mute_id"]}).status == 303
    wait_until(lambda: console.store.gateway_mutes().get("xinqiao") == [], 10,
               "the mute ended at the gateway")
    ended = console.store.mute_commands()[0]
    assert (ended["command"], ended["state"]) == ("unmute", "done")


def test_the_console_refuses_what_the_gateway_would_and_who_may_not_mute(
        console: CenterService) -> None:  # noqa: F811
    ops, viewer = Client(port_of(console)), Client(port_of(console))
    assert ops.login("王工").status == 303 and viewer.login("viewer").status == 303
    fire = ops.post("/mutes", form(ops, floors="", buildings="A", kind_fire="1"))
    assert fire.status == 400 and "也屏蔽火警" in fire.body
    assert 'value="A"' in fire.body  # what was typed stays
    past = datetime.now().astimezone() - timedelta(hours=2)
    ended = ops.post("/mutes", form(ops, end=local(past), start=local(past - timedelta(hours=1))))
    assert ended.status == 400 and "结束时间已经过去了" in ended.body
    assert viewer.post("/mutes", form(viewer)).status == 403
    # a park no gateway of which has reported (a typo, a wildcard): said so, nothing sent
    for park in ("xinqaio", "xinqiao/#"):
        typo = ops.post("/mutes", form(ops, park=park))
        assert typo.status == 400 and "没有收到过这个园区网关的消息" in typo.body, typo.body
    gone = ops.post("/mutes/end", {"csrf": ops.get("/mutes").csrf(), "park": "xinqaio",
                                   "mute_id": "m-1"})
    assert gone.status == 400 and "没有收到过这个园区网关的消息" in gone.body
    no_token = {k: v for k, v in form(ops).items() if k != "csrf"}
    assert ops.post("/mutes", no_token).status == 403
    assert console.store.mute_commands() == []  # nothing was sent
