"""Telemetry against a real time-series server (VictoriaMetrics, InfluxDB v2 write API).

The daemon records every reading it evaluates (`--record`); that recording is the truth each
test compares the server with.  VictoriaMetrics stores field `f` of measurement `m` as the
series `m_f` with the tags as labels, in milliseconds, one point per series and timestamp (as
InfluxDB does).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import REPO, Device, example_config, lora_park, wait_until
from parkwatch.daemon.app import Daemon
from parkwatch.devtools.localtsdb import LocalVictoria
from parkwatch.telemetry.lineproto import to_ms
from parkwatch.telemetry.writer import InfluxWriter, Result

TOKEN_ENV = "PARKWATCH_TEST_INFLUX_TOKEN"
PY = [sys.executable, "-m", "parkwatch"]
GAUGES = ("A-1F-WL1", "B-B1-WL1")


@pytest.fixture
def victoria(tmp_path: Path) -> Any:
    vm = LocalVictoria(workdir=tmp_path / "vm").start()
    yield vm
    vm.close()


def telemetry_overrides(url: str | None, **more: Any) -> dict[tuple[Any, ...], Any]:
    tel: dict[str, Any] = {"flush_interval_s": 0.2, "aggregates_interval_s": 0.5,
                           "retry": {"initial_s": 0.2, "max_s": 0.5}, **more}
    if url is not None:
        tel["influxdb"] = {"url": url, "org": "parkwatch", "bucket": "park",
                           "secret_env": TOKEN_ENV}
    return {("telemetry",): tel}


def recorded(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def stored(vm: LocalVictoria, field: str = "value") -> dict[str, dict[int, float]]:
    """sensor → {ms: value} of one reading field, every kind."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for s in vm.export(f'{{__name__=~"(load_cell|water_level|fire_button)_{field}"}}'):
        out[s["metric"]["sensor"]].update(zip(s["timestamps"], s["values"], strict=True))
    return out


def ms(ts: float) -> int:
    """Seconds to the sink's milliseconds, rounded as it rounds them."""
    return int(to_ms(np.array([ts]))[0])


class Gauges(threading.Thread):
    """Two water gauges report rising levels with their own clocks, 40 times a second."""

    def __init__(self, device: Device) -> None:
        super().__init__(name="telemetry-gauges", daemon=True)
        self.device = device
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.halt.wait(0.025):
            for g in GAUGES:
                level = 10 + (self.sent % 20) if g == "A-1F-WL1" else 0.1 + (self.sent % 20) / 100
                self.device.send(g, {"value": level, "ts": round(time.time() * 1000)},
                                 wait=False)
            self.sent += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


def test_every_reading_reaches_the_server_with_its_tags(broker, tmp_path, serial_devices,
                                                         device, victoria, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "test-token")
    rec = tmp_path / "rec.jsonl"
    d = Daemon(example_config(broker, tmp_path, telemetry_overrides(victoria.url)), record=rec)
    d.start()
    try:
        assert d.uplink.link.connected.wait(5)
        wait_until(lambda: all(x.subscribed.is_set() for x in d.drivers if hasattr(x, "link")))
        sent = {"A-2F-LC1": [812.5, 1650.25, 400.0], "A-1F-WL1": [12.0, 61.5],
                "B-B1-WL1": [0.42]}
        t0 = round(time.time() * 1000) - 60_000
        for i, (sensor, values) in enumerate(sent.items()):
            for j, v in enumerate(values):
                device.send(sensor, {"value": v, "ts": t0 + 1000 * i + j})
        device.send("A-3F-FB1", {"event": "press", "battery": 87})
        # until the recording (flushed a batch at a time) holds readings of the MQTT, Modbus
        # and indicator sensors alike
        def sensors() -> set[str]:
            text = rec.read_text(encoding="utf-8") if rec.exists() else ""
            whole = text[:text.rfind("\n") + 1]  # a line being written is left out
            return {json.loads(x)["sensor"] for x in whole.splitlines()}

        wait_until(lambda: len(sensors()) >= 6 and "A-3F-FB1" in sensors(), 10,
                   "readings of every kind of driver recorded")
        # and the aggregates (every 0.5 s here) taken twice since
        due = d.timers.pending()["aggregates"]
        wait_until(lambda: d.timers.pending()["aggregates"] > due + 0.9, 10,
                   "two rounds of aggregates")
    finally:
        d.stop()
    victoria.settle()
    readings = recorded(rec)
    assert len({r["sensor"] for r in readings}) >= 6  # MQTT, Modbus and the indicator
    # every reading with a value is stored under its sensor at its millisecond
    values = stored(victoria)
    want: dict[str, dict[int, set[float]]] = defaultdict(lambda: defaultdict(set))
    for r in readings:
        if r["value"] is not None:
            want[r["sensor"]][ms(r["ts"])].add(r["value"])
    extra = {s: sorted(set(v) - set(want[s])) for s, v in values.items() if set(v) - set(want[s])}
    lost = {s: sorted(set(v) - set(values[s])) for s, v in want.items() if set(v) - set(values[s])}
    assert not extra and not lost, (extra, lost)
    for sensor, points in values.items():  # same ms twice: the server keeps one of them
        assert all(v in want[sensor][t] for t, v in points.items())
    # and every reading, with or without a value, has its quality
    qualities = stored(victoria, "quality")
    assert sum(map(len, qualities.values())) == len({(r["sensor"], ms(r["ts"]))
                                                     for r in readings})
    # the values sent by the devices, exactly, with the place and tenants as tags
    series = {s["metric"]["sensor"]: s for s in victoria.export('{__name__="load_cell_value"}')}
    lc1 = series["A-2F-LC1"]
    assert lc1["metric"] == {"__name__": "load_cell_value", "park": "xinqiao", "building": "A",
                             "floor": "2F", "zone": "east", "tenant": "huaxin",
                             "sensor": "A-2F-LC1"}
    assert list(zip(lc1["timestamps"], lc1["values"], strict=True)) == [
        (t0, 812.5), (t0 + 1, 1650.25), (t0 + 2, 400.0)]
    wl = victoria.export('{__name__="water_level_value",sensor="A-1F-WL1"}')[0]
    assert wl["values"] == [12.0, 61.5] and wl["metric"]["building"] == "A"
    fb = victoria.export('{__name__="fire_button_battery",sensor="A-3F-FB1"}')[0]
    assert fb["values"] == [87.0]
    assert fb["metric"]["tenant"] == ",".join(d.park.sensors[d.park.index["A-3F-FB1"]].tenants)
    # the press raised an alarm: its events are stored with the hazard and event as tags
    events = victoria.export('{__name__="alarm_event_seq",sensor="A-3F-FB1"}')
    assert {(e["metric"]["event"], e["metric"]["hazard"], e["metric"]["severity"])
            for e in events} >= {("raised", "fire", "critical")}
    # floor loads, limits and the gateway's counters come every aggregates interval
    cap = victoria.export('{__name__="floor_load_capacity_kn",group="A/2F"}')[0]
    a2 = next(f for b in d.cfg.buildings if b.id == "A" for f in b.floors if f.id == "2F")
    assert cap["values"][-1] == pytest.approx(a2.rated_load_kn_m2 * a2.area_m2)
    guarantee = victoria.export('{__name__="sensor_limits_high_critical",sensor="A-1F-WL1"}')
    assert guarantee[0]["values"][-1] == d.cfg.thresholds_for(
        d.park.sensors[d.park.index["A-1F-WL1"]].config).high_critical
    gw = victoria.export('{__name__="gateway_readings_accepted"}')
    assert gw and gw[0]["metric"]["gateway"] == d.cfg.gateway.id
    assert d.telemetry.stats()["points"]["spooled"] == 0


class OrderedWriter:
    """The real writer, remembering what the server took, in the order it took it."""

    def __init__(self, inner: InfluxWriter) -> None:
        self.inner = inner
        self.where = inner.where
        self.taken: list[bytes] = []

    def write(self, payload: bytes | list[bytes]) -> Result:
        result = self.inner.write(payload)
        if result.outcome.value == "ok":
            self.taken.append(payload if isinstance(payload, bytes) else b"".join(payload))
        return result

    def close(self) -> None:
        self.inner.close()


def test_an_outage_loses_nothing_and_replays_in_order(broker, tmp_path, device, victoria,
                                                     monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "test-token")
    rec = tmp_path / "rec.jsonl"
    cfg = example_config(broker, tmp_path, telemetry_overrides(victoria.url, batch_points=50))
    d = Daemon(cfg, record=rec)
    writer = OrderedWriter(d.telemetry.writer)  # type: ignore[arg-type]
    d.telemetry.writer = writer  # type: ignore[assignment]
    gauges = Gauges(device)
    d.start()
    try:
        wait_until(lambda: all(x.subscribed.is_set() for x in d.drivers if hasattr(x, "link")))
        gauges.start()
        wait_until(lambda: d.telemetry.stats()["points"]["written"] > 40, 10, "first writes")
        victoria.stop()  # the outage
        wait_until(lambda: d.telemetry.stats()["spool"]["telemetry"]["points"] > 400, 20,
                   "readings spooled during the outage")
        assert d.telemetry.stats()["server"] == "down"
        victoria.start()
        wait_until(lambda: d.telemetry.stats()["server"] == "up"
                   and d.telemetry.stats()["points"]["replayed"] > 400, 20, "replay")
        # readings keep flowing after the replay, written directly again
        written = d.telemetry.stats()["points"]["written"]
        wait_until(lambda: d.telemetry.stats()["points"]["written"] > written + 20, 10,
                   "readings written directly after the replay")
        gauges.stop()
    finally:
        gauges.stop()
        d.stop()
    victoria.settle()
    stats = d.telemetry.stats()
    assert stats["spool"]["telemetry"]["points"] == 0  # the spool emptied
    assert stats["points"]["spooled"] == stats["points"]["replayed"] > 400
    readings = [r for r in recorded(rec) if r["sensor"] in GAUGES]
    assert len(readings) >= gauges.sent * 2 * 0.95
    # 100 %: every reading is on the server
    values = stored(victoria)
    missing = [r for r in readings if ms(r["ts"]) not in values.get(r["sensor"], {})]
    assert not missing, f"{len(missing)} of {len(readings)} readings missing: {missing[:3]}"
    # in order: per sensor, the server took the readings in the order they arrived
    taken: dict[str, list[int]] = defaultdict(list)
    for payload in writer.taken:
        for line in payload.decode().splitlines():
            if line.startswith("water_level,"):
                sensor = line.split("sensor=", 1)[1].split(",", 1)[0].split(" ", 1)[0]
                taken[sensor].append(int(line.rsplit(" ", 1)[1]))
    for g in GAUGES:
        arrived = [ms(r["ts"]) for r in readings if r["sensor"] == g]
        assert taken[g] == arrived


def write_config(tmp_path: Path, port: int, influx_url: str) -> Path:
    """The example park's LoRa sensors, telemetry to `influx_url`, for a `parkwatch run`."""
    data = lora_park(tmp_path, port)
    data["telemetry"] = {"flush_interval_s": 0.5, "batch_points": 100,
                         "retry": {"initial_s": 0.2, "max_s": 0.5},
                         "influxdb": {"url": influx_url, "bucket": "park",
                                      "secret_env": TOKEN_ENV}}
    path = tmp_path / "park.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_sigkill_while_spooling_loses_at_most_the_batch_in_memory(broker, tmp_path, device,
                                                                  monkeypatch):
    """The server is down; the daemon spools, and is killed.  After a restart with the server
    up, every reading recorded is on the server except those that arrived within the last
    flush interval before the kill (the batch in memory, as docs/telemetry.md says)."""
    monkeypatch.setenv(TOKEN_ENV, "test-token")
    vm = LocalVictoria(workdir=tmp_path / "vm")  # its port is chosen; it is not started yet
    cfg = write_config(tmp_path, broker.port, vm.url)
    rec = tmp_path / "rec.jsonl"
    gauges = Gauges(device)
    log = tmp_path / "daemon.log"
    with log.open("ab") as err:
        proc = subprocess.Popen([*PY, "run", "--config", str(cfg), "--record", str(rec)],
                                stderr=err, stdout=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_until(lambda: "driver lora: subscribed to" in log.read_text(errors="replace")
                   or proc.poll() is not None, 15, "the daemon listening")
        gauges.start()
        spool = tmp_path / "state/spool/telemetry"
        wait_until(lambda: sum(p.stat().st_size for p in spool.glob("*.seg")) > 8000, 20,
                   "the spool to grow")
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        gauges.stop()
        before = recorded(rec)
        assert len(before) > 300
        vm.start()
        with log.open("ab") as err:
            proc = subprocess.Popen([*PY, "run", "--config", str(cfg)], stderr=err,
                                    stdout=subprocess.DEVNULL, cwd=REPO)
        wait_until(lambda: not list(spool.glob("*.seg")) or _spool_empty(spool), 30,
                   "the spool to drain")
        vm.settle()
        values = stored(vm)
        missing = [r for r in before if r["value"] is not None
                   and ms(r["ts"]) not in values.get(r["sensor"], {})]
        late = [r for r in missing if r["ts"] < killed_at - 0.5 - 0.3]
        assert not late, f"lost beyond the bound: {late[:3]} (killed at {killed_at})"
        assert len(missing) < len(before) / 4
    finally:
        gauges.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        vm.close()
    assert "Traceback" not in log.read_text(errors="replace")


def _spool_empty(spool: Path) -> bool:
    cursor = spool / "cursor"
    segs = sorted(spool.glob("*.seg"))
    if not cursor.exists() or not segs:
        return False
    seq, offset = (int(x) for x in cursor.read_text().split()[:2])
    return len(segs) == 1 and int(segs[0].stem) == seq and offset == segs[0].stat().st_size


def test_no_server_configured_spools_and_uploads_once_configured(broker, tmp_path, device,
                                                                 victoria, monkeypatch):
    """A bare gateway keeps recent history in the spool; configured later, it uploads it."""
    monkeypatch.setenv(TOKEN_ENV, "test-token")
    rec = tmp_path / "rec.jsonl"
    d = Daemon(example_config(broker, tmp_path, telemetry_overrides(None)), record=rec)
    d.start()
    try:
        wait_until(lambda: all(x.subscribed.is_set() for x in d.drivers if hasattr(x, "link")))
        base = round(time.time() * 1000) - 60_000
        for i in range(20):
            device.send("A-1F-WL1", {"value": 10.0 + i, "ts": base + 10 * i})
        wait_until(lambda: d.telemetry.stats()["spool"]["telemetry"]["points"] >= 20)
        assert d.telemetry.stats()["server"] == "none"
    finally:
        d.stop()
    d = Daemon(example_config(broker, tmp_path, telemetry_overrides(victoria.url)))
    d.start()
    try:
        wait_until(lambda: d.telemetry.spool.empty(), 15, "the upload")
    finally:
        d.stop()
    victoria.settle()
    values = stored(victoria)["A-1F-WL1"]
    wl = [r for r in recorded(rec) if r["sensor"] == "A-1F-WL1"]
    assert len(wl) == 20
    assert {ms(r["ts"]): r["value"] for r in wl} == values


def scrape(d: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed with prometheus-client's parser: (name, labels) → value."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{d.api.port}/metrics", timeout=5) as resp:  # type: ignore[union-attr]
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_a_full_spool_drops_oldest_telemetry_counts_it_and_alarms_still_arrive(
        broker, tmp_path, device, subscriber):
    """No server, a 128 kB spool, a flood of readings: the oldest telemetry goes, /metrics
    says how much, alarm events stay in the spool, and a fire alarm is delivered as ever."""
    d = Daemon(example_config(broker, tmp_path, telemetry_overrides(
        None, spool={"max_bytes": 128 * 1024, "segment_bytes": 16 * 1024})))
    d.start()
    try:
        wait_until(lambda: all(x.subscribed.is_set() for x in d.drivers if hasattr(x, "link")))
        base = round(time.time() * 1000) - 3_600_000
        lora = next(x for x in d.drivers if x.id == "lora")
        i = 0
        while d.telemetry.stats()["spool"]["telemetry"]["dropped_points"] == 0:
            for _ in range(500):  # distinct values: the spool cannot compress them away
                value = 100 + (i * 7919) % 100_000 / 1000
                device.send("A-2F-LC1", {"value": value, "ts": base + i}, wait=False)
                i += 1
            device.send("A-2F-LC1", {"value": 150.0, "ts": base + i}, wait=True)
            i += 1
            wait_until(lambda n=i: lora.accepted >= n, 20, "the daemon to keep up")
            assert i < 400_000, "the spool never filled"
        device.send("A-3F-FB1", {"event": "press"})
        raised = subscriber.wait_events(lambda ev: any(
            e["sensor_id"] == "A-3F-FB1" and e["event"] == "raised" for e in ev))
        assert raised
        wait_until(lambda: d.telemetry.stats()["spool"]["events"]["points"] >= 1)
        wait_until(lambda: d.telemetry.stats()["waiting_points"] == 0)
        # the sink may still be spooling (and dropping) the last readings: compare /metrics
        # with the spool's own count at a moment the count stood still around the scrape
        for _ in range(100):
            before = d.telemetry.stats()["spool"]["telemetry"]["dropped_points"]
            m = scrape(d)
            stats = d.telemetry.stats()
            if stats["spool"]["telemetry"]["dropped_points"] == before:
                break
            time.sleep(0.1)
    finally:
        d.stop()
    spool = stats["spool"]
    dropped = m[("parkwatch_spool_dropped_points_total", (("lane", "telemetry"),))]
    assert dropped == spool["telemetry"]["dropped_points"] > 0
    assert m[("parkwatch_spool_dropped_points_total", (("lane", "events"),))] == 0
    assert spool["telemetry"]["bytes"] + spool["events"]["bytes"] <= 128 * 1024
    assert m[("parkwatch_spool_bytes", (("lane", "telemetry"),))] > 0
    # what is left is the newest telemetry, in order, without a gap
    kept = []
    while (rec := d.telemetry.spool.peek()) is not None:
        if rec.lane == "telemetry":
            kept += [int(x.rsplit(" ", 1)[1]) for x in rec.payload.decode().splitlines()
                     if x.startswith("load_cell,") and "sensor=A-2F-LC1" in x]
        d.telemetry.spool.pop(rec)
    assert kept == list(range(kept[0], base + i))
    assert kept[0] > base  # the oldest went
