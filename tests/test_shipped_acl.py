"""The gateway's Mosquitto exactly as shipped (examples/mosquitto/parkwatch.conf and
parkwatch.acl; only the port, the password file and persistence rewritten, see
parkwatch.devtools.shippedbroker) against the roles it promises: no anonymous client; a device
publishes only its own uplink, so it can neither acknowledge nor reset another device's fire
button; the network server publishes for every device and nothing else; the daemon does its
work; only an operator commands; the command-center bridge needs no line of its own.

A refused publish is answered with MQTT 5 PUBACK reason code 135 (not authorised); Mosquitto
2.0.11 then closes that client's connection (max_queued_messages 0), so every publish here goes
on a connection of its own."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from conftest import EXAMPLE, http_json, lora_park, wait_until, write_yaml
from parkwatch.commandsig import public_text, sign
from parkwatch.config.exposure import exposure_warnings
from parkwatch.daemon.httpapi import state_token
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.devtools.shippedbroker import ShippedMosquitto
from parkwatch.firmware_sim.devices import bench_logins, login_overrides
from parkwatch.schema import load_config

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_passwd") is None,
                                reason="needs mosquitto_passwd (Debian's mosquitto package)")

PARK = "xinqiao"
ACK = f"parkwatch/v1/{PARK}/commands/ack"
NOT_AUTHORISED = 135
BUTTON, OTHER = "A-3F-FB1", "A-1F-FB1"  # two wireless fire buttons of the example park


@pytest.fixture
def logins() -> dict[str, str]:
    out = bench_logins(load_config(EXAMPLE))  # parkwatch, operator, every MQTT device
    out.update({"network-server": "ns-pw", "park-app": "app-pw"})
    return out


@pytest.fixture
def gateway(logins: dict[str, str], tmp_path: Path) -> Iterator[ShippedMosquitto]:
    b = ShippedMosquitto(logins, workdir=tmp_path / "broker", log_all=True).start()
    yield b
    b.close()


class Client:
    """An MQTT 5 client logged in as `user` (None: anonymous): records what it receives and the
    reason code of each PUBACK."""

    def __init__(self, broker: LocalMosquitto, user: str | None, password: str | None = None,
                 topics: tuple[str, ...] = ()) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.acks: dict[int, int] = {}
        self.connack: int | None = None
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c
        wait_until(lambda: self.connack is not None, what="CONNACK")
        if topics and self.connack == 0:
            c.subscribe([(t, 1) for t in topics])
            assert subscribed.wait(5), "subscription not acknowledged"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connack = rc.value

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self.lock:
            self.acks[mid] = rc.value

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))

    def publish(self, topic: str, payload: Any) -> int:
        """Publish QoS 1; the PUBACK's reason code (0 or 16 accepted, 135 refused)."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        mid = self.client.publish(topic, data, qos=1).mid
        wait_until(lambda: mid in self.acks, what=f"PUBACK of {topic}")
        return self.acks[mid]

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/events")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_as(broker: LocalMosquitto, logins: dict[str, str], user: str, topic: str,
               payload: Any = b"{}") -> int:
    """One publish on a connection of its own (a refused one costs the connection)."""
    c = Client(broker, user, logins[user])
    assert c.connack == 0, f"{user} could not log in: {c.connack}"
    try:
        return c.publish(topic, payload)
    finally:
        c.close()


def accepted(rc: int) -> bool:
    return rc < 0x80  # 0 success, 16 no matching subscribers


# --- logins -----------------------------------------------------------------------------------


@pytest.mark.parametrize("user, password", [(None, None), ("operator", "wrong"),
                                            ("intruder", "anything")])
def test_no_login_no_connection(gateway: ShippedMosquitto, user: str | None,
                                password: str | None) -> None:
    c = Client(gateway, user, password)
    try:
        assert c.connack == NOT_AUTHORISED or c.connack == 134  # 134: bad user name or password
    finally:
        c.close()


# --- who may publish what ---------------------------------------------------------------------

#: (user, topic, accepted?) on the shipped ACL
RIGHTS = [
    (OTHER, f"devices/{OTHER}/up", True),
    (OTHER, f"devices/{BUTTON}/up", False),         # another device's uplink (a fake reset)
    (OTHER, ACK, False),                             # a command
    (OTHER, f"parkwatch/v1/{PARK}/events", False),  # a fake alarm event
    ("network-server", f"devices/{BUTTON}/up", True),
    ("network-server", f"devices/{OTHER}/up", True),
    ("network-server", ACK, False),
    ("parkwatch", f"parkwatch/v1/{PARK}/events", True),
    ("parkwatch", f"parkwatch/v1/{PARK}/alarms/01TEST", True),
    ("parkwatch", f"parkwatch/v1/{PARK}/gateway", True),
    ("parkwatch", f"notify/{PARK}/landlord", True),
    ("parkwatch", ACK, False),                       # the daemon commands nothing
    ("parkwatch", f"devices/{BUTTON}/up", False),
    ("parkwatch", "devices/A-SND-W1/set", True),    # a wireless sounder's command
    ("parkwatch", "devices/A-SND-W1/state", False),  # but not its state report
    (OTHER, "devices/A-SND-W1/set", False),          # no device commands a sounder
    (OTHER, f"devices/{OTHER}/state", True),          # a device reports its own state
    (OTHER, f"devices/{BUTTON}/state", False),
    ("operator", ACK, True),
    ("operator", f"parkwatch/v1/{PARK}/events", False),
    ("operator", f"devices/{BUTTON}/up", False),
    ("center", ACK, True),                           # a command center acknowledges
    ("center", f"parkwatch/v1/{PARK}/commands/reset", False),  # and commands nothing else
    ("center", f"parkwatch/v1/{PARK}/events", False),
    ("center", f"parkwatch/v1/{PARK}/gateway", False),
    ("center", f"devices/{BUTTON}/up", False),
    ("park-app", f"notify/{PARK}/landlord", False),  # it only reads
    ("park-app", ACK, False),
]


@pytest.mark.parametrize("user, topic, allowed", RIGHTS)
def test_each_role_publishes_only_what_the_acl_grants(gateway: ShippedMosquitto,
                                                      logins: dict[str, str], user: str,
                                                      topic: str, allowed: bool) -> None:
    rc = publish_as(gateway, logins, user, topic, b"" if topic.endswith("/01TEST") else b"{}")
    if allowed:
        assert accepted(rc), rc
    else:
        assert rc == NOT_AUTHORISED
        log = gateway.log_file.read_text(errors="replace")
        assert "Denied PUBLISH from " in log and f"'{topic}'" in log


# --- with the daemon --------------------------------------------------------------------------


@pytest.fixture
def daemon(gateway: ShippedMosquitto, logins: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """The example park's wireless part, logged in as `parkwatch`, as the example's commented
    credentials and the shipped conf's header say."""
    from parkwatch.daemon.app import Daemon

    path = write_yaml(lora_park(tmp_path, gateway.port), tmp_path / "park.yaml")
    cfg = load_config(path, login_overrides(load_config(path), logins, tmp_path))
    assert exposure_warnings(cfg) == []  # what check-config says of a park set up this way
    d = Daemon(cfg)
    d.start()
    try:
        wait_until(lambda: d.uplink.link.connected.is_set() and all(
            drv.link.connected.is_set() and drv.subscribed.is_set() for drv in d.drivers),
            10, "the daemon logged in and subscribed")
        yield d
    finally:
        d.stop()


@pytest.fixture
def operator(gateway: ShippedMosquitto, logins: dict[str, str]) -> Iterator[Client]:
    c = Client(gateway, "operator", logins["operator"],
               (f"parkwatch/v1/{PARK}/events", f"parkwatch/v1/{PARK}/alarms/#",
                f"parkwatch/v1/{PARK}/gateway"))
    assert c.connack == 0
    yield c
    c.close()


def raised(operator: Client, sensor: str) -> dict[str, Any]:
    wait_until(lambda: any(e["sensor_id"] == sensor and e["event"] == "raised"
                           for e in operator.events()), 10, f"{sensor}'s alarm")
    return next(e for e in operator.events() if e["sensor_id"] == sensor)


def test_a_device_can_neither_acknowledge_nor_reset_another_devices_fire_alarm(
        gateway: ShippedMosquitto, logins: dict[str, str], daemon: Any,
        operator: Client) -> None:
    assert accepted(publish_as(gateway, logins, BUTTON, f"devices/{BUTTON}/up",
                               {"event": "press"}))
    fire = raised(operator, BUTTON)

    # another button's login: its reset of this button and its ack are refused by the broker
    assert publish_as(gateway, logins, OTHER, f"devices/{BUTTON}/up",
                      {"event": "reset"}) == NOT_AUTHORISED
    assert publish_as(gateway, logins, OTHER, ACK,
                      {"alarm_id": fire["alarm_id"], "by": "王工"}) == NOT_AUTHORISED

    # the same login's own press after them: once the daemon has raised its alarm, it has
    # seen everything the broker let through before it, and the fire alarm is unchanged
    assert accepted(publish_as(gateway, logins, OTHER, f"devices/{OTHER}/up",
                               {"event": "press"}))
    raised(operator, OTHER)
    story = [e["event"] for e in operator.events() if e["alarm_id"] == fire["alarm_id"]]
    assert story == ["raised"]
    status, body = http_json(daemon.api.port, "GET", f"/api/alarms/{fire['alarm_id']}", None,
                             state_token(daemon.state_dir))
    assert status == 200 and body["alarm"]["active"] is True
    assert body["alarm"]["acknowledged"] is False
    log = gateway.log_file.read_text(errors="replace")
    assert f"'devices/{BUTTON}/up'" in log and f"'{ACK}'" in log


def test_the_daemon_does_its_work_and_an_operator_acknowledges(
        gateway: ShippedMosquitto, logins: dict[str, str], daemon: Any,
        operator: Client) -> None:
    app = Client(gateway, "park-app", logins["park-app"], ("notify/#",))
    try:
        # the network server forwards a press; the daemon reads it and publishes the contract
        assert accepted(publish_as(gateway, logins, "network-server", f"devices/{BUTTON}/up",
                                   {"event": "press"}))
        fire = raised(operator, BUTTON)
        wait_until(lambda: any(t == f"parkwatch/v1/{PARK}/alarms/{fire['alarm_id']}"
                               for t, _, _ in list(operator.messages)), what="the alarm state")
        wait_until(lambda: any(t.startswith(f"notify/{PARK}/") for t, _, _ in
                               list(app.messages)), what="the park app's notification")
        wait_until(lambda: any(t.endswith("/gateway") and b'"online"' in p
                               for t, p, _ in list(operator.messages)), what="the status")

        # an operator's login may command: the ack is obeyed
        assert accepted(operator.publish(ACK, {"alarm_id": fire["alarm_id"], "by": "王工"}))
        wait_until(lambda: any(e["alarm_id"] == fire["alarm_id"] and e["event"] ==
                               "acknowledged" for e in operator.events()), 10, "the ack")
        acked = next(e for e in operator.events() if e["event"] == "acknowledged")
        assert acked["acked_by"] == "王工"
    finally:
        app.close()


def test_with_signed_commands_only_the_operators_own_key_acknowledges(
        gateway: ShippedMosquitto, logins: dict[str, str], tmp_path: Path,
        operator: Client) -> None:
    """The operator login may publish commands, but under require_signed_commands the gateway
    obeys only a fresh command signed by the key of the operator it names, once; it counts
    each refusal by reason and records the verified signer."""
    from parkwatch.daemon.app import Daemon

    wang, zhang, mallory = (Ed25519PrivateKey.generate() for _ in range(3))
    path = write_yaml(lora_park(tmp_path, gateway.port), tmp_path / "park.yaml")
    overrides = login_overrides(load_config(path), logins, tmp_path)
    overrides[("alarms", "operators")] = [{"id": "王工", "public_key": public_text(wang)},
                                          {"id": "张三", "public_key": public_text(zhang)}]
    overrides[("alarms", "require_signed_commands")] = True
    d = Daemon(load_config(path, overrides))
    d.start()
    try:
        wait_until(lambda: d.uplink.link.connected.is_set() and all(
            drv.subscribed.is_set() for drv in d.drivers), 10, "logged in and subscribed")
        assert accepted(publish_as(gateway, logins, BUTTON, f"devices/{BUTTON}/up",
                                   {"event": "press"}))
        alarm_id = raised(operator, BUTTON)["alarm_id"]
        good = sign(zhang, "ack", PARK, alarm_id, "张三")
        refused = [{"alarm_id": alarm_id, "by": "王工"},                # unsigned
                   sign(mallory, "ack", PARK, alarm_id, "王工"),          # forged
                   sign(wang, "ack", PARK, alarm_id, "王工", now=time.time() - 3600)]  # stale
        for command in refused:
            assert accepted(operator.publish(ACK, command))  # the broker lets an operator
        wait_until(lambda: d.alarms.refused.count == 3, what="three refusals")
        assert operator.publish(ACK, good) < 0x80
        wait_until(lambda: any(e["event"] == "acknowledged" for e in operator.events()), 10,
                   "the signed ack")
        assert operator.publish(ACK, good) < 0x80  # the same bytes again: a replay
        wait_until(lambda: d.alarms.refused.count == 4, what="the replay refused")
        assert dict(d.alarms.refused.total) == {"unsigned": 1, "bad_signature": 1, "stale": 1,
                                                "replayed": 1}
        acked = [e for e in operator.events() if e["event"] == "acknowledged"]
        assert [(e["acked_by"], e["seq"]) for e in acked] == [("张三", 2)]
    finally:
        d.stop()


def test_a_center_reads_events_through_a_shared_subscription_and_acknowledges(
        gateway: ShippedMosquitto, logins: dict[str, str], daemon: Any,
        operator: Client, tmp_path: Path) -> None:
    """The `center` role (the demo's center): Mosquitto 2 checks a shared subscription's
    topic without its $share/<group>/ prefix, so `topic read parkwatch/v1/+/events` lets the
    events through $share/...; the center stores them, the alarm state and the status, and an
    ack from its console is obeyed by the gateway."""
    from center_web import Client as Browser
    from parkwatch.democenter import TICKET_USERS, DemoCenter

    shared = Client(gateway, "center", logins["center"],
                    (f"$share/demo/parkwatch/v1/{PARK}/events",))
    center = DemoCenter(tmp_path, gateway.port, logins["center"])
    center.start()
    try:
        assert center.service.ingest.subscribed.is_set()  # no subscription refused
        assert center.service.ingest.topics["events"].startswith("$share/")
        assert accepted(publish_as(gateway, logins, BUTTON, f"devices/{BUTTON}/up",
                                   {"event": "press"}))
        fire = raised(operator, BUTTON)
        wait_until(lambda: [e["alarm_id"] for e in shared.events()] == [fire["alarm_id"]],
                   10, "the event through the raw shared subscription")
        store = center.service.store
        wait_until(lambda: store.alarm(fire["alarm_id"]) is not None and any(
            g["park"] == PARK for g in store.gateways()), 10, "the center stored it")
        browser = Browser(center.service.web.port)  # type: ignore[union-attr]
        assert browser.login(center.user, center.password).status == 303
        page = browser.get(f"/alarms/{fire['alarm_id']}")
        assert browser.post(f"/alarms/{fire['alarm_id']}/ack",
                            {"csrf": page.csrf()}).status == 303
        wait_until(lambda: (store.alarm(fire["alarm_id"]) or {}).get("acked_by") ==
                   "district-duty", 10, "the gateway's acknowledged event, stored")
        # a mute from the console: the role may publish it and read the gateway's reply
        now = datetime.now().astimezone()
        mutes = browser.get("/mutes")
        assert browser.post("/mutes", {
            "csrf": mutes.csrf(), "park": PARK, "floors": "A/2F", "reason": "检修",
            "start": (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
            "end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}).status == 303
        wait_until(lambda: [c["state"] for c in store.mute_commands()] == ["done"], 10,
                   "the gateway's reply to the mute")
        # the demo's hazard-ticket users log in to their tickets
        for name, _role, _scope in TICKET_USERS:
            user = Browser(center.service.web.port)  # type: ignore[union-attr]
            assert user.login(name, center.password).status == 303
            assert user.get("/tickets").status == 200
    finally:
        center.stop()
        shared.close()


# --- the command-center bridge ----------------------------------------------------------------


def test_the_shipped_bridge_needs_no_login_or_acl_line_on_the_gateway(
        logins: dict[str, str], tmp_path: Path) -> None:
    """gateway-bridge.conf on the locked-down gateway broker: the park's events go out and the
    command center's acks come in, though the ACL names no bridge (Mosquitto applies no
    acl_file to a bridge)."""
    from parkwatch.daemon.app import Daemon
    from test_bridge import bridge_conf

    with contextlib.ExitStack() as stack:
        center = LocalMosquitto(workdir=tmp_path / "center").start()
        stack.callback(center.close)
        # persistence: the bridge conf turns it on, and its data belong in the work directory
        gw = ShippedMosquitto(logins, workdir=tmp_path / "gw", persistence=True,
                              extra_conf=bridge_conf(PARK, center.port)).start()
        stack.callback(gw.close)
        console = Client(center, None, topics=(f"parkwatch/v1/{PARK}/events",))
        stack.callback(console.close)
        path = write_yaml(lora_park(tmp_path, gw.port), tmp_path / "park.yaml")
        d = Daemon(load_config(path, login_overrides(load_config(path), logins, tmp_path)))
        d.start()
        stack.callback(d.stop)
        wait_until(lambda: all(drv.subscribed.is_set() for drv in d.drivers), 10, "driver")
        assert accepted(publish_as(gw, logins, BUTTON, f"devices/{BUTTON}/up",
                                   {"event": "press"}))
        fire = raised(console, BUTTON)  # out across the bridge
        console.publish(ACK, {"alarm_id": fire["alarm_id"], "by": "district-duty"})
        wait_until(lambda: any(e["event"] == "acknowledged" for e in console.events()), 15,
                   "the center's ack, in across the bridge and obeyed")
