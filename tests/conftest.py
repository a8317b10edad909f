"""Shared fixtures: a real Mosquitto per test, a daemon wired to it, a contract subscriber."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import jsonschema
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from parkwatch.alarms.event import load_schema
from parkwatch.config import ParkConfig
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.devtools.parkdata import mqtt_only
from parkwatch.firmware_sim.devices import SimulatedPark, bench_overrides
from parkwatch.mqttlink.link import set_nodelay
from parkwatch.schema import load_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "park.yaml"
SCHEMA = load_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """A test must stop every thread it started (Home Assistant's habit)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    b = LocalMosquitto(workdir=tmp_path).start()
    yield b
    b.close()


def example_config(broker: LocalMosquitto, workdir: Path,
                   overrides: dict[tuple[Any, ...], Any] | None = None) -> ParkConfig:
    """examples/park.yaml on a bench: the test broker, pty paths and state in ``workdir``;
    ``overrides`` replaces more values by key path, e.g. {("alarms", "silences"): [...]}."""
    ov = bench_overrides(load_config(EXAMPLE), broker.port, workdir)
    ov.update(overrides or {})
    return load_config(EXAMPLE, ov)


def http_json(port: int, method: str, path: str, data: bytes | None = None,
              token: str | None = None) -> tuple[int, Any]:
    """(status, JSON body) of a request to a daemon's local API on `port`."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def lora_park(tmp_path: Path, port: int) -> dict[str, Any]:
    """The example park's LoRa (MQTT) part on the test broker, state in tmp_path, the API on a
    free port: the YAML data a `parkwatch run` subprocess test edits and writes."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["brokers"]["local"]["port"] = port
    data["gateway"]["state_dir"] = str(tmp_path / "state")
    data["api"]["port"] = 0
    return mqtt_only(data)


def bench_module(name: str) -> Any:
    """A benchmark's module (benchmarks/<name>.py, not a package), imported by path."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                  REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module
    spec.loader.exec_module(module)
    return module


def write_yaml(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


class Subscriber:
    """A command-center client: records every message under parkwatch/v1/#, validates events."""

    def __init__(self, broker: LocalMosquitto, topic: str = "parkwatch/v1/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        c.on_socket_open = lambda _c, _u, s: set_nodelay(s)
        c.on_message = self._on_message
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.connect(broker.host, broker.port)
        c.subscribe(topic, qos=1)
        c.loop_start()
        assert subscribed.wait(5), "subscription not acknowledged"
        self.client = c

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((m.topic, m.payload, bool(m.retain)))
            self.cond.notify_all()

    def events(self) -> list[dict[str, Any]]:
        out = []
        with self.cond:
            msgs = list(self.messages)
        for topic, payload, _ in msgs:
            if topic.endswith("/events"):
                event = json.loads(payload)
                VALIDATOR.validate(event)
                out.append(event)
        return out

    def wait_events(self, pred: Callable[[list[dict[str, Any]]], bool],
                    timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if pred(events):
                return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; events so far: "
                                     f"{[(e['event'], e['sensor_id']) for e in events]}")
            with self.cond:
                self.cond.wait(min(remaining, 0.1))

    def retained_end(self, topic: str) -> list[tuple[str, bytes, bool]]:
        """The messages before `topic` (which must match this subscription), published now
        by this client: the broker sends a new subscription's retained messages while it
        subscribes, so once this one is back, every retained message has arrived."""
        self.client.publish(topic, b"", qos=1)
        wait_until(lambda: any(t == topic for t, _p, _r in list(self.messages)),
                   what="the end-of-retained marker")
        with self.cond:
            msgs = list(self.messages)
        return msgs[:[t for t, _p, _r in msgs].index(topic)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(broker: LocalMosquitto) -> Iterator[Subscriber]:
    s = Subscriber(broker)
    yield s
    s.close()


class Device:
    """Publishes as the field devices do (QoS 1, waits for the broker's PUBACK)."""

    def __init__(self, broker: LocalMosquitto) -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        c.on_socket_open = lambda _c, _u, s: set_nodelay(s)
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c

    def send(self, sensor_id: str, payload: Any, wait: bool = True) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(f"devices/{sensor_id}/up", data, qos=1)
        if wait:
            info.wait_for_publish(5)

    def publish(self, topic: str, data: bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, data, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A PostgreSQL server of the test run (Debian's, in a temporary directory, on a free
    loopback port); each test takes a database of its own (``create_database``)."""
    from parkwatch.devtools.localpostgres import LocalPostgres

    server = LocalPostgres().start()
    yield server
    server.close()


@pytest.fixture
def device(broker: LocalMosquitto) -> Iterator[Device]:
    d = Device(broker)
    yield d
    d.close()


@pytest.fixture
def serial_devices(broker: LocalMosquitto, tmp_path: Path) -> Iterator[SimulatedPark]:
    """The example park's RS-485 devices (Modbus slaves, indicator) on ptys in tmp_path."""
    devices = SimulatedPark(example_config(broker, tmp_path), mqtt=False)
    devices.start()
    yield devices
    devices.stop()


@pytest.fixture
def daemon(broker: LocalMosquitto, tmp_path: Path, serial_devices: SimulatedPark) -> Iterator[Any]:
    """The example park's daemon, in-process, against the test broker and simulated buses.

    Tests publish the MQTT devices' messages themselves (the `device` fixture).
    """
    from parkwatch.daemon.app import Daemon

    d = Daemon(example_config(broker, tmp_path))
    d.start()
    mqtt_drivers = [drv for drv in d.drivers if hasattr(drv, "link")]
    for drv in mqtt_drivers:
        assert drv.link.connected.wait(5)
    assert d.uplink.link.connected.wait(5)
    wait_until(lambda: all(drv.subscribed.is_set() for drv in mqtt_drivers))
    yield d
    d.stop()


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(0.01)


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie has ended too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
