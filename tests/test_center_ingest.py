"""The command center's ingest against a real Mosquitto: events stored once by (alarm_id,
seq), whatever the broker repeats or reorders; alarm states and gateway statuses kept; bad
publications refused and counted; several instances behind one shared subscription, one of
them killed mid-flow, store every event exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from conftest import REPO, wait_until
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.config import load_center_config
from parkwatch.center.service import CenterService
from parkwatch.center.store import open_store
from parkwatch.devtools.localbroker import LocalMosquitto

PREFIX = "parkwatch/v1"


def event(park: str, alarm_id: str, seq: int, what: str = "raised", **extra: Any) -> dict[str, Any]:
    """An alarm event as a gateway publishes it (docs/contract.md)."""
    at = f"2026-12-05T10:00:{seq:02d}.000Z"
    return {"schema": "parkwatch.alarm/1", "alarm_id": alarm_id, "seq": seq, "event": what,
            "park": park, "building": "A", "floor": "3F", "zone": None, "tenants": ["huaxin"],
            "sensor_id": "A-3F-FB1", "sensor_kind": "fire_button", "rule": "button_latch",
            "severity": "critical", "active": what not in ("cleared", "closed"),
            "acknowledged": what in ("acknowledged", "closed"), "value": 1.0,
            "threshold": None, "unit": None, "observed_at": at,
            "raised_at": "2026-12-05T10:00:01.000Z", "changed_at": at, "acked_by": None,
            "acked_at": None, "escalation_level": 0, "drill": False,
            "message": "【火警】A栋 三层 一键报警按钮（A-3F-FB1）被按下", "gateway": f"{park}-gw1",
            **extra}


class Gateway:
    """A park's gateway as the center sees it: a client publishing the contract."""

    def __init__(self, broker: LocalMosquitto, park: str) -> None:
        self.park = park
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{park}",
                                  protocol=mqtt.MQTTv311)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, doc: dict[str, Any] | bytes, topic: str | None = None,
                retain: bool = False) -> None:
        payload = doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=False).encode()
        info = self.client.publish(topic or f"{PREFIX}/{self.park}/events", payload, qos=1,
                                   retain=retain)
        info.wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def center_yaml(path: Path, broker: LocalMosquitto, database: str, instance: str) -> Path:
    path.write_text(yaml.safe_dump({
        "instance": instance, "database": database,
        "broker": {"host": broker.host, "port": broker.port, "reconnect_max_s": 1.0},
        "ingest": {"batch_max": 50, "retry_max_s": 1.0},
        "http": {"port": 0, "state_file": str(path.parent / f"{instance}-http.secret")}}),
        encoding="utf-8")
    return path


@pytest.fixture
def center(broker: LocalMosquitto, tmp_path: Path) -> Iterator[CenterService]:
    cfg = load_center_config(center_yaml(tmp_path / "center.yaml", broker,
                                         f"sqlite:///{tmp_path / 'center.db'}", "one"))
    service = CenterService(cfg)
    service.start()
    wait_until(service.ingest.subscribed.is_set, what="the center subscribed")
    yield service
    service.stop()


def test_events_are_stored_once_whatever_the_broker_repeats_or_reorders(
        center: CenterService, broker: LocalMosquitto) -> None:
    gw = Gateway(broker, "xinqiao")
    try:
        a = new_alarm_id(time.time())
        gw.publish(event("xinqiao", a, 2, "acknowledged", acked_by="王工"))  # before seq 1
        gw.publish(event("xinqiao", a, 1))
        gw.publish(event("xinqiao", a, 1))  # at least once: the same again
        gw.publish(event("xinqiao", a, 2, "acknowledged", acked_by="王工"))
        wait_until(lambda: center.ingest.figures.stored + center.ingest.figures.duplicates >= 4,
                   what="four events taken")
        assert (center.ingest.figures.stored, center.ingest.figures.duplicates) == (2, 2)
        got = center.store.alarm(a)
        assert got is not None
        state = got.get("alarm", got)
        assert state["seq"] == 2 and state["acked_by"] == "王工"  # the highest seq, not the last
    finally:
        gw.close()


def test_alarm_states_and_gateway_statuses_are_kept(center: CenterService,
                                                    broker: LocalMosquitto) -> None:
    gw = Gateway(broker, "nanhu")
    try:
        a = new_alarm_id(time.time())
        gw.publish(event("nanhu", a, 1), topic=f"{PREFIX}/nanhu/alarms/{a}", retain=True)
        gw.publish({"state": "online", "gateway": "nanhu-gw1"}, topic=f"{PREFIX}/nanhu/gateway",
                   retain=True)
        wait_until(lambda: any(g["park"] == "nanhu" for g in center.store.gateways()),
                   what="the gateway's status")
        wait_until(lambda: any(x["alarm_id"] == a for x in center.store.open_alarms("nanhu")),
                   what="the retained alarm state")
        (status,) = [g for g in center.store.gateways() if g["park"] == "nanhu"]
        assert "online" in json.dumps(status)
    finally:
        gw.close()


def test_bad_publications_are_refused_and_counted(center: CenterService,
                                                  broker: LocalMosquitto) -> None:
    gw = Gateway(broker, "xinqiao")
    try:
        gw.publish(b"{not json")
        gw.publish(event("xinqiao", "not-a-ulid", 1))
        gw.publish(event("other-park", new_alarm_id(time.time()), 1))  # on xinqiao's topic
        good = new_alarm_id(time.time())
        gw.publish(event("xinqiao", good, 1))
        wait_until(lambda: center.ingest.figures.stored >= 1, what="the good event")
        wait_until(lambda: sum(center.ingest.rejections.total.values()) >= 3)
        assert dict(center.ingest.rejections.total) == {"bad_json": 1, "bad_event": 2}
        assert center.store.alarm(good) is not None
        assert center.health()["rejected"] == {"bad_json": 1, "bad_event": 2}
    finally:
        gw.close()


def test_a_killed_receiver_process_is_started_again_and_loses_nothing(
        center: CenterService, broker: LocalMosquitto) -> None:
    """The receiver (MQTT and decoding, a process of its own) dies: the center says so in
    /healthz, starts it again, and every event, those published while it was gone too, is
    stored once."""
    gw = Gateway(broker, "xinqiao")
    try:
        before = [new_alarm_id(time.time()) for _ in range(10)]
        for a in before:
            gw.publish(event("xinqiao", a, 1))
        wait_until(lambda: center.ingest.figures.stored == 10, what="the first ten events")
        pid = center.ingest.receiver_pid
        assert pid is not None and pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not center.ingest.connected.is_set(), what="the loss noticed")
        assert center.health()["status"] == "unhealthy"
        after = [new_alarm_id(time.time()) for _ in range(10)]
        for a in after:
            gw.publish(event("xinqiao", a, 1))
        for a in before:
            gw.publish(event("xinqiao", a, 2, "acknowledged", acked_by="王工"))
        wait_until(lambda: center.ingest.figures.stored == 30, 30, "every event, once")
        assert center.ingest.restarts == 1 and center.ingest.receiver_pid != pid
        assert center.health()["receiver_restarts"] == 1
        wait_until(lambda: center.health()["status"] == "ok", what="healthy again")
        assert all(center.store.alarm(a) is not None for a in after)
        assert {center.store.alarm(a)["seq"] for a in before} == {2}  # type: ignore[index]
    finally:
        gw.close()


def test_the_receiver_runs_in_the_centers_process_when_asked(
        broker: LocalMosquitto, tmp_path: Path) -> None:
    """``ingest.process: false``: the same ingest without a process of its own."""
    path = center_yaml(tmp_path / "center.yaml", broker, f"sqlite:///{tmp_path / 'c.db'}", "in")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["ingest"]["process"] = False
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    service = CenterService(load_center_config(path))
    service.start()
    gw = Gateway(broker, "nanhu")
    try:
        wait_until(service.ingest.subscribed.is_set, what="the center subscribed")
        assert service.ingest.receiver_pid is None
        a = new_alarm_id(time.time())
        gw.publish(b"{not json")
        gw.publish(event("nanhu", a, 1))
        gw.publish(event("nanhu", a, 1))
        wait_until(lambda: service.ingest.figures.stored + service.ingest.figures.duplicates
                   == 2, what="both events taken")
        assert (service.ingest.figures.stored, service.ingest.figures.duplicates) == (1, 1)
        assert dict(service.ingest.rejections.total) == {"bad_json": 1}
        assert service.health()["status"] == "ok"
    finally:
        gw.close()
        service.stop()


def _log(tmp_path: Path) -> str:
    return (tmp_path / "centers.log").read_bytes().decode("utf-8", "replace")


def _start_center(cfg: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "parkwatch", "center", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_instances_share_the_events_and_a_killed_one_loses_nothing(
        broker: LocalMosquitto, tmp_path: Path, backend: str,
        request: pytest.FixtureRequest) -> None:
    """Two instances on one shared subscription and one database, three parks publishing,
    one instance SIGKILLed mid-flow and started again, PostgreSQL restarted once: every
    (alarm_id, seq) published is stored exactly once."""
    pg = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    if pg is not None and pg.proc is None:  # a test that stopped it failed half-way
        pg.start()
    db = pg.create_database() if pg is not None else f"sqlite:///{tmp_path / 'center.db'}"
    cfgs = [center_yaml(tmp_path / f"{n}.yaml", broker, db, n) for n in ("c1", "c2")]
    log = (tmp_path / "centers.log").open("ab")
    procs = [_start_center(c, log) for c in cfgs]
    gws = [Gateway(broker, p) for p in ("p1", "p2", "p3")]
    published: set[tuple[str, int]] = set()
    store = open_store(db)
    try:
        # both sessions hold the shared subscription: from then on the broker keeps what
        # either has not acknowledged, connected or not
        wait_until(lambda: _log(tmp_path).count("center: subscribed to") >= 2, 30,
                   "both instances subscribed")
        for i in range(300):
            gw = gws[i % 3]
            a = new_alarm_id(time.time())
            for seq in (1, 2):
                gw.publish(event(gw.park, a, seq, "raised" if seq == 1 else "cleared"))
                published.add((a, seq))
            if i == 100:  # mid-flow
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait(10)
            if i == 150 and pg is not None:  # the database goes away and comes back
                pg.restart()
            if i == 200:
                procs[0] = _start_center(cfgs[0], log)

        def stored() -> int:
            return sum(len(store.alarm(a)["events"]) for a in {a for a, _ in published}
                       if store.alarm(a) is not None)
        wait_until(lambda: stored() == len(published), 60,
                   f"every published event stored ({len(published)})")
        for a in {a for a, _ in published}:
            got = store.alarm(a)
            assert got is not None and [e["seq"] for e in got["events"]] == [1, 2], got
    finally:
        for gw in gws:
            gw.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(10)
        store.close()
        log.close()
    text = _log(tmp_path)
    assert "Traceback" not in text, text[-3000:]
    if pg is not None:  # the restart was noticed, waited out and logged once each way
        assert text.count("database unavailable") <= 2 and "database back after" in text
