"""Open alarms: does the daemon's cost grow with the alarms nobody acknowledged?  (Issue 20,
"It is done when" 3.)

Two questions, each asked of the real daemon (``parkwatch run --config FILE``, a process of
its own, started afresh for every run) with an empty alarm store and with ``--open`` (100,000)
open alarms in it, in the same invocation, on the same brokers and generator:

1. **CPU per reading.**  ``peers.py``'s storm (its park of 1,000 MQTT water gauges, its
   readings and its checker, imported from there): every sensor crosses its limit and comes
   back every 40 of its readings, so 5 % of the readings change an alarm's state.  After a
   warm-up (``--warmup`` s, the storm's ramp), ``--seconds`` s at ``--rate`` readings/s are
   measured: the daemon's CPU seconds (utime + stime of all its threads, ``/proc/<pid>/stat``)
   from just before the first reading is sent until every expected event has reached the
   command-center subscriber (and 0.3 s more), divided by the readings it accepted
   (``parkwatch_readings_accepted_total`` on ``/metrics``, scraped outside that window: a
   scrape walks every open alarm).  The two cases alternate ``--repeats`` (3) times (0, N, N,
   0, 0, N: a drift of the shared machine's speed falls on both), and each case's figure is
   its CPU seconds over its readings, all runs together.  Target: with 100,000 open, at most
   1.10 × the figure with none.  Every expected event must arrive once and in order for its
   sensor, in every run.
2. **A burst of alarm changes.**  A park of ``--burst`` (10,000) MQTT load cells (``ingest.py``'s
   park); each sends one reading of 12,000 kg, above its 10,000 kg critical limit, all written
   at once by the raw-socket generator: 10,000 ``raised`` events.  The figure is the time
   from the first message of the burst leaving the generator to the 10,000th event arriving at
   the command-center subscriber (both ``time.monotonic()``, one clock for the machine).
   Target: at most 2 s; once with no open alarm, once with ``--open``.  The store is read
   meanwhile by this process (``max(rowid)`` of ``changes`` and the uplink's pending outbox
   rows every 10 ms), which says when the last change was committed and when the uplink
   courier had every one delivered, without asking the daemon anything.

**The open alarms** are written into the state folder's ``alarms.db`` before the daemon
starts; it restores them at start (``AlarmService.restore``).  They are made by the real code:
an ``AlarmService`` (committing at once, no thread) with the park's real rule engine is given
one reading above the limit and one back below for each sensor, which raises and clears one
alarm per sensor (their outbox rows then marked delivered, as the uplink courier would).  Those
rows (the alarm's state and latest event, its two changes, its delivery rows) are then cloned
with fresh alarm ids (``new_alarm_id``) and times spread over the last 30 days, the events
re-encoded to match, until ``--open`` alarms are open: every one cleared and unacknowledged
(the gateway nobody looks after), spread evenly over the park's sensors.  The daemon's log
("N open alarm(s) restored"), its ``/metrics`` (``parkwatch_open_alarms``) and its retained
status on ``parkwatch/v1/<park>/gateway`` (``open_alarms``) must all say so before anything is
measured.

Run from the repository root::

    .venv/bin/python benchmarks/openalarms.py     # about 4.5 min; writes results/openalarms.json
    .venv/bin/python benchmarks/openalarms.py --open 20000 --seconds 5 --repeats 1 --burst 2000
    .venv/bin/python benchmarks/openalarms.py --skip-cpu --profile   # the burst, and profiled

The exit code is 0 when the run went through, whatever the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
import peers  # noqa: E402
from benchinfo import command_line, cpu_probe_ms  # noqa: E402
from ingest import PARK, TOPIC, Bench, DaemonProcess, Profile, park_data, proc_cpu_s  # noqa: E402
from mqttload import ListenerProcess, LoadProcess, sensor_id  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "openalarms.json"
EVENTS = f"parkwatch/v1/{PARK}/events"
STATUS = f"parkwatch/v1/{PARK}/gateway"
CPU_TARGET = 1.10  # CPU per reading with --open alarms / with none
BURST_TARGET_S = 2.0
SPREAD_S = 30 * 86400.0  # the seeded alarms were raised over the last 30 days
BURST_VALUE, NORMAL_VALUE = 12_000.0, 1_000.0  # kg: above the 10 000 kg limit; normal
PROFILE_HZ = 250
PROBE_CELL = "PL00"  # the burst park's readiness probe (ingest.park_data(probes=1))
TIME_FIELDS = ("observed_at", "raised_at", "changed_at")  # of an alarm's state and its events


# --- seeding the store ----------------------------------------------------------------------


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def seed(config: Path, n_open: int, sensors: int, above: np.ndarray,
         below: np.ndarray) -> dict[str, Any]:
    """`n_open` open (cleared, unacknowledged) alarms in the config's state folder's store,
    spread over its first `sensors` sensors; `above` / `below` (one value per sensor) raise
    and clear each sensor's alarm.  Returns what was written."""
    from parkwatch.alarms.ids import new_alarm_id
    from parkwatch.alarms.service import AlarmService
    from parkwatch.alarms.store import AlarmStore
    from parkwatch.alarms.timestamps import rfc3339_ms
    from parkwatch.daemon.app import STORE_FILE
    from parkwatch.park import ParkModel
    from parkwatch.readings import Quality, ReadingBatch
    from parkwatch.rules.engine import RuleEngine
    from parkwatch.schema import load_config

    t_start = time.monotonic()
    cfg = load_config(config)
    path = Path(cfg.gateway.state_dir) / STORE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    park = ParkModel(cfg)
    engine = RuleEngine(park, start=now - 10)
    store = AlarmStore(path)
    service = AlarmService(cfg, park, engine, store)  # commits at once, on this thread
    service.restore(set())
    k = min(n_open, sensors)
    idx = list(range(k))
    for values in (above, below):
        ts = time.time()
        tr = engine.evaluate(ReadingBatch.from_columns(idx, values[:k].tolist(), [ts] * k,
                                                       [int(Quality.GOOD)] * k))
        service.apply(tr)
    counts = service.counts()
    if len(service.book.open) != k or counts["cleared_unacknowledged"] != k:
        raise RuntimeError(f"seeding: {len(service.book.open)} open alarm(s) {counts}, "
                           f"expected {k} cleared and unacknowledged")
    db = store.db
    db.execute("UPDATE outbox SET state='delivered', attempts=1, done_at=created_at")
    real_s = time.monotonic() - t_start
    # the templates: each real alarm with its changes and its deliveries
    tmpl = []
    for alarm_id, source, rule, seq, changed_at, state in db.execute(
            "SELECT alarm_id, source, rule, seq, changed_at, state FROM alarms "
            "ORDER BY rowid"):
        changes = db.execute("SELECT seq, event, at, payload FROM changes WHERE alarm_id=? "
                             "ORDER BY seq", (alarm_id,)).fetchall()
        outbox = db.execute("SELECT seq, subscriber, target, reason, created_at, expires_at "
                            "FROM outbox WHERE alarm_id=? ORDER BY id", (alarm_id,)).fetchall()
        st = json.loads(state)
        evs = []
        for s, e, at, p in changes:
            ev = json.loads(p)
            evs.append((s, e, at, ev, [(f, _epoch(ev[f])) for f in TIME_FIELDS]))
        tmpl.append({"source": source, "rule": rule, "seq": seq, "changed_at": changed_at,
                     "state": st, "base": st["raised_at"], "changes": evs, "outbox": outbox})
    alarms: list[tuple[Any, ...]] = []
    changes_rows: list[tuple[Any, ...]] = []
    outbox_rows: list[tuple[Any, ...]] = []
    extra = n_open - k
    t_first = now - SPREAD_S
    for j in range(extra):
        t = tmpl[j % k]
        raised = t_first + SPREAD_S * j / max(1, extra)  # oldest first, one every ~26 s
        delta = raised - t["base"]
        aid = new_alarm_id(raised)
        st = dict(t["state"], alarm_id=aid)
        for f in TIME_FIELDS:
            st[f] = st[f] + delta
        payload = ""
        for s, e, at, ev, stamps in t["changes"]:
            ev = dict(ev, alarm_id=aid)
            for f, x in stamps:
                ev[f] = rfc3339_ms(x + delta)
            payload = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
            changes_rows.append((aid, s, e, at + delta, payload))
        outbox_rows += [(aid, s, sub, target, reason, "delivered", 1, c + delta, c + delta,
                         x + delta, c + delta) for s, sub, target, reason, c, x in t["outbox"]]
        alarms.append((aid, t["source"], t["rule"], t["seq"], 0, 0, 0, None,
                       t["changed_at"] + delta, json.dumps(st, ensure_ascii=False), payload))
    build_s = time.monotonic() - t_start - real_s
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    db.executemany("INSERT INTO alarms VALUES (?,?,?,?,?,?,?,?,?,?,?)", alarms)
    db.executemany("INSERT INTO changes VALUES (?,?,?,?,?)", changes_rows)
    db.executemany("INSERT INTO outbox (alarm_id, seq, subscriber, target, reason, state, "
                   "attempts, created_at, next_at, expires_at, done_at) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?)", outbox_rows)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    got = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
           for table in ("alarms", "changes", "outbox")}
    got["open"] = db.execute("SELECT count(*) FROM alarms WHERE closed=0 AND active=0 AND "
                             "acknowledged=0").fetchone()[0]
    got["sensors"] = db.execute("SELECT count(DISTINCT source) FROM alarms").fetchone()[0]
    got["rules"] = sorted(r[0] for r in db.execute("SELECT DISTINCT rule FROM alarms"))
    store.close()
    if got["open"] != n_open:
        raise RuntimeError(f"seeding: {got['open']} open alarms written, wanted {n_open}")
    return {**got, "real": k, "cloned": extra, "db_mb": round(path.stat().st_size / 2**20, 1),
            "real_s": round(real_s, 2), "build_s": round(build_s, 2),
            "seconds": round(time.monotonic() - t_start, 2)}


def seeded_store(cache: dict[str, Path], key: str, config: Path, n_open: int, sensors: int,
                 above: np.ndarray, below: np.ndarray, state_dir: Path,
                 info: dict[str, Any]) -> None:
    """The store of `n_open` alarms for this park into `state_dir`: seeded once per park
    shape, copied for the runs after (a fresh daemon on each copy).

    The store is on disk before the daemon starts, as a gateway's store of a month's alarms
    is: a fresh copy of it (over 300 MB) is otherwise still dirty in the page cache, and the
    daemon's first fold of its write-ahead log, whose fsync of the database file then writes
    the whole copy, held the commits of the burst up for over half a second."""
    import shutil

    state_dir.mkdir(parents=True, exist_ok=True)
    if key not in cache:
        info.update(seed(config, n_open, sensors, above, below))
        cache[key] = state_dir / "alarms.db"
        keep = cache[key].with_name("seeded.db")
        shutil.copyfile(cache[key], keep)
        cache[key] = keep
    else:
        shutil.copyfile(cache[key], state_dir / "alarms.db")
        info["copied_from_first_seeding"] = True
    t = time.monotonic()
    fd = os.open(state_dir / "alarms.db", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    info["synced_s"] = round(time.monotonic() - t, 2)


# --- checking what the daemon restored ------------------------------------------------------


def retained_status(b: Bench, timeout: float = 10.0) -> dict[str, Any]:
    """The gateway's retained status on the uplink (a short-lived paho client here)."""
    import threading

    import paho.mqtt.client as mqtt

    got: dict[str, Any] = {}
    done = threading.Event()

    def on_message(_c: Any, _u: Any, m: Any) -> None:
        with contextlib.suppress(ValueError):
            p = json.loads(m.payload)
            if p.get("state") == "online":
                got.update(p)
                done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-openalarms-status")
    c.on_message = on_message
    c.connect(b.uplink.host, b.uplink.port, keepalive=30)
    c.subscribe(STATUS, qos=1)
    c.loop_start()
    try:
        done.wait(timeout)
    finally:
        c.disconnect()
        c.loop_stop()
    return got


def open_on_metrics(d: DaemonProcess) -> dict[str, int]:
    """parkwatch_open_alarms by state, summed over kinds (one scrape)."""
    out: dict[str, int] = {}
    for line in d._get("/metrics").decode().splitlines():
        if line.startswith("parkwatch_open_alarms{"):
            state = line.split('state="', 1)[1].split('"', 1)[0]
            out[state] = out.get(state, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def restored(b: Bench, d: DaemonProcess, log_from: int, n_open: int) -> dict[str, Any]:
    """What the daemon says it restored: its log, /metrics and its retained status."""
    text = d.log_file.read_bytes()[log_from:].decode(errors="replace")
    line = next((ln for ln in text.splitlines() if "open alarm(s) restored" in ln), None)
    logged = None
    if line is not None:
        with contextlib.suppress(ValueError, IndexError):
            logged = int(line.split(" open alarm(s) restored")[0].rsplit(" ", 1)[1])
    t = time.monotonic()
    metrics = open_on_metrics(d)
    scrape_s = time.monotonic() - t
    status = retained_status(b)
    out = {"log": logged, "log_line": line, "metrics": metrics,
           "metrics_open": sum(metrics.values()), "metrics_scrape_s": round(scrape_s, 3),
           "status_open": status.get("open_alarms"), "status_alarms": status.get("alarms")}
    out["ok"] = (out["metrics_open"] == n_open and out["status_open"] == n_open
                 and (logged == n_open if n_open else logged is None))
    if not out["ok"]:
        raise RuntimeError(f"the daemon did not restore {n_open} open alarms: {out}")
    return out


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process now (VmRSS), MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def quiet(pid: int, limit_s: float = 30.0, below: float = 0.05) -> float:
    """Wait until the process uses under `below` CPU-s per 0.5 s; seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        c0 = proc_cpu_s(pid)
        time.sleep(0.5)
        if proc_cpu_s(pid) - c0 < below:
            break
    return round(time.monotonic() - t0, 2)


# --- 1. CPU per reading ---------------------------------------------------------------------


def proc_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


class Daemon(peers.Parkwatch):
    """peers.py's parkwatch, its CPU also read as user and system time."""

    def __init__(self, b: Bench, workdir: Path) -> None:
        self.times: list[tuple[float, float]] = []
        super().__init__(b, workdir)

    def cpu(self) -> float:
        u, s = proc_times(self.proc_pid)
        self.times.append((u, s))
        return u + s


def storm_limits() -> tuple[np.ndarray, np.ndarray]:
    """Per sensor of peers.py's park (its water gauges, then its probe): a value beyond the
    limit and one back below limit - deadband."""
    table = list(peers.limits_table().values())
    lim = np.array([x[0] for x in table])
    db = np.array([x[1] for x in table])
    return lim + 5.0, lim - db - 5.0


def cpu_run(b: Bench, n_open: int, args: argparse.Namespace, workdir: Path,
            cache: dict[str, Path], last_ts: int) -> tuple[dict[str, Any], int]:
    import yaml

    t_start = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"open_seeded": n_open, "loadavg_start": _load(),
                           "cpu_probe_ms": cpu_probe_ms()}
    if n_open:
        data = peers.parkwatch_park(b, workdir / "state")
        config = workdir / "park.yaml"
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        above, below = storm_limits()
        out["seed"] = {}
        seeded_store(cache, "storm", config, n_open, peers.SENSORS, above, below,
                     workdir / "state", out["seed"])
    log = b.workdir / "daemon.log"
    log_from = log.stat().st_size if log.exists() else 0
    t = time.monotonic()
    system = Daemon(b, workdir)  # writes the same park.yaml, starts the daemon
    out["start_to_healthy_s"] = round(time.monotonic() - t, 2)
    checker = None
    try:
        out["restored"] = restored(b, system.daemon, log_from, n_open)
        checker = ListenerProcess((b.uplink.host, b.uplink.port), (b.broker.host, b.broker.port),
                                  system.topic, raw=True)
        out["ready_probe_s"] = round(peers.ready_probe(checker), 3)
        step_args = argparse.Namespace(abort_lag=1.0, settle=60.0, max_lag=args.max_lag)
        pair = peers.Pair(b, system, checker, "storm", step_args, last_ts)
        warm = pair.step("warmup", args.rate, args.warmup, abort=False)
        out["warmup"] = {k: warm[k] for k in ("sent", "expected", "received", "missing",
                                              "duplicates", "pass", "cpu_us_per_reading")}
        out["quiet_before_s"] = quiet(system.daemon.pid)
        acc0 = system.daemon.accepted()
        out["cpu_probe_ms_window"] = cpu_probe_ms()
        i0 = len(system.times)
        step = pair.step("measured", args.rate, args.seconds, abort=False)
        (u0, s0), (u1, s1) = system.times[i0:i0 + 2]  # Pair.step's window
        step["cpu_user_system_s"] = [round(u1 - u0, 2), round(s1 - s0, 2)]
        acc1 = system.daemon.accepted()
        step["rss_mb"] = rss_mb(system.daemon.pid)
        accepted = acc1 - acc0
        step["accepted"] = accepted
        step["cpu_us_per_accepted"] = round(1e6 * step["cpu_s"]["system"] / accepted, 2) \
            if accepted else None
        step["open_alarms_after"] = step.pop("open_alarms", None)
        step["all_events_ok"] = step["correct"]
        out["measured"] = step
        last_ts = pair.last_ts
    finally:
        if checker is not None:
            checker.close()
        out["peak_rss_mb"] = system.rss_mb()
        out.update(system.stop())
    out["runtime_s"] = round(time.monotonic() - t_start, 1)
    return out, last_ts


def _print_cpu(r: dict[str, Any]) -> None:
    m = r.get("measured") or {}
    lat = m.get("latency") or {}
    print(f"    {r['open_seeded']:>7,} open: {m.get('accepted', 0):>7,} readings, "
          f"{m.get('cpu_s', {}).get('system', float('nan')):6.2f} CPU-s, "
          f"{m.get('cpu_us_per_accepted') or float('nan'):7.1f} µs/reading; events "
          f"{m.get('received', 0):,}/{m.get('expected', 0):,}, dup {m.get('duplicates', 0)}, "
          f"{'all correct' if m.get('all_events_ok') else 'NOT all correct'}, p99 "
          f"{lat.get('p99_ms', float('nan')):.1f} max {lat.get('max_ms', float('nan')):.1f} ms;"
          f" open after {m.get('open_alarms_after')}, probe {r['cpu_probe_ms_window']} ms, "
          f"load {r['loadavg_start'][0]:.2f}", flush=True)


# --- 2. the burst ---------------------------------------------------------------------------


def burst_park(b: Bench, state_dir: Path, sensors: int) -> dict[str, Any]:
    """ingest.py's park with `sensors` load cells and a probe cell, flap detection off,
    readings not written to telemetry (as peers.py's parkwatch)."""
    data = park_data(b.broker.port, b.uplink.port, b.api_port, None, state_dir,
                     sensors=sensors, probes=1)
    data["rules"]["flapping"] = None
    data["telemetry"]["readings"] = False
    # decoding in the driver's worker process, as peers.py's parkwatch (the setting
    # docs/install.md gives a large park); PARKWATCH_BENCH_DRIVER_PROCESS=0: in the daemon
    data["drivers"][0]["process"] = os.environ.get("PARKWATCH_BENCH_DRIVER_PROCESS", "1") == "1"
    return data


def _parse(payload: bytes) -> tuple[str, str, str, int, str] | None:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        e = json.loads(payload)
        return e["sensor_id"], e["event"], e["alarm_id"], int(e["seq"]), e["observed_at"]
    return None


def wait_events(checker: ListenerProcess, n0: int, want: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checker.ask("count") - n0 >= want:
            return True
        time.sleep(0.02)
    return False


def burst_cpu(pid: int, workers: list[int], b: Bench, checker: ListenerProcess
              ) -> dict[str, float]:
    """CPU seconds so far of each process taking part in a burst: the daemon's main process
    and its workers, the two brokers, the command-center subscriber."""
    return {"daemon": proc_cpu_s(pid), "daemon_workers": sum(proc_cpu_s(w) for w in workers),
            "broker": proc_cpu_s(b.broker.proc.pid),
            "uplink_broker": proc_cpu_s(b.uplink.proc.pid),
            "subscriber": proc_cpu_s(checker.proc.pid or 0)}


def burst_run(b: Bench, n_open: int, args: argparse.Namespace, workdir: Path,
              cache: dict[str, Path], profile: Path | None = None) -> dict[str, Any]:
    import yaml

    from parkwatch.alarms.timestamps import rfc3339_ms

    t_start = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    n = args.burst
    out: dict[str, Any] = {"open_seeded": n_open, "sensors": n,
                           "loadavg_start": _load()}
    state = workdir / "state"
    b.data = burst_park(b, state, n)
    b.config = workdir / "park.yaml"
    b.config.write_text(yaml.safe_dump(b.data, allow_unicode=True), encoding="utf-8")
    if n_open:
        out["seed"] = {}
        seeded_store(cache, f"burst{n}", b.config, n_open, n, np.full(n, BURST_VALUE),
                     np.full(n, NORMAL_VALUE), state, out["seed"])
    log = b.workdir / "daemon.log"
    log_from = log.stat().st_size if log.exists() else 0
    t = time.monotonic()
    d = DaemonProcess(b.config, b.api_port, log)
    checker = None
    try:
        d.wait_ready(60)
        out["start_to_healthy_s"] = round(time.monotonic() - t, 2)
        out["restored"] = restored(b, d, log_from, n_open)
        checker = ListenerProcess((b.uplink.host, b.uplink.port), (b.broker.host, b.broker.port),
                                  EVENTS, raw=True)
        # readiness: the probe cell raises and clears an alarm of its own
        probe_topic = TOPIC.replace("{sensor_id}", PROBE_CELL)
        for value in (BURST_VALUE, NORMAL_VALUE):
            n0 = checker.ask("count")
            payload = b'{"value":%.1f,"ts":%d}' % (value, int(time.time() * 1000))
            checker.ask("probes", [(probe_topic, payload)], 100.0, time.monotonic())
            if not wait_events(checker, n0, 1, 20.0):
                raise RuntimeError("no event from the probe cell within 20 s")
        out["quiet_before_s"] = quiet(d.pid)
        out["cpu_probe_ms"] = cpu_probe_ms()
        # the burst: every cell one reading over its limit, written flat out
        ts_base = int(time.time() * 1000)
        topics = [TOPIC.replace("{sensor_id}", sensor_id(s)) for s in range(n)]
        built = b.load.build({"topics": topics, "messages": n, "ts_base_ms": ts_base,
                              "overrides": [(s, 0, 1, BURST_VALUE) for s in range(n)]})
        store = sqlite3.connect(f"file:{state / 'alarms.db'}?mode=ro", uri=True,
                                isolation_level=None)
        row0 = store.execute("SELECT max(rowid) FROM changes").fetchone()[0] or 0
        ev0 = checker.ask("count")
        workers = peers.children(d.pid)  # the driver's and the courier's processes
        cpu0 = burst_cpu(d.pid, workers, b, checker)
        prof = Profile(d.pid, profile, PROFILE_HZ) if profile is not None else None
        start_at = time.monotonic() + 0.05
        result = b.load.send_async(0, start_at, times=True)
        # follow the store and the subscriber until every event came (or none for 15 s)
        timeline: list[tuple[float, int, int, int]] = []
        t_committed = t_delivered = None
        last_change, seen = time.monotonic(), -1
        while True:
            time.sleep(0.01)
            now = time.monotonic()
            committed = (store.execute("SELECT max(rowid) FROM changes").fetchone()[0]
                         or 0) - row0
            pending = store.execute("SELECT count(*) FROM outbox WHERE target='uplink' AND "
                                    "state='pending'").fetchone()[0]
            got = checker.ask("count") - ev0
            timeline.append((round(now - start_at, 3), committed, pending, got))
            if t_committed is None and committed >= n:
                t_committed = now
            if t_committed is not None and t_delivered is None and pending == 0:
                t_delivered = now
            if got != seen:
                seen, last_change = got, now
            if got >= n and t_delivered is not None:
                break
            if now - last_change > 15.0 or now - start_at > args.burst_timeout:
                break
        sent = result()
        time.sleep(0.5)  # a duplicate would come now
        cpu1 = burst_cpu(d.pid, workers, b, checker)
        if prof is not None:
            p = prof.stop()
            # py-spy --gil samples the thread holding the GIL: seconds each thread held it
            out["profile"] = {"rate_hz": PROFILE_HZ, "gil_held_s": round(
                p.get("samples", 0) / PROFILE_HZ, 2), "threads": {
                t: {"gil_s": round(v["samples"] / PROFILE_HZ, 2), "leaf": v["leaf"][:8],
                    "inclusive": v["inclusive"][:10]} for t, v in p.get("threads", {}).items()}}
        store.close()
        events = checker.ask("events", ev0)
        t_first = sent["chunk_times"][0][1]
        stamp = rfc3339_ms(ts_base / 1000)
        ids = {sensor_id(s) for s in range(n)}
        keys: set[tuple[str, int]] = set()
        arrivals: list[float] = []
        dups = other = 0
        for t_arr, payload in events:
            e = _parse(payload)
            if e is None or e[0] not in ids or e[1] != "raised" or e[4] != stamp:
                other += 1
                continue
            if (e[2], e[3]) in keys:
                dups += 1
                continue
            keys.add((e[2], e[3]))
            arrivals.append(t_arr - t_first)
        arrivals.sort()
        sensors_raised = len({sensor_id for sensor_id, *_ in
                              (p for p in (_parse(x) for _, x in events) if p)} & ids)
        done = len(arrivals) >= n
        out.update({
            "sent": sent["sent"], "send_s": round(sent["seconds"], 4),
            "build_s": round(built["built_s"], 2),
            "events": len(arrivals), "sensors_raised": sensors_raised, "duplicates": dups,
            "other_events": other,
            "first_event_s": round(arrivals[0], 3) if arrivals else None,
            "median_event_s": round(arrivals[len(arrivals) // 2], 3) if arrivals else None,
            "burst_s": round(arrivals[n - 1], 3) if done else None,
            "last_event_s": round(arrivals[-1], 3) if arrivals else None,
            "all_committed_s": round(t_committed - t_first, 3) if t_committed else None,
            "all_delivered_s": round(t_delivered - t_first, 3) if t_delivered else None,
            "changes_per_s": round(n / arrivals[n - 1], 1) if done else None,
            "cpu_s": {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0},
            "timeline": _thin(timeline),
        })
        out["meets_target"] = done and out["burst_s"] <= BURST_TARGET_S and dups == 0
        m = d.metrics()
        out["accepted_total"] = int(m["parkwatch_readings_accepted_total"])
        out["open_after"] = sum(open_on_metrics(d).values())
    finally:
        if checker is not None:
            checker.close()
        out["peak_rss_mb"] = peers.proc_hwm_mb(d.pid)
        text = d.log_file.read_bytes()[log_from:].decode(errors="replace")
        out["exit"] = d.stop()
        out["log_warnings"] = [ln for ln in text.splitlines()
                               if " WARNING " in ln or " ERROR " in ln][:20]
    out["runtime_s"] = round(time.monotonic() - t_start, 1)
    return out


def _thin(timeline: list[tuple[float, int, int, int]], every: float = 0.05) -> list[list[Any]]:
    """(s since the burst's start, committed, uplink rows pending, events arrived), one sample
    per `every` s and each change of the committed count's phase (first, all)."""
    out: list[list[Any]] = []
    last = -math.inf
    for row in timeline:
        if row[0] - last >= every or row is timeline[-1]:
            out.append(list(row))
            last = row[0]
    return out


def _print_burst(r: dict[str, Any]) -> None:
    def f(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    print(f"    {r['open_seeded']:>7,} open: {r.get('events', 0):,}/{r['sensors']:,} events, "
          f"the last after {f(r.get('burst_s'))} s (first {f(r.get('first_event_s'))}, median "
          f"{f(r.get('median_event_s'))}); all committed {f(r.get('all_committed_s'))} s, all "
          f"delivered {f(r.get('all_delivered_s'))} s; dup {r.get('duplicates')}; CPU-s: "
          + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in r.get("cpu_s", {}).items())
          + f"; probe "
          f"{r.get('cpu_probe_ms')} ms, load {r['loadavg_start'][0]:.2f}: "
          f"{'PASS' if r.get('meets_target') else 'FAIL'}",
          flush=True)


def _print_profile(p: dict[str, Any]) -> None:
    for t, v in sorted(p.get("threads", {}).items(), key=lambda x: -x[1]["gil_s"]):
        top = ", ".join(f"{name.split(' (')[0]} {n / PROFILE_HZ:.2f}"
                        for name, n in v["leaf"][:4])
        print(f"      {t.split(': ', 1)[-1]:<44} GIL {v['gil_s']:5.2f} s: {top}", flush=True)


# --- main -----------------------------------------------------------------------------------


def cpu_summary(runs: list[dict[str, Any]], n_open: int) -> dict[str, Any]:
    def per(n: int) -> float | None:
        ms = [r["measured"] for r in runs if r["open_seeded"] == n and "measured" in r]
        acc = sum(m["accepted"] for m in ms)
        return round(1e6 * sum(m["cpu_s"]["system"] for m in ms) / acc, 2) if acc else None

    none, many = per(0), per(n_open)
    ratio = round(many / none, 3) if none and many else None
    ok = all(r.get("measured", {}).get("all_events_ok") for r in runs)
    each = {str(n): [r["measured"].get("cpu_us_per_accepted") for r in runs
                     if r["open_seeded"] == n and "measured" in r] for n in (0, n_open)}
    return {"us_per_reading": {"0": none, str(n_open): many}, "ratio": ratio,
            "us_per_reading_each_run": each,
            "target_ratio": CPU_TARGET, "all_events_ok": ok,
            "duplicates": sum(r.get("measured", {}).get("duplicates", 0) for r in runs),
            "meets_target": ratio is not None and ratio <= CPU_TARGET and ok}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--open", type=int, default=100_000, help="open alarms seeded")
    ap.add_argument("--rate", type=float, default=5000.0, help="readings/s of the CPU runs")
    ap.add_argument("--seconds", type=float, default=15.0, help="s measured in each CPU run")
    ap.add_argument("--warmup", type=float, default=4.0,
                    help="s of the storm before the measured window (the ramp)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="CPU run pairs; the order alternates (0, N, N, 0, ...)")
    ap.add_argument("--max-lag", type=float, default=0.25,
                    help="s within which every event must arrive for a CPU run to keep up")
    ap.add_argument("--burst", type=int, default=10_000, help="sensors (and changes) of the "
                    "burst; 0 skips the burst")
    ap.add_argument("--burst-timeout", type=float, default=120.0)
    ap.add_argument("--skip-cpu", action="store_true", help="the burst only")
    ap.add_argument("--profile", action="store_true",
                    help="one more burst with --open alarms, py-spy sampling the daemon (which "
                    "slows it): the seconds each thread held the GIL, and where")
    ap.add_argument("--profile-raw", type=Path, default=None,
                    help="with --profile, keep py-spy's raw samples here (for flamegraph.pl)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    started = time.monotonic()
    info = peers.bench_machine(**peers.versions({}))
    print(f"parkwatch open-alarms benchmark: {info['nproc']} cores, load {info['loadavg']}, "
          f"speed probe {info['cpu_probe_ms']} ms; {args.open:,} open alarms", flush=True)
    res: dict[str, Any] = {
        "benchmark": "openalarms", "command": command_line(argv), "machine": info,
        "settings": {
            "open": args.open, "open_state": "cleared, unacknowledged (never acknowledged)",
            "cpu": {"park": f"peers.py's: {peers.SENSORS} MQTT water gauges", "workload":
                    f"peers.py's storm: {peers.STORM_HALF} readings beyond the limit, as many "
                    f"back: {100 / (2 * peers.STORM_HALF):g} % of readings change state",
                    "rate": args.rate, "seconds": args.seconds, "warmup_s": args.warmup,
                    "repeats": args.repeats, "max_lag_s": args.max_lag,
                    "target": f"µs/reading with {args.open:,} open ≤ {CPU_TARGET} × with none"},
            "burst": {"park": f"ingest.py's: {args.burst} MQTT load cells, one probe cell",
                      "changes": args.burst, "value_kg": BURST_VALUE, "limit_kg": 10_000,
                      "target_s": BURST_TARGET_S,
                      "from": "the generator writing the burst's first message",
                      "to": "the last raised event at the command-center subscriber"},
        },
    }
    cache: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parkwatch-open-")))
        b = Bench(stack, tmp, telemetry=False)
        b.load = LoadProcess(b.broker.host, b.broker.port, "bench-openalarms-load")
        stack.callback(b.load.close)
        if not args.skip_cpu:
            print(f"  CPU per reading: storm at {args.rate:,.0f}/s, {args.seconds:g} s measured",
                  flush=True)
            runs: list[dict[str, Any]] = []
            last_ts = 0
            for k in range(args.repeats):
                for n_open in ((0, args.open) if k % 2 == 0 else (args.open, 0)):
                    r, last_ts = cpu_run(b, n_open, args, tmp / f"cpu-{k}-{n_open}", cache,
                                         last_ts)
                    runs.append(r)
                    _print_cpu(r)
            res["cpu"] = {**cpu_summary(runs, args.open), "runs": runs}
        if args.burst:
            print(f"  burst: {args.burst:,} alarm changes at once", flush=True)
            bursts = []
            for n_open in sorted({0, args.open}):
                r = burst_run(b, n_open, args, tmp / f"burst-{n_open}", cache)
                bursts.append(r)
                _print_burst(r)
            res["burst"] = {"target_s": BURST_TARGET_S, "burst_s": {
                str(r["open_seeded"]): r.get("burst_s") for r in bursts},
                "meets_target": all(r.get("meets_target") for r in bursts), "runs": bursts}
            if args.profile:
                print("  the same burst again, profiled (py-spy --gil; not a figure):",
                      flush=True)
                r = burst_run(b, args.open, args, tmp / "burst-profiled", cache,
                              profile=args.profile_raw or tmp / "burst-profile.txt")
                _print_burst(r)
                _print_profile(r.get("profile") or {})
                res["burst"]["profiled"] = r
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res["runtime_s"] = round(time.monotonic() - started, 1)
    print()
    if "cpu" in res:
        c = res["cpu"]
        u = c["us_per_reading"]
        print(f"  CPU per reading: {u['0']} µs with no open alarm, {u[str(args.open)]} µs with "
              f"{args.open:,}: ratio {c['ratio']} (target ≤ {CPU_TARGET}), events "
              f"{'all correct' if c['all_events_ok'] else 'NOT all correct'}: "
              f"{'PASS' if c['meets_target'] else 'FAIL'}")
    if "burst" in res:
        bs = res["burst"]["burst_s"]
        print(f"  burst of {args.burst:,}: {bs.get('0')} s with no open alarm, "
              f"{bs.get(str(args.open))} s with {args.open:,} (target ≤ {BURST_TARGET_S:g} s): "
              f"{'PASS' if res['burst']['meets_target'] else 'FAIL'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nran {res['runtime_s']:.0f} s; wrote "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
