"""Soak: does the daemon's memory stay flat under a steady mix of everything it meets?  (Issue
22, "It is done when" 4.)

The real daemon (``parkwatch run --config FILE``, a process of its own, ``ingest.py``'s
``DaemonProcess``) runs the example park's MQTT part (its 9 LoRa fire buttons, load cells and
water gauges, its operators, subscribers, escalation and targets as shipped) plus ``--cells``
(500) more MQTT load cells spread over its floors, on a private Mosquitto (``LocalMosquitto``,
devices and uplink both), with telemetry going to a private VictoriaMetrics (``LocalVictoria``,
when installed; else the daemon spools it).  For ``--minutes`` (30; 60 for a release) it gets,
every second on average:

* ``--readings`` (200) readings of normal weight from the extra load cells, in turn (QoS 0);
* ``--fire`` (5) fire-button cycles: a press, a reset ``--hold`` (0.5) s later, and an
  acknowledgement, round the fire buttons;
* ``--thresholds`` (2) threshold alarms: a load cell of its own (the last tenth of the extra
  cells, in turn) reads 12,000 kg, above the 10,000 kg critical limit, and ``--hold`` s later
  1,000 kg again, which clears it;
* ``--junk`` (20) payloads the daemon must reject: malformed JSON, bytes that are not UTF-8, a
  value that is not a number, NaN, a bad timestamp, an oversized payload, a sensor nobody
  configured;
* and an operator: each second, the open alarms from the local HTTP API (``GET /api/alarms``
  with the bearer token) and an acknowledgement (``POST /api/alarms/{id}/ack``, one of the
  example's operators) for each one not acknowledged yet, so every alarm closes once it has
  cleared.  (The HTTP API, not MQTT: the MQTT command format may carry a signature.)

From 10 s after the start, every ``--burst-every`` (60) s, a burst of ``--burst`` (100) HTTP
connections at once (from a thread of its own, so the operator goes on meanwhile): a third
authorised reads of the alarms, a third without a token (401), a sixth ``/metrics`` and a sixth
half-sent requests, closed unanswered once every other one has its answer.  A command-center
client subscribed to the events counts them, which says the daemon kept working.

**Samples.**  Every ``--sample-s`` (5) s, never while this process has a request open to the
daemon (between the operator's rounds, at least 0.5 s after its last request, and not during a
burst: a sample falls later then, and one missed is not made up for): the daemon's resident
memory (``VmRSS`` and ``VmHWM`` of ``/proc/<pid>/status``), its threads (``Threads``) and its
open descriptors (entries of ``/proc/<pid>/fd``), each the least of three looks 0.1 s apart (one
gone that soon was in use, not kept: the rule-state file being written, a request being
answered), its CPU seconds, and the resident memory of any child process (the uplink courier's,
with ``uplink.process``).  How long each burst and each
operator round took is in the JSON too.

**Verdict.**  The first ``--warmup-minutes`` (a sixth of the run: 5 of 30) are a warm-up; its
level is the median of the samples in its last quarter (or the first sample after it, when a
burst took that quarter in a short run).  After it, every sample's RSS must stay
within ±3 MB of that level, and the threads and descriptors must equal the level's (median)
count in every sample.  The JSON (``benchmarks/results/soak.json``) holds the settings, what
was sent and answered, the verdict, and every sample; ``report.py`` puts the verdict in the
README's table.

Run from the repository root::

    .venv/bin/python benchmarks/soak.py               # 30 min; writes results/soak.json
    .venv/bin/python benchmarks/soak.py --minutes 60  # before a release
    .venv/bin/python benchmarks/soak.py --minutes 2 --out /tmp/soak.json   # a quick check

The exit code is 0 when the run went through, whatever the verdict; 1 when the daemon died.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from benchinfo import command_line  # noqa: E402
from ingest import TOKEN_ENV, DaemonProcess, machine, proc_cpu_s  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "soak.json"
EXAMPLE = ROOT / "examples" / "park.yaml"
OPERATOR = "王工"  # one of the example's alarms.operators: may acknowledge
RSS_BAND_MB = 3.0
HIGH_KG, NORMAL_KG = 12_000.0, 1_000.0  # above the 10 000 kg critical limit; normal
TOPIC = "devices/{}/up"
CHURN_SHARE = 10  # the last tenth of the extra cells make the threshold alarms
SETTLE_S = 0.5
LOOKS = 3  # at the threads and descriptors, 0.1 s apart, for one sample
FIRST_BURST_S = 10.0  # the first burst this long after the start, then every --burst-every


# --- the park -------------------------------------------------------------------------------


def park_data(workdir: Path, port: int, api_port: int, vm_url: str | None,
              cells: int) -> dict[str, Any]:
    """The example park's MQTT part on the bench broker, `cells` more MQTT load cells over its
    floors, the API on `api_port`, state in `workdir`/state, telemetry to `vm_url` if any."""
    import yaml

    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for b in data["brokers"].values():
        b.update(host="127.0.0.1", port=port)
    data["gateway"]["state_dir"] = str(workdir / "state")
    data["api"]["port"] = api_port
    from parkwatch.devtools.parkdata import mqtt_only

    mqtt_only(data)
    data["outputs"] = []  # the soak's devices are sensors: no wireless sounder answers
    lora = data["drivers"][0]["id"]
    places = [(b["id"], f["id"], [z["id"] for z in f.get("zones", [])])
              for b in data["buildings"] for f in b["floors"]]
    for k in range(cells):
        b, f, zones = places[k % len(places)]
        cell = {"id": cell_id(b, f, k), "kind": "load_cell", "building": b, "floor": f,
                "driver": lora}
        if zones:
            cell["zone"] = zones[(k // len(places)) % len(zones)]
        data["sensors"].append(cell)
    if vm_url is not None:
        data["telemetry"]["influxdb"] = {"url": vm_url, "org": "bench", "bucket": "park",
                                         "secret_env": TOKEN_ENV}
    return data


def cell_id(building: str, floor: str, k: int) -> str:
    return f"X-{building}-{floor}-LC{k:04d}"


# --- the field: readings, fire cycles, threshold alarms, junk -------------------------------


def junk(rng: random.Random, sensors: list[str]) -> tuple[str, bytes]:
    """One (topic, payload) the daemon must reject."""
    makers = [
        lambda: b"\xff" + rng.randbytes(rng.randint(0, 64)),
        lambda: json.dumps({"value": rng.random()})[: rng.randint(1, 12)].encode(),
        lambda: b"",
        lambda: json.dumps({"value": rng.choice(["12", "abc", None, [1], {"x": 1}, True])})
        .encode(),
        lambda: b'{"value": NaN}',
        lambda: json.dumps({"value": 1.0, "ts": rng.choice([1e18, -5, "yesterday"])}).encode(),
        lambda: json.dumps({"temperature": 20}).encode(),
        lambda: b"x" * 5000,
        lambda: json.dumps([1, 2, 3]).encode(),
    ]
    if rng.random() < 0.1:  # a sensor nobody configured
        return TOPIC.format(f"ghost-{rng.randint(0, 999)}"), b'{"value": 42}'
    return TOPIC.format(rng.choice(sensors)), rng.choice(makers)()


class Field:
    """A thread that publishes the devices' side of the mix, paced in 50 ms ticks."""

    TICK = 0.05

    def __init__(self, host: str, port: int, buttons: list[str], readers: list[str],
                 churners: list[str], junk_to: list[str], rates: dict[str, float],
                 hold_s: float) -> None:
        import paho.mqtt.client as mqtt

        self.buttons, self.readers, self.churners, self.junk_to = (
            buttons, readers, churners, junk_to)
        self.rates, self.hold_s = rates, hold_s
        self.sent = dict.fromkeys(("readings", "presses", "resets", "highs", "normals",
                                   "junk"), 0)
        self.rng = random.Random(22)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-field",
                                  protocol=mqtt.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-field", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _pub(self, sensor_or_topic: str, payload: bytes, qos: int, what: str) -> None:
        topic = sensor_or_topic if "/" in sensor_or_topic else TOPIC.format(sensor_or_topic)
        self.client.publish(topic, payload, qos=qos)
        self.sent[what] += 1

    def _run(self) -> None:
        due: list[tuple[float, int, str, bytes, str]] = []  # the resets and the normals
        owed = dict.fromkeys(self.rates, 0.0)
        turn = dict.fromkeys(("readings", "fire", "thresholds"), 0)
        n = 0
        t0 = time.monotonic()
        k = 0
        while not self.stop_event.wait(max(0.0, t0 + (k + 1) * self.TICK - time.monotonic())):
            k += 1
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, _, sensor, payload, what = heapq.heappop(due)
                self._pub(sensor, payload, 1, what)
            for key, rate in self.rates.items():
                owed[key] += rate * self.TICK
            while owed["readings"] >= 1:
                owed["readings"] -= 1
                s = self.readers[turn["readings"] % len(self.readers)]
                turn["readings"] += 1
                value = NORMAL_KG + self.rng.uniform(-50, 50)
                self._pub(s, b'{"value": %.1f}' % value, 0, "readings")
            while owed["fire"] >= 1:
                owed["fire"] -= 1
                s = self.buttons[turn["fire"] % len(self.buttons)]
                turn["fire"] += 1
                self._pub(s, b'{"event": "press"}', 1, "presses")
                n += 1
                heapq.heappush(due, (now + self.hold_s, n, s, b'{"event": "reset"}', "resets"))
            while owed["thresholds"] >= 1:
                owed["thresholds"] -= 1
                s = self.churners[turn["thresholds"] % len(self.churners)]
                turn["thresholds"] += 1
                self._pub(s, b'{"value": %.1f}' % HIGH_KG, 1, "highs")
                n += 1
                heapq.heappush(due, (now + self.hold_s, n, s, b'{"value": %.1f}' % NORMAL_KG,
                                     "normals"))
            while owed["junk"] >= 1:
                owed["junk"] -= 1
                topic, payload = junk(self.rng, self.junk_to)
                self._pub(topic, payload, 0, "junk")
        for _, _, sensor, payload, what in sorted(due):  # leave nothing pressed or high
            self._pub(sensor, payload, 1, what)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()


class Center:
    """The command center: counts the alarm events on the uplink."""

    def __init__(self, host: str, port: int, park: str) -> None:
        import paho.mqtt.client as mqtt

        self.events: dict[str, int] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-center",
                                  protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(host, port, keepalive=30)
        self.client.subscribe(f"parkwatch/v1/{park}/events", qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the command center's subscription was not acknowledged")

    def _on_message(self, _c: Any, _u: Any, m: Any) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            event = str(json.loads(m.payload).get("event"))
            with self.lock:
                self.events[event] = self.events.get(event, 0) + 1

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.events)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the operator and the HTTP bursts -------------------------------------------------------


class Operator:
    """Reads the open alarms and acknowledges each one not acknowledged, through the local
    HTTP API; and opens bursts of connections."""

    def __init__(self, api: str, token: str) -> None:
        self.api, self.token = api, token
        self.host, self.port = api.split("//", 1)[1].rsplit(":", 1)
        self.counts: dict[str, int] = {}
        self.acked: set[str] = set()  # ids acknowledged, until the list no longer has them

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                token: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    return exc.code, json.loads(exc.read() or b"null")
                except ValueError:
                    return exc.code, None

    def round(self) -> None:
        """One look at the open alarms; an acknowledgement for each one not acknowledged."""
        try:
            status, body = self.request("GET", "/api/alarms")
        except OSError:
            self._count("list_failed")
            return
        if status != 200:
            self._count(f"list_{status}")
            return
        self._count("lists")
        alarms = body.get("alarms", []) if isinstance(body, dict) else []
        listed = {a.get("alarm_id") for a in alarms}
        self.acked &= listed
        for a in alarms:
            aid = a.get("alarm_id")
            if a.get("acknowledged") or not aid or aid in self.acked:
                continue
            try:
                status, answer = self.request("POST", f"/api/alarms/{aid}/ack", {"by": OPERATOR})
            except OSError:
                self._count("ack_failed")
                continue
            result = answer.get("result") if isinstance(answer, dict) else None
            self._count(f"ack_{status}_{result}" if result else f"ack_{status}")
            self.acked.add(aid)

    def burst(self, n: int) -> dict[str, int]:
        """`n` connections at once; every one answered or closed before this returns."""
        kinds = ["read", "read", "unauthorised", "unauthorised", "metrics", "half"]
        socks: list[tuple[str, socket.socket]] = []
        out: dict[str, int] = {}
        for i in range(n):
            kind = kinds[i % len(kinds)]
            try:
                s = socket.create_connection((self.host, int(self.port)), timeout=10)
            except OSError:
                out["connect_failed"] = out.get("connect_failed", 0) + 1
                continue
            path = "/metrics" if kind == "metrics" else "/api/alarms"
            auth = f"Authorization: Bearer {self.token}\r\n" if kind == "read" else ""
            head = f"GET {path} HTTP/1.1\r\nHost: soak\r\n{auth}"
            with contextlib.suppress(OSError):
                s.sendall(head.encode() + (b"" if kind == "half" else
                                            b"Connection: close\r\n\r\n"))
            socks.append((kind, s))
        for kind, s in socks:
            if kind == "half":
                continue
            status = "no_answer"
            with contextlib.suppress(OSError):
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else status
            key = f"{kind}_{status}"
            out[key] = out.get(key, 0) + 1
        for kind, s in socks:
            if kind == "half":
                out["half_closed"] = out.get("half_closed", 0) + 1
            s.close()
        return out


# --- samples and the verdict ----------------------------------------------------------------


def children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(c) for c in
                        Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def status_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB) and Threads from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def settled_counts(pid: int) -> tuple[int, int]:
    """The daemon's threads and open descriptors, each the least of a few looks 0.1 s apart:
    one that is gone within 0.2 s (the rule-state file being written, a request being
    answered) is in use, not kept."""
    looks = []
    for k in range(LOOKS):
        if k:
            time.sleep(0.1)
        looks.append((status_of(pid)["Threads"], len(os.listdir(f"/proc/{pid}/fd"))))
    return min(t for t, _ in looks), min(f for _, f in looks)


def sample(pid: int, t0: float) -> dict[str, Any]:
    """One sample of the daemon (and its children's RSS)."""
    threads, fds = settled_counts(pid)
    st = status_of(pid)
    kids = {}
    for c in children(pid):
        with contextlib.suppress(OSError, KeyError):
            kids[str(c)] = round(status_of(c)["VmRSS"] / 1024, 2)
    return {"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(st["VmRSS"] / 1024, 2),
            "hwm_mb": round(st["VmHWM"] / 1024, 2), "threads": threads, "fds": fds,
            "cpu_s": round(proc_cpu_s(pid), 2),
            "children_rss_mb": kids}


def verdict(samples: list[dict[str, Any]], warmup_s: float,
            band_mb: float = RSS_BAND_MB) -> dict[str, Any]:
    """The level at the warm-up's end (median of its last quarter's samples) and how far the
    samples after it strayed from it."""
    warm = [s for s in samples if s["t_s"] <= warmup_s]
    after = [s for s in samples if s["t_s"] > warmup_s]
    # no sample in the warm-up's last quarter (a burst took it, in a short run): the first
    # one after it, not one from before a burst the rest of the run has behind it
    tail = [s for s in warm if s["t_s"] >= 0.75 * warmup_s] or after[:1]
    if not tail or not after:
        return {"met": None, "why": "too few samples for a verdict (warm-up or after it)",
                "samples_after_warmup": len(after)}
    out: dict[str, Any] = {"warmup_s": warmup_s, "samples_after_warmup": len(after)}
    level = statistics.median(s["rss_mb"] for s in tail)
    rss = [s["rss_mb"] for s in after]
    out["rss"] = {"level_mb": round(level, 2), "min_mb": min(rss), "max_mb": max(rss),
                  "end_mb": rss[-1], "max_drift_mb": round(max(abs(r - level) for r in rss), 2),
                  "band_mb": band_mb, "slope_mb_per_h": _slope(after)}
    out["rss"]["met"] = out["rss"]["max_drift_mb"] <= band_mb
    for key in ("threads", "fds"):
        lvl = int(statistics.median(s[key] for s in tail))
        vals = [s[key] for s in after]
        out[key] = {"level": lvl, "min": min(vals), "max": max(vals),
                    "max_change": max(abs(v - lvl) for v in vals),
                    "met": min(vals) == max(vals) == lvl}
    out["met"] = all(out[k]["met"] for k in ("rss", "threads", "fds"))
    return out


def _slope(samples: list[dict[str, Any]]) -> float | None:
    """Least-squares RSS trend after the warm-up, MB per hour."""
    if len(samples) < 3:
        return None
    ts = [s["t_s"] for s in samples]
    rs = [s["rss_mb"] for s in samples]
    mt, mr = statistics.fmean(ts), statistics.fmean(rs)
    var = sum((t - mt) ** 2 for t in ts)
    if not var:
        return None
    return round(3600 * sum((t - mt) * (r - mr) for t, r in zip(ts, rs, strict=True)) / var, 2)


# --- the run --------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import yaml

    from parkwatch.devtools.localbroker import LocalMosquitto, free_port
    from parkwatch.devtools.localtsdb import LocalVictoria, find_victoria

    res: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(LocalMosquitto(workdir=workdir / "broker"))
        vm = None
        if not args.no_tsdb and find_victoria():
            vm = stack.enter_context(LocalVictoria(workdir=workdir / "vm"))
        api_port = free_port()
        data = park_data(workdir, broker.port, api_port, vm.url if vm else None, args.cells)
        config = workdir / "park.yaml"
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        res["park"] = {"sensors": len(data["sensors"]), "extra_cells": args.cells,
                       "telemetry": "VictoriaMetrics" if vm else "spool only (no TSDB)"}
        daemon = DaemonProcess(config, api_port, workdir / "daemon.log")
        stack.callback(daemon.stop)
        daemon.wait_ready(60)
        token = (workdir / "state" / "api.token").read_text(encoding="utf-8").strip()
        sensors = data["sensors"]
        buttons = [s["id"] for s in sensors if s["kind"] == "fire_button"]
        extra = [s["id"] for s in sensors if s["id"].startswith("X-")]
        split = len(extra) - max(1, len(extra) // CHURN_SHARE)
        readers, churners = extra[:split] or extra, extra[split:]
        junk_to = [s["id"] for s in sensors if not s["id"].startswith("X-")]
        center = Center(broker.host, broker.port, data["park"]["id"])
        stack.callback(center.stop)
        field = Field(broker.host, broker.port, buttons, readers, churners, junk_to,
                      {"readings": args.readings, "fire": args.fire,
                       "thresholds": args.thresholds, "junk": args.junk}, args.hold)
        operator = Operator(daemon.api, token)
        duration = args.minutes * 60
        warmup = (args.warmup_minutes * 60 if args.warmup_minutes is not None
                  else duration / 6)
        samples: list[dict[str, Any]] = []
        bursts: dict[str, int] = {}
        burst_s: list[float] = []  # how long each burst took, every connection done
        rounds: list[float] = []  # how long each look at the alarms and its acks took
        t0 = time.monotonic()
        field.start()
        next_sample = t0
        next_burst = t0 + min(args.burst_every, FIRST_BURST_S)
        burst: threading.Thread | None = None
        quiet_since = t0 - SETTLE_S  # when this process's last burst ended

        def run_burst() -> None:
            nonlocal quiet_since
            t = time.monotonic()
            for k, v in operator.burst(args.burst).items():
                bursts[k] = bursts.get(k, 0) + v
            quiet_since = time.monotonic()
            burst_s.append(round(quiet_since - t, 2))

        died = False
        while True:
            now = time.monotonic()
            if now - t0 >= duration:
                break
            if daemon.proc.poll() is not None:
                died = True
                break
            busy = burst is not None and burst.is_alive()
            # a sample only when no burst is in flight, SETTLE_S after the last ended, and
            # SETTLE_S after the operator's last request (the sleep below): the daemon's
            # thread of a connection just closed may still be ending
            if now >= next_sample and not busy and now - quiet_since >= SETTLE_S:
                samples.append(sample(daemon.pid, t0))
                next_sample = max(next_sample + args.sample_s, now)  # none made up for
                if args.progress:
                    s = samples[-1]
                    print(f"{s['t_s']:7.0f} s  RSS {s['rss_mb']:6.1f} MB  threads "
                          f"{s['threads']:3d}  fds {s['fds']:3d}", flush=True)
            t = time.monotonic()
            operator.round()
            rounds.append(time.monotonic() - t)
            if args.burst and time.monotonic() >= next_burst and not busy:
                burst = threading.Thread(target=run_burst, name="soak-burst", daemon=True)
                burst.start()
                next_burst += args.burst_every
            # the next round in a second, or the next sample
            time.sleep(max(SETTLE_S, min(next_sample, now + 1.0) - time.monotonic()))
        if burst is not None:
            burst.join(60)
        elapsed = time.monotonic() - t0
        field.stop()
        if not died:
            time.sleep(SETTLE_S)
            samples.append(sample(daemon.pid, t0))
            with contextlib.suppress(OSError, ValueError):
                res["metrics_end"] = daemon.metrics()
                res["health_end"] = daemon.health()
        res.update({
            "seconds": round(elapsed, 1), "daemon_died": died,
            "daemon_exit": daemon.proc.returncode if died else None,
            "sent": dict(field.sent),
            "operator": dict(sorted(operator.counts.items())),
            "operator_round_s": {"n": len(rounds), "mean": round(statistics.fmean(rounds), 3)
                                 if rounds else None, "max": round(max(rounds, default=0), 3)},
            "bursts": {"count": len(burst_s), "seconds": burst_s,
                       "connections": dict(sorted(bursts.items()))},
            "events_at_center": center.counts(),
            "warmup_s": round(warmup, 1),
            "verdict": verdict(samples, warmup),
            "samples": samples,
        })
        if died:
            res["log_tail"] = daemon.log_file.read_text(errors="replace")[-3000:]
    return res


def report(res: dict[str, Any]) -> list[str]:
    v = res.get("verdict") or {}
    out = [f"soak: {res.get('seconds')} s, warm-up {res.get('warmup_s')} s, "
           f"{len(res.get('samples', []))} samples"]
    out.append(f"sent: {res.get('sent')}")
    out.append(f"operator: {res.get('operator')}")
    out.append(f"HTTP bursts: {res.get('bursts')}")
    out.append(f"events at the command center: {res.get('events_at_center')}")
    if res.get("daemon_died"):
        out.append(f"THE DAEMON DIED (exit {res.get('daemon_exit')})")
    if v.get("met") is None:
        out.append(f"no verdict: {v.get('why')}")
        return out
    r = v["rss"]
    out.append(f"RSS: level {r['level_mb']} MB, after the warm-up {r['min_mb']}–{r['max_mb']} MB "
               f"(drift ≤ {r['max_drift_mb']} MB, band ±{r['band_mb']} MB; trend "
               f"{r['slope_mb_per_h']} MB/h): {'PASS' if r['met'] else 'FAIL'}")
    for key in ("threads", "fds"):
        x = v[key]
        out.append(f"{key}: level {x['level']}, after the warm-up {x['min']}–{x['max']}: "
                   f"{'PASS' if x['met'] else 'FAIL'}")
    out.append(f"verdict: {'PASS' if v['met'] else 'FAIL'}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0,
                    help="how long the mix runs (30; 60 for a release)")
    ap.add_argument("--warmup-minutes", type=float, default=None,
                    help="the warm-up, not judged (default: a sixth of --minutes)")
    ap.add_argument("--cells", type=int, default=500, help="extra MQTT load cells")
    ap.add_argument("--readings", type=float, default=200.0, help="normal readings a second")
    ap.add_argument("--fire", type=float, default=5.0, help="fire-button cycles a second")
    ap.add_argument("--thresholds", type=float, default=2.0, help="threshold alarms a second")
    ap.add_argument("--junk", type=float, default=20.0, help="malformed payloads a second")
    ap.add_argument("--hold", type=float, default=0.5,
                    help="seconds from a press to its reset, from a high reading to a normal one")
    ap.add_argument("--burst", type=int, default=100, help="HTTP connections in a burst (0: none)")
    ap.add_argument("--burst-every", type=float, default=60.0, help="seconds between bursts")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--no-tsdb", action="store_true",
                    help="no VictoriaMetrics: the daemon spools its telemetry")
    ap.add_argument("--progress", action="store_true", help="print each sample")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="parkwatch-soak-") as tmp:
        res = run(args, Path(tmp))
    out = {"benchmark": "soak", "command": command_line(argv), "machine": machine(),
           "settings": {k: (str(v) if isinstance(v, Path) else v)
                        for k, v in vars(args).items() if k not in ("out", "progress")},
           "target": {"rss_band_mb": RSS_BAND_MB, "threads": "constant", "fds": "constant"},
           **res, "runtime_s": round(time.monotonic() - t_start, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print("\n".join(report(out)))
    print(f"wrote {args.out}")
    return 1 if res.get("daemon_died") else 0


if __name__ == "__main__":
    sys.exit(main())
