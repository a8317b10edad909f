"""The local HTTP API and the MQTT ack command against a running daemon: who may look, who may
acknowledge or reset, and what the command center sees when they do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import http_json, wait_until
from parkwatch.daemon.httpapi import state_token

ACK_TOPIC = "parkwatch/v1/xinqiao/commands/ack"
NO_TOKEN = object()


def call(daemon: Any, method: str, path: str, body: Any = None,
         token: Any = None) -> tuple[int, Any]:
    """(status, JSON) of one request; the daemon's own token unless told otherwise."""
    token = state_token(daemon.state_dir) if token is None else token
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    return http_json(daemon.api.port, method, path, data,
                     None if token is NO_TOKEN else token)  # type: ignore[arg-type]


def _of(events: list[dict[str, Any]], alarm_id: str, kind: str | None = None
        ) -> list[dict[str, Any]]:
    return [e for e in events if e["alarm_id"] == alarm_id and kind in (None, e["event"])]


def raise_alarm(subscriber: Any, device: Any, sensor: str, payload: dict[str, Any]
                ) -> dict[str, Any]:
    device.send(sensor, payload)
    events = subscriber.wait_events(
        lambda ev: any(e["sensor_id"] == sensor and e["event"] == "raised" for e in ev))
    return next(e for e in events if e["sensor_id"] == sensor and e["event"] == "raised")


@pytest.fixture
def fire(daemon: Any, subscriber: Any, device: Any) -> dict[str, Any]:
    """The raised event of a pressed fire button (A-3F-FB1)."""
    return raise_alarm(subscriber, device, "A-3F-FB1", {"event": "press"})


def test_alarms_are_listed_only_with_the_token(daemon, fire):
    status, body = call(daemon, "GET", "/api/alarms")
    assert status == 200
    assert [(a["alarm_id"], a["sensor_id"], a["event"], a["acknowledged"])
            for a in body["alarms"]] == [(fire["alarm_id"], "A-3F-FB1", "raised", False)]

    before = daemon.api.refused.count
    for token in (NO_TOKEN, "not-the-token", ""):
        status, body = call(daemon, "GET", "/api/alarms", token=token)
        assert status == 401 and "alarms" not in body
    status, _ = call(daemon, "GET", f"/api/alarms/{fire['alarm_id']}", token=NO_TOKEN)
    assert status == 401
    assert daemon.api.refused.count == before + 4
    status, body = call(daemon, "GET", "/api/status")
    assert status == 200 and body["refused_commands"] >= 4 and body["open_alarms"] == 1


def test_ack_with_a_wrong_token_or_by_a_stranger_changes_nothing(daemon, subscriber, fire):
    alarm_id = fire["alarm_id"]
    status, _ = call(daemon, "POST", f"/api/alarms/{alarm_id}/ack", {"by": "王工"},
                     token="guessed-token")
    assert status == 401

    refused = daemon.alarms.refused.count
    status, body = call(daemon, "POST", f"/api/alarms/{alarm_id}/ack", {"by": "mallory"})
    assert status == 403 and body["result"] == "not_operator"
    assert daemon.alarms.refused.count == refused + 1

    status, body = call(daemon, "GET", f"/api/alarms/{alarm_id}")
    assert body["alarm"]["acknowledged"] is False and body["alarm"]["seq"] == 1
    assert [c["event"] for c in body["changes"]] == ["raised"]
    # nothing was published for the refused acknowledgements: the operator's, after them, is
    # the alarm's next change (seq 2), and the only acknowledgement the command center gets
    status, body = call(daemon, "POST", f"/api/alarms/{alarm_id}/ack", {"by": "王工"})
    assert status == 200 and body["result"] == "done"
    events = subscriber.wait_events(lambda ev: _of(ev, alarm_id, "acknowledged"))
    assert [(e["seq"], e["acked_by"]) for e in _of(events, alarm_id, "acknowledged")] == [
        (2, "王工")]


def test_operator_ack_is_published_and_recorded_with_its_deliveries(daemon, subscriber, fire):
    alarm_id = fire["alarm_id"]
    status, body = call(daemon, "POST", f"/api/alarms/{alarm_id}/ack",
                        {"by": " 王工 ", "note": "已到现场"})
    assert status == 200 and body["result"] == "done"
    assert body["alarm"]["acknowledged"] is True and body["alarm"]["acked_by"] == "王工"

    # the command center is told, in the contract's shape (the subscriber validates it)
    events = subscriber.wait_events(lambda ev: _of(ev, alarm_id, "acknowledged"))
    (acked,) = _of(events, alarm_id, "acknowledged")
    assert acked["acked_by"] == "王工" and acked["seq"] == 2 and acked["active"] is True

    status, body = call(daemon, "POST", f"/api/alarms/{alarm_id}/ack", {"by": "张三"})
    assert status == 200 and body["result"] == "already"
    assert body["alarm"]["acked_by"] == "王工"

    status, body = call(daemon, "GET", f"/api/alarms/{alarm_id}")
    assert status == 200
    assert body["alarm"]["event"] == "acknowledged" and body["alarm"]["acked_by"] == "王工"
    assert [(c["seq"], c["event"]) for c in body["changes"]] == [
        (1, "raised"), (2, "acknowledged")]
    # who was told of the raise, and why: the 厂中厂 fire policy tells all of building A
    told = {d["subscriber"]: d["reason"] for d in body["deliveries"] if d["seq"] == 1}
    assert told["uplink"] == "command-center contract"
    assert told["landlord"] == "landlord: fire policy"
    assert {s for s, r in told.items() if r.startswith("tenant")} == {
        "huaxin", "yongsheng", "ruifeng"}
    assert "jiali" not in told  # building B's tenant
    assert all(d["target"] in ("uplink", "app") for d in body["deliveries"])
    assert any(d["seq"] == 2 for d in body["deliveries"])


def test_reset_of_an_acknowledged_fire_alarm_clears_and_closes_it(daemon, subscriber, device,
                                                                   fire):
    alarm_id = fire["alarm_id"]
    assert call(daemon, "POST", f"/api/alarms/{alarm_id}/ack", {"by": "王工"})[0] == 200
    status, body = call(daemon, "POST", f"/api/alarms/{alarm_id}/reset",
                        {"by": "张三", "note": "按钮损坏，已人工复位"})
    assert status == 200 and body["result"] == "done"
    assert body["alarm"]["event"] == "closed" and body["alarm"]["active"] is False

    events = subscriber.wait_events(lambda ev: _of(ev, alarm_id, "closed"))
    assert [e["event"] for e in _of(events, alarm_id)] == [
        "raised", "acknowledged", "cleared", "closed"]
    assert call(daemon, "GET", "/api/alarms")[1]["alarms"] == []
    status, body = call(daemon, "GET", "/api/alarms?all=1")
    assert [(a["alarm_id"], a["event"]) for a in body["alarms"]] == [(alarm_id, "closed")]

    # the button's latch was reset too: the next press is a new alarm
    device.send("A-3F-FB1", {"event": "press"})
    events = subscriber.wait_events(
        lambda ev: len([e for e in ev if e["event"] == "raised"]) == 2)
    assert len({e["alarm_id"] for e in events if e["event"] == "raised"}) == 2


def test_reset_of_an_unacknowledged_fire_alarm_leaves_it_open(daemon, subscriber, fire):
    alarm_id = fire["alarm_id"]
    status, body = call(daemon, "POST", f"/api/alarms/{alarm_id}/reset", {"by": "district-duty"})
    assert status == 200 and body["result"] == "done"
    events = subscriber.wait_events(lambda ev: _of(ev, alarm_id, "cleared"))
    assert not _of(events, alarm_id, "closed")
    (listed,) = call(daemon, "GET", "/api/alarms")[1]["alarms"]
    assert (listed["alarm_id"], listed["active"], listed["acknowledged"]) == (
        alarm_id, False, False)
    # a second reset has nothing to do
    status, body = call(daemon, "POST", f"/api/alarms/{alarm_id}/reset", {"by": "王工"})
    assert status == 200 and body["result"] == "already"


def test_reset_by_a_stranger_is_refused(daemon, fire):
    refused = daemon.alarms.refused.count
    status, body = call(daemon, "POST", f"/api/alarms/{fire['alarm_id']}/reset", {"by": "bob"})
    assert status == 403 and body["alarm"]["active"] is True
    assert daemon.alarms.refused.count == refused + 1


def test_only_fire_alarms_are_reset(daemon, subscriber, device):
    load = raise_alarm(subscriber, device, "A-2F-LC1", {"value": 10_250})
    status, body = call(daemon, "POST", f"/api/alarms/{load['alarm_id']}/reset", {"by": "王工"})
    assert status == 409 and body["result"] == "not_resettable"
    assert body["alarm"]["active"] is True and body["alarm"]["seq"] == 1
    # the refused reset published nothing: an acknowledgement after it is the next change
    assert call(daemon, "POST", f"/api/alarms/{load['alarm_id']}/ack", {"by": "王工"})[0] == 200
    events = subscriber.wait_events(lambda ev: _of(ev, load["alarm_id"], "acknowledged"))
    assert [(e["event"], e["seq"]) for e in _of(events, load["alarm_id"])] == [
        ("raised", 1), ("acknowledged", 2)]


def test_unknown_alarms_and_paths_are_404(daemon, fire):
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    assert call(daemon, "GET", f"/api/alarms/{missing}")[0] == 404
    for verb in ("ack", "reset"):
        status, body = call(daemon, "POST", f"/api/alarms/{missing}/{verb}", {"by": "王工"})
        assert status == 404 and body["result"] == "unknown" and body["alarm"] is None
    assert call(daemon, "GET", "/api/nothing")[0] == 404
    assert call(daemon, "POST", "/api/alarms", {"by": "王工"})[0] == 404
    assert call(daemon, "GET", f"/api/alarms/{fire['alarm_id']}")[0] == 200


def test_bad_command_bodies_are_400_and_counted(daemon, fire):
    alarm_id = fire["alarm_id"]
    for body in (b"{not json", b"[1, 2]", b'{"note": "no by"}', b'{"by": "  "}',
                 b'{"by": "\\u738b\\u5de5", "note": 5}', b"\xff\xfe"):
        before = daemon.api.refused.count
        status, answer = call(daemon, "POST", f"/api/alarms/{alarm_id}/ack", body)
        assert (status, bool(answer["error"])) == (400, True), body
        assert daemon.api.refused.count == before + 1, body
    assert call(daemon, "GET", f"/api/alarms/{alarm_id}")[1]["alarm"]["acknowledged"] is False


def test_suppressions_view_answers(daemon, fire):
    status, body = call(daemon, "GET", "/api/suppressions")
    assert status == 200 and body == {"suppressions": []}


# --- the MQTT ack command ---------------------------------------------------------------


def _ack_command(device: Any, payload: Any) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    device.publish(ACK_TOPIC, data).wait_for_publish(5)


def test_mqtt_ack_by_a_stranger_is_refused_then_an_operator_acks(daemon, subscriber, device,
                                                                  fire):
    alarm_id = fire["alarm_id"]
    refused = daemon.alarms.refused.count
    _ack_command(device, {"alarm_id": alarm_id, "by": "mallory"})
    wait_until(lambda: daemon.alarms.refused.count == refused + 1, what="mallory refused")

    _ack_command(device, {"alarm_id": alarm_id, "by": "张三", "note": "收到"})
    events = subscriber.wait_events(lambda ev: _of(ev, alarm_id, "acknowledged"))
    (acked,) = _of(events, alarm_id, "acknowledged")
    # the alarm's next change after its raise: nothing was published for mallory's command
    assert acked["acked_by"] == "张三" and acked["acknowledged"] is True and acked["seq"] == 2
    assert daemon.alarms.refused.count == refused + 1
    assert call(daemon, "GET", "/api/status")[1]["alarms"]["active_acknowledged"] == 1


def test_malformed_mqtt_ack_commands_are_counted_and_harmless(daemon, subscriber, device, fire):
    alarm_id = fire["alarm_id"]
    refused = daemon.alarms.refused.count
    bad = [b"not json", b"", b"[1]", b'"a string"', {"alarm_id": alarm_id},
           {"by": "王工"}, {"alarm_id": 42, "by": "王工"}, {"alarm_id": alarm_id, "by": ["王工"]},
           {"alarm_id": alarm_id, "by": "王工", "note": {"x": 1}}]
    for payload in bad:
        _ack_command(device, payload)
    wait_until(lambda: daemon.alarms.refused.count == refused + len(bad),
               what="every malformed command counted")
    assert daemon.pipeline.errors == 0

    # the daemon still works: a good command after them acknowledges, as the alarm's next
    # change (none of the malformed ones published anything)
    _ack_command(device, {"alarm_id": alarm_id, "by": "王工"})
    events = subscriber.wait_events(lambda ev: _of(ev, alarm_id, "acknowledged"))
    assert [(e["seq"], e["acked_by"]) for e in _of(events, alarm_id, "acknowledged")] == [
        (2, "王工")]


def test_silences_view_lists_what_is_configured_and_in_force(daemon):
    status, body = call(daemon, "GET", "/api/silences")
    assert status == 200 and body == {"silences": [], "drills": [], "mutes": []}
    assert call(daemon, "GET", "/api/silences", token="wrong")[0] == 401


def test_ack_note_and_reset_reason_are_kept(daemon, subscriber, fire):
    alarm_id = fire["alarm_id"]
    assert call(daemon, "POST", f"/api/alarms/{alarm_id}/ack",
                {"by": "王工", "note": "on my way"})[0] == 200
    assert call(daemon, "POST", f"/api/alarms/{alarm_id}/reset",
                {"by": "张三", "note": "button broken, checked on site"})[0] == 200
    status, body = call(daemon, "GET", f"/api/alarms/{alarm_id}")
    assert status == 200
    assert body["details"]["ack_note"] == "on my way"
    assert (body["details"]["reset_by"], body["details"]["reset_note"]) == (
        "张三", "button broken, checked on site")
    assert "landlord" in body["details"]["told"]


def test_a_negative_content_length_is_refused_at_once(daemon, fire):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", daemon.api.port, timeout=3)
    try:
        conn.putrequest("POST", f"/api/alarms/{fire['alarm_id']}/ack")
        conn.putheader("Authorization", f"Bearer {state_token(daemon.state_dir)}")
        conn.putheader("Content-Length", "-1")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 400
        resp.read()
    finally:
        conn.close()
    _, body = call(daemon, "GET", "/api/alarms")
    assert [a["acknowledged"] for a in body["alarms"] if a["alarm_id"] == fire["alarm_id"]] == [
        False]


def test_a_refused_request_does_not_spoil_the_next_one_on_the_connection(daemon, fire):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", daemon.api.port, timeout=3)
    try:
        conn.request("POST", f"/api/alarms/{fire['alarm_id']}/ack",
                     body=json.dumps({"by": "王工"}), headers={"Authorization": "Bearer no"})
        resp = conn.getresponse()
        assert resp.status == 401
        resp.read()
        # the server closed the connection instead of reading the body as the next request
        conn.request("GET", "/api/alarms",
                     headers={"Authorization": f"Bearer {state_token(daemon.state_dir)}"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["alarms"][0]["alarm_id"] == fire["alarm_id"]
    finally:
        conn.close()
