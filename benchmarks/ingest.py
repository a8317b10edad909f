"""Ingest: the highest rate of MQTT readings the daemon sustains, against a bare paho subscriber.

1,000 MQTT load cells (one reading per message, QoS 0 on ``devices/{sensor_id}/up``) publish
to a private Mosquitto.  The daemon (``parkwatch run --config FILE``, a process of its own)
does all its work: the MQTT driver, the rules (limits with a deadband, flapping, floor load),
every reading to an InfluxDB-compatible server (a private VictoriaMetrics), alarm events on
the uplink (a second private Mosquitto, QoS 1 with the SQLite store behind it).  The figure is
the highest sustained rate at which every expected alarm event arrives and every point is
stored, as a ratio to the rate at which a bare paho subscriber (no work but counting) drains
the same broker on the same machine in the same run.  Target: at least 95 %.

**Baseline.**  The load generator (``mqttload.py``: a raw socket, TCP_NODELAY, pre-built
QoS 0 PUBLISH packets, many per ``sendall``) publishes ``--bare-messages`` readings flat out;
the bare subscriber's rate is (received - 1) / (last - first arrival).  The broker runs with
``max_queued_messages 0`` and ``max_inflight_messages 0`` (as ``LocalMosquitto`` always does):
Mosquitto 2.0 then queues QoS 0 messages to a slow subscriber without bound instead of
dropping them, so the subscriber drains a backlog and loses nothing (checked: received =
sent, and no "being dropped" notice in the broker's log).

**Steps.**  Each step publishes ``--step-seconds`` of readings at one rate, in whole rounds
(every sensor once per round; each reading carries its own device time, a millisecond after
the sensor's previous one).  Ten sensors of each step (others in every step) read 12 000 kg,
above the 10 000 kg critical limit, from a quarter to three quarters of the step's rounds: 10
``raised`` and 10 ``cleared`` events are expected on the uplink.  A step passes when

* the daemon keeps up: after the last message was sent, its ``readings_accepted`` counter
  (``/metrics``) reaches the number sent within ``--max-lag`` (0.25 s), and did not fall more
  than a second behind during the step (the step is stopped early then);
* every reading is stored: VictoriaMetrics holds one ``load_cell_value`` sample per reading
  sent in the step's device-time range (``count_over_time``);
* every expected event arrives at the uplink subscriber (a spawned process).

The first step runs at 95 % of the bare rate.  After a failure, the next rate is just below
what the daemon got through in the failed step (its accepted count over the step's time);
then the search halves the gap (geometrically) between the highest rate that passed and the
lowest that failed, until they are within ``--resolution`` or the time budget is spent.  While
every step passes it goes up by 10 % a step, up to three times the bare rate (``CEILING``): the
maximum it reports is one that was found, not a floor, since the latency benchmark's half load
is half of it.

Run from the repository root::

    .venv/bin/python benchmarks/ingest.py      # < 3 min; writes benchmarks/results/ingest.json
    .venv/bin/python benchmarks/ingest.py --rates 5000 10000   # just these steps

The exit code is 0 whether or not the target is met; the output says whether it is.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from benchinfo import command_line  # noqa: E402
from benchinfo import machine as bench_machine  # noqa: E402
from mqttload import ListenerProcess, LoadProcess, bare_drain, sensor_id  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"
TOKEN_ENV = "PARKWATCH_BENCH_INFLUX_TOKEN"
PARK = "benchpark"
SENSORS = 1000
TOPIC = "devices/{sensor_id}/up"
ALARM_VALUE = 12_000.0  # kg, above the 10 000 kg critical limit
ALARMS_PER_STEP = 10
TARGET = 0.95


# --- the park and the daemon ----------------------------------------------------------------


def park_data(sensors_port: int, uplink_port: int, api_port: int, vm_url: str | None,
              state_dir: Path, *, sensors: int = SENSORS, probes: int = 0,
              flapping: dict[str, Any] | None = None) -> dict[str, Any]:
    """A generated park: 2 buildings of 10 floors, 50 load cells a floor (LC0000 ...), one
    tenant a floor; `probes` fire buttons (PB00 ...) and load cells (PL00 ...) on top."""
    floors = [(b, f"{k + 1}F") for b in ("A", "B") for k in range(10)]
    per_floor = math.ceil(sensors / len(floors))
    data: dict[str, Any] = {
        "park": {"id": PARK, "name": "基准园区"},
        "gateway": {"id": "bench-gw", "state_dir": str(state_dir), "status_interval_s": 30},
        "brokers": {"sensors": {"host": "127.0.0.1", "port": sensors_port},
                    "center": {"host": "127.0.0.1", "port": uplink_port}},
        # the command center's courier in a process of its own (the setting docs/install.md
        # gives a large park); PARKWATCH_BENCH_UPLINK_PROCESS=0 runs it in the daemon's
        "uplink": {"broker": "center",
                   "process": os.environ.get("PARKWATCH_BENCH_UPLINK_PROCESS", "1") == "1"},
        "api": {"listen": "127.0.0.1", "port": api_port},
        "landlord": {"id": "landlord", "name": "基准实业"},
        "buildings": [{"id": b, "floors": [
            {"id": f"{k + 1}F", "level": k + 1, "rated_load_kn_m2": 10.0, "area_m2": 10_000}
            for k in range(10)]} for b in ("A", "B")],
        "tenants": [{"id": f"t-{b}{f}".lower(), "name": f"租户 {b}{f}",
                     "occupies": [{"building": b, "floor": f}]} for b, f in floors],
        "drivers": [{"id": "lora", "type": "mqtt", "broker": "sensors", "topic": TOPIC}],
        "rules": {"load_cell": {"high_warning": 8000, "high_critical": 10_000,
                                "deadband": 200}},
        "sensors": [{"id": sensor_id(s), "kind": "load_cell", "building": floors[s // per_floor][0],
                     "floor": floors[s // per_floor][1], "driver": "lora"}
                    for s in range(sensors)],
        "telemetry": {"flush_interval_s": 0.5},
    }
    for k in range(probes):
        b, f = floors[k % len(floors)]
        data["sensors"] += [
            {"id": f"PB{k:02d}", "kind": "fire_button", "building": b, "floor": f,
             "driver": "lora"},
            {"id": f"PL{k:02d}", "kind": "load_cell", "building": b, "floor": f,
             "driver": "lora"}]
    if flapping is not None:
        data["rules"]["flapping"] = flapping
    if vm_url is not None:
        data["telemetry"]["influxdb"] = {"url": vm_url, "org": "bench", "bucket": "park",
                                         "secret_env": TOKEN_ENV}
    return data


class DaemonProcess:
    """`parkwatch run --config FILE` in a process of its own, its output in a log file."""

    def __init__(self, config: Path, api_port: int, log_file: Path) -> None:
        self.api = f"http://127.0.0.1:{api_port}"
        self.log_file = log_file
        env = {**os.environ, TOKEN_ENV: os.environ.get(TOKEN_ENV, "bench-token-0123456789")}
        exe = Path(sys.executable).with_name("parkwatch")
        argv = [str(exe), "run", "--config", str(config)] if exe.exists() else \
            [sys.executable, "-m", "parkwatch", "run", "--config", str(config)]
        with open(log_file, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=env)

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError, ValueError):
                last = self.health()
                if last.get("status") == "ok":
                    return dict(last)
            time.sleep(0.1)
        tail = self.log_file.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"daemon not healthy within {timeout:g} s ({last}); log:\n{tail}")

    def _get(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(self.api + path, timeout=10) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:  # /healthz answers 503 when unhealthy
            return bytes(exc.read())

    def health(self) -> dict[str, Any]:
        return dict(json.loads(self._get("/healthz")))

    def metrics(self) -> dict[str, float]:
        """The few series the benchmarks follow, summed over their labels."""
        want = ("parkwatch_readings_accepted_total", "parkwatch_pipeline_queue_length",
                "parkwatch_readings_rejected_total")
        out = dict.fromkeys(want, 0.0)
        for line in self._get("/metrics").decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in out:
                out[name] += float(line.rsplit(" ", 1)[1])
        return out

    def accepted(self) -> int:
        return int(self.metrics()["parkwatch_readings_accepted_total"])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_mb(pid: int) -> float | None:
    """Peak resident memory of a process in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def vm_count(vm_url: str, metric: str, t0_ms: int, t1_ms: int) -> int:
    """Samples of `metric` with device times in [t0_ms, t1_ms] (VictoriaMetrics)."""
    window = t1_ms - t0_ms + 1
    query = f"sum(count_over_time({metric}[{window}ms]))"
    params = urllib.parse.urlencode({"query": query, "time": f"{t1_ms / 1000:.3f}",
                                     "nocache": "1"})
    with urllib.request.urlopen(f"{vm_url}/api/v1/query?{params}", timeout=30) as resp:
        body = json.loads(resp.read())
    result = body["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def vm_flush(vm_url: str) -> None:
    with contextlib.suppress(OSError), urllib.request.urlopen(
            f"{vm_url}/internal/force_flush", timeout=10) as resp:
        resp.read()


def mosquitto_version() -> str:
    from parkwatch.devtools.localbroker import find_mosquitto

    mosq = find_mosquitto()
    with contextlib.suppress(OSError, subprocess.SubprocessError, TypeError, IndexError):
        out = subprocess.run([mosq or "mosquitto", "-h"], capture_output=True, text=True,
                             timeout=5)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    return "?"


def machine() -> dict[str, Any]:
    import paho.mqtt

    from parkwatch.devtools.localtsdb import find_victoria

    vm = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"],
                             capture_output=True, text=True, timeout=5)
        vm = f"{find_victoria()} (Debian {out.stdout.strip() or '?'})"
    return bench_machine(paho_mqtt=paho.mqtt.__version__, mosquitto=mosquitto_version(),
                         victoria_metrics=vm)


# --- profiling (optional) -------------------------------------------------------------------


class Profile:
    """py-spy sampling the daemon for one step or phase: only the thread that holds the GIL is
    sampled, so the samples show where the daemon's one interpreter spends its time."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.out = out
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(rate),
                                      "--format", "raw", "--output", str(out), "--threads",
                                      "--gil", "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return summarise_profile(self.out)


def summarise_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Samples per thread, and per thread the functions with the most samples on the CPU
    (leaf: the function itself; inclusive: it or what it calls)."""
    if not path.exists():
        return {}
    threads: collections.Counter[str] = collections.Counter()
    leaf: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        name = frames[0]  # "thread (tid): name" with --threads
        threads[name] += int(n)
        funcs = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                 + ")" for f in frames[1:]]
        if funcs:
            for t in (name, "all threads"):
                leaf[t][funcs[-1]] += int(n)
                for f in set(funcs):
                    if not f.endswith("(threading.py)"):
                        incl[t][f] += int(n)
    total = sum(threads.values())
    return {"samples": total, "leaf": leaf["all threads"].most_common(2 * top),
            "inclusive": incl["all threads"].most_common(2 * top), "threads": {
        t: {"samples": c, "leaf": leaf[t].most_common(top), "inclusive": incl[t].most_common(top)}
        for t, c in threads.most_common(8)}}


# --- one step -------------------------------------------------------------------------------


class Bench:
    """The parts of a run: the sensor broker, the uplink broker, VictoriaMetrics, the daemon,
    the load generator and the uplink listener."""

    def __init__(self, stack: contextlib.ExitStack, workdir: Path, *, probes: int = 0,
                 flapping: dict[str, Any] | None = None, telemetry: bool = True) -> None:
        import yaml

        from parkwatch.devtools.localbroker import LocalMosquitto, free_port
        from parkwatch.devtools.localtsdb import LocalVictoria

        self.workdir = workdir
        self.broker = stack.enter_context(LocalMosquitto(
            workdir=workdir / "broker", extra_conf="sys_interval 1\n"))
        self.uplink = stack.enter_context(LocalMosquitto(workdir=workdir / "uplink"))
        self.vm = stack.enter_context(LocalVictoria(workdir=workdir / "vm")) if telemetry \
            else None
        self.api_port = free_port()
        self.data = park_data(self.broker.port, self.uplink.port, self.api_port,
                              self.vm.url if self.vm else None, workdir / "state",
                              probes=probes, flapping=flapping)
        self.config = workdir / "park.yaml"
        self.config.write_text(yaml.safe_dump(self.data, allow_unicode=True), encoding="utf-8")
        self.topics = [TOPIC.replace("{sensor_id}", sensor_id(s)) for s in range(SENSORS)]
        self.stack = stack

    def start_daemon(self) -> DaemonProcess:
        d = DaemonProcess(self.config, self.api_port, self.workdir / "daemon.log")
        self.stack.callback(d.stop)
        d.wait_ready()
        self.daemon = d
        return d

    def start_clients(self) -> None:
        self.load = LoadProcess(self.broker.host, self.broker.port)
        self.stack.callback(self.load.close)
        self.listener = ListenerProcess((self.uplink.host, self.uplink.port),
                                        (self.broker.host, self.broker.port),
                                        f"parkwatch/v1/{PARK}/events")
        self.stack.callback(self.listener.close)

    def cpu(self) -> dict[str, float]:
        assert self.broker.proc is not None and self.uplink.proc is not None
        out = {"daemon": proc_cpu_s(self.daemon.pid), "mosquitto": proc_cpu_s(self.broker.proc.pid),
               "uplink_mosquitto": proc_cpu_s(self.uplink.proc.pid),
               "load": proc_cpu_s(self.load.proc.pid or 0)}
        if self.vm is not None and self.vm.proc is not None:
            out["victoria"] = proc_cpu_s(self.vm.proc.pid)
        return out


def run_step(b: Bench, k: int, rate: float, seconds: float, max_lag: float, abort_lag: float,
             settle_s: float, last_ts: int, profile_dir: Path | None = None) -> dict[str, Any]:
    rounds = max(4, math.ceil(rate * seconds / SENSORS))
    n = rounds * SENSORS
    alarm = [(k * ALARMS_PER_STEP + j) % SENSORS for j in range(ALARMS_PER_STEP)]
    r_raise = rounds // 4
    r_clear = max(r_raise + 1, (3 * rounds) // 4)
    ts_base = max(int(time.time() * 1000), last_ts + 1)
    plan = {"topics": b.topics, "messages": n, "ts_base_ms": ts_base,
            "overrides": [(s, r_raise, r_clear, ALARM_VALUE) for s in alarm]}
    built = b.load.build(plan)
    acc0 = b.daemon.accepted()
    ev0 = b.listener.ask("count")
    cpu0 = b.cpu()
    prof = Profile(b.daemon.pid, profile_dir / f"step-{k}.txt") if profile_dir else None
    start_at = time.monotonic() + 0.05
    result = b.load.send_async(rate, start_at)
    # follow the daemon while the load runs: how far its accepted count is behind the sends
    behind: list[tuple[float, float]] = []
    worst = 0.0
    while True:
        time.sleep(0.25)
        now = time.monotonic()
        if now - start_at >= n / rate:
            break
        got = b.daemon.accepted() - acc0
        lag_s = (min(n, rate * (time.monotonic() - start_at)) - got) / rate
        behind.append((round(now - start_at, 2), round(lag_s, 3)))
        worst = max(worst, lag_s)
        if lag_s > abort_lag:
            b.load.stop()
            break
    sent = result()
    # the drain: until the daemon has accepted everything that was sent
    t_done = None
    deadline = time.monotonic() + 60
    accepted = 0
    while time.monotonic() < deadline:
        accepted = b.daemon.accepted() - acc0
        if accepted >= sent["sent"]:
            t_done = time.monotonic()
            break
        time.sleep(0.02)
    cpu1 = b.cpu()
    profile = prof.stop() if prof else None
    drain_s = (t_done - sent["t_end"]) if t_done is not None else float("inf")
    load_s = sent["t_end"] - sent["t0"]
    step: dict[str, Any] = {
        "step": k, "rate": round(rate, 1), "messages": n, "sent": sent["sent"],
        "stopped_early": sent["stopped"], "achieved_rate": round(sent["achieved_rate"], 1),
        "load_s": round(load_s, 3), "generator_behind_max_ms": round(sent["behind_max_s"] * 1000,
                                                                    2),
        "generator_cpu_s": round(sent["cpu_s"], 3), "build_s": round(built["built_s"], 2),
        "accepted": accepted, "drain_s": round(drain_s, 3), "worst_lag_s": round(worst, 3),
        "lag_samples": behind,
        "daemon_rate": round(accepted / (max(t_done or 0, sent["t_end"]) - sent["t0"]), 1),
        "cpu_s": {p: round(cpu1[p] - cpu0[p], 2) for p in cpu0},
    }
    # what reached VictoriaMetrics, and the uplink
    expected_events = {(sensor_id(s), e) for s in alarm for e in ("raised", "cleared")}
    ts_end = ts_base + rounds - 1
    stored = 0
    got_events: set[tuple[str, str]] = set()
    settle_deadline = time.monotonic() + settle_s
    points_ok = events_ok = False
    t_verify = time.monotonic()
    while not sent["stopped"]:
        if b.vm is not None and not points_ok:
            vm_flush(b.vm.url)
            stored = vm_count(b.vm.url, "load_cell_value", ts_base, ts_end)
            points_ok = stored >= sent["sent"]
        if not events_ok:
            evs = b.listener.ask("events", ev0)
            got_events = {(e[1], e[2]) for e in evs} & expected_events
            events_ok = got_events == expected_events
        if (points_ok or b.vm is None) and events_ok:
            break
        if time.monotonic() > settle_deadline:
            break
        time.sleep(0.3)
    step.update({"points_expected": sent["sent"], "points_stored": stored,
                 "events_expected": len(expected_events), "events_received": len(got_events),
                 "verify_s": round(time.monotonic() - t_verify, 2), "ts_range": [ts_base, ts_end]})
    keeps_up = (not sent["stopped"]) and drain_s <= max_lag
    step["keeps_up"] = keeps_up
    step["stored_all"] = points_ok
    step["events_all"] = events_ok
    step["pass"] = keeps_up and (points_ok or b.vm is None) and events_ok
    step["last_ts"] = ts_end
    if profile:
        step["profile"] = profile
    return step


#: the search looks for the highest sustained rate up to this multiple of the bare subscriber's
#: drain rate (the latency benchmark's half load is half of what it finds)
CEILING = 3.0


def next_rate(steps: list[dict[str, Any]], bare: float, resolution: float,
              min_rate: float) -> float | None:
    """The next rate to try, or None when the search is done: a rate that failed lies within
    `resolution` above the highest that passed (or nothing passed down to `min_rate`, or a
    rate of CEILING times the bare subscriber's passed)."""
    passed = [s["rate"] for s in steps if s["pass"]]
    failed = [s for s in steps if not s["pass"]]
    lo = max(passed, default=None)
    hi = min((s["rate"] for s in failed), default=None)
    if lo is not None and hi is not None and hi <= lo * (1 + resolution):
        return None
    # what the daemon got through when overloaded is a good guess of what it can sustain
    overloaded = [s["daemon_rate"] for s in failed if not s["keeps_up"] and s["daemon_rate"]]
    guess = min(overloaded, default=None)
    if lo is None:
        assert hi is not None
        if hi <= min_rate:
            return None
        nxt = 0.97 * guess if guess is not None and guess < hi else 0.7 * hi
        return max(min_rate, min(nxt, 0.9 * hi))
    if hi is None:
        return None if lo >= 0.999 * CEILING * bare else min(lo * 1.1, CEILING * bare)
    top = hi
    if guess is not None and lo * (1 + resolution) < guess * 1.05 < hi:
        top = guess * 1.05  # above this it failed already once, overloaded
    if top <= lo * (1 + resolution) * 1.0001:
        return min(hi, lo * (1 + resolution))  # confirm just above the highest pass
    return math.sqrt(lo * top)


# --- output ---------------------------------------------------------------------------------


def report(res: dict[str, Any]) -> list[str]:
    bare = res["bare"]
    lines = [f"Bare paho subscriber: {bare['received']:,} of {bare['sent']:,} messages "
             f"(published flat out at {bare['publisher_rate']:,.0f}/s) drained in "
             f"{bare['drain_s']:.2f} s: {bare['rate']:,.0f} messages/s"
             + ("" if not bare["lost"] else f"; {bare['lost']:,} LOST"), ""]
    head = (f"  {'step':>4} {'rate/s':>8} {'sent':>8} {'daemon/s':>9} {'drain s':>8} "
            f"{'points':>15} {'events':>7} {'gen cpu':>7} {'cpu: daemon':>11} "
            f"{'mosq':>5} {'vm':>5}  result")
    lines += [head, "  " + "-" * (len(head) - 2)]
    for s in res["steps"]:
        cpu = s["cpu_s"]
        lines.append(
            f"  {s['step']:>4} {s['rate']:>8,.0f} {s['sent']:>8,} {s['daemon_rate']:>9,.0f} "
            f"{s['drain_s']:>8.3f} {s['points_stored']:>7,}/{s['points_expected']:<7,} "
            f"{s['events_received']:>3}/{s['events_expected']:<3} "
            f"{s['generator_cpu_s']:>7.2f} {cpu['daemon']:>11.2f} {cpu['mosquitto']:>5.2f} "
            f"{cpu.get('victoria', 0):>5.2f}  "
            + ("pass" if s["pass"] else "FAIL: " + ", ".join(
                w for w, bad in ((f"stopped (> {res['settings']['abort_lag_s']:g} s behind)",
                                  s["stopped_early"]),
                                 ("backlog", not s["keeps_up"] and not s["stopped_early"]),
                                 ("points missing", not s["stored_all"] and not s["stopped_early"]),
                                 ("events missing", not s["events_all"]
                                  and not s["stopped_early"])) if bad)))
    lines.append("")
    best = res["max_sustained_rate"]
    lines.append(f"Highest sustained rate: {best:,.0f} readings/s" if best else
                 "Highest sustained rate: none of the rates tried passed")
    lines.append(f"  {'PASS' if res['met'] else 'FAIL'}: {res['ratio']:.1%} of the bare "
                 f"subscriber's {bare['rate']:,.0f}/s (target ≥ {TARGET:.0%})")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bare-messages", type=int, default=300_000,
                    help="messages for the bare subscriber's drain rate")
    ap.add_argument("--step-seconds", type=float, default=5.0, help="load per step")
    ap.add_argument("--max-lag", type=float, default=0.25,
                    help="s after the last send by which the daemon must have accepted all")
    ap.add_argument("--abort-lag", type=float, default=1.0,
                    help="stop a step when the daemon falls this many s behind")
    ap.add_argument("--settle", type=float, default=15.0,
                    help="s to wait for the points and events of a step")
    ap.add_argument("--resolution", type=float, default=0.04,
                    help="stop when the lowest failing rate is within this of the highest "
                    "passing one")
    ap.add_argument("--max-steps", type=int, default=10)
    ap.add_argument("--budget", type=float, default=165.0,
                    help="s of the whole run after which no new step starts")
    ap.add_argument("--rates", type=float, nargs="*", default=None,
                    help="try these rates (readings/s) instead of searching")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="sample the daemon with py-spy (if installed) during each step; raw "
                    "stacks go to DIR, a summary to the JSON")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    from parkwatch.devtools.localbroker import LocalMosquitto

    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    info = machine()
    print(f"parkwatch ingest benchmark: {info['nproc']} cores, load {info['loadavg']}, "
          f"Python {info['python']}, paho-mqtt {info['paho_mqtt']}, {info['mosquitto']}",
          flush=True)
    steps: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="parkwatch-ingest-bench-")))
        # the baseline, on a broker of its own with nothing else connected
        with LocalMosquitto(workdir=tmp / "bare-broker") as broker:
            print(f"  bare paho subscriber, {args.bare_messages:,} messages flat out ...",
                  flush=True)
            assert broker.proc is not None
            bare = bare_drain(broker.host, broker.port, TOPIC.replace("{sensor_id}", "+"),
                              args.bare_messages)
            bare["mosquitto_peak_rss_mb"] = proc_hwm_mb(broker.proc.pid)
            bare["broker_dropped"] = "being dropped" in broker.log_file.read_text(
                errors="replace")
        print(f"    {bare['rate']:,.0f} messages/s, {bare['lost']} lost", flush=True)
        b = Bench(stack, tmp)
        b.start_daemon()
        b.start_clients()
        # one warm-up round: the daemon's series exist on the server, its connections are warm
        warm = run_step(b, 999, 2000, 1.0, 1.0, 2.0, 10.0, 0)
        last_ts = warm["last_ts"]
        print(f"  warm-up: {'ok' if warm['pass'] else 'FAILED'}", flush=True)
        queue = list(args.rates) if args.rates else [TARGET * bare["rate"]]
        k = 0
        while queue and k < args.max_steps:
            if time.monotonic() - started > args.budget:
                print("  time budget spent", flush=True)
                break
            rate = queue.pop(0)
            step = run_step(b, k, rate, args.step_seconds, args.max_lag, args.abort_lag,
                            args.settle, last_ts, args.profile)
            last_ts = step["last_ts"]
            steps.append(step)
            print(f"  step {k}: {rate:,.0f}/s -> daemon {step['daemon_rate']:,.0f}/s, drain "
                  f"{step['drain_s']:.3f} s, points {step['points_stored']:,}/"
                  f"{step['points_expected']:,}, events {step['events_received']}/"
                  f"{step['events_expected']}: {'pass' if step['pass'] else 'FAIL'}", flush=True)
            k += 1
            if not step["keeps_up"]:
                time.sleep(1.0)  # run_step waited for the backlog; let the daemon settle
            if not args.rates:
                nxt = next_rate(steps, bare["rate"], args.resolution, 0.01 * bare["rate"])
                if nxt is not None:
                    queue.append(nxt)
        daemon_log = b.daemon.log_file.read_text(errors="replace")
        rc = b.daemon.stop()
        broker_dropped = "being dropped" in b.broker.log_file.read_text(errors="replace")
        assert b.broker.proc is not None
        mosq_rss = proc_hwm_mb(b.broker.proc.pid)
    passed = [s["rate"] for s in steps if s["pass"]]
    best = max(passed, default=0.0)
    ratio = best / bare["rate"] if bare["rate"] else 0.0
    elapsed = time.monotonic() - started
    result = {
        "benchmark": "ingest", "command": command_line(argv), "machine": info,
        "settings": {"sensors": SENSORS, "topic": TOPIC, "qos": 0,
                     "alarms_per_step": ALARMS_PER_STEP, "step_s": args.step_seconds,
                     "max_lag_s": args.max_lag, "abort_lag_s": args.abort_lag,
                     "resolution": args.resolution, "bare_messages": args.bare_messages,
                     "target_ratio": TARGET},
        "bare": bare, "warmup": warm, "steps": steps,
        "max_sustained_rate": round(best, 1), "ratio": round(ratio, 4), "met": ratio >= TARGET,
        "lowest_failed_rate": min((s["rate"] for s in steps if not s["pass"]), default=None),
        "sensor_broker": {"dropped_notice": broker_dropped, "peak_rss_mb": mosq_rss},
        "daemon_exit": rc,
        "daemon_log_warnings": [ln for ln in daemon_log.splitlines()
                                if " WARNING " in ln or " ERROR " in ln][:20],
        "runtime_s": round(elapsed, 1),
    }
    print()
    print("\n".join(report(result)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(f"\nran {elapsed:.0f} s; wrote "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
