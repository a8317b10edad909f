"""Alarm churn for tests: the example park's LoRa part in-process on a test broker, and fire
cycles through it (a press from the device, its reset, an operator's acknowledgement), each
waited for until the alarm is closed, so a test can count what a closed alarm left behind."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import lora_park, wait_until, write_yaml
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.schema import load_config

OPERATOR = "王工"  # one of the example's alarms.operators


class Churn:
    """A running daemon, a device client and the fire buttons to press in turn."""

    def __init__(self, daemon: Any, device: mqtt.Client, buttons: list[str], token: str) -> None:
        self.daemon, self.device, self.buttons, self.token = daemon, device, buttons, token
        self.cycles = 0

    def publish(self, sensor: str, payload: bytes) -> None:
        self.device.publish(f"devices/{sensor}/up", payload, qos=1).wait_for_publish(5)

    def _open_alarm(self, sensor: str) -> str:
        """The id of `sensor`'s open, unacknowledged alarm, once the book has it."""
        index = self.daemon.live.park.index[sensor]
        found: list[str] = []

        def raised() -> bool:
            found[:] = [a.alarm_id for a in list(self.daemon.live.alarms.book.open.values())
                        if a.sensor == index and not a.acknowledged]
            return bool(found)

        wait_until(raised, 10, f"{sensor}'s fire alarm")
        return found[0]

    def fire_cycle(self, via_http: bool = False) -> None:
        """Press, reset and acknowledge the next button; returns once the alarm is closed."""
        sensor = self.buttons[self.cycles % len(self.buttons)]
        self.cycles += 1
        self.publish(sensor, b'{"event": "press"}')
        alarm_id = self._open_alarm(sensor)
        self.publish(sensor, b'{"event": "reset"}')
        if via_http:
            status, answer = self.http("POST", f"/api/alarms/{alarm_id}/ack", {"by": OPERATOR})
            assert status == 200 and answer["result"] == "done", answer
        else:
            assert self.daemon.commands.acknowledge(alarm_id, OPERATOR)
        wait_until(lambda: alarm_id not in self.daemon.live.alarms.book.open, 10,
                   f"alarm {alarm_id} closed")

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.daemon.api.port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def http_text(self, path: str) -> tuple[int, str]:
        """(status, body) of a GET outside /api/ (no token), such as /metrics."""
        url = f"http://127.0.0.1:{self.daemon.api.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()

    def settle(self) -> None:
        """Every change handed over so far committed."""
        d = self.daemon
        assert d.inbox.barrier(d.committer.flush).wait(10)


@contextlib.contextmanager
def churning(broker: LocalMosquitto, tmp_path: Path) -> Iterator[Churn]:
    """The example park's LoRa part running in-process on `broker`, ready for fire cycles."""
    from parkwatch.daemon.app import Daemon

    data = lora_park(tmp_path, broker.port)
    d = Daemon(load_config(write_yaml(data, tmp_path / "park.yaml")))
    d.start()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    try:
        for drv in d.drivers:
            assert drv.link.connected.wait(5)
        assert d.uplink.link.connected.wait(5)
        wait_until(lambda: all(drv.subscribed.is_set() for drv in d.drivers))
        client.connect(broker.host, broker.port)
        client.loop_start()
        buttons = [s["id"] for s in data["sensors"] if s["kind"] == "fire_button"]
        token = (tmp_path / "state" / "api.token").read_text(encoding="utf-8").strip()
        yield Churn(d, client, buttons, token)
    finally:
        client.disconnect()
        client.loop_stop()
        d.stop()
