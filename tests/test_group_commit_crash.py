"""Chaos: SIGKILL while alarm changes wait for their group commit loses nothing.

A real `parkwatch run` process takes a flood of QoS 1 messages (readings of 100 load cells, and
one press of each of 200 fire buttons among them) as fast as the broker delivers them, so its
commit stage writes groups of several batches while the pipeline evaluates the next.

First, the test holds the store's write lock (as a slow disk would): the pipeline evaluates the
whole first half of the flood while none of its changes can be committed, and the daemon is
killed with SIGKILL then.  None of those messages may have been acknowledged to the broker, so
the next process gets them all again.  Then the second half, with two more kills at moments
while presses are being raised.  At the end every press the broker accepted has raised exactly
one fire alarm, every change in the store has reached the command center, and each alarm's
seqs arrive as 1..n.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import REPO, Subscriber, lora_park, wait_until, write_yaml
from parkwatch.devtools.localbroker import LocalMosquitto, free_port

PY = [sys.executable, "-m", "parkwatch"]
BUTTONS = [f"X-FB{k:03d}" for k in range(200)]
CELLS = [f"X-LC{k:03d}" for k in range(100)]
READINGS_PER_PRESS = 100
#: kill when the command center has seen this many of the presses raised
KILL_AT = (130, 170)


def write_config(tmp_path: Path, port: int, api_port: int) -> Path:
    data = lora_park(tmp_path, port)
    data["gateway"]["status_interval_s"] = 1
    data["api"]["port"] = api_port
    floors = [("A", "1F"), ("A", "3F"), ("A", "4F"), ("B", "1F"), ("B", "3F")]
    data["sensors"] += [{"id": b, "kind": "fire_button", "building": floors[k % 5][0],
                         "floor": floors[k % 5][1], "driver": "lora"}
                        for k, b in enumerate(BUTTONS)]
    data["sensors"] += [{"id": c, "kind": "load_cell", "building": "B", "floor": "2F",
                         "driver": "lora"} for c in CELLS]
    return write_yaml(data, tmp_path / "park.yaml")


class Flood(threading.Thread):
    """Publishes the messages of `buttons` at once (QoS 1, no waiting for each PUBACK), then
    waits until the broker has accepted them all."""

    def __init__(self, broker: LocalMosquitto, buttons: list[str]) -> None:
        super().__init__(name="group-commit-flood", daemon=True)
        self.buttons = buttons
        self.messages = len(buttons) * (READINGS_PER_PRESS + 1)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        c.max_inflight_messages_set(1000)
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c
        self.accepted = threading.Event()

    def run(self) -> None:
        infos = []
        for k, button in enumerate(self.buttons):
            for j in range(READINGS_PER_PRESS):
                cell = CELLS[(k * READINGS_PER_PRESS + j) % len(CELLS)]
                infos.append(self.client.publish(f"devices/{cell}/up",
                                                 b'{"value": %d}' % (j * 10), qos=1))
            infos.append(self.client.publish(f"devices/{button}/up", b'{"event": "press"}',
                                             qos=1))
        for info in infos:
            info.wait_for_publish(60)
        self.accepted.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen([*PY, "run", "--config", str(cfg)], stderr=err,
                                stdout=subprocess.DEVNULL, cwd=REPO)


def raised_buttons(sub: Subscriber) -> dict[str, set[str]]:
    """Fire buttons of the flood → the ids of the alarms raised for them."""
    out: dict[str, set[str]] = defaultdict(set)
    for e in sub.events():
        if e["sensor_id"] in BUTTONS and e["event"] == "raised":
            out[e["sensor_id"]].add(e["alarm_id"])
    return out


def online(sub: Subscriber, after: int) -> bool:
    return any(topic.endswith("/gateway") and payload and json.loads(payload)["state"] ==
               "online" for topic, payload, _ in list(sub.messages)[after:])


def accepted(api_port: int) -> int:
    """Readings (and presses) the daemon's driver has taken in, from its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5).read()
    return sum(int(float(line.rsplit(b" ", 1)[1])) for line in text.splitlines()
               if line.startswith(b"parkwatch_readings_accepted_total{"))


@pytest.mark.timeout(600)  # half a minute here, with four daemon starts
def test_sigkill_during_group_commits_loses_no_press_and_no_change(
        broker: LocalMosquitto, tmp_path: Path) -> None:
    api_port = free_port()
    cfg = write_config(tmp_path, broker.port, api_port)
    log = tmp_path / "daemon.log"
    store = tmp_path / "state" / "alarms.db"
    sub = Subscriber(broker)
    floods = [Flood(broker, BUTTONS[:100]), Flood(broker, BUTTONS[100:])]
    proc = start(cfg, log)
    try:
        wait_until(lambda: online(sub, 0), 15, "the daemon online")
        # its driver's session must exist before the flood, or the broker keeps nothing for it
        wait_until(lambda: b"subscribed to" in log.read_bytes(), 15, "the driver subscribed")
        base = accepted(api_port)
        lock = sqlite3.connect(store, timeout=10, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the daemon's next commit waits for this
        try:
            floods[0].start()
            wait_until(lambda: accepted(api_port) - base >= floods[0].messages, 25,
                       "the first half evaluated, none of it committed")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert not raised_buttons(sub), "nothing was committed, so nothing may be published"
        seen = len(sub.messages)
        proc = start(cfg, log)
        wait_until(lambda: online(sub, seen), 15, "the daemon online again")
        wait_until(lambda: len(raised_buttons(sub)) >= 100, 30,
                   "the first half's presses, delivered again by the broker, raised")
        floods[1].start()
        for at in KILL_AT:
            wait_until(lambda at=at: len(raised_buttons(sub)) >= at, 60,
                       f"{at} presses raised")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            seen = len(sub.messages)
            proc = start(cfg, log)
            wait_until(lambda seen=seen: online(sub, seen), 15, "the daemon online again")
        assert all(f.accepted.wait(60) for f in floods), "the broker did not take the flood"
        wait_until(lambda: len(raised_buttons(sub)) == len(BUTTONS), 60,
                   "every press raised")
        db = sqlite3.connect(store, timeout=10)
        try:
            def delivered() -> bool:
                keys = {(e["alarm_id"], e["seq"]) for e in sub.events()}
                stored = set(db.execute("SELECT alarm_id, seq FROM changes").fetchall())
                return stored <= keys
            wait_until(delivered, 30, "every stored change at the command center")
            fire = dict(db.execute(
                "SELECT json_extract(event, '$.sensor_id'), count(*) FROM alarms "
                "WHERE rule='button_latch' GROUP BY 1").fetchall())
        finally:
            db.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for f in floods:
            f.close()
        sub.close()
    raised = raised_buttons(sub)
    twice = {b: ids for b, ids in raised.items() if len(ids) > 1}
    assert not twice, f"a press raised more than one alarm: {twice}"
    assert all(fire.get(b) == 1 for b in BUTTONS), "one fire alarm per button in the store"
    seqs: dict[str, list[int]] = defaultdict(list)
    for e in sub.events():
        if e["seq"] not in seqs[e["alarm_id"]]:
            seqs[e["alarm_id"]].append(e["seq"])
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())
