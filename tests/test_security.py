"""Security against a real Mosquitto with TLS: CA verification, client certificates,
username/password, an ACL; the daemon's refusal to start without its CA file; no secret in the
logs, /metrics, the status API or the retained status; the HTTP API's token and loopback default.

The certificates are made with `openssl` and the password file with `mosquitto_passwd`, once per
module, in a temporary directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import REPO, Subscriber, http_json, lora_park, wait_until, write_yaml
from parkwatch.config.delivery import ApiConfig
from parkwatch.daemon.app import Daemon
from parkwatch.daemon.httpapi import state_token
from parkwatch.devtools.localbroker import LocalMosquitto, free_port
from parkwatch.schema import load_config

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None
                                or shutil.which("mosquitto_passwd") is None,
                                reason="needs openssl and mosquitto_passwd")

PY = [sys.executable, "-m", "parkwatch"]
PARK = "xinqiao"
GW_USER = "xinqiao-gw1"
ACK_TOPIC = f"parkwatch/v1/{PARK}/commands/ack"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

#: who may do what on the broker: the gateway only under its park, the network server only
#: device uplinks, the command center everything of every park, a snoop may only read
ACL = f"""
user {GW_USER}
topic write parkwatch/v1/{PARK}/#
topic read parkwatch/v1/{PARK}/commands/#
topic read devices/+/up
topic write notify/{PARK}/#

user netserver
topic write devices/#

user cc
topic read parkwatch/v1/#
topic write parkwatch/v1/+/commands/#

user snoop
topic read parkwatch/v1/#
"""


@dataclass
class Pki:
    dir: Path
    passwords: dict[str, str]

    def __getattr__(self, name: str) -> Path:  # pki.ca_crt, pki.client_key, ...
        stem, _, ext = name.rpartition("_")
        if ext not in ("crt", "key"):
            raise AttributeError(name)
        return self.dir / f"{stem}.{ext}"


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(d: Path, name: str) -> None:
    openssl(d, "req", "-x509", *EC, "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-days", "2", "-subj", f"/CN=parkwatch test {name}")


def make_cert(d: Path, ca: str, name: str, cn: str, ext: str) -> None:
    openssl(d, "req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    (d / f"{name}.ext").write_text(ext)
    openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other_ca")  # unrelated to the broker's certificate
    make_cert(d, "ca", "server", "127.0.0.1",
              "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    make_cert(d, "ca", "client", GW_USER, "extendedKeyUsage=clientAuth\n")
    passwords = {u: secrets.token_hex(16) for u in (GW_USER, "netserver", "cc", "snoop")}
    first = True
    for user, password in passwords.items():
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if first else []),
                        str(d / "passwd"), user, password], check=True, capture_output=True)
        first = False
    (d / "acl").write_text(ACL)
    return Pki(d, passwords)


@dataclass
class TlsBroker:
    mosquitto: LocalMosquitto
    port: int        # TLS, username/password
    mtls_port: int   # TLS, username/password and a client certificate signed by the CA


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    mtls_port = free_port()
    server = (f"cafile {pki.ca_crt}\ncertfile {pki.server_crt}\nkeyfile {pki.server_key}\n")
    conf = ("user root\n" if os.geteuid() == 0 else "")  # root: files in a 0700 tmp dir
    conf += (f"allow_anonymous false\npassword_file {pki.dir / 'passwd'}\n"
             f"acl_file {pki.dir / 'acl'}\n" + server + "require_certificate false\n"
             f"listener {mtls_port} 127.0.0.1\n" + server + "require_certificate true\n")
    b = LocalMosquitto(extra_conf=conf, workdir=tmp_path_factory.mktemp("tlsbroker")).start()
    yield TlsBroker(b, b.port, mtls_port)
    b.close()


def tls_client(pki: Pki, port: int, user: str, *, password: str | None = None,
               cert: bool = False) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set(user, pki.passwords[user] if password is None else password)
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    if cert:
        ctx.load_cert_chain(pki.client_crt, pki.client_key)
    # TLS 1.3 sends session tickets after the handshake; paho reads them in its thread while
    # the test publishes from its own, and OpenSSL's state is not safe for that (the connection
    # dropped now and then right after CONNACK). TLS 1.2 has no post-handshake messages.
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c.tls_set_context(ctx)
    return c


def connect(c: mqtt.Client, port: int) -> mqtt.Client:
    """Connects and waits for a successful CONNACK."""
    ok = threading.Event()
    c.on_connect = lambda _c, _u, _f, reason, _p: None if reason.is_failure else ok.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ok.wait(5), "the test client was not accepted"
    return c


class TlsSubscriber(Subscriber):
    """conftest's command-center subscriber, over TLS as user `cc` (or another)."""

    def __init__(self, pki: Pki, port: int, user: str = "cc",
                 topic: str = "parkwatch/v1/#") -> None:
        self.messages = []
        self.cond = threading.Condition()
        c = tls_client(pki, port, user)
        c.on_message = self._on_message
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        connect(c, port)
        c.subscribe(topic, qos=1)
        assert subscribed.wait(5), "subscription not acknowledged"
        self.client = c


@pytest.fixture
def cc(pki: Pki, tls_broker: TlsBroker) -> Iterator[TlsSubscriber]:
    s = TlsSubscriber(pki, tls_broker.port)
    yield s
    s.close()


@pytest.fixture
def netserver(pki: Pki, tls_broker: TlsBroker) -> Iterator[mqtt.Client]:
    c = connect(tls_client(pki, tls_broker.port, "netserver"), tls_broker.port)
    yield c
    c.disconnect()
    c.loop_stop()


def press(client: mqtt.Client, sensor: str) -> None:
    client.publish(f"devices/{sensor}/up", json.dumps({"event": "press"}),
                   qos=1).wait_for_publish(5)


def park_data(tmp_path: Path, pki: Pki, port: int, *, ca: Path | None = None,
              cert: bool = False, password: str | None = None) -> dict[str, Any]:
    """The example park's LoRa part on the TLS broker as the gateway's user; its password in a
    file. Client ids are unique per test: no persistent session carries over between tests."""
    data = lora_park(tmp_path, port)
    pw_file = tmp_path / "broker.pass"
    pw_file.write_text((pki.passwords[GW_USER] if password is None else password) + "\n")
    tls: dict[str, Any] = {"ca_file": str(ca or pki.ca_crt)}
    if cert:
        tls.update(cert_file=str(pki.client_crt), key_file=str(pki.client_key))
    data["brokers"]["local"].update(
        username=GW_USER, password_file=str(pw_file), tls=tls, reconnect_min_s=0.5,
        reconnect_max_s=1.0, client_id_prefix=f"pw-{secrets.token_hex(4)}")
    data["gateway"]["status_interval_s"] = 1
    return data


@pytest.fixture
def run_daemon(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def start(data: dict[str, Any], connected: bool = True) -> Daemon:
        d = Daemon(load_config(write_yaml(data, tmp_path / "park.yaml")))
        started.append(d)
        d.start()
        if connected:
            assert d.uplink.link.connected.wait(5), "the uplink did not connect over TLS"
            drivers = [drv for drv in d.drivers if hasattr(drv, "link")]
            wait_until(lambda: all(drv.subscribed.is_set() for drv in drivers),
                       what="the MQTT drivers to subscribe")
        return d

    yield start
    for d in started:
        d.stop()


def api(daemon: Daemon, method: str, path: str, body: Any = None,
        token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    return http_json(daemon.api.port, method, path, data,
                     None if token == "" else token or state_token(daemon.state_dir))


def raised(sub: Subscriber, sensor: str) -> dict[str, Any]:
    events = sub.wait_events(lambda ev: any(e["sensor_id"] == sensor and e["event"] == "raised"
                                            for e in ev))
    return next(e for e in events if e["sensor_id"] == sensor and e["event"] == "raised")


# --- TLS and credentials ------------------------------------------------------------------


@pytest.mark.parametrize("mutual", [False, True], ids=["ca+password", "ca+password+client-cert"])
def test_daemon_over_tls_delivers_a_fire_alarm(pki, tls_broker, cc, netserver, run_daemon,
                                               tmp_path, mutual):
    port = tls_broker.mtls_port if mutual else tls_broker.port
    d = run_daemon(park_data(tmp_path, pki, port, cert=mutual))
    press(netserver, "A-3F-FB1")
    event = raised(cc, "A-3F-FB1")
    assert event["severity"] == "critical" and event["park"] == PARK
    assert d.metrics.health()["status"] == "ok"


def test_the_client_cert_listener_refuses_a_client_without_one(pki, tls_broker, run_daemon,
                                                              tmp_path, caplog):
    caplog.set_level(logging.WARNING, "parkwatch.mqtt")
    d = run_daemon(park_data(tmp_path, pki, tls_broker.mtls_port), connected=False)
    # TLS 1.3 finishes the handshake before the broker checks the certificate, so paho sees
    # only a lost connection ("Unspecified error"): logged, but without the TLS alert's detail
    where = f"uplink broker 127.0.0.1:{tls_broker.mtls_port}"
    wait_until(lambda: any(r.getMessage().startswith(where) for r in list(caplog.records)), 10,
               "the refused connection logged")
    assert not d.uplink.link.connected.is_set()


def test_a_broker_signed_by_another_ca_is_refused_and_logged(pki, tls_broker, run_daemon,
                                                             tmp_path, caplog):
    caplog.set_level(logging.WARNING, "parkwatch.mqtt")
    d = run_daemon(park_data(tmp_path, pki, tls_broker.port, ca=pki.other_ca_crt),
                   connected=False)
    wait_until(lambda: any("cannot connect" in m and "CERTIFICATE_VERIFY_FAILED" in m
                           for m in (r.getMessage() for r in list(caplog.records))), 10,
               "the refused certificate logged")
    assert not d.uplink.link.connected.is_set()
    health = d.metrics.health()
    assert health["status"] != "ok"
    assert "uplink broker 'local' disconnected" in health["reasons"]


def test_a_wrong_password_is_refused_and_logged_as_not_authorised(pki, tls_broker, run_daemon,
                                                                  tmp_path, caplog):
    caplog.set_level(logging.WARNING, "parkwatch.mqtt")
    wrong = secrets.token_hex(16)
    d = run_daemon(park_data(tmp_path, pki, tls_broker.port, password=wrong), connected=False)
    wait_until(lambda: any("refused" in m and "authori" in m.lower()
                           for m in (r.getMessage() for r in list(caplog.records))), 10,
               "the refused login logged")
    assert not d.uplink.link.connected.is_set()
    assert wrong not in caplog.text and pki.passwords[GW_USER] not in caplog.text


# --- ACL ------------------------------------------------------------------------------------


def test_only_a_user_with_the_acl_right_can_acknowledge(pki, tls_broker, cc, netserver,
                                                        run_daemon, tmp_path):
    d = run_daemon(park_data(tmp_path, pki, tls_broker.port))
    press(netserver, "A-3F-FB1")
    alarm_id = raised(cc, "A-3F-FB1")["alarm_id"]
    command = json.dumps({"alarm_id": alarm_id, "by": "王工"})

    # the snoop may read the park but not command it; the broker drops its publication
    snoop = connect(tls_client(pki, tls_broker.port, "snoop"), tls_broker.port)
    try:
        with contextlib.suppress(RuntimeError):  # the broker may hang up after its PUBACK
            snoop.publish(ACK_TOPIC, command, qos=1).wait_for_publish(5)
    finally:
        snoop.disconnect()
        snoop.loop_stop()
    status, body = api(d, "GET", f"/api/alarms/{alarm_id}")
    assert status == 200 and body["alarm"]["acknowledged"] is False

    # the same command from the command center is obeyed (the command itself was right), and
    # is the alarm's next change: the snoop's had changed nothing
    cc.client.publish(ACK_TOPIC, command, qos=1).wait_for_publish(5)
    events = cc.wait_events(lambda ev: any(
        e["alarm_id"] == alarm_id and e["event"] == "acknowledged" for e in ev))
    assert [e["seq"] for e in events if e["event"] == "acknowledged"] == [2]


def test_the_gateway_user_cannot_publish_outside_its_park(pki, tls_broker, cc):
    # Mosquitto 2.0.11 with max_queued_messages 0 may close the connection of a client whose
    # publish the ACL denied, so the forged publish goes alone on its own connection, and a
    # probe on a second one shows the center would have seen it by then
    gw = connect(tls_client(pki, tls_broker.port, GW_USER), tls_broker.port)
    try:
        with contextlib.suppress(RuntimeError):  # the broker may hang up after its PUBACK
            gw.publish("parkwatch/v1/otherpark/events", b'{"forged": true}', qos=1
                       ).wait_for_publish(5)
    finally:
        gw.disconnect()
        gw.loop_stop()
    gw = connect(tls_client(pki, tls_broker.port, GW_USER), tls_broker.port)
    try:
        gw.publish(f"parkwatch/v1/{PARK}/probe", b"ok", qos=1).wait_for_publish(5)
    finally:
        gw.disconnect()
        gw.loop_stop()
    wait_until(lambda: any(t.endswith("/probe") for t, _, _ in cc.messages), what="the probe")
    assert not [t for t, _, _ in cc.messages if "/otherpark/" in t]


# --- refusing to start without the CA file ----------------------------------------------------


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_missing_ca_file_is_a_config_error_naming_file_line_and_key(pki, tmp_path, command):
    missing = tmp_path / "no-such-ca.pem"
    cfg = write_yaml(park_data(tmp_path, pki, 8883, ca=missing), tmp_path / "park.yaml")
    argv = [*PY, command, str(cfg)] if command == "check-config" else [
        *PY, "run", "--config", str(cfg)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    line = next(i for i, text in enumerate(cfg.read_text().splitlines(), 1)
                if text.strip().startswith("ca_file:"))
    assert re.search(rf"park\.yaml:{line}\b.*brokers\.local\.tls\.ca_file.*{missing.name}",
                     out), out


# --- the HTTP API ------------------------------------------------------------------------------


def test_api_listens_on_loopback_by_default_and_every_post_needs_the_token(
        pki, tls_broker, cc, netserver, run_daemon, tmp_path):
    assert ApiConfig().listen == "127.0.0.1"
    data = park_data(tmp_path, pki, tls_broker.port)
    del data["api"]["listen"]  # the default
    d = run_daemon(data)
    assert d.api.server_address[0] == "127.0.0.1"
    press(netserver, "A-3F-FB1")
    alarm_id = raised(cc, "A-3F-FB1")["alarm_id"]
    for action in ("ack", "reset"):
        for token in ("", "wrong-token", state_token(d.state_dir)[:-1]):
            status, _ = api(d, "POST", f"/api/alarms/{alarm_id}/{action}", {"by": "王工"},
                            token=token)
            assert status == 401, (action, token)
    status, body = api(d, "GET", f"/api/alarms/{alarm_id}")
    assert body["alarm"]["acknowledged"] is False and body["alarm"]["active"] is True
    assert [c["event"] for c in body["changes"]] == ["raised"]


# --- secrets never shown ----------------------------------------------------------------------


def test_no_secret_in_logs_metrics_status_or_retained_status(pki, tls_broker, cc, netserver,
                                                             tmp_path):
    wrong = "wrongpw-" + secrets.token_hex(12)
    token = "apitoken-" + secrets.token_hex(16)
    hook_secret = "hooksecret-" + secrets.token_hex(16)
    data = park_data(tmp_path, pki, tls_broker.port)
    # a second broker entry: the same broker with a wrong password, for one more LoRa driver
    bad_pw = tmp_path / "bad.pass"
    bad_pw.write_text(wrong + "\n")
    data["brokers"]["bad"] = {**data["brokers"]["local"], "password_file": str(bad_pw),
                              "client_id_prefix": f"pw-bad-{secrets.token_hex(3)}"}
    lora = next(drv for drv in data["drivers"] if drv["id"] == "lora")
    data["drivers"].append({**lora, "id": "lora-bad", "broker": "bad"})
    next(s for s in data["sensors"] if s["id"] == "B-3F-LC1")["driver"] = "lora-bad"
    (tmp_path / "api.token").write_text(token + "\n")
    data["api"]["secret_file"] = str(tmp_path / "api.token")
    (tmp_path / "hook.secret").write_text(hook_secret + "\n")
    data["alarms"]["targets"]["hook"] = {
        "type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook",
        "secret_file": str(tmp_path / "hook.secret"), "timeout_s": 1,
        "retry": {"initial_s": 0.2, "max_s": 1}}
    data["alarms"]["subscribers"].append({"id": "hook-sub", "party": "any", "target": "hook"})
    cfg = write_yaml(data, tmp_path / "park.yaml")
    values = [pki.passwords[GW_USER], wrong, token, hook_secret]

    proc = subprocess.Popen([*PY, "run", "--config", str(cfg), "--log-level", "DEBUG"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_until(lambda: any("HTTP API on" in line for line in lines), 15, "the HTTP API")
        port = int(re.search(r"HTTP API on http://[^:]+:(\d+)/",
                             next(x for x in lines if "HTTP API on" in x)).group(1))  # type: ignore[union-attr]
        wait_until(lambda: any(t.endswith("/gateway") for t, _, _ in cc.messages), 10,
                   "the retained status")
        wait_until(lambda: any("lora-bad" in x or "refused" in x for x in lines), 10,
                   "the refused login")
        wait_until(lambda: any("driver lora: subscribed to" in x for x in lines), 10,
                   "the broker to acknowledge the lora driver's subscription")
        press(netserver, "A-3F-FB1")
        raised(cc, "A-3F-FB1")

        def get(path: str, auth: bool) -> str:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={
                "Authorization": f"Bearer {token}"} if auth else {})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.read().decode()
            except HTTPError as exc:  # /healthz is 503 here: one driver cannot log in
                with exc:
                    return exc.read().decode()

        metrics, status, health = get("/metrics", False), get("/api/status", True), get(
            "/healthz", False)
        assert json.loads(status)["open_alarms"] >= 1
        wait_until(lambda: any("target hook failing" in x for x in lines), 10,
                   "a failed webhook attempt logged")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        reader.join(5)
    log = "".join(lines)
    retained = [p.decode() for t, p, _ in cc.messages if t.endswith("/gateway")]
    assert "refused" in log and "Traceback" not in log, log[-3000:]
    for name, text in [("log", log), ("metrics", metrics), ("status", status),
                       ("healthz", health), ("retained status", "\n".join(retained))]:
        for value in values:
            assert value not in text, f"a secret appears in the {name}"
