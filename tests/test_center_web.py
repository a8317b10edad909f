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

from center_web import (  # noqa: F401  (console, console_any: the fixtures)
    PASSWORDS,
    Client,
    console,
    console_any,
)
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


def test_the_live_stream_needs_a_login_and_browsers_that_never_read_do_not_slow_the_ingest(
        console: CenterService, broker: LocalMosquitto) -> None:
    import socket

    port = port_of(console)
    assert Client(port).get("/events").status == 401
    c = Client(port)
    c.login("viewer")
    cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    stuck = []
    for _ in range(20):  # browsers that open the stream and never read a byte of it
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
        stuck.append(s)
    gw = Gateway(broker, "xinqiao")
    try:
        wait_until(lambda: console.web is not None and console.web.console.hub.listeners >= 20,
                   10, "the streams registered")
        ids = [new_alarm_id(time.time()) for _ in range(300)]
        for a in ids:
            gw.publish(event("xinqiao", a, 1))
        wait_until(lambda: console.ingest.figures.stored == len(ids), 30,
                   "every event stored while 20 streams are not read")
        # and a browser that reads gets the board as it is now
        live = socket.create_connection(("127.0.0.1", port), timeout=10)
        live.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
        got = b""
        deadline = time.monotonic() + 10
        while ids[-1].encode() not in got and time.monotonic() < deadline:
            got += live.recv(65536)
        live.close()
        assert ids[-1].encode() in got and b"text/event-stream" in got
    finally:
        gw.close()
        for s in stuck:
            s.close()


def test_the_session_key_is_generated_once_into_the_state_file(broker: LocalMosquitto,
                                                                tmp_path: Path) -> None:
    from parkwatch.center.config import load_center_config
    from parkwatch.center.web.session import session_key

    cfg = load_center_config(center_yaml(tmp_path / "center.yaml", broker,
                                         f"sqlite:///{tmp_path / 'c.db'}", "k"))
    key = session_key(cfg.http)
    assert len(key) >= 32 and session_key(cfg.http) == key
    assert (cfg.http.state_file.stat().st_mode & 0o777) == 0o600


def test_a_short_session_secret_is_a_config_error_with_its_line(broker: LocalMosquitto,
                                                                tmp_path: Path) -> None:
    import pytest

    from parkwatch.center.config import load_center_config
    from parkwatch.config import ConfigError

    path = center_yaml(tmp_path / "center.yaml", broker, f"sqlite:///{tmp_path / 'c.db'}", "k")
    doc = yaml.safe_load(path.read_text())
    (tmp_path / "key").write_text("short\n")
    doc["http"]["secret"] = {"secret_file": str(tmp_path / "key")}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_center_config(path)
    assert "http.secret.secret_file" in str(err.value) and "16" in str(err.value)


def test_a_console_port_in_use_stops_the_center_at_start(broker: LocalMosquitto,
                                                         tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        path = center_yaml(tmp_path / "center.yaml", broker,
                           f"sqlite:///{tmp_path / 'c.db'}", "p")
        doc = yaml.safe_load(path.read_text())
        doc["http"]["port"] = taken.getsockname()[1]
        path.write_text(yaml.safe_dump(doc))
        done = subprocess.run([sys.executable, "-m", "parkwatch", "center", "--config",
                               str(path)], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert done.returncode == 1
        assert f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}" in done.stderr
    finally:
        taken.close()


def test_the_park_view_shows_places_tenants_sensors_and_open_alarms(
        console_any: CenterService, broker: LocalMosquitto) -> None:
    console = console_any  # on SQLite and on PostgreSQL: the park's places are a new query
    gw = Gateway(broker, "xinqiao")
    try:
        gw.publish({"state": "online", "gateway": "xinqiao-gw1", "park": "xinqiao",
                    "sensors": 22}, topic=f"{PREFIX}/xinqiao/gateway", retain=True)
        fire, load, old = (new_alarm_id(time.time()) for _ in range(3))
        gw.publish(event("xinqiao", old, 1, building="B10", floor="2F", zone="Z1",
                         sensor_id="B10-LC1", sensor_kind="load_cell", rule="high_threshold",
                         severity="warning", tenants=["bolt"], message="荷载超限"))
        gw.publish(event("xinqiao", old, 2, "closed", building="B10", floor="2F", zone="Z1",
                         sensor_id="B10-LC1", sensor_kind="load_cell", rule="high_threshold",
                         severity="warning", tenants=["bolt"], message="荷载超限"))
        gw.publish(event("xinqiao", load, 1, building="B2", floor="1F", zone=None,
                         sensor_id="B2-LC1", sensor_kind="load_cell", rule="high_threshold",
                         severity="warning", tenants=["acme"], message="B2 荷载超限"))
        gw.publish(event("xinqiao", fire, 1, building="B2", floor="3F", zone="Z2",
                         sensor_id="B2-3F-FB1", tenants=["acme", "huaxin"],
                         message="B2 3F 火警按钮"))
        wait_until(lambda: len(console.store.open_alarms("xinqiao")) == 2
                   and console.store.alarm(old) is not None
                   and console.store.alarm(old)["last_event"] == "closed"  # type: ignore[index]
                   and console.store.gateways() != [], 10, "the alarms and the status stored")
        c = Client(port_of(console))
        assert c.get("/parks/xinqiao").status == 303  # a login first
        c.login("viewer")
        board = c.get("/")
        assert 'href="/parks/xinqiao"' in board.body  # each park links to its view
        page = c.get("/parks/xinqiao").body
        assert "园区视图" in page and "有过报警的位置和传感器" in page  # honest about the tree
        assert "xinqiao-gw1" in page and "22" in page
        # buildings sorted naturally (B2 before B10), floors within them, places with tenants
        assert page.index('data-building="B2"') < page.index('data-building="B10"')
        assert page.index('data-place="B2/1F/"') < page.index('data-place="B2/3F/Z2"')
        fire_place = page[page.index('data-place="B2/3F/Z2"'):page.index('data-building="B10"')]
        assert fire_place.startswith('data-place="B2/3F/Z2"') and "acme、huaxin" in fire_place
        assert f'href="/alarms/{fire}"' in fire_place and "火警" in fire_place
        assert '<div class="place fire"' in page  # the place with the fire is red
        # a sensor whose alarm has closed still shows, with its latest state; not as open
        closed_place = page[page.index('data-building="B10"'):]
        assert 'data-sensor="B10-LC1"' in closed_place and "已关闭" in closed_place
        assert "称重传感器" in closed_place and "load_cell" not in closed_place  # in Chinese
        assert "<li" not in closed_place and "bolt" in closed_place
        assert c.get("/parks/nowhere").status == 404
    finally:
        gw.close()
