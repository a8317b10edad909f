"""Start-up time and memory of ``parkwatch run`` with a park of 10 000 sensors.

The real daemon runs as a subprocess (the venv's ``parkwatch`` console script, as systemd
starts it) on a generated park: MQTT sensors with a templated topic on a private Mosquitto
(``LocalMosquitto``), telemetry to a private VictoriaMetrics (``LocalVictoria``, the InfluxDB
v2 write API) as a gateway with a Grafana server has it, or to the spool alone
(``--telemetry spool``).  Targets:

* **start → ready ≤ 1.5 s**: from just before the process is spawned to the ``READY=1``
  datagram on a ``NOTIFY_SOCKET`` the benchmark binds (AF_UNIX, SOCK_DGRAM; the daemon sends
  it once its drivers and brokers are connected).  Median and max of ``--runs`` starts.
* **RSS ≤ 80 MB**: ``VmRSS`` and ``VmHWM`` from ``/proc/<pid>/status`` right after ready and
  after ``--load-s`` seconds of every sensor publishing a reading ``--rate`` times a second.

The breakdown that explains the figures: ``python -X importtime -m parkwatch check-config``
(top imports), the time to parse and to validate the 10k-sensor config, and the RSS of bare
interpreters (``import numpy``, ``import parkwatch.daemon.app``, the config loaded).

Run from the repository root::

    .venv/bin/python benchmarks/startup.py                 # < 60 s; results/startup.json
    .venv/bin/python benchmarks/startup.py --runs 3 --load-s 3 --telemetry spool

The exit code is 0 whether or not the targets are met; the output says which pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
from benchinfo import command_line  # noqa: E402
from benchinfo import machine as bench_machine  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

EXAMPLE = ROOT / "src" / "parkwatch" / "examples" / "park.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "startup.json"
TARGET_READY_S = 1.5
TARGET_RSS_MB = 80.0
PER_FLOOR = (("load_cell", 10), ("water_level", 3), ("fire_button", 4))  # 17 sensors a floor
FLOORS_PER_BUILDING = 20
READY_TIMEOUT_S = 30.0
MB = 1024 * 1024


# --- the park ---------------------------------------------------------------------------------


def park_data(n: int, port: int, state_dir: Path, influx_url: str | None) -> dict[str, Any]:
    """The example park scaled to n sensors: its brokers, rules, alarm routing and targets;
    buildings of 20 floors, each let to one tenant (a subscriber of its own, as in the
    example) with 10 load cells (in two zones), 3 water gauges and 4 fire buttons, all MQTT
    devices on the ``lora`` driver's templated topic ``devices/{sensor_id}/up``."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["brokers"]["local"]["port"] = port
    data["gateway"]["state_dir"] = str(state_dir)
    data["api"]["port"] = 0  # a free port: never clash with a gateway's 9466
    from parkwatch.devtools.parkdata import mqtt_only

    mqtt_only(data)
    data["outputs"], data["linkage"] = [], {}  # a park of its own below: no sounder in it
    if influx_url:
        data["telemetry"]["influxdb"] = {"url": influx_url, "org": "parkwatch",
                                         "bucket": "park"}
    buildings: list[dict[str, Any]] = []
    sensors: list[dict[str, Any]] = []
    tenants: list[dict[str, Any]] = []
    f = 0
    while len(sensors) < n:
        b, level = f // FLOORS_PER_BUILDING, f % FLOORS_PER_BUILDING + 1
        bid, fid = f"B{b:02d}", f"{level}F"
        if level == 1:
            buildings.append({"id": bid, "name": f"{b + 1}号楼", "floors": []})
        buildings[-1]["floors"].append({
            "id": fid, "level": level, "rated_load_kn_m2": 10.0 if level == 1 else 4.0,
            "area_m2": 1500, "zones": [{"id": "east", "area_m2": 750},
                                       {"id": "west", "area_m2": 750}]})
        tenants.append({"id": f"t-{bid}-{fid}", "name": f"租户 {bid} {fid}",
                        "occupies": [{"building": bid, "floor": fid}]})
        for kind, count in PER_FLOOR:
            for k in range(count):
                if len(sensors) < n:
                    s = {"id": f"{bid}-{fid}-{kind[0].upper()}{kind.split('_')[1][0].upper()}"
                         f"{k + 1}", "kind": kind, "building": bid, "floor": fid,
                         "driver": "lora"}
                    if kind != "water_level":
                        s["zone"] = ("east", "west")[k % 2]
                    sensors.append(s)
        f += 1
    data["buildings"], data["sensors"], data["tenants"] = buildings, sensors, tenants
    subs = [s for s in data["alarms"]["subscribers"] if s.get("party") != "tenant"]
    subs += [{"id": t["id"], "party": "tenant", "tenant": t["id"], "target": "app"}
             for t in tenants]
    data["alarms"]["subscribers"] = subs
    return data


# --- the field: devices publishing readings (a process of its own) -----------------------------


def field_main(host: str, port: int, sensors: list[tuple[str, str]], rate: float,
               seconds: float, conn: Any) -> None:
    """Publish a reading of every sensor `rate` times a second for `seconds`, evenly paced.
    About 1 % of the load cells and water gauges go beyond their critical limit after the
    first second and stay there, and a few fire buttons are pressed: alarms are raised (once
    each) while the rest is telemetry.  Sends back the count published and the CPU time."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    rng = random.Random(7)
    alarming = {sid for sid, kind in sensors if kind != "fire_button" and rng.random() < 0.01}
    pressed = {sid for sid, kind in sensors if kind == "fire_button"}
    pressed = set(rng.sample(sorted(pressed), min(5, len(pressed))))
    normal = {"load_cell": (5000.0, 2.0), "water_level": (10.0, 0.1)}
    high = {"load_cell": 10500.0, "water_level": 55.0}
    topics = [(f"devices/{sid}/up", sid, kind) for sid, kind in sensors]
    conn.send("ready")
    conn.recv()  # go
    cpu0, t0 = time.process_time(), time.monotonic()
    period = 1.0 / rate
    sent, chunk = 0, 200
    k = 0
    while time.monotonic() - t0 < seconds:
        round_t0 = t0 + k * period
        late = k >= 1
        for i in range(0, len(topics), chunk):
            due = round_t0 + period * i / len(topics)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ms = int(time.time() * 1000)
            for topic, sid, kind in topics[i:i + chunk]:
                if kind == "fire_button":
                    event = "press" if late and sid in pressed else "heartbeat"
                    body = {"event": event, "battery": 90}
                elif late and sid in alarming:
                    body = {"value": high[kind], "ts": ms}
                else:
                    mean, sd = normal[kind]
                    body = {"value": round(rng.gauss(mean, sd), 1), "ts": ms}
                c.publish(topic, json.dumps(body), qos=0)
                sent += 1
        k += 1
    c.loop_stop()
    c.disconnect()
    conn.send({"published": sent, "rounds": k, "seconds": round(time.monotonic() - t0, 2),
               "alarming": len(alarming), "pressed": len(pressed),
               "cpu_s": round(time.process_time() - cpu0, 2)})


# --- measuring --------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process in MB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(rest.split()[0]) * 1024 / MB, 1)
    return out


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parkwatch_command() -> list[str]:
    script = Path(sys.executable).parent / "parkwatch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "parkwatch"]


class Start:
    """One `parkwatch run` with its own NOTIFY_SOCKET."""

    def __init__(self, config: Path, workdir: Path, log: Path) -> None:
        self.sock_path = workdir / "notify.sock"
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        # as under systemd (CacheDirectory=parkwatch): the parse of the large park.yaml is
        # cached there by the first start; the later ones are the restarts a gateway sees
        env = {**os.environ, "NOTIFY_SOCKET": str(self.sock_path),
               "CACHE_DIRECTORY": str(self.sock_path.parent / "cache")}
        env.pop("WATCHDOG_USEC", None)
        self.log = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([*parkwatch_command(), "run", "--config", str(config),
                                      "--log-level", "WARNING"],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env,
                                     cwd=ROOT)
        self.messages: list[tuple[float, str]] = []

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        deadline = self.t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"no READY=1 within {timeout:g} s (exit {self.proc.poll()}); "
                                   f"see {self.log.name}")
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            t = time.monotonic()
            text = data.decode("utf-8", "replace")
            self.messages.append((t - self.t0, text))
            if "READY=1" in text.split("\n"):
                return t - self.t0

    def stop(self) -> float:
        t = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()
        self.log.close()
        return time.monotonic() - t


def run_python(code: str, *args: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run code in a fresh interpreter of the venv; it prints one JSON object last."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(
                             ROOT / "src")})
    if out.returncode != 0:
        raise RuntimeError(f"python -c failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


RSS_SNIPPET = """
import json, sys
{body}
def mb(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return round(int(line.split()[1]) / 1024, 1)
print(json.dumps({{'VmRSS': mb('VmRSS'), 'VmHWM': mb('VmHWM')}}))
"""

CONFIG_SNIPPET = """
import json, os, sys, time
from pathlib import Path
def mb(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return round(int(line.split()[1]) / 1024, 1)
out = {}
t = time.perf_counter()
from parkwatch.schema import validate_data
from parkwatch.config.yamlsource import load_yaml_with_lines
import parkwatch.schema
out['import_s'] = time.perf_counter() - t
out['rss_after_import_mb'] = mb('VmRSS')
t = time.perf_counter()
data, smap = load_yaml_with_lines(sys.argv[1])
out['yaml_parse_s'] = time.perf_counter() - t
import parkwatch.config.loader as loader
from parkwatch.schema import ParkConfig, cross_check
t = time.perf_counter()
cfg = ParkConfig.model_validate(data, context={'base_dir': smap.base_dir})
out['pydantic_s'] = time.perf_counter() - t
t = time.perf_counter()
problems = cross_check(cfg)
out['cross_check_s'] = time.perf_counter() - t
assert not problems, problems[:3]
out['rss_after_load_mb'] = mb('VmRSS')
out['hwm_after_load_mb'] = mb('VmHWM')
del data, smap
t = time.perf_counter()
from parkwatch.daemon.app import Daemon
out['import_daemon_s'] = time.perf_counter() - t
t = time.perf_counter()
Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
daemon = Daemon(cfg, Path(sys.argv[2]))
out['build_daemon_s'] = time.perf_counter() - t
out['rss_after_build_mb'] = mb('VmRSS')
import yaml
text = open(sys.argv[1], encoding='utf-8').read()
if getattr(yaml, '__with_libyaml__', False):
    t = time.perf_counter()
    yaml.load(text, Loader=yaml.CSafeLoader)
    out['libyaml_load_s'] = time.perf_counter() - t
print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))
sys.stdout.flush()
os._exit(0)  # the daemon was built, not started: nothing to stop
"""


def importtime(argv: list[str], top: int = 12) -> dict[str, Any]:
    """`python -X importtime ARGV`: wall time, import time by package (self time) and the
    heaviest packages outside parkwatch (the cumulative time of their outermost import)."""
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                         text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wall = time.monotonic() - t
    rows = []
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m[1]), int(m[2]), m[4]))
    packages: dict[str, int] = {}
    outer: dict[str, int] = {}
    for self_us, cum, name in rows:
        root = name.split(".")[0]
        packages[root] = packages.get(root, 0) + self_us
        if root != "parkwatch":
            outer[root] = max(outer.get(root, 0), cum)
    return {"argv": argv, "wall_s": round(wall, 3),
            "imports_s": round(sum(r[0] for r in rows) / 1e6, 3),
            "modules": len(rows), "returncode": out.returncode,
            "by_package_ms": {k: round(v / 1000, 1) for k, v in sorted(
                packages.items(), key=lambda kv: -kv[1])[:top]},
            "heaviest_ms": {k: round(v / 1000, 1) for k, v in sorted(
                outer.items(), key=lambda kv: -kv[1])[:top]}}


# --- the run ----------------------------------------------------------------------------------


def alarm_counts(state_dir: Path) -> dict[str, int]:
    db = state_dir / "alarms.db"
    if not db.exists():
        return {}
    con = sqlite3.connect(db, timeout=5)
    try:
        return dict(con.execute("SELECT event, count(*) FROM changes GROUP BY event"))
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def measure(args: argparse.Namespace, tmp: Path, broker: Any, victoria: Any) -> dict[str, Any]:
    state_dir = tmp / "state"
    data = park_data(args.sensors, broker.port, state_dir, victoria.url if victoria else None)
    config = tmp / "park.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                      encoding="utf-8")
    sensors = [(s["id"], s["kind"]) for s in data["sensors"]]
    kinds: dict[str, int] = {}
    for _, kind in sensors:
        kinds[kind] = kinds.get(kind, 0) + 1
    result: dict[str, Any] = {
        "park": {"sensors": len(sensors), "kinds": kinds, "buildings": len(data["buildings"]),
                 "floors": sum(len(b["floors"]) for b in data["buildings"]),
                 "tenants": len(data["tenants"]),
                 "subscribers": len(data["alarms"]["subscribers"]),
                 "config_bytes": config.stat().st_size,
                 "config_lines": config.read_text(encoding="utf-8").count("\n"),
                 "telemetry": "influxdb (LocalVictoria)" if victoria else "spool only"}}
    print(f"park: {len(sensors)} sensors ({', '.join(f'{v} {k}' for k, v in kinds.items())}), "
          f"{result['park']['floors']} floors, {result['park']['tenants']} tenants; config "
          f"{result['park']['config_bytes'] / MB:.1f} MB; telemetry: {result['park']['telemetry']}",
          flush=True)

    # the starts
    runs: list[dict[str, Any]] = []
    log = tmp / "daemon.log"
    for i in range(args.runs):
        last = i == args.runs - 1
        start = Start(config, tmp, log)
        row: dict[str, Any] = {"run": i + 1, "first_start": i == 0}
        try:
            row["ready_s"] = round(start.wait_ready(), 3)
            row["status_line"] = start.messages[-1][1].split("STATUS=", 1)[-1]
            row["at_ready"] = proc_status(start.proc.pid)
            row["cpu_to_ready_s"] = round(proc_cpu_s(start.proc.pid), 2)
            if last and args.load_s > 0:
                row["load"] = load_phase(args, broker, start.proc.pid, sensors)
        except RuntimeError as exc:
            row["error"] = str(exc)
        finally:
            row["stop_s"] = round(start.stop(), 3)
            row["exit"] = start.proc.returncode
        runs.append(row)
        ready = f"{row['ready_s']:.3f} s" if "ready_s" in row else row.get("error")
        print(f"  start {i + 1}/{args.runs}: ready after {ready}"
              + (f", VmRSS {row['at_ready']['VmRSS']:.1f} MB" if "at_ready" in row else "")
              + (f"; after {args.load_s:g} s of readings VmRSS {row['load']['VmRSS']:.1f} MB, "
                 f"VmHWM {row['load']['VmHWM']:.1f} MB" if "load" in row else ""), flush=True)
    result["runs"] = runs
    result["alarm_changes"] = alarm_counts(state_dir)
    if victoria is not None:
        with contextlib.suppress(Exception):
            result["telemetry_samples"] = victoria.samples(
                '{__name__=~"load_cell_value|water_level_value"}')

    # the breakdown
    print("  breakdown: importtime, config load, baselines ...", flush=True)
    # the imports do not depend on the config: the example park saves a second parse
    result["importtime_check_config"] = importtime(["-m", "parkwatch", "check-config",
                                                    str(EXAMPLE)])
    result["importtime_daemon"] = importtime(["-c", "import parkwatch.daemon.app"])
    result["config_load"] = run_python(CONFIG_SNIPPET, str(config), str(tmp / "state-build"))
    result["baselines_mb"] = {
        "python": run_python(RSS_SNIPPET.format(body="")),
        "python -c 'import numpy'": run_python(RSS_SNIPPET.format(body="import numpy")),
        "python -c 'import parkwatch.daemon.app'": run_python(RSS_SNIPPET.format(
            body="import parkwatch.daemon.app")),
    }
    return result


def load_phase(args: argparse.Namespace, broker: Any, pid: int,
               sensors: list[tuple[str, str]]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=field_main, args=(broker.host, broker.port, sensors, args.rate,
                                                args.load_s, child),
                       name="parkwatch-bench-field", daemon=True)
    proc.start()
    child.close()
    try:
        if not (conn.poll(30) and conn.recv() == "ready"):
            raise RuntimeError("the field process did not start")
        cpu0 = proc_cpu_s(pid)
        conn.send("go")
        if not conn.poll(args.load_s + 60):
            raise RuntimeError("the field process did not finish")
        field = conn.recv()
        time.sleep(0.5)  # the last readings through the pipeline
        out: dict[str, Any] = {**proc_status(pid), "field": field,
                               "daemon_cpu_s": round(proc_cpu_s(pid) - cpu0, 2)}
        return out
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
        conn.close()


# --- output -----------------------------------------------------------------------------------


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    # the first start has no state and parses the YAML; the target is about restarts, which
    # read the parse from the cache the first start wrote (reported apart, not hidden)
    first = next((r["ready_s"] for r in result["runs"] if r.get("first_start")), None)
    ready = [r["ready_s"] for r in result["runs"] if "ready_s" in r and not r.get("first_start")]
    rss = [r["at_ready"]["VmRSS"] for r in result["runs"] if "at_ready" in r]
    load = next((r["load"] for r in result["runs"] if "load" in r), None)
    hwm = max([r["at_ready"]["VmHWM"] for r in result["runs"] if "at_ready" in r]
              + ([load["VmHWM"]] if load else []), default=float("nan"))
    peak_rss = max(rss + ([load["VmRSS"]] if load else []), default=float("nan"))
    s = {"first_start_ready_s": first,
         "ready_median_s": round(statistics.median(ready), 3) if ready else None,
         "ready_max_s": max(ready) if ready else None,
         "rss_at_ready_median_mb": statistics.median(rss) if rss else None,
         "rss_under_load_mb": load["VmRSS"] if load else None,
         "hwm_max_mb": hwm}
    s["targets"] = {
        "start_to_ready_s": {"target": TARGET_READY_S, "median": s["ready_median_s"],
                             "max": s["ready_max_s"],
                             "first_start": first,
                             "pass": bool(ready) and max(ready) <= TARGET_READY_S
                             and len(ready) == len(result["runs"]) - 1},
        "rss_mb": {"target": TARGET_RSS_MB, "max_vmrss": peak_rss, "max_vmhwm": hwm,
                   "pass": bool(rss) and load is not None and hwm <= TARGET_RSS_MB},
    }
    return s


def report(result: dict[str, Any]) -> list[str]:
    lines = [f"{'start':>5} {'ready s':>8} {'CPU s':>6} {'VmRSS':>7} {'VmHWM':>7}   "
             f"{'after readings: VmRSS':>21} {'VmHWM':>7}   stop s"]
    lines.append("-" * len(lines[0]))
    for r in result["runs"]:
        if "ready_s" not in r:
            lines.append(f"{r['run']:>5} ERROR {r.get('error')}")
            continue
        a, ld = r["at_ready"], r.get("load")
        lines.append(f"{r['run']:>5} {r['ready_s']:>8.3f} {r['cpu_to_ready_s']:>6.2f} "
                     f"{a['VmRSS']:>7.1f} {a['VmHWM']:>7.1f}   "
                     + (f"{ld['VmRSS']:>21.1f} {ld['VmHWM']:>7.1f}" if ld else f"{'':>29}")
                     + f"   {r['stop_s']:.2f}" + ("   (first start: new state dir)"
                                                  if r["first_start"] else ""))
    lines.append("  (MB; CPU s: the daemon's user + system time until ready)")
    load = next((r["load"] for r in result["runs"] if "load" in r), None)
    if load:
        f = load["field"]
        lines.append(f"  readings: {f['published']} published in {f['seconds']} s "
                     f"({f['published'] / max(f['seconds'], 1e-9):.0f}/s, QoS 0); "
                     f"{f['alarming']} gauges/cells beyond critical and {f['pressed']} buttons "
                     f"pressed; daemon CPU {load['daemon_cpu_s']:.2f} s")
    if result.get("alarm_changes"):
        lines.append(f"  alarm changes in the store: {result['alarm_changes']}")
    if "telemetry_samples" in result:
        lines.append(f"  reading samples in VictoriaMetrics: {result['telemetry_samples']}")
    lines.append("")
    c = result["config_load"]
    lines.append(f"Breakdown (fresh interpreters; config {result['park']['config_bytes'] / MB:.1f}"
                 f" MB, {result['park']['config_lines']} lines):")
    rows = [
        ("import the config loader", f"{c['import_s']:.3f} s"),
        ("parse the YAML with line numbers", f"{c['yaml_parse_s']:.3f} s"),
        ("  for comparison: yaml.load with libyaml (CSafeLoader)",
         f"{c.get('libyaml_load_s', float('nan')):.3f} s"),
        ("validate (pydantic)", f"{c['pydantic_s']:.3f} s"),
        ("cross-check", f"{c['cross_check_s']:.3f} s"),
        ("RSS after imports / after load (HWM)", f"{c['rss_after_import_mb']:.1f} / "
         f"{c['rss_after_load_mb']:.1f} ({c['hwm_after_load_mb']:.1f}) MB"),
    ]
    rows += [
        ("import parkwatch.daemon.app (after the config)", f"{c['import_daemon_s']:.3f} s"),
        ("build the Daemon (park model, rules, store, sinks)", f"{c['build_daemon_s']:.3f} s"),
        ("RSS after the Daemon is built", f"{c['rss_after_build_mb']:.1f} MB"),
    ]
    for key, label in (("importtime_check_config", "check-config (example park)"),
                       ("importtime_daemon", "import parkwatch.daemon.app")):
        it = result[key]
        rows.append((f"-X importtime {label}: wall / imports",
                     f"{it['wall_s']:.3f} s / {it['imports_s']:.3f} s ({it['modules']} modules)"))
        rows.append(("  by package, self time (ms)", ", ".join(
            f"{k} {v:.0f}" for k, v in list(it["by_package_ms"].items())[:7])))
        rows.append(("  heaviest packages, outermost import (ms)", ", ".join(
            f"{k} {v:.0f}" for k, v in list(it["heaviest_ms"].items())[:6])))
    for name, b in result["baselines_mb"].items():
        rows.append((f"RSS of {name}", f"{b['VmRSS']:.1f} MB (HWM {b['VmHWM']:.1f})"))
    lines += [f"  {k:<52} {v}" for k, v in rows]
    lines.append("")
    t = result["summary"]["targets"]
    r, m = t["start_to_ready_s"], t["rss_mb"]
    lines.append(f"Targets ({result['park']['sensors']} sensors):")
    lines.append(f"  {'PASS' if r['pass'] else 'FAIL'}: start → READY=1 ≤ {r['target']:g} s: "
                 f"restarts median {r['median']} s, max {r['max']} s (the first start, "
                 f"with no state and the YAML parsed, not cached yet: {r['first_start']} s)")
    lines.append(f"  {'PASS' if m['pass'] else 'FAIL'}: RSS ≤ {m['target']:g} MB: VmRSS up to "
                 f"{m['max_vmrss']} MB, VmHWM up to {m['max_vmhwm']} MB")
    return lines


def machine() -> dict[str, Any]:
    import numpy
    import paho.mqtt
    import pydantic

    from parkwatch.devtools.localbroker import find_mosquitto
    from parkwatch.devtools.localtsdb import find_victoria

    versions: dict[str, Any] = {"numpy": numpy.__version__, "pydantic": pydantic.__version__,
                                "pyyaml": yaml.__version__,
                                "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
                                "paho_mqtt": paho.mqtt.__version__}
    for key, binary, flag in (("mosquitto", find_mosquitto(), "-h"),
                              ("victoria_metrics", find_victoria(), "-version")):
        versions[key] = None
        if binary:
            with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
                out = subprocess.run([binary, flag], capture_output=True, text=True, timeout=5)
                versions[key] = (out.stdout or out.stderr).splitlines()[0].strip()
    return bench_machine(**versions)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sensors", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5, help="starts measured")
    ap.add_argument("--load-s", type=float, default=5.0,
                    help="seconds of readings before the second RSS figure (0: skip)")
    ap.add_argument("--rate", type=float, default=1.0, help="readings per sensor per second")
    ap.add_argument("--telemetry", choices=("influxdb", "spool"), default="influxdb",
                    help="influxdb: write to a private VictoriaMetrics; spool: no server")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    from parkwatch.devtools.localbroker import LocalMosquitto
    from parkwatch.devtools.localtsdb import LocalVictoria, TsdbUnavailable

    started = time.monotonic()
    info = machine()
    print(f"parkwatch start-up benchmark: {info['nproc']} cores, Python {info['python']}, "
          f"load average {info['loadavg']}", flush=True)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="parkwatch-startup-bench-")))
        broker = stack.enter_context(LocalMosquitto())
        victoria = None
        if args.telemetry == "influxdb":
            try:
                victoria = stack.enter_context(LocalVictoria())
            except TsdbUnavailable as exc:
                print(f"  {exc}: telemetry goes to the spool only", flush=True)
        result = measure(args, tmp, broker, victoria)
    result["summary"] = summarise(result)
    elapsed = time.monotonic() - started
    print()
    print("\n".join(report(result)))
    out = {"benchmark": "startup", "command": command_line(argv), "machine": info,
           "settings": {"sensors": args.sensors, "runs": args.runs, "load_s": args.load_s,
                        "rate_per_sensor_s": args.rate, "telemetry": args.telemetry},
           "runtime_s": round(elapsed, 1), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nran {elapsed:.0f} s; wrote "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
