"""The command center's console over HTTP (no browser): login, sessions, roles, CSRF, the
language switch, acknowledging through the broker, /healthz and /metrics, and the
`parkwatch center-user add` command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from center_web import PASSWORDS, Client, console  # noqa: F401  (console: the fixture)
from conftest import REPO, wait_until
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.service import CenterService
from parkwatch.center.store import open_store
from parkwatch.devtools.localbroker import LocalMosquitto
from test_center_ingest import PREFIX, Gateway, center_yaml, event


def port_of(center: CenterService) -> int:
    assert center.web is not None
    return center.web.port


def test_pages_need_a_login_and_a_wrong_password_is_refused(console: CenterService) -> None:
    c = Client(port_of(console))
    r = c.get("/")
    assert r.status == 303 and r.headers["location"] == "/login"
    page = c.get("/login")
    assert page.status == 200 and "登录" in page.body  # Chinese by default
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=lax" in \
        page.headers["set-cookie"]
    r = c.login("王工", "not-the-password")
    assert r.status == 401 and "用户名或密码不对" in r.body
    assert c.get("/").status == 303  # still not logged in
    r = c.login("nobody", "whatever-it-is")
    assert r.status == 401
    r = c.login("王工")
    assert r.status == 303 and r.headers["location"] == "/"
    board = c.get("/")
    assert board.status == 200 and "王工" in board.body and "未关闭的报警" in board.body


def test_a_forged_or_missing_csrf_token_is_refused(console: CenterService) -> None:
    c = Client(port_of(console))
    c.get("/login")
    r = c.post("/login", {"user": "王工", "password": PASSWORDS["王工"]})  # no token
    assert r.status == 403 and "CSRF" in r.body and "操作未执行" in r.body
    assert c.login("王工").status == 303
    board = c.get("/")
    r = c.post("/logout", {"csrf": "forged"})
    assert r.status == 403
    assert c.get("/").status == 200  # still logged in: the forged logout did nothing
    r = c.post("/logout", {"csrf": board.csrf()})
    assert r.status == 303 and c.get("/").status == 303
    other = Client(port_of(console))  # a cookie from elsewhere: a forged session
    other.cookies["parkwatch_center"] = "eyJ1Ijoi546L5belIn0.AAAA"
    assert other.get("/").status == 303


def test_english_is_selectable(console: CenterService) -> None:
    c = Client(port_of(console))
    assert c.login("viewer").status == 303
    board = c.get("/")
    r = c.post("/language", {"csrf": board.csrf(), "lang": "en", "next": "/"})
    assert r.status == 303
    again = c.get("/")
    assert "Open alarms" in again.body and "Log out" in again.body
    assert '<html lang="en">' in again.body


def _ack_listener(broker: LocalMosquitto, got: list[dict[str, object]]) -> mqtt.Client:
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-acks")
    sub.on_message = lambda _c, _u, m: got.append({"topic": m.topic, **json.loads(m.payload)})
    sub.connect(broker.host, broker.port)
    sub.subscribe(f"{PREFIX}/+/commands/ack", qos=1)
    sub.loop_start()
    return sub


def test_a_viewer_cannot_acknowledge_and_an_operators_ack_waits_for_the_gateway(
        console: CenterService, broker: LocalMosquitto) -> None:
    gw = Gateway(broker, "xinqiao")
    acks: list[dict[str, object]] = []
    sub = _ack_listener(broker, acks)
    try:
        a = new_alarm_id(time.time())
        gw.publish(event("xinqiao", a, 1))
        wait_until(lambda: console.store.alarm(a) is not None, 10, "the alarm stored")
        viewer = Client(port_of(console))
        viewer.login("viewer")
        page = viewer.get(f"/alarms/{a}")
        assert page.status == 200 and 'id="ack"' not in page.body  # no button for a viewer
        r = viewer.post(f"/alarms/{a}/ack", {"csrf": page.csrf()})
        assert r.status == 403 and "只有值班员" in r.body
        op = Client(port_of(console))
        op.login("王工")
        page = op.get(f"/alarms/{a}")
        assert 'id="ack"' in page.body and "未确认" in page.body
        assert op.post(f"/alarms/{a}/ack", {"note": "x"}).status == 403  # no token
        r = op.post(f"/alarms/{a}/ack", {"csrf": page.csrf(), "note": "已到现场"})
        assert r.status == 303 and r.headers["location"] == f"/alarms/{a}?sent=1"
        wait_until(lambda: len(acks) == 1, 10, "the ack command on the broker")
        assert acks == [{"topic": f"{PREFIX}/xinqiao/commands/ack", "alarm_id": a,
                         "by": "王工", "note": "已到现场"}]
        (cmd,) = console.store.commands(a)
        assert (cmd["author"], cmd["command"], cmd["note"]) == ("王工", "ack", "已到现场")
        page = op.get(f"/alarms/{a}?sent=1")
        assert 'id="acked"' not in page.body and 'id="ack-sent"' in page.body  # not yet
        gw.publish(event("xinqiao", a, 2, "acknowledged", acked_by="王工",
                         acked_at="2026-12-05T10:00:02.000Z"))
        wait_until(lambda: 'id="acked"' in op.get(f"/alarms/{a}").body, 10,
                   "acknowledged once the gateway's event came back")
    finally:
        sub.disconnect()
        sub.loop_stop()
        gw.close()


def test_healthz_and_metrics_need_no_login(console: CenterService,
                                           broker: LocalMosquitto) -> None:
    gw = Gateway(broker, "nanhu")
    try:
        gw.publish(event("nanhu", new_alarm_id(time.time()), 1))
        gw.publish(b"{broken")
        wait_until(lambda: console.ingest.figures.stored == 1, 10, "one event stored")
        c = Client(port_of(console))
        r = c.get("/healthz")
        body = json.loads(r.body)
        assert r.status == 200 and body["status"] == "ok"
        assert body["database_up"] is True and body["broker_connected"] is True
        assert "lag_s" in body
        wait_until(lambda: "bad_json" in c.get("/metrics").body, 10, "the refusal counted")
        text = c.get("/metrics").body
        assert 'parkwatch_center_events_stored_total{park="nanhu"} 1.0' in text
        assert 'parkwatch_center_rejected_total{reason="bad_json"} 1.0' in text
        assert "parkwatch_center_database_up 1.0" in text
        assert "parkwatch_center_lag_seconds" in text
        broker.stop()
        wait_until(lambda: c.get("/healthz").status == 503, 15, "unhealthy without broker")
        assert json.loads(c.get("/healthz").body)["broker_connected"] is False
    finally:
        gw.client.loop_stop()


def test_center_user_add_takes_the_password_from_stdin(broker: LocalMosquitto,
                                                       tmp_path: Path) -> None:
    cfg = center_yaml(tmp_path / "center.yaml", broker, f"sqlite:///{tmp_path / 'c.db'}", "u")
    cmd = [sys.executable, "-m", "parkwatch", "center-user", "add", "李工", "--role",
           "operator", "--config", str(cfg)]
    done = subprocess.run(cmd, input="long-enough-pw\n", capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    again = subprocess.run(cmd, input="long-enough-pw\n", capture_output=True, text=True,
                           cwd=REPO, timeout=60)
    assert again.returncode == 1 and "已存在" in again.stderr
    short = subprocess.run([*cmd[:5], "赵工", *cmd[6:]], input="short\n", capture_output=True,
                           text=True, cwd=REPO, timeout=60)
    assert short.returncode == 1 and "至少" in short.stderr
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        user = store.user("李工")
        assert user is not None and user["role"] == "operator"
        assert user["password_hash"].startswith("$argon2id$")
    finally:
        store.close()
    assert yaml.safe_load(cfg.read_text())["instance"] == "u"


def test_a_user_name_must_be_usable_as_the_gateways_operator_id(
        console: CenterService) -> None:
    from parkwatch.center.users import add_user

    problem = add_user(console.store, "王 工", "operator", "long-enough-pw")
    assert problem is not None and "不含空格" in problem
    assert add_user(console.store, "x", "admin", "long-enough-pw") is not None
    assert console.store.user("王 工") is None
