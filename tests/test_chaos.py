"""Chaos: the parts a gateway depends on fail again and again while it runs, and come back.

Each test drives a real `parkwatch run` process against real parts (a Mosquitto broker,
VictoriaMetrics, pseudo-terminals from the firmware simulator) and breaks one of them
repeatedly while devices keep talking.  What each proves, as a user would see it:

- `test_broker_restarted_repeatedly_...`: the park's only broker (the devices' and the command
  center's) is stopped and started again on the same port four times, down for 0.3 to 3 s,
  while fire buttons are pressed and reset and water levels cross their limits.  After every
  return the daemon is connected again, both its uplink and its device driver, within 2 s of
  the broker listening (its own log's time of "reconnected to ..."), and says so with a fresh
  retained `online` gateway status.  Each outage is logged once per connection, not once per
  retry.  At the end every alarm change the store committed has reached the command center's
  subscriber: none missing, none invented, a duplicate only as the same (alarm_id, seq) with
  the same bytes, each alarm's seqs first heard as 1..n; and the retained alarm states a late
  subscriber sees are exactly the latest state of each open alarm.
- `test_time_series_server_restarted_repeatedly_...`: VictoriaMetrics is stopped and started
  three times while gauges report 40 readings a second each.  The daemon notices each outage
  (logged once), spools, replays after each return, its spool ends empty, and the server holds
  exactly one point per reading sent: per sensor the count and the values equal what the
  devices sent and the daemon accepted.
- `test_serial_cables_cut_and_restored_...`: both RS-485 cables (the Modbus bus and the weighing
  indicator) are pulled for a few seconds and plugged back.  The command center gets a
  comm-fault alarm for every sensor behind them and the gateway status shows both drivers
  down; after the restore, values set while the cable was out arrive (a load and a water alarm
  are raised from them), every comm-fault alarm clears, the status shows both drivers up, and
  the daemon logged each loss once and each recovery once although it retried many times.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from conftest import EXAMPLE, REPO, Device, Subscriber, lora_park, wait_until, write_yaml
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.devtools.localtsdb import LocalVictoria
from parkwatch.firmware_sim.devices import SimulatedPark
from parkwatch.mqttlink.link import set_nodelay

PY = [sys.executable, "-m", "parkwatch"]
PARK = "xinqiao"
TOKEN_ENV = "PARKWATCH_TEST_INFLUX_TOKEN"


# --- a `parkwatch run` process and its log ----------------------------------------------------

def start_daemon(cfg: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}  # timestamped lines
    env[TOKEN_ENV] = "chaos-token"
    with log.open("ab") as err:
        return subprocess.Popen([*PY, "run", "--config", str(cfg), *extra], stderr=err,
                                stdout=subprocess.DEVNULL, cwd=REPO, env=env)


def stop_daemon(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return None
    return proc.returncode


def reconnects(log: Path) -> list[str]:
    """The uplink's and the devices' driver's returns (the wireless sounders' own link to the
    site broker logs its returns too, on its own time)."""
    return [x for x in log_lines(log, "reconnected to") if "outputs " not in x]


def log_lines(log: Path, needle: str) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
            if needle in line]


def assert_clean_log(log: Path) -> None:
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text, text[-4000:]


_LOG_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) ")


def log_delay(line: str, since: float) -> float:
    """Seconds from the wall-clock time `since` to the (local, time-of-day) stamp of a line
    of the daemon's log."""
    m = _LOG_TIME.match(line)
    assert m, f"no timestamp on: {line}"
    h, mi, s, ms = (int(x) for x in m.groups())
    at = h * 3600 + mi * 60 + s + ms / 1000
    lt = time.localtime(since)
    ref = lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + since % 1
    delay = at - ref
    return delay + 86400 if delay < -43200 else delay  # across midnight


def api_port(log: Path, timeout: float = 20.0) -> int:
    found: list[int] = []

    def listening() -> bool:
        found[:] = [int(m.group(1)) for line in log_lines(log, "HTTP API on")
                    if (m := re.search(r"http://127\.0\.0\.1:(\d+)/", line))]
        return bool(found)

    wait_until(listening, timeout, "the daemon's HTTP API")
    return found[-1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def query(db_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(db_path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def statuses(sub: Subscriber, after: int = 0) -> list[dict[str, Any]]:
    """The gateway statuses the subscriber received, from message number `after` on."""
    with sub.cond:
        msgs = sub.messages[after:]
    return [json.loads(p) for t, p, _ in msgs if t == f"parkwatch/v1/{PARK}/gateway" and p]


def rfc3339(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# --- 1. the broker restarted again and again ----------------------------------------------

BUTTONS = ("A-1F-FB1", "A-2F-FB1", "A-3F-FB1", "A-4F-FB1", "B-1F-FB1", "B-2F-FB1")
#: each water level cycles warning -> critical -> normal (B-B1-WL1 reports metres)
WATER = {"A-1F-WL1": (35, 55, 10), "B-B1-WL1": (0.45, 0.65, 0.10)}
ALL_CLEAR = [*((b, {"event": "reset"}) for b in BUTTONS),
             *((w, {"value": levels[-1]}) for w, levels in WATER.items())]
#: how long the broker stays away, one per restart
DOWN_S = (0.3, 1.5, 3.0, 0.8)
UP_S = 1.5  # devices change alarms this long between outages
RECONNECT_WITHIN_S = 2.0


class SessionSubscriber(Subscriber):
    """A command-center client whose session outlives broker restarts: a fixed client id,
    clean_session off (the broker queues QoS 1 events for it while it is away), quick
    reconnects, and it subscribes again on every connect."""

    def __init__(self, broker: LocalMosquitto, client_id: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.on_socket_open = lambda _c, _u, s: set_nodelay(s)
        c.on_message = self._on_message
        subscribed = threading.Event()
        c.on_connect = lambda cl, *_a: cl.subscribe("parkwatch/v1/#", qos=1)
        c.on_subscribe = lambda *_a: subscribed.set()
        c.reconnect_delay_set(0.05, 0.25)  # type: ignore[arg-type]
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert subscribed.wait(5), "subscription not acknowledged"
        self.client = c


class AlarmingDevices(threading.Thread):
    """Changes alarms without pause while the broker is there: buttons pressed and reset in
    turn, water levels cycling through their limits.  Publishes only while connected (a
    device offline simply misses its turn) and reconnects quickly."""

    def __init__(self, broker: LocalMosquitto) -> None:
        super().__init__(name="chaos-devices", daemon=True)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chaos-devices",
                        protocol=mqtt.MQTTv311)
        c.on_socket_open = lambda _c, _u, s: set_nodelay(s)
        c.reconnect_delay_set(0.05, 0.25)  # type: ignore[arg-type]
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        pressed = dict.fromkeys(BUTTONS, False)
        level = dict.fromkeys(WATER, 0)
        sensors = [*BUTTONS, *WATER]
        i = 0
        while not self.halt.wait(0.04):
            if not self.client.is_connected():
                continue
            sensor = sensors[i % len(sensors)]
            i += 1
            if sensor in pressed:
                payload: dict[str, Any] = {"event": "reset" if pressed[sensor] else "press"}
                pressed[sensor] = not pressed[sensor]
            else:
                levels = WATER[sensor]
                payload = {"value": levels[level[sensor] % len(levels)]}
                level[sensor] += 1
            self.client.publish(f"devices/{sensor}/up", json.dumps(payload).encode(), qos=1)
            self.sent += 1

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(5)

    def close(self) -> None:
        self.stop()
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    b = LocalMosquitto(workdir=tmp_path / "mqtt", persistence=True).start()
    yield b
    b.close()


def uplink_events(sub: Subscriber) -> list[tuple[tuple[str, int], bytes]]:
    sub.events()  # validates each against the contract's JSON schema
    with sub.cond:
        msgs = list(sub.messages)
    out = []
    for topic, payload, _ in msgs:
        if topic.endswith("/events"):
            e = json.loads(payload)
            out.append(((e["alarm_id"], e["seq"]), payload))
    return out


def retained_alarms(broker: LocalMosquitto) -> dict[str, bytes]:
    """alarm_id -> retained state, as a command center connecting now sees it."""
    late = Subscriber(broker, f"parkwatch/v1/{PARK}/alarms/#")
    try:
        got = late.retained_end(f"parkwatch/v1/{PARK}/alarms/zz-end-of-retained")
        return {t.rsplit("/", 1)[1]: p for t, p, retained in got if retained and p}
    finally:
        late.close()


def test_broker_restarted_repeatedly_daemon_reconnects_fast_and_loses_no_alarm_change(
        persistent_broker, tmp_path):
    broker = persistent_broker
    db_path = tmp_path / "state" / "alarms.db"
    log = tmp_path / "daemon.log"
    data = lora_park(tmp_path, broker.port)
    data["gateway"]["status_interval_s"] = 30  # statuses come from connections coming back
    cfg = write_yaml(data, tmp_path / "park.yaml")
    sub = SessionSubscriber(broker, "chaos-command-center")
    devices = AlarmingDevices(broker)
    proc = start_daemon(cfg, log)
    cycles: list[dict[str, Any]] = []
    try:
        # a driver counts as connected once the broker acknowledged its subscription
        wait_until(lambda: any(s["state"] == "online" and s["drivers"]["lora"]["connected"]
                               for s in statuses(sub)), 20, "the daemon online")
        devices.start()
        for n, down in enumerate(DOWN_S, start=1):
            time.sleep(UP_S)
            changes_before = query(db_path, "SELECT count(*) FROM changes")[0][0]
            broker.stop()
            pending = query(db_path, "SELECT count(*) FROM outbox "
                            "WHERE target='uplink' AND state='pending'")[0][0]
            time.sleep(down)
            mark = len(sub.messages)
            broker.start()
            back = time.time()
            # both connections, the uplink and the devices' driver, log their return once
            wait_until(lambda n=n: len(reconnects(log)) >= 2 * n, 15,
                       f"reconnect #{n}: {reconnects(log)}")
            lines = reconnects(log)[2 * (n - 1):]
            delays = {("uplink" if "uplink broker" in x else "driver"): log_delay(x, back)
                      for x in lines}
            # and the command center sees the gateway online again, with its driver connected
            wait_until(lambda mark=mark, back=back: any(
                s["state"] == "online" and s["drivers"]["lora"]["connected"]
                and rfc3339(s["updated_at"]) >= back - 0.05 for s in statuses(sub, mark)),
                10, f"a fresh online status after restart #{n}")
            cycles.append({"down_s": down, "reconnect_s": delays, "changes": changes_before,
                           "uplink_pending_at_stop": pending})
            assert len(lines) == 2 and set(delays) == {"uplink", "driver"}, lines
        devices.stop()

        # the devices go quiet and every alarm condition clears; everything drains
        dev = Device(broker)
        try:
            for sensor, payload in ALL_CLEAR:
                dev.send(sensor, payload)
        finally:
            dev.close()

        def drained() -> bool:
            if query(db_path, "SELECT count(*) FROM outbox WHERE target='uplink' "
                     "AND state!='delivered'")[0][0]:
                return False
            keys = set(query(db_path, "SELECT alarm_id, seq FROM changes"))
            return keys <= {k for k, _ in uplink_events(sub)}

        wait_until(drained, 20, "every committed change at the command center")
        changes = {(a, s): p.encode("utf-8") for a, s, p in
                   query(db_path, "SELECT alarm_id, seq, payload FROM changes")}
        got = uplink_events(sub)
        retained = retained_alarms(broker)
        exit_code = stop_daemon(proc)
    finally:
        devices.close()
        stop_daemon(proc)
        sub.close()
    figures = {"cycles": cycles, "readings_sent": devices.sent, "changes": len(changes),
               "uplink_events": len(got)}
    print(json.dumps(figures, indent=1))

    # (a) back within 2 s of the broker, every time, for both connections
    slow = [(c["down_s"], c["reconnect_s"]) for c in cycles
            if max(c["reconnect_s"].values()) > RECONNECT_WITHIN_S]
    assert not slow, f"reconnected later than {RECONNECT_WITHIN_S} s after the broker: {slow}"
    # each outage logged once per connection, not once per retry
    for link in ("uplink broker", "driver lora broker"):
        lost = [x for x in log_lines(log, "retrying with backoff") if link in x]
        assert len(lost) == len(DOWN_S), lost

    # (b) every committed change reached the command center, exactly as committed
    assert len(changes) >= 40, figures
    keys = Counter(k for k, _ in got)
    missing = set(changes) - set(keys)
    assert not missing, f"{len(missing)} change(s) lost: {sorted(missing)[:5]}"
    assert set(keys) <= set(changes), "events the store never committed"
    bodies: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    for k, body in got:
        bodies[k].add(body)
    assert all(b == {changes[k]} for k, b in bodies.items()), "a duplicate differs"
    first: dict[str, list[int]] = defaultdict(list)
    for alarm_id, seq in dict.fromkeys(k for k, _ in got):
        first[alarm_id].append(seq)
    for alarm_id, seqs in first.items():
        assert seqs == list(range(1, len(seqs) + 1)), (alarm_id, seqs)
    # the retained alarm states survived the restarts: each open alarm's latest change
    latest: dict[str, tuple[int, bytes]] = {}
    for (alarm_id, seq), payload in changes.items():
        if seq > latest.get(alarm_id, (0, b""))[0]:
            latest[alarm_id] = (seq, payload)
    want = {a: p for a, (_, p) in latest.items() if json.loads(p)["event"] != "closed"}
    assert retained == want
    assert_clean_log(log)
    assert exit_code == 0



# --- 2. the time-series server restarted again and again -----------------------------------

#: sensor -> values it cycles through (below every limit: telemetry, not alarms, is tested)
GAUGES = {"A-1F-WL1": (11.0, 12.5, 14.0, 12.0), "B-B1-WL1": (0.11, 0.13, 0.12, 0.1),
          "A-2F-LC1": (812.5, 1650.25, 400.0, 999.75)}
TSDB_DOWN_S = (1.0, 2.5, 1.5)


class Gauges(threading.Thread):
    """Each gauge reports 40 times a second with its own clock, one distinct millisecond per
    reading, and waits for the broker to take each (QoS 1)."""

    def __init__(self, device: Device) -> None:
        super().__init__(name="chaos-gauges", daemon=True)
        self.device = device
        self.halt = threading.Event()
        self.sent: dict[str, dict[int, float]] = defaultdict(dict)  # sensor -> {ms: value}

    def run(self) -> None:
        i = 0
        last = 0
        while not self.halt.wait(0.025):
            ts = max(round(time.time() * 1000), last + 1)
            last = ts
            for sensor, values in GAUGES.items():
                value = values[i % len(values)]
                self.device.send(sensor, {"value": value, "ts": ts})
                self.sent[sensor][ts] = value
            i += 1

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(5)


def test_time_series_server_restarted_repeatedly_every_reading_arrives_once(
        broker, device, tmp_path):
    vm = LocalVictoria(workdir=tmp_path / "vm").start()
    log = tmp_path / "daemon.log"
    rec = tmp_path / "rec.jsonl"
    data = lora_park(tmp_path, broker.port)
    data["telemetry"] = {"flush_interval_s": 0.2, "batch_points": 200,
                         "aggregates_interval_s": 3600,
                         "retry": {"initial_s": 0.2, "max_s": 0.5},
                         "influxdb": {"url": vm.url, "bucket": "park", "secret_env": TOKEN_ENV}}
    cfg = write_yaml(data, tmp_path / "park.yaml")
    scales = {s["id"]: float(s["scale"]) for s in data["sensors"] if "scale" in s}
    gauges = Gauges(device)
    proc = start_daemon(cfg, log, "--record", str(rec))
    cycles: list[dict[str, Any]] = []
    try:
        port = api_port(log)
        wait_until(lambda: log_lines(log, "driver lora: subscribed"), 15, "the subscription")
        gauges.start()

        def points(outcome: str) -> float:
            return scrape(port).get(("parkwatch_telemetry_points_total",
                                     (("outcome", outcome),)), 0.0)

        wait_until(lambda: points("written") > 0, 15, "telemetry written to the server")

        for n, down in enumerate(TSDB_DOWN_S, start=1):
            time.sleep(1.5)
            spooled = points("spooled")
            vm.stop()
            wait_until(lambda n=n: len(log_lines(log, "telemetry: cannot write")) >= n, 15,
                       f"the daemon to notice outage #{n}")
            time.sleep(down)
            during = points("spooled") - spooled
            vm.start()
            wait_until(lambda n=n: len(log_lines(log, "takes writes again")) >= n, 20,
                       f"the replay after outage #{n}")
            cycles.append({"down_s": down, "spooled_during": during})
            assert during > 0, f"outage #{n}: nothing was spooled"
        time.sleep(1.0)  # readings keep flowing after the last replay, written directly again
        gauges.stop()

        def spool_empty() -> bool:
            m = scrape(port)
            return (m.get(("parkwatch_spool_points", (("lane", "telemetry"),))) == 0
                    and m.get(("parkwatch_telemetry_server_up", ())) == 1)

        wait_until(spool_empty, 20, "the spool to empty")
        m = scrape(port)
        accepted = m[("parkwatch_readings_accepted_total", (("driver", "lora"),))]
        exit_code = stop_daemon(proc)
        vm.settle()
        on_server: dict[str, dict[int, float]] = defaultdict(dict)
        for s in vm.export('{__name__=~"(water_level|load_cell)_value"}'):
            on_server[s["metric"]["sensor"]].update(
                zip(s["timestamps"], s["values"], strict=True))
    finally:
        gauges.stop()
        stop_daemon(proc)
        vm.close()
    recorded: dict[str, int] = Counter(
        json.loads(line)["sensor"] for line in rec.read_text(encoding="utf-8").splitlines())
    figures = {"cycles": cycles, "sent": {s: len(v) for s, v in gauges.sent.items()},
               "accepted": accepted, "recorded": dict(recorded),
               "on_server": {s: len(v) for s, v in on_server.items()},
               "points": {k[1][0][1]: v for k, v in m.items()
                          if k[0] == "parkwatch_telemetry_points_total"}}
    print(json.dumps(figures, indent=1))

    assert sum(len(v) for v in gauges.sent.values()) >= 1000, figures
    # the daemon took every reading sent...
    assert accepted == sum(len(v) for v in gauges.sent.values()) == sum(recorded.values())
    # ...and the server holds each exactly once: same count, same instants, same values
    for sensor, sent in gauges.sent.items():
        assert len(on_server[sensor]) == len(sent) == recorded[sensor], (sensor, figures)
        scale = scales.get(sensor, 1.0)
        assert on_server[sensor] == pytest.approx({t: v * scale for t, v in sent.items()}), sensor
    # each outage and each return logged once, not once per retry
    assert len(log_lines(log, "telemetry: cannot write")) == len(TSDB_DOWN_S)
    assert len(log_lines(log, "takes writes again")) == len(TSDB_DOWN_S)
    assert_clean_log(log)
    assert exit_code == 0


# --- 3. serial cables pulled and plugged back ------------------------------------------------

SERIAL = {"rs485-b": ("B-B1-WL2", "B-3F-LC2", "B-1F-FB2", "B-2F-FB2"),
          "scale-a3": ("A-3F-LC2",)}
CUT_S = 3.5  # several reopen attempts (0.5 s, then every 1 s: reopen_max_s)


def serial_park(tmp_path: Path, port: int) -> Path:
    """The whole example park for a `parkwatch run`: the test broker, the simulator's pty paths
    (as `serial_devices` places them), a comm fault after 1 s, reopen attempts every second."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["brokers"]["local"]["port"] = port
    data["gateway"]["state_dir"] = str(tmp_path / "state")
    data["gateway"]["status_interval_s"] = 1
    data["api"]["port"] = 0
    for d in data["drivers"]:
        if d["type"] != "mqtt":  # never a real /dev/ttyUSB*: the simulator's ptys, all of them
            d["port"] = str(tmp_path / f"tty-{d['id']}")
        if d["id"] in SERIAL:
            d.update(comm_fault_after_s=1.0, reopen_max_s=1.0)
    return write_yaml(data, tmp_path / "park.yaml")


def test_serial_cables_cut_and_restored_comm_fault_raised_and_cleared_logged_once(
        broker, tmp_path, serial_devices: SimulatedPark, subscriber):
    sim = serial_devices
    sim.reading("A-3F-LC2", 500.0)
    sim.reading("B-B1-WL2", 10.0)
    log = tmp_path / "daemon.log"
    proc = start_daemon(serial_park(tmp_path, broker.port), log)
    faulted = {s for sensors in SERIAL.values() for s in sensors}

    def drivers_up(up: bool, after: int = 0) -> Callable[[], bool]:
        return lambda: any(all(s["drivers"][d]["connected"] is up for d in SERIAL)
                           and (not up or all(s["drivers"][d]["accepted"] > 0 for d in SERIAL))
                           for s in statuses(subscriber, after))

    def comm_faults(event: str) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda ev: {e["sensor_id"] for e in ev
                           if e["rule"] == "comm_fault" and e["event"] == event} >= faulted

    try:
        wait_until(drivers_up(True), 20, "both serial drivers reading")
        mark = len(subscriber.messages)
        for driver in SERIAL:
            sim.cut(driver)
        cut_at = time.monotonic()
        events = subscriber.wait_events(comm_faults("raised"), timeout=10)
        wait_until(drivers_up(False, mark), 5, "the gateway status to show both ports down")
        # while the cables are out the load on the platform and the sump's water rise
        sim.reading("A-3F-LC2", 8500.0)  # above high_warning (8000 kg)
        sim.reading("B-B1-WL2", 55.0)  # above high_critical (50 cm)
        time.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
        assert not any(e["rule"] == "comm_fault" and e["event"] == "cleared"
                       for e in subscriber.events()), "a comm fault cleared with the cable out"
        mark = len(subscriber.messages)
        restored_at = time.time()
        for driver in SERIAL:
            sim.restore(driver)
        events = subscriber.wait_events(comm_faults("cleared"), timeout=10)

        def raised_from(sensor: str, value: float) -> Callable[[list[dict[str, Any]]], bool]:
            return lambda ev: any(
                e["sensor_id"] == sensor and e["event"] == "raised" and e["value"] == value
                and e["rule"] not in ("comm_fault", "floor_data") for e in ev)

        # the values set while the cable was out arrive once it is back, and alarm
        events = subscriber.wait_events(
            lambda ev: raised_from("A-3F-LC2", 8500.0)(ev) and raised_from("B-B1-WL2", 55.0)(ev),
            timeout=10)
        wait_until(drivers_up(True, mark), 5, "the gateway status to show both ports up")
        exit_code = stop_daemon(proc)
    finally:
        stop_daemon(proc)
    summary = [(e["sensor_id"], e["rule"], e["event"], e["severity"]) for e in events]
    print(json.dumps(summary, ensure_ascii=False))

    fault = [e for e in events if e["rule"] == "comm_fault"]
    for sensor in faulted:  # one fault per sensor, raised then cleared
        mine = [(e["event"], e["severity"], e["threshold"], e["unit"]) for e in fault
                if e["sensor_id"] == sensor]
        assert mine == [("raised", "warning", 1.0, "s"), ("cleared", "warning", 1.0, "s")], mine
    for sensor, value in (("A-3F-LC2", 8500.0), ("B-B1-WL2", 55.0)):
        alarm = next(e for e in events if e["sensor_id"] == sensor and e["value"] == value
                     and e["event"] == "raised")
        assert rfc3339(alarm["observed_at"]) >= restored_at - 0.05, alarm  # read after restore
    # each port's loss and return logged once, though the daemon retried several times
    lost = log_lines(log, "port unavailable") + log_lines(log, " lost (")
    back = log_lines(log, "port is back") + log_lines(log, "recovered after")
    assert len(lost) == 2 and len(back) == 2, (lost, back)
    assert {d for d in SERIAL for x in lost if f"tty-{d}" in x} == set(SERIAL), lost
    assert {d for d in SERIAL for x in back if f"tty-{d}" in x} == set(SERIAL), back
    assert_clean_log(log)
    assert exit_code == 0
