"""Peers: parkwatch against Node-RED (the peer a user would pick) and a bare paho relay (the
floor), one after another, through the same generator, brokers and checker.

**The systems.**  Each gets the same readings on the sensor broker and publishes one alert per
change of a sensor's alarm state to the uplink broker:

* ``parkwatch``: ``parkwatch run --config FILE`` as a process of its own, doing all its work:
  its MQTT driver with ``process: true`` (a worker process receives and decodes the readings;
  ``PARKWATCH_BENCH_DRIVER_PROCESS=0`` keeps it in the daemon, for an A/B pair; the system's
  CPU is the daemon's and its worker's), a generated park (``ingest.park_data``) of 1,000 MQTT
  water gauges, each with its own
  ``high_critical`` limit and deadband, flap detection off (``rules.flapping: null``),
  readings not written to telemetry (``telemetry.readings: false``; aggregates and events
  still go to the spool), every change committed to the SQLite alarm store before it is
  published (QoS 1) on ``parkwatch/v1/<park>/events``.  A fresh state folder for each
  workload.
* ``node-red``: a pinned Node-RED (``nodered.py``: installed from the npm registry into a cache
  outside the repository), MQTT in → a function node keeping each sensor's state in its
  context → MQTT out (QoS 1).
* ``floor``: ``mqttload.threshold_relay_main``: paho's ``on_message`` does the threshold and
  publishes the alert (QoS 1); no store, no thread hand-over.

All three raise an alarm when ``v >= limit`` and clear it when ``v < limit - deadband``, with
each sensor's own limit (200-290) and deadband (10, 15 or 20).

**Readings.**  ``{"id":"WL0042","v":231.5,"ts":1763800000123}``, QoS 0 on
``bench/sensors/WL0042``, from ``mqttload.LoadProcess`` (a raw socket, packets built before
the clock starts, written in chunks every 2 ms).  Message ``i`` of a step is sensor
``i % 1000``, round ``i // 1000``; ``ts`` is the step's base time plus the round in ms.  The
values are whole tenths, so the text is exact and every system compares the same number.

**Workloads.**

* *quiet* (the shape of ``ingest.py``: almost every reading is ignored): 10 alarm changes a
  second whatever the rate.  Five sensors a second (other ones each time) cross their limit for
  half a second (at least 3 readings) and come back: 2 % of the readings at 1k/s, 0.2 % at
  5k/s, 0.02 % at 50k/s.
* *storm*: every sensor crosses its limit and stays beyond it for 20 of its readings, then
  stays back for 20: one raise and one clear in every 40 readings of a sensor, so **5 % of the
  readings change an alarm's state** (25 raises and 25 clears in every round of 1,000
  readings).  The sensors' cycles are staggered (sensor ``s`` starts at round ``s % 40``, below
  its limit), and the cycle runs on from step to step: each step continues where the one
  before stopped.

Both test the hysteresis too: the first reading beyond a limit is exactly the limit in every
other excursion; the second reading of an excursion lies inside the deadband (the alarm must
stay raised); a sensor below its limit also gets a reading inside the deadband (no alarm may
be raised).

**Checker.**  A command-center subscriber in a process of its own
(``mqttload.ListenerProcess``, raw) notes each alert's arrival (``time.monotonic()``).  The
expected alerts are computed here from the readings actually sent and each sensor's state
before the step.  Each alert is tied to its reading by (sensor, ``ts``; parkwatch:
``observed_at``), and its latency is the arrival minus the time the generator wrote the chunk
holding that reading (the same clock).  A duplicate is an alert seen before: the same
(``alarm_id``, ``seq``) for parkwatch, the same (sensor, event, ``ts``) for the others; they
are counted, never dropped silently.

**A step passes** when the system keeps up (every alert arrives within ``--max-lag`` (0.25 s)
of its reading, and the generator was not stopped for falling ``--abort-lag`` (1 s) behind)
and every expected alert arrives exactly once and in order for its sensor: no alert missing,
none extra, no duplicate, none out of order.

**Fire first.**  After parkwatch's storm search, 40 fire-button presses (each on a button of its
own, ``FB000`` ...: a button's alarm latches) 5 a second, timed from the press to its
``raised`` event: first idle, then during the storm at half the highest rate that passed; the
JSON holds both latency summaries and the ratio of their p99s.

**Each system and workload**: a fresh start (readiness checked with an alert of its own); a
warm-up of 4 s at 5,000/s, not counted and never stopped early (for the storm it is the ramp);
the fixed rates (``--rates``, default 1,000 and 5,000/s, each for ``--latency-seconds``,
default 2.5 × ``--seconds``) for p50/p99/max latency; then the search for the highest rate that
passes. The fixed-rate phases are steps of the search too. While every step passes, the next is
twice as fast (up to 4 times when the system used under a fifth of a core); after a failure,
the search halves the gap (geometrically) between the highest pass and the lowest failure,
starting from just below what the system got through when it fell behind, until they are within
``--resolution`` (8 %), after 12 steps, or when the pair's share of ``--budget`` is spent (at
least one search step). Each step lasts ``--seconds`` (4 s) and records the system's CPU
seconds per reading, the load average and (parkwatch) its open alarms and each of its threads'
CPU time (``parkwatch_thread_cpu_seconds_total``: the cost of each stage, also per alarm
change); each pair records the system's peak RSS (``VmHWM``).

Run from the repository root::

    .venv/bin/python benchmarks/peers.py                 # about 7 min; writes results/peers.json
    .venv/bin/python benchmarks/peers.py --budget 60 --seconds 3      # a quick look
    .venv/bin/python benchmarks/peers.py --systems parkwatch floor --workloads storm

The exit code is 0 when the run went through, whatever the figures; 1 when a system could not
be measured at all (Node-RED not installable is a skipped column, not a failure).
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import collections
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
import nodered  # noqa: E402
from benchinfo import command_line, summary  # noqa: E402
from benchinfo import machine as bench_machine  # noqa: E402
from ingest import PARK, Bench, mosquitto_version, park_data, proc_cpu_s, proc_hwm_mb  # noqa: E402
from mqttload import ListenerProcess, LoadProcess, RelayProcess  # noqa: E402
from stages import Snapshot, between, commit_floor, snapshot  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "peers.json"
SYSTEMS = ("parkwatch", "node-red", "floor")
LABELS = {"parkwatch": "parkwatch", "node-red": "Node-RED", "floor": "floor"}
WORKLOADS = ("quiet", "storm")
SENSORS = 1000
IN_TOPIC = "bench/sensors/{sensor_id}"
PEER_TOPIC = "bench/alerts/{system}"
PW_EVENTS = f"parkwatch/v1/{PARK}/events"
READY_ID = "WLREADY"  # the readiness probe's own sensor: limit 100, deadband 10
QUIET_CHANGES_PER_S = 10
STORM_HALF = 20  # readings beyond the limit, then as many back: 1/20 = 5 % change state
WARMUP = (5000.0, 4.0)  # rate, s: 20 rounds, the storm's ramp (see storm_values)
MIN_RATE, CEILING = 250.0, 300_000.0
MAX_STEPS = 12
#: fire-button presses timed when idle, and as many during the storm at half the maximum (each
#: on a button of its own: a button's alarm latches)
FIRE_PRESSES, FIRE_RATE = 40, 5.0


def sensor_id(s: int) -> str:
    return f"WL{s:04d}"


def limits_tenths() -> tuple[np.ndarray, np.ndarray]:
    """Each sensor's limit and deadband in tenths: limits 200-290, deadbands 10, 15, 20."""
    s = np.arange(SENSORS)
    return (200 + 10 * (s % 10)) * 10, (10 + 5 * (s % 3)) * 10


def limits_table() -> dict[str, tuple[float, float]]:
    lim, db = limits_tenths()
    out = {sensor_id(s): (int(lim[s]) / 10, int(db[s]) / 10) for s in range(SENSORS)}
    out[READY_ID] = (100.0, 10.0)
    return out


# --- the workloads --------------------------------------------------------------------------


def _noise(s: np.ndarray, g: np.ndarray, mod: int) -> np.ndarray:
    return (s * 7919 + g * 104729 + 12345) % mod


def _levels(s: np.ndarray, g: np.ndarray) -> dict[str, np.ndarray]:
    """Per (round, sensor), in tenths: a normal value (10-110 below limit - deadband), one
    beyond the limit (0-19.9 above it), and one inside the deadband."""
    lim, db = limits_tenths()
    lim, db = lim[s], db[s]
    return {"normal": lim - db - 100 - _noise(s, g, 1000), "above": lim + _noise(s, g, 200),
            "deadband": lim - db // 2 + 0 * g, "limit": lim + 0 * g}


def storm_values(g0: int, rounds: int) -> np.ndarray:
    """Rounds g0 .. g0+rounds-1 of the storm: sensor s is beyond its limit while
    a = g - s % 40 >= 0 and a % 40 >= 20.  From round 20 on, 25 sensors cross their limit in
    every round; from round 40 on, 25 others also come back: 5 % of the readings.  A pair's
    stream starts at round 20, and its warm-up (20 rounds) is the ramp: no burst of raises at
    the start, and the counted steps see the steady 5 %."""
    g = np.arange(g0, g0 + rounds)[:, None]
    s = np.arange(SENSORS)[None, :]
    lv = _levels(s, g)
    a = g - s % (2 * STORM_HALF)
    q = a % (2 * STORM_HALF)
    beyond = (a >= 0) & (q >= STORM_HALF)
    vals = np.where(beyond, lv["above"], lv["normal"])
    exact = beyond & (q == STORM_HALF) & ((a // (2 * STORM_HALF)) % 2 == 0)
    vals = np.where(exact, lv["limit"], vals)
    inside = (a >= 0) & ((q == STORM_HALF + 5) | (q == STORM_HALF // 2))
    return np.where(inside, lv["deadband"], vals)


def quiet_rounds(rate: float, seconds: float) -> tuple[int, int]:
    """(rounds, excursion length in rounds) of a quiet step."""
    length = max(3, round(0.5 * rate / SENSORS))
    return max(length + 2, math.ceil(rate * seconds / SENSORS)), length


def quiet_values(rate: float, seconds: float, first: int) -> np.ndarray:
    """A quiet step: every sensor normal, but for 5 excursions a second (sensors `first`,
    `first` + 1, ...), spread evenly over the step, each ending inside it."""
    rounds, length = quiet_rounds(rate, seconds)
    g = np.arange(rounds)[:, None]
    s = np.arange(SENSORS)[None, :]
    lv = _levels(s, g)
    vals = lv["normal"].copy()
    n_exc = max(1, round(QUIET_CHANGES_PER_S / 2 * seconds))
    for k in range(n_exc):
        c = (first + k) % SENSORS
        r0 = (k * (rounds - length)) // n_exc
        vals[r0:r0 + length, c] = lv["above"][r0:r0 + length, c]
        if k % 2 == 0:
            vals[r0, c] = lv["limit"][r0, c]
        vals[r0 + 1, c] = lv["deadband"][r0 + 1, c]
        if r0 >= 1:
            vals[r0 - 1, c] = lv["deadband"][r0 - 1, c]  # not beyond the limit: no alarm
    return vals


def simulate(tenths: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The alerts the readings (message order) must give, from each sensor's state before
    (updated in place): (message index, raised?) in message order."""
    lim, db = limits_tenths()
    idx: list[np.ndarray] = []
    up_of: list[np.ndarray] = []
    for start in range(0, len(tenths), SENSORS):
        row = tenths[start:start + SENSORS]
        m = len(row)
        st = state[:m]
        up = ~st & (row >= lim[:m])
        down = st & (row < lim[:m] - db[:m])
        changed = np.flatnonzero(up | down)
        idx.append(start + changed)
        up_of.append(up[changed])
        state[:m] ^= up | down
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    return np.concatenate(idx), np.concatenate(up_of)


# --- the systems ----------------------------------------------------------------------------


def parkwatch_park(b: Bench, state_dir: Path) -> dict[str, Any]:
    """ingest.py's park with 1,000 MQTT water gauges instead of its load cells."""
    data = park_data(b.broker.port, b.uplink.port, b.api_port, None, state_dir, sensors=0)
    data["drivers"] = [{"id": "lora", "type": "mqtt", "broker": "sensors", "topic": IN_TOPIC,
                        "qos": 0, "value_field": "v", "time_field": "ts", "time_unit": "ms",
                        "process": os.environ.get("PARKWATCH_BENCH_DRIVER_PROCESS", "1") == "1"}]
    data["rules"] = {"flapping": None}
    data["sensors"] = [
        {"id": sid, "kind": "water_level", "driver": "lora",
         "thresholds": {"high_critical": lim, "deadband": db}}
        for sid, (lim, db) in limits_table().items()]
    data["sensors"] += [
        {"id": f"FB{k:03d}", "kind": "fire_button", "building": "A", "floor": "1F",
         "driver": "lora"} for k in range(2 * FIRE_PRESSES)]
    data["telemetry"] = {"readings": False}
    return data


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{p}/stat", "rb") as f:
                if int(f.read().rsplit(b")", 1)[1].split()[1]) == pid:
                    out.append(int(p))
    return out


class System:
    """One system under test, started fresh for one workload."""

    name: str
    topic: str
    argv: list[str]
    proc_pid: int

    def pids(self) -> list[int]:
        return [self.proc_pid]

    def cpu(self) -> float:
        return sum(proc_cpu_s(p) for p in self.pids())

    def rss_mb(self) -> float | None:
        got = [proc_hwm_mb(p) for p in self.pids()]
        return round(sum(x for x in got if x is not None), 1) if None not in got else None

    def extra(self) -> dict[str, Any]:
        return {}

    def threads(self) -> dict[str, float]:
        """CPU seconds so far by thread (stage), where the system tells."""
        return {}

    def stages(self) -> Snapshot:
        """The alarm path's latency histograms so far, where the system has them."""
        return {}

    def stop(self) -> dict[str, Any]:
        return {}


class Parkwatch(System):
    name = "parkwatch"
    topic = PW_EVENTS

    def __init__(self, b: Bench, workdir: Path) -> None:
        import yaml

        b.data = parkwatch_park(b, workdir / "state")
        b.config = workdir / "park.yaml"
        b.config.write_text(yaml.safe_dump(b.data, allow_unicode=True), encoding="utf-8")
        self.b = b
        self.daemon = b.start_daemon()
        self.proc_pid = self.daemon.pid
        self.argv = ["parkwatch", "run", "--config", "<generated park.yaml>"]

    def pids(self) -> list[int]:
        """The daemon and its worker processes (``process: true`` drivers)."""
        return [self.proc_pid, *children(self.proc_pid)]

    def _samples(self, family: str) -> list[tuple[str, float]] | None:
        """(labels text, value) of each sample of `family` on /metrics; None if unreadable."""
        with contextlib.suppress(OSError, ValueError):
            return [(line[len(family) + 1:].rsplit("}", 1)[0], float(line.rsplit(" ", 1)[1]))
                    for line in self.daemon._get("/metrics").decode().splitlines()
                    if line.startswith(family + "{")]
        return None

    def extra(self) -> dict[str, Any]:
        """Open alarms (nobody acknowledges here, so every raised alarm stays open)."""
        got = self._samples("parkwatch_open_alarms")
        return {} if got is None else {"open_alarms": int(sum(v for _, v in got))}

    def threads(self) -> dict[str, float]:
        """``parkwatch_thread_cpu_seconds_total`` by thread: the cost of each stage."""
        return {labels.split('thread="', 1)[1].split('"', 1)[0]: v
                for labels, v in self._samples("parkwatch_thread_cpu_seconds_total") or []}

    def stages(self) -> Snapshot:
        """Evaluation, the commit stage and delivery to the uplink (benchmarks/stages.py)."""
        with contextlib.suppress(OSError, ValueError):
            return snapshot(self.daemon._get("/metrics").decode())
        return {}

    def stop(self) -> dict[str, Any]:
        log = self.daemon.log_file.read_text(errors="replace")
        rc = self.daemon.stop()
        return {"exit": rc, "log_warnings": [ln for ln in log.splitlines()
                                             if " WARNING " in ln or " ERROR " in ln][:20]}


class NodeRed(System):
    name = "node-red"
    topic = PEER_TOPIC.format(system="node-red")

    def __init__(self, b: Bench, workdir: Path, info: dict[str, Any]) -> None:
        nodes = nodered.flow((b.broker.host, b.broker.port), (b.uplink.host, b.uplink.port),
                             IN_TOPIC.replace("{sensor_id}", "+"), self.topic, limits_table())
        self.nr = nodered.NodeRedProcess(Path(info["dir"]), workdir / "node-red", nodes,
                                         workdir / "node-red.log")
        self.proc_pid = self.nr.pid
        self.argv = self.nr.argv
        try:
            self.nr.wait_started()
        except Exception:
            self.nr.stop()
            raise

    def stop(self) -> dict[str, Any]:
        log = self.nr.log()
        rc = self.nr.stop()
        return {"exit": rc, "log_warnings": [ln for ln in log.splitlines()
                                             if "[warn]" in ln or "[error]" in ln][:20]}


class Floor(System):
    name = "floor"
    topic = PEER_TOPIC.format(system="floor")

    def __init__(self, b: Bench) -> None:
        self.relay = RelayProcess((b.broker.host, b.broker.port), (b.uplink.host, b.uplink.port),
                                  self.topic, limits=limits_table(),
                                  in_topic=IN_TOPIC.replace("{sensor_id}", "+"))
        self.proc_pid = self.relay.pid
        self.argv = ["python", "-c", "mqttload.threshold_relay_main(...)", "(spawned)"]

    def stop(self) -> dict[str, Any]:
        return {"exit": self.relay.stop()}


# --- the checker ----------------------------------------------------------------------------


def _epoch_ms(stamp: str) -> int:
    """'2026-11-23T08:00:00.123Z' -> epoch ms (the contract's observed_at)."""
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + \
        int(stamp[20:23])


def parse_alert(payload: bytes) -> tuple[str, str, int, tuple[Any, ...]] | None:
    """(sensor, event, reading ts in ms, duplicate key) of a parkwatch event or a peer's
    alert; None for a payload that is neither."""
    try:
        e = json.loads(payload)
        if "observed_at" in e:  # parkwatch's contract event
            return (e["sensor_id"], e["event"], _epoch_ms(e["observed_at"]),
                    (e["alarm_id"], e["seq"]))
        ts = int(e["ts"])
        return e["sensor_id"], e["event"], ts, (e["sensor_id"], e["event"], ts)
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def check(events: list[tuple[float, bytes]], exp_idx: np.ndarray, exp_up: np.ndarray,
          ts_base: int, rounds: int, chunk_times: list[tuple[int, float]]) -> dict[str, Any]:
    """Every expected alert once and in order per sensor?  With each alert's latency."""
    index = {sensor_id(s): s for s in range(SENSORS)}
    expected: dict[int, list[tuple[int, str]]] = collections.defaultdict(list)
    for i, up in zip(exp_idx.tolist(), exp_up.tolist(), strict=True):
        expected[i % SENSORS].append((ts_base + i // SENSORS, "raised" if up else "cleared"))
    got: dict[int, list[tuple[int, str, float]]] = collections.defaultdict(list)
    seen: dict[tuple[Any, ...], float] = {}
    dups: list[dict[str, Any]] = []
    other = unreadable = 0
    for t, payload in events:
        a = parse_alert(payload)
        if a is None:
            unreadable += 1
            continue
        sid, event, ts, key = a
        s = index.get(sid)
        if s is None or not ts_base <= ts < ts_base + rounds:
            other += 1  # the readiness probe, or a late alert of an earlier step
            continue
        if key in seen:
            dups.append({"sensor": sid, "event": event, "ts": ts, "key": list(key),
                         "after_ms": round((t - seen[key]) * 1000, 3)})
            continue
        seen[key] = t
        got[s].append((ts, event, t))
    starts = [c[0] for c in chunk_times]
    latencies: list[float] = []
    missing = extra = 0
    reordered: list[str] = []
    last_i, last_t = -1, 0.0
    for s in set(expected) | set(got):
        exp = expected.get(s, [])
        rec = got.get(s, [])
        want = collections.Counter(exp)
        have = collections.Counter((ts, ev) for ts, ev, _t in rec)
        missing += sum((want - have).values())
        extra += sum((have - want).values())
        if not (want - have) and not (have - want) and [(ts, ev) for ts, ev, _ in rec] != exp:
            reordered.append(sensor_id(s))
        for ts, ev, t in rec:
            if (ts, ev) not in want:
                continue
            i = (ts - ts_base) * SENSORS + s
            k = bisect.bisect_right(starts, i) - 1
            if k >= 0:
                latencies.append(t - chunk_times[k][1])
            if t > last_t:
                last_i, last_t = i, t
    return {"expected": len(exp_idx), "received": sum(len(v) for v in got.values()),
            "missing": missing, "extra": extra, "duplicates": len(dups),
            "duplicate_examples": dups[:10], "reordered_sensors": len(reordered),
            "reordered_examples": reordered[:10], "other_alerts": other,
            "unreadable": unreadable, "latencies": latencies, "last": (last_i, last_t)}


# --- one step -------------------------------------------------------------------------------


class Pair:
    """One system on one workload: its state of the stream between steps."""

    def __init__(self, b: Bench, system: System, checker: ListenerProcess, workload: str,
                 args: argparse.Namespace, last_ts: int) -> None:
        self.b, self.sys, self.checker, self.workload, self.args = b, system, checker, \
            workload, args
        self.state = np.zeros(SENSORS, bool)
        self.g = STORM_HALF  # storm: the next round of the stream (see storm_values)
        self.first = 0  # quiet: the next sensor to cross its limit
        self.last_ts = last_ts
        self.topics = [IN_TOPIC.replace("{sensor_id}", sensor_id(s)) for s in range(SENSORS)]
        self.ids = [sensor_id(s) for s in range(SENSORS)]

    def values(self, rate: float, seconds: float) -> np.ndarray:
        if self.workload == "storm":
            rounds = max(1, math.ceil(rate * seconds / SENSORS))
            vals = storm_values(self.g, rounds)
            self.g += rounds
        else:
            vals = quiet_values(rate, seconds, self.first)
            self.first += max(1, round(QUIET_CHANGES_PER_S / 2 * seconds))
        return vals.ravel()

    def cpu(self) -> dict[str, float]:
        assert self.b.broker.proc is not None and self.b.uplink.proc is not None
        return {"system": self.sys.cpu(), "sensor_broker": proc_cpu_s(self.b.broker.proc.pid),
                "uplink_broker": proc_cpu_s(self.b.uplink.proc.pid),
                "checker": proc_cpu_s(self.checker.proc.pid or 0),
                "generator": proc_cpu_s(self.b.load.proc.pid or 0)}

    def quiesce(self, limit_s: float = 30.0) -> float:
        """Until the system uses under a fifth of a core (its backlog done); seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            c0 = self.sys.cpu()
            time.sleep(0.5)
            if self.sys.cpu() - c0 < 0.1:
                break
        return time.monotonic() - t0

    def step(self, label: str, rate: float, seconds: float,
             abort: bool = True) -> dict[str, Any]:
        args = self.args
        vals = self.values(rate, seconds)
        n = len(vals)
        rounds = n // SENSORS
        ts_base = max(int(time.time() * 1000), self.last_ts + 1)
        built = self.b.load.build({"topics": self.topics, "ids": self.ids, "values": vals,
                                   "messages": n, "ts_base_ms": ts_base})
        exp_idx, exp_up = simulate(vals, self.state.copy())
        ev0 = self.checker.ask("count")
        threads0 = self.sys.threads()  # scrapes of /metrics: before the CPU window opens
        stages0 = self.sys.stages()
        cpu0 = self.cpu()
        start_at = time.monotonic() + 0.05
        result = self.b.load.send_async(rate, start_at, times=True)
        # abort when the alerts fall more than abort_lag behind the readings that cause them
        stopped_lag = None
        while True:
            time.sleep(0.2)
            elapsed = time.monotonic() - start_at
            if elapsed >= n / rate:
                break
            due = int(np.searchsorted(exp_idx, (elapsed - args.abort_lag) * rate))
            got = self.checker.ask("count") - ev0
            if abort and due > 0 and got < due:
                stopped_lag = round(elapsed, 2)
                self.b.load.stop()
                break
        sent = result()
        n_sent = sent["sent"]
        keep = exp_idx < n_sent
        exp_idx, exp_up = exp_idx[keep], exp_up[keep]
        simulate(vals[:n_sent], self.state)  # the state every system must now be in
        # wait for the alerts: all expected, or none new for a while
        deadline = time.monotonic() + args.settle
        count, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            c = self.checker.ask("count") - ev0
            if c >= len(exp_idx):
                time.sleep(0.3)  # a duplicate or an extra alert would come now
                break
            if c != count:
                count, since = c, time.monotonic()
            elif time.monotonic() - since > 5.0:
                break
            time.sleep(0.05)
        waited = time.monotonic() - sent["t_end"]
        cpu1 = self.cpu()
        threads1 = self.sys.threads()
        stages1 = self.sys.stages()
        events = self.checker.ask("events", ev0)
        self.last_ts = ts_base + rounds
        res = check(events, exp_idx, exp_up, ts_base, rounds, sent["chunk_times"])
        lat = res.pop("latencies")
        last_i, last_t = res.pop("last")
        lat_s = summary(lat)
        keeps_up = not sent["stopped"] and bool(lat) and max(lat) <= args.max_lag \
            if len(exp_idx) else not sent["stopped"]
        correct = not (res["missing"] or res["extra"] or res["duplicates"]
                       or res["reordered_sensors"])
        reasons = [w for w, bad in (
            (f"stopped at {stopped_lag} s: alerts > {args.abort_lag:g} s behind",
             sent["stopped"]),
            (f"slowest alert {lat_s.get('max_ms', 0) / 1000:.2f} s > {args.max_lag:g} s",
             not sent["stopped"] and not keeps_up),
            (f"{res['missing']} missing", res["missing"]),
            (f"{res['extra']} unexpected", res["extra"]),
            (f"{res['duplicates']} duplicates", res["duplicates"]),
            (f"{res['reordered_sensors']} sensors out of order", res["reordered_sensors"]))
            if bad]
        d_cpu = {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0}
        # what the system got through: the reading behind the last alert, by its arrival
        sys_rate = (last_i + 1) / (last_t - sent["t0"]) if last_i >= 0 and last_t > sent["t0"] \
            else None
        step = {
            "label": label, "rate": round(rate, 1), "seconds": seconds, "rounds": rounds,
            "messages": n, "sent": n_sent, "stopped": sent["stopped"],
            "achieved_rate": round(sent["achieved_rate"], 1),
            "generator_behind_max_ms": round(sent["behind_max_s"] * 1000, 2),
            "build_s": round(built["built_s"], 2), "ts_range": [ts_base, ts_base + rounds - 1],
            "changes_share": round(len(exp_idx) / n_sent, 5) if n_sent else None,
            **res, "latency": lat_s, "waited_after_send_s": round(waited, 2),
            "system_rate": round(sys_rate, 1) if sys_rate else None,
            "keeps_up": keeps_up, "correct": correct, "pass": keeps_up and correct,
            "pass_ignoring_duplicates": keeps_up and not (res["missing"] or res["extra"]
                                                         or res["reordered_sensors"]),
            "fail_reasons": reasons, "cpu_s": d_cpu,
            "cpu_us_per_reading": round(1e6 * d_cpu["system"] / n_sent, 2) if n_sent else None,
            "loadavg": round(os.getloadavg()[0], 2), **self.sys.extra(),
        }
        if threads1:  # each stage's CPU per reading and per expected alert (alarm change)
            d_thr = {k: v - threads0.get(k, 0.0) for k, v in threads1.items()}
            step["threads_cpu_s"] = {k: round(v, 3) for k, v in
                                     sorted(d_thr.items(), key=lambda kv: -kv[1]) if v > 0}
            if len(exp_idx):
                step["threads_cpu_us_per_change"] = {
                    k: round(1e6 * v / len(exp_idx), 1) for k, v in step["threads_cpu_s"].items()}
        if stages1:  # where an alarm's time went, by the daemon's own histograms
            step["stages"] = between(stages0, stages1)
        if not step["pass"]:
            step["quiesce_s"] = round(self.quiesce(), 2)
        return step


def fire_probe(pair: Pair, storm_rate: float) -> dict[str, Any]:
    """Fire-button presses (on ``bench/sensors/FB...``, fire first on MQTT) timed from the
    press to its ``raised`` event, idle and then during the storm at `storm_rate`: what the
    storm costs a press, as the ratio of the p99s."""
    out: dict[str, Any] = {"storm_rate": round(storm_rate, 1), "presses": FIRE_PRESSES,
                           "press_rate": FIRE_RATE}
    for phase, first in (("idle", 0), ("storm", FIRE_PRESSES)):
        ids = [f"FB{k:03d}" for k in range(first, first + FIRE_PRESSES)]
        now_ms = int(time.time() * 1000)
        schedule = [(IN_TOPIC.replace("{sensor_id}", i),
                     b'{"id":"%s","event":"press","ts":%d}' % (i.encode(), now_ms))
                    for i in ids]
        ev0 = pair.checker.ask("count")
        result = None
        if phase == "storm":  # the readings run from before the first press to after the last
            seconds = FIRE_PRESSES / FIRE_RATE + 2.0
            vals = pair.values(storm_rate, seconds)
            pair.b.load.build({"topics": pair.topics, "ids": pair.ids, "values": vals,
                               "messages": len(vals),
                               "ts_base_ms": max(now_ms, pair.last_ts + 1)})
            pair.last_ts = max(now_ms, pair.last_ts + 1) + len(vals) // SENSORS
            result = pair.b.load.send_async(storm_rate, time.monotonic() + 0.05)
        sent = pair.checker.ask("probes", schedule, FIRE_RATE, time.monotonic() + 1.0)
        if result is not None:
            result()
        deadline = time.monotonic() + pair.args.settle
        raised: dict[str, float] = {}
        while time.monotonic() < deadline and len(raised) < len(ids):
            for t, payload in pair.checker.ask("events", ev0):
                e = json.loads(payload)
                if e["event"] == "raised" and e["sensor_id"] in ids:
                    raised.setdefault(e["sensor_id"], t)
            time.sleep(0.2)
        lat = [raised[i] - t0 for i, t0 in zip(ids, sent, strict=True) if i in raised]
        out[phase] = {**summary(lat), "missing": len(ids) - len(lat)}
        pair.quiesce()
    idle99, storm99 = out["idle"].get("p99_ms"), out["storm"].get("p99_ms")
    out["p99_ratio"] = round(storm99 / idle99, 2) if idle99 and storm99 else None
    return out


def next_rate(steps: list[dict[str, Any]], resolution: float) -> float | None:
    """The next rate to try, or None when the search is done (see the module's doc)."""
    passed = [s["rate"] for s in steps if s["pass"]]
    failed = [s for s in steps if not s["pass"]]
    lo = max(passed, default=None)
    hi = min((s["rate"] for s in failed), default=None)
    if lo is not None and hi is not None and hi <= lo * (1 + resolution):
        return None
    behind = [s["system_rate"] for s in failed if not s["keeps_up"] and s.get("system_rate")]
    guess = min(behind, default=None)
    if lo is None:
        assert hi is not None
        if hi <= MIN_RATE:
            return None
        nxt = 0.9 * guess if guess is not None and guess < hi else 0.5 * hi
        return max(MIN_RATE, min(nxt, 0.8 * hi))
    if hi is None:
        if lo >= CEILING:
            return None
        # up by 2 to 4 times: 4 when the system used under a fifth of a core at `lo`
        best = max((s for s in steps if s["pass"]), key=lambda s: s["rate"])
        share = best["cpu_s"]["system"] * best["rate"] / max(1, best["sent"])
        return min(CEILING, lo * min(4.0, max(2.0, 0.8 / share if share > 0 else 4.0)))
    if guess is not None:  # just under what it got through when it fell behind
        cand = min(0.95 * guess, hi / (1 + resolution / 2))
        if cand > lo * (1 + resolution) and not any(abs(s["rate"] - cand) < 1 for s in steps):
            return cand
    top = hi
    if guess is not None and lo * (1 + resolution) < 1.05 * guess < hi:
        top = 1.05 * guess  # above what it got through when overloaded it fails
    if top <= lo * (1 + resolution) * 1.0001:
        return min(hi, lo * (1 + resolution)) if hi > lo * (1 + resolution) else None
    return math.sqrt(lo * top)


def _print_step(system: str, s: dict[str, Any]) -> None:
    lat = s["latency"]
    print(f"    {system:>9} {s['label']:>6} {s['rate']:>9,.0f}/s: {s['received']:>6,}/"
          f"{s['expected']:<6,} alerts, p50 {lat.get('p50_ms', float('nan')):7.2f} p99 "
          f"{lat.get('p99_ms', float('nan')):8.2f} max {lat.get('max_ms', float('nan')):8.2f} ms,"
          f" {s['cpu_us_per_reading'] or 0:6.1f} µs/reading: "
          + ("pass" if s["pass"] else "FAIL (" + "; ".join(s["fail_reasons"]) + ")"),
          flush=True)


def ready_probe(checker: ListenerProcess, timeout: float = 30.0) -> float:
    """Readings of the probe sensor until its alert comes (raised, then cleared): the system
    reads, judges and publishes.  Seconds it took."""
    t0 = time.monotonic()
    topic = IN_TOPIC.replace("{sensor_id}", READY_ID)
    for value in (150.0, 50.0):
        n0 = checker.ask("count")
        while checker.ask("count") == n0:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"no alert from the probe sensor within {timeout:g} s")
            payload = b'{"id":"%s","v":%.1f,"ts":%d}' % (READY_ID.encode(), value,
                                                         int(time.time() * 1000))
            checker.ask("probes", [(topic, payload)], 100.0, time.monotonic())
            wait = time.monotonic() + 1.0
            while checker.ask("count") == n0 and time.monotonic() < wait:
                time.sleep(0.02)
    return time.monotonic() - t0


def run_pair(b: Bench, system_name: str, workload: str, args: argparse.Namespace,
             nr_info: dict[str, Any], workdir: Path, deadline: float,
             last_ts: int) -> tuple[dict[str, Any], int]:
    t_start = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    if system_name == "parkwatch":
        system: System = Parkwatch(b, workdir)
    elif system_name == "node-red":
        system = NodeRed(b, workdir, nr_info)
    else:
        system = Floor(b)
    out: dict[str, Any] = {"system": system_name, "workload": workload, "command": system.argv,
                           "started_s": round(time.monotonic() - t_start, 2),
                           "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    checker = ListenerProcess((b.uplink.host, b.uplink.port), (b.broker.host, b.broker.port),
                              system.topic, raw=True)
    steps: list[dict[str, Any]] = []
    try:
        out["ready_probe_s"] = round(ready_probe(checker), 3)
        pair = Pair(b, system, checker, workload, args, last_ts)
        out["warmup"] = warm = pair.step("warmup", *WARMUP, abort=False)
        _print_step(system_name, warm)
        if not warm["pass"]:
            time.sleep(1.0)
        for rate in args.rates:
            steps.append(pair.step("fixed", rate, args.latency_seconds))
            _print_step(system_name, steps[-1])
        searched = 0
        out["search_complete"] = False
        while len(steps) < MAX_STEPS + len(args.rates):
            nxt = next_rate(steps, args.resolution)
            out["search_complete"] = nxt is None
            if nxt is None or (searched and time.monotonic() > deadline):
                break
            steps.append(pair.step("search", nxt, args.seconds))
            searched += 1
            _print_step(system_name, steps[-1])
        best = max((s["rate"] for s in steps if s["pass"]), default=0.0)
        if system_name == "parkwatch" and workload == "storm" and best:
            out["fire_probe"] = fp = fire_probe(pair, best / 2)
            print(f"    parkwatch fire press p99 idle {fp['idle'].get('p99_ms')} ms, during the "
                  f"storm at {best / 2:,.0f}/s {fp['storm'].get('p99_ms')} ms "
                  f"(×{fp['p99_ratio']})", flush=True)
        last_ts = pair.last_ts
    finally:
        out["peak_rss_mb"] = system.rss_mb()
        out.update(system.stop())
        checker.close()
    out["steps"] = steps
    out.update(pair_summary(steps, args.rates))
    out["runtime_s"] = round(time.monotonic() - t_start, 1)
    return out, last_ts


def pair_summary(steps: list[dict[str, Any]], rates: list[float]) -> dict[str, Any]:
    passed = [s for s in steps if s["pass"]]
    best = max(passed, key=lambda s: s["rate"], default=None)
    failed_above = [s["rate"] for s in steps if not s["pass"]
                    and (best is None or s["rate"] > best["rate"])]
    lenient = [s["rate"] for s in steps if s["pass_ignoring_duplicates"]]
    fixed = {}
    for rate in rates:
        s = next((s for s in steps if s["label"] == "fixed" and s["rate"] == round(rate, 1)),
                 None)
        if s is not None:
            fixed[f"{rate:g}"] = {**{k: s["latency"].get(k) for k in
                                     ("n", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
                                  "pass": s["pass"], "fail_reasons": s["fail_reasons"],
                                  "cpu_us_per_reading": s["cpu_us_per_reading"],
                                  "duplicates": s["duplicates"], "loadavg": s["loadavg"]}
            if "threads_cpu_us_per_change" in s:
                fixed[f"{rate:g}"]["threads_cpu_us_per_change"] = s["threads_cpu_us_per_change"]
            if "stages" in s:
                fixed[f"{rate:g}"]["stages"] = s["stages"]
    return {
        "max_rate": best["rate"] if best else 0.0,
        "max_rate_cpu_us_per_reading": best["cpu_us_per_reading"] if best else None,
        "lowest_failed_above": min(failed_above, default=None),
        "max_rate_ignoring_duplicates": max(lenient, default=0.0),
        "fixed": fixed,
        "duplicates": sum(s["duplicates"] for s in steps),
        "alerts": sum(s["received"] for s in steps),
        "steps_run": len(steps),
    }


# --- the report -----------------------------------------------------------------------------


def _fire(r: dict[str, Any] | None, phase: str) -> float | None:
    return (((r or {}).get("fire_probe") or {}).get(phase) or {}).get("p99_ms")


def _fixed_fig(r: dict[str, Any] | None, rate: str, key: str) -> float | None:
    return ((r or {}).get("fixed", {}).get(rate) or {}).get(key)


FIGURES: list[tuple[str, Any, str]] = [
    ("max rate /s", lambda r: r.get("max_rate") or None, "higher"),
    ("p50 ms at 1k/s", lambda r: _fixed_fig(r, "1000", "p50_ms"), "lower"),
    ("p99 ms at 1k/s", lambda r: _fixed_fig(r, "1000", "p99_ms"), "lower"),
    ("p50 ms at 5k/s", lambda r: _fixed_fig(r, "5000", "p50_ms"), "lower"),
    ("p99 ms at 5k/s", lambda r: _fixed_fig(r, "5000", "p99_ms"), "lower"),
    ("CPU µs/reading at 5k/s", lambda r: _fixed_fig(r, "5000", "cpu_us_per_reading"), "lower"),
    ("peak RSS MB", lambda r: r.get("peak_rss_mb"), "lower"),
    ("duplicates", lambda r: r.get("duplicates"), "lower"),
    ("fire press p99 ms idle", lambda r: _fire(r, "idle"), "lower"),
    ("fire p99 ms, storm ½ max", lambda r: _fire(r, "storm"), "lower"),
]


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per workload and figure: parkwatch / Node-RED and parkwatch / floor."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for wl, per in results.items():
        pw = per.get("parkwatch") or {}
        out[wl] = {}
        for name, get, _better in FIGURES[:-1]:
            a = get(pw) if "steps" in pw else None
            row: dict[str, float | None] = {}
            for other in ("node-red", "floor"):
                o = per.get(other) or {}
                x = get(o) if "steps" in o else None
                row[f"parkwatch/{other}"] = round(a / x, 3) if a is not None and x else None
            out[wl][name] = row
    return out


def _cell(x: float | None, name: str) -> str:
    if x is None:
        return "–"
    if "rate" in name or name == "duplicates":
        return f"{x:,.0f}"
    return f"{x:.2f}" if x < 100 else f"{x:,.0f}"


def report(res: dict[str, Any]) -> list[str]:
    """Both workloads side by side: each system's figure, then the ratios."""
    systems = res["settings"]["systems"]
    wls = list(res["results"])
    cols = [*(LABELS[s] for s in systems), "pw/Node-RED", "pw/floor"]
    width = 12 * len(cols)
    lines = [f"  {'':<24}" + "".join(f" | {wl:<{width}}" for wl in wls),
             f"  {'':<24}" + "".join(" | " + "".join(f"{c:>12}" for c in cols) for _ in wls)]
    lines.append("  " + "-" * (len(lines[1]) - 2))
    for name, get, _better in FIGURES:
        cells = ""
        for wl in wls:
            per = res["results"][wl]
            vals = [get(per[s]) if "steps" in (per.get(s) or {}) else None for s in systems]
            rat = res["ratios"].get(wl, {}).get(name, {})
            cells += " | " + "".join(f"{_cell(v, name):>12}" for v in vals) + "".join(
                f"{('–' if rat.get(k) is None else f'{rat[k]:.2f}×'):>12}"
                for k in ("parkwatch/node-red", "parkwatch/floor"))
        lines.append(f"  {name:<24}" + cells)
    for wl in wls:
        for s in systems:
            r = res["results"][wl].get(s) or {}
            if "skipped" in r or "error" in r:
                lines.append(f"  {wl}, {LABELS[s]}: "
                             + (f"skipped: {r['skipped']}" if "skipped" in r
                                else f"ERROR: {r['error']}"))
    return lines


# --- main -----------------------------------------------------------------------------------


def versions(nr: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata

    import paho.mqtt

    git = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    return {"parkwatch": f"{importlib.metadata.version('parkwatch')} ({git})",
            "paho_mqtt": paho.mqtt.__version__, "mosquitto": mosquitto_version(),
            "numpy": np.__version__, "node": nr.get("node"), "npm": nr.get("npm"),
            "node_red": nr.get("version")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--budget", type=float, default=440.0,
                    help="s for the whole run (Node-RED's install aside); each system and "
                    "workload gets an equal share of what is left, and starts no search step "
                    "after it (but runs at least one)")
    ap.add_argument("--rates", type=float, nargs="+", default=[1000.0, 5000.0],
                    help="fixed rates (readings/s) for latency")
    ap.add_argument("--seconds", type=float, default=4.0, help="s of readings per search step")
    ap.add_argument("--latency-seconds", type=float, default=None,
                    help="s of readings at each fixed rate (default 2.5 × --seconds)")
    ap.add_argument("--resolution", type=float, default=0.08,
                    help="the search stops when the lowest failing rate is within this of the "
                    "highest passing one")
    ap.add_argument("--max-lag", type=float, default=0.25,
                    help="s within which every alert must arrive for a step to keep up")
    ap.add_argument("--abort-lag", type=float, default=1.0,
                    help="stop a step's readings when the alerts fall this many s behind")
    ap.add_argument("--settle", type=float, default=30.0,
                    help="at most this many s to wait for a step's alerts after its readings")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.latency_seconds is None:
        args.latency_seconds = 2.5 * args.seconds
    args.rates = sorted(args.rates)
    # a SIGTERM (make interrupted, a CI timeout) unwinds like ^C: Node-RED, the daemon, the
    # brokers and the helper processes are stopped and the temporary folder removed
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))
    started = time.monotonic()
    systems = [s for s in SYSTEMS if s in args.systems]
    nr_info: dict[str, Any] = {}
    if "node-red" in systems:
        print(f"Node-RED {nodered.VERSION} (cache {nodered.cache_root()}) ...", flush=True)
        nr_info = nodered.prepare()
        print("  skipped: " + nr_info["skipped"] if "skipped" in nr_info else
              f"  node-red {nr_info['version']} in {nr_info['dir']}", flush=True)
    t_budget = time.monotonic()
    info = bench_machine(**versions(nr_info))
    print(f"parkwatch peers benchmark: {info['nproc']} cores, load {info['loadavg']}, speed "
          f"probe {info['cpu_probe_ms']} ms, Python {info['python']}, node {info['node']}",
          flush=True)
    results: dict[str, dict[str, Any]] = {wl: {} for wl in args.workloads}
    failures = 0
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parkwatch-peers-")))
        # what a durable commit alone takes on this disk: the floor under parkwatch's latency
        # (Node-RED and the relay persist nothing)
        info["commit_floor"] = commit_floor(tmp / "commit-floor")
        # and 20 ms apart, as a storm at 1,000 readings/s commits its 50 changes a second
        info["commit_floor_spaced"] = commit_floor(tmp / "commit-floor-spaced", n=100,
                                                   gap_s=0.02)
        for key, how in (("commit_floor", "back to back"), ("commit_floor_spaced", "20 ms apart")):
            print(f"  durable commit alone (SQLite WAL, fsync), {how}: p50 "
                  f"{info[key]['p50_ms']} ms, p99 {info[key]['p99_ms']} ms", flush=True)
        b = Bench(stack, tmp, telemetry=False)
        b.load = LoadProcess(b.broker.host, b.broker.port, "bench-peers-load")
        stack.callback(b.load.close)
        pairs = [(wl, s) for wl in args.workloads for s in systems]
        last_ts = 0
        for k, (wl, s) in enumerate(pairs):
            if s == "node-red" and "skipped" in nr_info:
                results[wl][s] = {"skipped": nr_info["skipped"]}
                continue
            left = [p for p in pairs[k:] if not (p[1] == "node-red" and "skipped" in nr_info)]
            share = max(0.0, args.budget - (time.monotonic() - t_budget)) / len(left)
            print(f"  {wl}: {LABELS[s]} (search budget {share:.0f} s)", flush=True)
            try:
                results[wl][s], last_ts = run_pair(b, s, wl, args, nr_info, tmp / f"{wl}-{s}",
                                                   time.monotonic() + share, last_ts)
            except Exception as exc:  # one system failing does not end the run
                failures += 1
                traceback.print_exc()
                results[wl][s] = {"error": f"{type(exc).__name__}: {exc}"}
                last_ts = int(time.time() * 1000) + 10_000
    elapsed = time.monotonic() - started
    res = {
        "benchmark": "peers", "command": command_line(argv), "machine": info,
        "settings": {
            "systems": systems, "workloads": args.workloads, "sensors": SENSORS,
            "in_topic": IN_TOPIC, "payload": '{"id":...,"v":...,"ts":...}', "in_qos": 0,
            "out_qos": 1, "limits": "200-290 (sensor s: 200 + 10 × (s % 10))",
            "deadbands": "10, 15, 20 (sensor s: 10 + 5 × (s % 3))",
            "quiet_changes_per_s": QUIET_CHANGES_PER_S,
            "storm": f"{STORM_HALF} readings beyond the limit, {STORM_HALF} back: "
                     f"{100 / STORM_HALF:g} % of readings change state",
            "rates": args.rates, "seconds": args.seconds,
            "latency_seconds": args.latency_seconds, "warmup": list(WARMUP),
            "budget_s": args.budget, "resolution": args.resolution, "max_lag_s": args.max_lag,
            "abort_lag_s": args.abort_lag, "settle_s": args.settle,
            "topics": {"parkwatch": PW_EVENTS, "node-red": PEER_TOPIC.format(system="node-red"),
                       "floor": PEER_TOPIC.format(system="floor")}},
        "node_red": nr_info, "results": results,
        "ratios": {}, "runtime_s": round(elapsed, 1),
    }
    res["ratios"] = ratios(results)
    print()
    print("\n".join(report(res)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nran {elapsed:.0f} s; wrote "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
