"""The command center's mutes at the gateway, over a real broker (docs/contract.md, "Mutes"):
a mute holds back a non-fire alarm's notifications (never the contract's event), is kept
across a restart, is refused for fire alarms without the explicit flag, and a mute from
anyone but an operator is refused, counted and answered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import Device, SimulatedPark, Subscriber, example_config, wait_until
from parkwatch.alarms.mutes import MUTE_SCHEMA
from parkwatch.commandsig import public_text, sign
from parkwatch.devtools.localbroker import LocalMosquitto
from test_api import call, raise_alarm

PREFIX = "parkwatch/v1/xinqiao"


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def mute(mute_id: str = "m-a2f", **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"schema": MUTE_SCHEMA, "id": mute_id, "start": rfc3339(now - timedelta(minutes=1)),
            "end": rfc3339(now + timedelta(hours=2)), "scope": {"floors": ["A/2F"]},
            "reason": "二层称重传感器检修", **fields}


def replies(sub: Subscriber) -> list[dict[str, Any]]:
    with sub.cond:
        return [json.loads(p) for t, p, _r in sub.messages if t == f"{PREFIX}/replies"]


def send(device: Device, sub: Subscriber, command: str, payload: dict[str, Any]
         ) -> dict[str, Any]:
    """Publish a command on its topic; the gateway's reply to it."""
    before = len(replies(sub))
    device.publish(f"{PREFIX}/commands/{command}", json.dumps(payload).encode()
                   ).wait_for_publish(5)
    wait_until(lambda: len(replies(sub)) > before, 10, f"the reply to the {command}")
    return replies(sub)[before]


def retained_mutes(sub: Subscriber) -> list[str]:
    with sub.cond:
        docs = [json.loads(p) for t, p, _r in sub.messages if t == f"{PREFIX}/mutes"]
    return [m["id"] for m in docs[-1]["mutes"]] if docs else []


def test_a_mute_holds_back_notifications_of_its_scope_but_not_the_contract(
        daemon: Any, subscriber: Subscriber, device: Device) -> None:
    reply = send(device, subscriber, "mute", {"by": "王工", "note": "检修", "mute": mute()})
    assert reply["ok"] is True, (reply["reason"], reply["detail"])
    assert reply["id"] == "m-a2f" and reply["by"] == "王工"
    wait_until(lambda: retained_mutes(subscriber) == ["m-a2f"], 10, "the retained mutes")
    load = raise_alarm(subscriber, device, "A-2F-LC1", {"value": 10_250})  # the event is out
    status, body = call(daemon, "GET", f"/api/alarms/{load['alarm_id']}")
    assert status == 200
    muted = {(s["subscriber"], s["cause"], s["ref"]) for s in body["suppressions"]}
    told = {d["subscriber"] for d in body["deliveries"]}
    assert muted and all(cause == "silence" and ref == "m-a2f" for _s, cause, ref in muted)
    assert told == {"uplink"}  # the command-center contract only
    # outside the mute's scope, the routing is as usual
    water = raise_alarm(subscriber, device, "A-1F-WL1", {"value": 31})
    _status, other = call(daemon, "GET", f"/api/alarms/{water['alarm_id']}")
    assert other["suppressions"] == [] and len({d["subscriber"] for d in other["deliveries"]}) > 1
    listed = call(daemon, "GET", "/api/silences")[1]["mutes"]
    assert [(m["id"], m["by"], m["active"]) for m in listed] == [("m-a2f", "王工", True)]

    done = send(device, subscriber, "unmute", {"by": "王工", "mute": {"id": "m-a2f"}})
    assert done["ok"] is True
    wait_until(lambda: retained_mutes(subscriber) == [], 10, "the mute gone from the list")


def test_a_mute_naming_fire_alarms_needs_the_explicit_flag(
        daemon: Any, subscriber: Subscriber, device: Device) -> None:
    refused = daemon.alarms.refused.count
    fire = mute("m-fire", scope={"buildings": ["A"], "kinds": ["fire"]})
    reply = send(device, subscriber, "mute", {"by": "王工", "mute": fire})
    assert reply["ok"] is False and reply["reason"] == "fire_not_explicit"
    assert reply["id"] == "m-fire"
    assert daemon.alarms.refused.count == refused + 1
    assert call(daemon, "GET", "/api/silences")[1]["mutes"] == []
    ok = send(device, subscriber, "mute", {"by": "王工", "mute": {**fire, "include_fire": True}})
    assert ok["ok"] is True


def test_a_mute_from_anyone_but_an_operator_is_refused_and_counted(
        daemon: Any, subscriber: Subscriber, device: Device) -> None:
    refused = daemon.alarms.refused.count
    for payload, reason in (
            ({"by": "mallory", "mute": mute()}, "not_operator"),
            ({"by": "王工", "mute": {**mute(), "schema": "parkwatch.mute/9"}}, "bad_mute"),
            ({"by": "王工", "mute": {**mute(), "subscribers": ["nobody"]}}, "bad_mute"),
            ({"by": "王工", "mute": {**mute(), "end": rfc3339(datetime.now(UTC)
                                                            - timedelta(hours=1))}},
             "bad_mute"),
            ({"mute": mute()}, "bad_command")):
        reply = send(device, subscriber, "mute", payload)
        assert (reply["ok"], reply["reason"]) == (False, reason), reply
    assert daemon.alarms.refused.count == refused + 5
    assert call(daemon, "GET", "/api/status")[1]["refused_commands"] >= 5
    assert call(daemon, "GET", "/api/silences")[1]["mutes"] == []
    load = raise_alarm(subscriber, device, "A-2F-LC1", {"value": 10_250})
    _status, body = call(daemon, "GET", f"/api/alarms/{load['alarm_id']}")
    assert body["suppressions"] == []  # nothing was muted


def test_a_signed_mute_is_checked_as_every_signed_command(
        broker: LocalMosquitto, tmp_path: Path, serial_devices: SimulatedPark,
        subscriber: Subscriber, device: Device) -> None:
    from parkwatch.commandsig import write_new_key
    from parkwatch.daemon.app import Daemon

    key = write_new_key(tmp_path / "wang.key")
    cfg = example_config(broker, tmp_path, {
        ("alarms", "operators"): [{"id": "王工", "public_key": public_text(key)}],
        ("alarms", "require_signed_commands"): True})
    d = Daemon(cfg)
    d.start()
    try:
        assert d.uplink.link.connected.wait(5)
        plain = send(device, subscriber, "mute", {"by": "王工", "mute": mute()})
        assert (plain["ok"], plain["reason"]) == (False, "unsigned")
        envelope = sign(key, "mute", "xinqiao", "", "王工", "检修", extra={"mute": mute()})
        signed = send(device, subscriber, "mute", envelope)
        assert signed["ok"] is True and signed["nonce"] == json.loads(envelope["body"])["nonce"]
        again = send(device, subscriber, "mute", envelope)  # the same command replayed
        assert (again["ok"], again["reason"]) == (False, "replayed")
        other = sign(key, "mute", "nanhu", "", "王工", extra={"mute": mute("m-2")})
        assert send(device, subscriber, "mute", other)["reason"] == "wrong_park"
    finally:
        d.stop()


def test_a_mute_is_kept_across_a_restart(broker: LocalMosquitto, tmp_path: Path,
                                         serial_devices: SimulatedPark,
                                         subscriber: Subscriber, device: Device) -> None:
    from parkwatch.daemon.app import Daemon

    first = Daemon(example_config(broker, tmp_path))
    first.start()
    try:
        assert first.uplink.link.connected.wait(5)
        assert send(device, subscriber, "mute", {"by": "王工", "mute": mute()})["ok"] is True
    finally:
        first.stop()
    second = Daemon(example_config(broker, tmp_path))
    second.start()
    try:
        assert second.uplink.link.connected.wait(5)
        for drv in (d for d in second.drivers if hasattr(d, "link")):
            assert drv.link.connected.wait(5)
        wait_until(lambda: all(drv.subscribed.is_set() for drv in second.drivers
                               if hasattr(drv, "link")))
        assert [m["id"] for m in call(second, "GET", "/api/silences")[1]["mutes"]] == ["m-a2f"]
        load = raise_alarm(subscriber, device, "A-2F-LC1", {"value": 10_250})
        _status, body = call(second, "GET", f"/api/alarms/{load['alarm_id']}")
        assert body["suppressions"] and {d["subscriber"] for d in body["deliveries"]} == \
            {"uplink"}
    finally:
        second.stop()


def test_a_mute_the_gateway_cannot_save_is_refused_and_changes_nothing(
        daemon: Any, subscriber: Subscriber, device: Device) -> None:
    refused = daemon.alarms.refused.count
    blocker = daemon.mutes.path.with_suffix(".tmp")
    blocker.mkdir()  # the file cannot be written: as on a full disk
    try:
        reply = send(device, subscriber, "mute", {"by": "王工", "mute": mute()})
    finally:
        blocker.rmdir()
    assert (reply["ok"], reply["reason"]) == (False, "not_saved"), reply
    assert "cannot save its mutes" in reply["detail"]
    assert daemon.alarms.refused.count == refused + 1
    assert call(daemon, "GET", "/api/silences")[1]["mutes"] == []  # not in force either
    assert send(device, subscriber, "mute", {"by": "王工", "mute": mute()})["ok"] is True
