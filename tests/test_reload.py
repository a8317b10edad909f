"""Reloading the config while the daemon runs (SIGHUP, `systemctl reload parkwatch`): a broken
config changes nothing, a valid one is applied without losing open alarms or the rule state of
sensors that did not change, and sensors, drivers and subscribers come and go."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLE, Device, Subscriber, wait_until
from parkwatch.alarms.views import StoreReader
from parkwatch.daemon.app import Daemon
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.firmware_sim.devices import SimulatedPark, bench_overrides
from parkwatch.schema import load_config

Edit = Callable[[dict[str, Any]], None]


class BenchConfig:
    """The example park on the bench, as a file on disk that a test edits and reloads."""

    def __init__(self, broker: LocalMosquitto, workdir: Path) -> None:
        self.path = workdir / "park.yaml"
        self.data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        for keys, value in bench_overrides(load_config(EXAMPLE), broker.port, workdir).items():
            node = self.data
            for key in keys[:-1]:
                node = node[key]
            node[keys[-1]] = value
        self.data["gateway"]["status_interval_s"] = 1
        self.write()

    def write(self, edit: Edit | None = None) -> Path:
        if edit is not None:
            edit(self.data)
        self.path.write_text(yaml.safe_dump(self.data, allow_unicode=True, sort_keys=False),
                             encoding="utf-8")
        return self.path

    def sensor(self, sensor_id: str) -> dict[str, Any]:
        return next(s for s in self.data["sensors"] if s["id"] == sensor_id)


@pytest.fixture
def bench(broker: LocalMosquitto, tmp_path: Path) -> BenchConfig:
    return BenchConfig(broker, tmp_path)


def start_daemon(bench: BenchConfig, **kwargs: Any) -> Daemon:
    d = Daemon(load_config(bench.path), **kwargs)
    d.start()
    assert d.uplink.link.connected.wait(5)
    mqtt_drivers = [drv for drv in d.drivers if hasattr(drv, "link")]
    wait_until(lambda: all(drv.subscribed.is_set() for drv in mqtt_drivers),
               what="the MQTT drivers to subscribe")
    return d


@pytest.fixture
def daemon(bench: BenchConfig, serial_devices: SimulatedPark) -> Iterator[Daemon]:
    d = start_daemon(bench)
    yield d
    d.stop()


def ts(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def scrape(daemon: Daemon) -> str:
    return daemon.metrics.metrics_response()[2].decode("utf-8")


def events_of(sub: Subscriber, sensor_id: str) -> list[tuple[str, int]]:
    return [(e["event"], e["seq"]) for e in sub.events() if e["sensor_id"] == sensor_id]


def open_alarms(daemon: Daemon) -> dict[str, tuple[str, int, bool]]:
    """alarm id → (sensor or floor, seq, active), read on the pipeline thread."""
    def read() -> dict[str, tuple[str, int, bool]]:
        idents = daemon.park.idents()
        return {a.alarm_id: (idents[a.sensor], a.seq, a.active)
                for a in daemon.alarms.book.open.values()}
    return daemon.call(read)  # type: ignore[no-any-return]


def test_a_broken_config_keeps_the_daemon_on_the_old_one(daemon, bench, subscriber, device):
    running = daemon.cfg
    good = bench.path.read_text(encoding="utf-8")
    bench.path.write_text(good.replace("sensors:\n", "sensors:\n  - {id: broken\n", 1),
                          encoding="utf-8")
    assert daemon.reload_config(bench.path) is False
    assert daemon.cfg is running
    assert "parkwatch_config_last_reload_successful 0.0" in scrape(daemon)
    last = daemon.status()["config"]["last_reload"]
    assert last["ok"] is False and f"{bench.path}:" in last["error"]  # file:line for the log

    bench.write(lambda d: d["sensors"][0].update(driver="no-such-driver"))  # valid YAML, bad ref
    assert daemon.reload_config(bench.path) is False
    assert daemon.cfg is running and daemon.reloads == {"applied": 0, "failed": 2}
    assert "no-such-driver" in daemon.status()["config"]["last_reload"]["error"]

    # the old config still runs everything: a press raises, the status says the reload failed
    device.send("A-3F-FB1", {"event": "press"})
    subscriber.wait_events(lambda ev: ("raised", 1) in events_of(subscriber, "A-3F-FB1"))

    def published_status() -> dict[str, Any]:
        for topic, payload, _ in reversed(subscriber.messages):
            if topic.endswith("/gateway"):
                return json.loads(payload)  # type: ignore[no-any-return]
        return {}

    wait_until(lambda: published_status().get("config", {}).get("reloads", {}).get("failed") == 2,
               what="the gateway status to report the failed reloads")

    bench.write(lambda d: d["sensors"][0].update(driver="lora"))
    assert daemon.reload_config(bench.path) is True
    text = scrape(daemon)
    assert "parkwatch_config_last_reload_successful 1.0" in text
    assert 'parkwatch_config_reloads_total{outcome="applied"} 1.0' in text
    assert 'parkwatch_config_reloads_total{outcome="failed"} 2.0' in text


def test_a_change_that_needs_a_restart_is_refused_as_a_whole(daemon, bench, device, subscriber):
    def edit(d: dict[str, Any]) -> None:
        d["api"]["port"] = 1  # needs a restart ...
        bench.sensor("A-4F-LC1")["thresholds"]["high_warning"] = 5000  # ... so this waits too

    bench.write(edit)
    assert daemon.reload_config(bench.path) is False
    error = daemon.last_reload["error"]
    assert "api changed" in error and "restart" in error
    device.send("A-4F-LC1", {"value": 5500})  # above the new limit, below the old
    device.send("A-3F-FB1", {"event": "press"})  # a marker behind it
    subscriber.wait_events(lambda ev: ("raised", 1) in events_of(subscriber, "A-3F-FB1"))
    assert events_of(subscriber, "A-4F-LC1") == []


def test_one_threshold_changed_keeps_open_alarms_and_other_pending_durations(
        bench, serial_devices, subscriber, device):
    bench.write(lambda d: d["rules"]["water_level"].update(for_s=2.0))
    daemon = start_daemon(bench)
    try:
        device.send("A-3F-FB1", {"event": "press"})
        device.send("B-B1-WL1", {"value": 0.55})  # 55 cm: warning, pending for 2 s
        subscriber.wait_events(lambda ev: ("raised", 1) in events_of(subscriber, "A-3F-FB1"))
        wait_until(lambda: ("raised", 1) in events_of(subscriber, "B-B1-WL1"), timeout=5,
                   what="the first water warning")
        before = open_alarms(daemon)
        crossed = time.time()
        device.send("A-1F-WL1", {"value": 60, "ts": ts(crossed)})  # critical, pending for 2 s
        wait_until(lambda: daemon.engine.stats["evaluated"] >= 3, what="the reading evaluated")

        drivers = list(daemon.drivers)
        bench.write(lambda d: bench.sensor("A-4F-LC1")["thresholds"].update(high_warning=5000))
        assert daemon.reload_config(bench.path) is True
        assert all(a is b for a, b in zip(daemon.drivers, drivers, strict=True))  # kept running
        changed = next(s for s in daemon.cfg.sensors if s.id == "A-4F-LC1")
        assert changed.thresholds is not None and changed.thresholds.high_warning == 5000

        # the pending duration of the gauge was kept: it fires 2 s after its crossing, not
        # 2 s after the reload (and not never, as a reset state would have it)
        events = subscriber.wait_events(
            lambda ev: any(e["sensor_id"] == "A-1F-WL1" and e["event"] == "raised" for e in ev))
        raised = next(e for e in events if e["sensor_id"] == "A-1F-WL1")
        assert raised["severity"] == "critical"
        assert epoch(raised["observed_at"]) == pytest.approx(crossed + 2.0, abs=0.002)
        # the open alarms are the same alarms, untouched: no clear, no re-raise
        after = open_alarms(daemon)
        assert {k: v for k, v in after.items() if k in before} == before
        assert events_of(subscriber, "A-3F-FB1") == [("raised", 1)]
        assert events_of(subscriber, "B-B1-WL1") == [("raised", 1)]
        # and the changed threshold is in force
        device.send("A-4F-LC1", {"value": 5500})
        subscriber.wait_events(lambda ev: ("raised", 1) in events_of(subscriber, "A-4F-LC1"))
    finally:
        daemon.stop()


def test_sensors_drivers_and_subscribers_come_and_go(daemon, bench, subscriber, device,
                                                     broker):
    device.send("A-2F-LC1", {"value": 9000})  # an overload warning on a sensor to be removed
    subscriber.wait_events(lambda ev: ("raised", 1) in events_of(subscriber, "A-2F-LC1"))
    gone = next(k for k, v in open_alarms(daemon).items() if v[0] == "A-2F-LC1")
    old_indicator = next(d for d in daemon.drivers if d.id == "scale-a3")
    notified = Subscriber(broker, "notify/#")

    def edit(d: dict[str, Any]) -> None:
        d["sensors"] = [s for s in d["sensors"] if s["id"] not in ("A-2F-LC1", "A-3F-LC2")]
        d["drivers"] = [x for x in d["drivers"] if x["id"] != "scale-a3"]
        d["drivers"].append({"id": "lora2", "type": "mqtt", "broker": "local",
                             "topic": "site2/{sensor_id}"})
        d["sensors"].append({"id": "A-1F-FB9", "kind": "fire_button", "building": "A",
                             "floor": "1F", "driver": "lora2"})
        d["alarms"]["targets"]["ops"] = {"type": "mqtt", "topic": "notify/ops/{subscriber}"}
        d["alarms"]["subscribers"] = [s for s in d["alarms"]["subscribers"]
                                      if s["id"] != "landlord"]
        d["alarms"]["subscribers"].append({"id": "night-shift", "party": "any",
                                           "target": "ops"})

    try:
        assert daemon.reload_config(bench.write(edit)) is True
        assert [d.id for d in daemon.drivers] == ["lora", "rs485-b", "rs485-a", "lora2"]
        assert not old_indicator.alive  # its serial port is closed
        assert gone not in open_alarms(daemon)  # the removed sensor's alarm is dropped ...
        wait_until(lambda: any(t == f"parkwatch/v1/xinqiao/alarms/{gone}" and p == b""
                               for t, p, _ in subscriber.messages),
                   what="the dropped alarm's retained state to be removed")  # ... and retracted
        lora2 = next(d for d in daemon.drivers if d.id == "lora2")
        wait_until(lambda: lora2.subscribed.is_set(), what="the new driver to subscribe")

        device.publish("site2/A-1F-FB9", b'{"event": "press"}').wait_for_publish(5)
        # judged on the events handed to the predicate, which wait_events returns (a fresh
        # read could see an event the returned list does not hold yet)
        events = subscriber.wait_events(lambda ev: any(
            e["sensor_id"] == "A-1F-FB9" and (e["event"], e["seq"]) == ("raised", 1)
            for e in ev))
        assert next(e for e in events if e["sensor_id"] == "A-1F-FB9")["building"] == "A"

        def told() -> set[str]:
            return {t.rsplit("/", 1)[1] for t, p, _ in notified.messages
                    if b"A-1F-FB9" in p}

        tenants = set(next(e for e in events if e["sensor_id"] == "A-1F-FB9")["tenants"])
        assert tenants  # a fire concerns every tenant of the building
        wait_until(lambda: told() >= {"night-shift", *tenants},
                   what="the added subscriber and the building's tenants to be told")
        reader = StoreReader(daemon.store_path)
        try:
            wait_until(lambda: reader.outbox_stats(time.time()).get("app", {}).get(
                "pending", 0) == 0, what="every notification delivered")
        finally:
            reader.close()
        assert "landlord" not in told()  # the removed subscriber is not
        device.send("A-2F-LC1", {"value": 9500})  # a removed sensor: counted, not evaluated
        wait_until(lambda: daemon.drivers[0].rejections.total.get("unknown_sensor", 0) >= 1,
                   what="the removed sensor's reading to be rejected")
    finally:
        notified.close()


def test_readings_during_a_reload_are_neither_lost_nor_misattributed(bench, serial_devices,
                                                                     tmp_path, broker):
    record = tmp_path / "readings.jsonl"
    daemon = start_daemon(bench, record=record)
    sender = Device(broker)
    n = 3000
    done = threading.Event()

    def flood() -> None:
        infos = [sender.client.publish("devices/A-1F-WL1/up", json.dumps({"value": k / 1000}),
                                       qos=1) for k in range(1, n + 1)]
        for info in infos:
            info.wait_for_publish(10)
        done.set()

    def renumber(d: dict[str, Any]) -> None:  # a sensor in front: every index moves by one
        d["sensors"].insert(0, {"id": "A-1F-WL0", "kind": "water_level", "building": "A",
                                "floor": "1F", "driver": "lora", "unit": "cm"})

    thread = threading.Thread(target=flood)
    try:
        thread.start()
        wait_until(lambda: daemon.engine.stats["evaluated"] > 200, what="the flood to start")
        assert daemon.reload_config(bench.write(renumber)) is True
        assert done.wait(20)

        def values() -> list[float]:
            text = record.read_text("utf-8")  # complete lines only: the recorder may be writing
            rows = [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]
            return [r["value"] for r in rows if r["sensor"] == "A-1F-WL1"]

        wait_until(lambda: len(values()) >= n, timeout=10, what="every reading to be evaluated")
    finally:
        thread.join(20)
        sender.close()
        daemon.stop()
    rows = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    values = [r["value"] for r in rows if r["sensor"] == "A-1F-WL1"]
    # all of them, in order, under their own name.  MQTT QoS 1 is at-least-once, and a message
    # is acknowledged only once the pipeline has evaluated it: those the old driver had taken
    # but not yet settled when it disconnected are delivered again to the new one, once each
    distinct = list(dict.fromkeys(values))
    assert distinct == [k / 1000 for k in range(1, n + 1)]
    assert max(Counter(values).values()) <= 2
    assert not [r for r in rows if r["sensor"] != "A-1F-WL1" and r["sensor"].endswith("WL0")]
    assert daemon.pipeline.dropped_retired == 0
