"""Many parks, one command center: two parks' gateways, each with its own Mosquitto bridged to
one command-center Mosquitto by the shipped examples/many-parks configs.

The bridges use examples/many-parks/gateway-bridge.conf filled in as a field engineer does it
(park id, address, login) and the command-center broker uses the shipped ACL, so these tests
prove the examples, not a private copy of them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import REPO, VALIDATOR, Device, example_config, wait_until
from parkwatch.config.delivery import UPLINK
from parkwatch.devtools.localbroker import LocalMosquitto, free_port
from parkwatch.firmware_sim.devices import SimulatedPark
from parkwatch.mqttlink.link import set_nodelay

EXAMPLES = REPO / "examples" / "many-parks"
SECOND = "dongsha"  # the second park; the first is the example park, xinqiao
CONSOLE_USER = "command-center"
PASSWORDS = {"xinqiao": "pw-xinqiao", SECOND: "pw-dongsha", CONSOLE_USER: "pw-console"}
OPERATOR = "district-duty"  # one of the example park's alarms.operators


def password_line(user: str, password: str) -> str:
    """A Mosquitto 2 password-file line, as `mosquitto_passwd` writes it ($7$: PBKDF2-SHA512)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


def bridge_conf(park: str, port: int) -> str:
    """The shipped gateway bridge, filled in for `park`: its id, the center's address, the
    park's login (the TLS lines stay commented: the test brokers speak plain MQTT)."""
    text = (EXAMPLES / "gateway-bridge.conf").read_text(encoding="utf-8").replace("xinqiao", park)
    for pattern, line in ((r"^address .*$", f"address 127.0.0.1:{port}"),
                          (r"^#remote_username .*$", f"remote_username {park}"),
                          (r"^#remote_password .*$", f"remote_password {PASSWORDS[park]}")):
        text, n = re.subn(pattern, line, text, flags=re.M)
        assert n == 1, f"the example has no single line matching {pattern}"
    return text


def gateway_broker(park: str, center_port: int, workdir: Path) -> LocalMosquitto:
    return LocalMosquitto(workdir=workdir, persistence=True,
                          extra_conf=bridge_conf(park, center_port)).start()


class Wan:
    """A TCP relay standing in for a site's uplink to the center. `cut()` drops the connections
    through it and refuses new ones, as when the site's router loses its uplink (both ends see
    the connection go); `restore()` lets connections through again."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.restore()

    def restore(self) -> None:
        self._stop.clear()
        srv = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        srv.settimeout(0.05)
        self._spawn(self._accept, srv)

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name="wan-relay", daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept(self, srv: socket.socket) -> None:
        with srv:
            while not self._stop.is_set():
                try:
                    near, _ = srv.accept()
                except TimeoutError:
                    continue
                try:
                    far = socket.create_connection(self.target, timeout=1)
                except OSError:
                    near.close()
                    continue
                near.settimeout(None)
                far.settimeout(None)
                with self._lock:
                    self._open += [near, far]
                self._spawn(self._pump, near, far)
                self._spawn(self._pump, far, near)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):  # one side gone: the other goes too
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._stop.set()
        with self._lock:
            conns, self._open = self._open, []
            threads, self._threads = self._threads, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(2)
        for s in conns:
            s.close()

    close = cut


@pytest.fixture
def center(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """The command-center broker: persistent, logins required, the shipped per-park ACL and
    queue cap."""
    work = tmp_path / "center"
    work.mkdir()
    passwd = work / "passwd"
    passwd.write_text("".join(password_line(u, p) for u, p in PASSWORDS.items()))
    shipped = (EXAMPLES / "command-center.conf").read_text(encoding="utf-8")
    (queue_cap,) = re.findall(r"^max_queued_messages .*$", shipped, flags=re.M)
    c = LocalMosquitto(workdir=work, persistence=True, extra_conf=(
        f"allow_anonymous false\npassword_file {passwd}\n"
        f"acl_file {EXAMPLES / 'command-center.acl'}\n{queue_cap}\n")).start()
    yield c
    c.close()


@pytest.fixture
def broker(center: LocalMosquitto, tmp_path: Path) -> Iterator[LocalMosquitto]:
    """The example park's (xinqiao's) gateway broker, bridged to the center; conftest's
    `daemon`, `serial_devices` and `device` fixtures run the park on it unchanged."""
    b = gateway_broker("xinqiao", center.port, tmp_path)
    yield b
    b.close()


def wait_ready(d: Any) -> None:
    mqtt_drivers = [drv for drv in d.drivers if hasattr(drv, "link")]
    wait_until(lambda: d.uplink.link.connected.is_set()
               and all(drv.link.connected.is_set() and drv.subscribed.is_set()
                       for drv in mqtt_drivers), what=f"{d.cfg.park.id}'s daemon connected")


@pytest.fixture
def wan(center: LocalMosquitto) -> Iterator[Wan]:
    """The second park's uplink to the center."""
    w = Wan(center.port)
    yield w
    w.close()


@pytest.fixture
def second_park(center: LocalMosquitto, wan: Wan, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A second park (the example park under another id) whose gateway is bridged to the center
    through `wan`."""
    from parkwatch.daemon.app import Daemon

    work = tmp_path / SECOND
    with contextlib.ExitStack() as stack:
        gw = gateway_broker(SECOND, wan.port, work)
        stack.callback(gw.close)
        cfg = example_config(gw, work, {
            ("park", "id"): SECOND, ("park", "name"): "东沙工业园",
            ("gateway", "id"): f"{SECOND}-gw1",
            ("alarms", "targets", "app", "topic"): f"notify/{SECOND}/{{subscriber}}"})
        serial = SimulatedPark(cfg, mqtt=False)  # its RS-485 devices, as conftest's fixture
        serial.start()
        stack.callback(serial.stop)
        d = Daemon(cfg)
        d.start()
        stack.callback(d.stop)
        wait_ready(d)
        device = Device(gw)
        stack.callback(device.close)
        yield SimpleNamespace(broker=gw, daemon=d, device=device)


@pytest.fixture
def parks(broker: LocalMosquitto, daemon: Any, device: Device,
          second_park: SimpleNamespace) -> dict[str, SimpleNamespace]:
    return {"xinqiao": SimpleNamespace(broker=broker, daemon=daemon, device=device),
            SECOND: second_park}


class Console:
    """A command-center client on the central broker, logged in as the console user. By default
    a persistent session (clean session off, QoS 1): what is published while it or the broker
    is away is delivered when both are back."""

    TOPICS = ("parkwatch/v1/+/events", "parkwatch/v1/+/alarms/+", "parkwatch/v1/+/gateway",
              "$SYS/broker/connection/+/state")

    def __init__(self, center: LocalMosquitto, client_id: str = "console-1",
                 clean: bool = False, topics: tuple[str, ...] = TOPICS) -> None:
        self.topics = topics
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                        protocol=mqtt.MQTTv311)
        c.username_pw_set(CONSOLE_USER, PASSWORDS[CONSOLE_USER])
        c.reconnect_delay_set(1, 1)
        c.on_socket_open = lambda _c, _u, s: set_nodelay(s)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *_a: self.subscribed.set()
        c.on_message = self._on_message
        c.connect(center.host, center.port)
        c.loop_start()
        self.client = c
        assert self.subscribed.wait(5), "subscription not acknowledged"

    def _on_connect(self, c: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure and not flags.session_present:  # a kept session keeps its topics
            c.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((m.topic, m.payload, bool(m.retain)))
            self.cond.notify_all()

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.cond:
            return list(self.messages)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(park in the topic, event) for every event received, each checked on the schema."""
        out = []
        for topic, payload, _ in self.snapshot():
            parts = topic.split("/")
            if parts[:2] == ["parkwatch", "v1"] and parts[3:] == ["events"]:
                event = json.loads(payload)
                VALIDATOR.validate(event)
                out.append((parts[2], event))
        return out

    def last(self, topic: str) -> bytes | None:
        found = [p for t, p, _ in self.snapshot() if t == topic]
        return found[-1] if found else None

    def wait(self, pred: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := pred()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; received: "
                                     f"{[(t, p[:80]) for t, p, _ in self.snapshot()]}")
            with self.cond:
                self.cond.wait(min(remaining, 0.1))
        return result

    def raised(self, park: str, sensor_id: str) -> dict[str, Any] | None:
        found = [e for p, e in self.events()
                 if p == park and e["sensor_id"] == sensor_id and e["event"] == "raised"]
        return found[-1] if found else None

    def ack(self, park: str, alarm_id: str) -> None:
        self.client.publish(f"parkwatch/v1/{park}/commands/ack", json.dumps(
            {"alarm_id": alarm_id, "by": OPERATOR, "note": "指挥中心已派员"}).encode(),
            qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def online(console: Console, park: str) -> bool:
    """The park's gateway status says online and its bridge says the link is up."""
    status = console.last(f"parkwatch/v1/{park}/gateway")
    return (status is not None and json.loads(status)["state"] == "online"
            and console.last(f"$SYS/broker/connection/{park}/state") == b"1")


def press(parks: dict[str, SimpleNamespace], buttons: dict[str, str]) -> None:
    for park, sensor_id in buttons.items():
        parks[park].device.send(sensor_id, {"event": "press", "battery": 90})


def test_alarms_of_two_parks_reach_one_command_center_and_its_acks_come_back(center, parks):
    console = Console(center)
    try:
        for park in parks:
            console.wait(lambda p=park: online(console, p), f"{park} online at the center")
        wall = Console(center, client_id="wall", clean=True, topics=("parkwatch/v1/+/gateway",))
        try:  # both gateways' statuses are retained at the center for anyone who connects
            for park in parks:
                topic = f"parkwatch/v1/{park}/gateway"
                status = json.loads(wall.wait(lambda t=topic: wall.last(t), topic))
                assert (status["state"], status["park"]) == ("online", park)
                assert next(r for t, _, r in wall.snapshot() if t == topic)  # retained
        finally:
            wall.close()
        buttons = {"xinqiao": "A-3F-FB1", SECOND: "B-2F-FB1"}
        press(parks, buttons)
        raised = {park: console.wait(lambda p=park, s=sensor: console.raised(p, s),
                                     f"{park}'s fire alarm at the center")
                  for park, sensor in buttons.items()}
        for park, event in raised.items():
            # the contract is the same for every park: the park id in the topic and the event
            assert (event["park"], event["gateway"]) == (park, f"{park}-gw1")
            assert (event["rule"], event["severity"], event["seq"]) == ("button_latch",
                                                                        "critical", 1)
            console.wait(lambda p=park, e=event: console.last(
                f"parkwatch/v1/{p}/alarms/{e['alarm_id']}"), f"{park}'s alarm state")
            assert json.loads(console.last(f"parkwatch/v1/{park}/alarms/{event['alarm_id']}")
                              ) == event

        # the operator acknowledges the second park's alarm at the center: the command travels
        # down that park's bridge only, and the acknowledged event comes back up
        alarm_id = raised[SECOND]["alarm_id"]
        console.ack(SECOND, alarm_id)
        acked = console.wait(lambda: [e for p, e in console.events() if p == SECOND
                                      and e["alarm_id"] == alarm_id
                                      and e["event"] == "acknowledged"],
                             f"{SECOND}'s acknowledged event")[0]
        assert (acked["acked_by"], acked["seq"], acked["active"]) == (OPERATOR, 2, True)
        second = parks[SECOND].daemon
        assert second.call(second.status)["alarms"]["active_acknowledged"] == 1
        first = parks["xinqiao"].daemon
        assert first.call(first.status)["alarms"]["active_acknowledged"] == 0
    finally:
        console.close()


def test_one_park_cannot_write_or_read_another_parks_topics(center):
    """The shipped ACL: a park's login (what its bridge uses) reaches only its own subtree."""
    pubacks: dict[int, Any] = {}
    received: list[str] = []
    cond = threading.Condition()

    def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with cond:
            pubacks[mid] = rc
            cond.notify_all()

    def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with cond:
            received.append(m.topic)
            cond.notify_all()

    # MQTT 5, so that the broker says in its PUBACK whether it took a message
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="acl-probe", protocol=mqtt.MQTTv5)
    c.username_pw_set("xinqiao", PASSWORDS["xinqiao"])
    c.on_publish, c.on_message = on_publish, on_message
    connected, subscribed = threading.Event(), threading.Event()
    c.on_connect = lambda *_a: connected.set()
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(center.host, center.port)
    c.loop_start()
    console = Console(center)
    try:
        assert connected.wait(5)
        c.subscribe([(f"parkwatch/v1/{SECOND}/commands/#", 1),
                     ("parkwatch/v1/xinqiao/commands/#", 1)])
        assert subscribed.wait(5)
        refused = set()
        for topic in (f"parkwatch/v1/{SECOND}/events", f"parkwatch/v1/{SECOND}/gateway",
                      f"parkwatch/v1/{SECOND}/alarms/01JZZZZZZZZZZZZZZZZZZZZZZZ",
                      f"$SYS/broker/connection/{SECOND}/state",
                      "parkwatch/v1/xinqiao/events"):
            mid = c.publish(topic, b"{}", qos=1).mid
            with cond:
                assert cond.wait_for(lambda m=mid: m in pubacks, 5)
            if pubacks[mid].is_failure:
                refused.add(topic)
        assert refused == {f"parkwatch/v1/{SECOND}/events", f"parkwatch/v1/{SECOND}/gateway",
                           f"parkwatch/v1/{SECOND}/alarms/01JZZZZZZZZZZZZZZZZZZZZZZZ",
                           f"$SYS/broker/connection/{SECOND}/state"}  # its own: allowed

        # Mosquitto grants any subscription and applies read rights to each message: the
        # other park's command does not arrive, its own (sent after it) does
        console.ack(SECOND, "01JAAAAAAAAAAAAAAAAAAAAAAA")
        console.ack("xinqiao", "01JBBBBBBBBBBBBBBBBBBBBBBB")
        with cond:
            assert cond.wait_for(lambda: received, 5)
        assert received == ["parkwatch/v1/xinqiao/commands/ack"]
    finally:
        console.close()
        c.disconnect()
        c.loop_stop()


def test_alarms_raised_while_the_link_is_down_arrive_once_it_is_back(center, parks):
    console = Console(center)
    try:
        for park in parks:
            console.wait(lambda p=park: online(console, p), f"{park} online at the center")
        seen_before = len(console.events())

        center.stop()  # the command center's broker is away (the console loses it too)
        couriers = {park: parks[park].daemon.couriers[UPLINK] for park in parks}
        delivered = {park: courier.delivered for park, courier in couriers.items()}
        buttons = {"xinqiao": "A-2F-FB1", SECOND: "B-1F-FB1"}
        press(parks, buttons)
        # each daemon hands its alarm to its own gateway broker, which confirms it: from here
        # on the alarm is the bridge's to carry, queued in its session
        wait_until(lambda: all(c.delivered > delivered[p] for p, c in couriers.items()),
                   what="both daemons delivering to their gateway brokers")
        # one gateway's broker restarts during the outage: the queue is on disk
        parks["xinqiao"].broker.stop()
        parks["xinqiao"].broker.start()
        center.start()

        raised = {park: console.wait(lambda p=park, s=sensor: console.raised(p, s),
                                     f"{park}'s alarm raised during the outage", timeout=20)
                  for park, sensor in buttons.items()}
        for park, event in raised.items():
            assert (event["park"], event["sensor_id"]) == (park, buttons[park])
        # nothing was in flight when the link dropped, so each change arrives exactly once
        # (the contract promises at least once: a change in flight at a cut comes again)
        counts = Counter((p, e["alarm_id"], e["seq"]) for p, e in console.events()[seen_before:])
        assert {k: n for k, n in counts.items() if n > 1} == {}

        # the alarms' retained states are at the center for anyone who connects now
        late = Console(center, client_id="console-late", clean=True,
                       topics=("parkwatch/v1/+/alarms/+",))
        try:
            for park, event in raised.items():
                topic = f"parkwatch/v1/{park}/alarms/{event['alarm_id']}"
                late.wait(lambda t=topic: late.last(t), f"the retained state on {topic}")
                assert json.loads(late.last(topic)) == event
                assert all(r for t, _, r in late.snapshot() if t == topic)
        finally:
            late.close()
        for park in parks:
            console.wait(lambda p=park: online(console, p), f"{park} online again")
    finally:
        console.close()


def test_a_site_cut_off_shows_as_its_bridge_going_down_and_catches_up_when_back(
        center, parks, wan):
    console = Console(center)
    site = parks[SECOND]
    try:
        console.wait(lambda: online(console, SECOND), f"{SECOND} online at the center")
        press(parks, {SECOND: "B-3F-FB1"})
        first = console.wait(lambda: console.raised(SECOND, "B-3F-FB1"), "the fire alarm")

        wan.cut()  # the site loses its uplink; the gateway, its broker and daemon run on
        # the center's broker publishes the bridge's last will ...
        console.wait(lambda: console.last(f"$SYS/broker/connection/{SECOND}/state") == b"0",
                     "the bridge's link state going to 0")
        # ... while the daemon is still connected to its own broker, so its last will is not
        # published anywhere: the center keeps the last status that came through
        status = console.last(f"parkwatch/v1/{SECOND}/gateway")
        assert status is not None and json.loads(status)["state"] == "online"
        assert online(console, "xinqiao")  # the other park is unaffected

        # the site goes on: a second alarm, delivered to the gateway's broker, queued there
        courier = site.daemon.couriers[UPLINK]
        delivered = courier.delivered
        press(parks, {SECOND: "B-1F-FB1"})
        wait_until(lambda: courier.delivered > delivered, what="delivery to the site's broker")
        # the operator acknowledges the first alarm at the center: the command waits in the
        # bridge's session on the central broker
        console.ack(SECOND, first["alarm_id"])

        wan.restore()
        second = console.wait(lambda: console.raised(SECOND, "B-1F-FB1"),
                              "the alarm raised while the site was cut off", timeout=20)
        acked = console.wait(lambda: [e for p, e in console.events() if p == SECOND
                                      and e["alarm_id"] == first["alarm_id"]
                                      and e["event"] == "acknowledged"],
                             "the acknowledged event after the site is back", timeout=20)[0]
        assert acked["acked_by"] == OPERATOR and second["seq"] == 1
        console.wait(lambda: online(console, SECOND), f"{SECOND} online again")
    finally:
        console.close()
