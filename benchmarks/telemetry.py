"""Telemetry throughput: points/s into an InfluxDB v2 write endpoint, parkwatch's sink against
influxdb-client's ``Point`` objects.

Issue 6, done-when 6: the sink (``TelemetrySink``: readings serialised in bulk by
``ReadingLines``, written with the client's synchronous API as bytes) must get readings into
the server at least 4 times as fast as the same readings written as one
``influxdb_client.Point`` per reading.

Every method writes the same readings to one private VictoriaMetrics (``LocalVictoria``, the
InfluxDB v2 write API on a loopback port) in the same run:

1. **sink**: the rounds (each one ``ReadingBatch`` with a reading of every sensor) are handed
   to ``TelemetrySink.readings()`` as fast as the sink takes them: the next round as soon as
   fewer than 50 000 points wait in the sink (half its bound on memory, beyond which it
   drops the oldest readings), so its thread always has work.  The time runs from the first
   call until ``stats()["points"]["written"]`` counts every point (each 5000-point write
   answered 204 by the server).
2. **Point, batching**: one ``Point(measurement).tag(...).field("value", v)
   .field("quality", q).time(ms, WritePrecision.MS)`` per reading, handed to
   ``client.write_api(write_options=WriteOptions(batch_size=5000, flush_interval=1000))`` a
   round at a time; the time runs from the first Point built until ``close()`` has returned
   (every batch written).
3. **Point, synchronous**: the same Points, 5000 at a time, to the client's SYNCHRONOUS write
   API; from the first Point built until the last write has returned.

The better of the two Point methods is the baseline.  All three use batches of 5000 points,
millisecond precision, no gzip and the same server; before each is timed, one round (earlier
timestamps, not counted) opens its connection and creates its series on the server.  The
Point methods add a tag (``bench=point`` / ``bench=sync``) so that each method's samples are
separate series and can be counted on the server: after each method, the run waits until
VictoriaMetrics holds every ``value`` and ``quality`` sample it was sent (not timed; the
time it took is reported).  Serialisation alone (no network) is timed too: ``ReadingLines`` on
every round, and Point building with ``to_line_protocol()`` on a few rounds.  So is the server
alone: the same readings serialised beforehand, written back to back by ``InfluxWriter`` with
one and with two writes in flight, the most the server takes from a writer that costs nothing.

The park is generated: buildings of floors, each with 80 load cells and 20 water gauges, the
floor split in an east and a west zone let to two tenants, so every point carries the tags
park, building, floor, zone (load cells), tenant and sensor, as the daemon writes them.  Each
round has one reading per sensor at its own millisecond within the round's second; the values
have the resolution of such devices (0.1 kg, 0.1 cm), and about 2 % of the readings of each
round are communication faults (no value, quality 5).

Run from the repository root::

    .venv/bin/python benchmarks/telemetry.py          # ~55 s; results/telemetry.json
    .venv/bin/python benchmarks/telemetry.py --quick  # 10 rounds, ~12 s
    .venv/bin/python benchmarks/telemetry.py --sensors 2000 --rounds 50

The exit code is 0 whether or not the target is met; the output says whether it is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
from benchinfo import command_line  # noqa: E402
from benchinfo import machine as bench_machine  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

from parkwatch.park import ParkModel  # noqa: E402
from parkwatch.readings import Quality, ReadingBatch  # noqa: E402
from parkwatch.schema import ParkConfig  # noqa: E402
from parkwatch.telemetry.lineproto import ReadingLines, to_ms  # noqa: E402
from parkwatch.telemetry.schema import READING_MEASUREMENT  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "telemetry.json"
TARGET_RATIO = 4.0
BATCH_POINTS = 5000  # the sink's default batch_points; the Point methods use the same
PER_FLOOR = (80, 20)  # load cells, water gauges
FLOORS_PER_BUILDING = 10
COMM_FAULTS = 0.02  # share of each round's readings that are comm faults (no value)
TOKEN_ENV = "PARKWATCH_BENCH_INFLUX_TOKEN"
VALUES = '{__name__=~"load_cell_value|water_level_value",bench="%s"}'
QUALITIES = '{__name__=~"load_cell_quality|water_level_quality",bench="%s"}'
CONFIRM_TIMEOUT_S = 120.0


# --- the park and its readings ----------------------------------------------------------------


def park_config(sensors: int, workdir: Path, url: str) -> ParkConfig:
    """A valid park of about `sensors` sensors (whole floors of 100), its telemetry going to
    `url` (validated by the models; generated, so not cross-checked)."""
    floors = max(1, round(sensors / sum(PER_FLOOR)))
    buildings: list[dict[str, Any]] = []
    tenants: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for f in range(floors):
        b, level = f // FLOORS_PER_BUILDING, f % FLOORS_PER_BUILDING + 1
        bid, fid = f"B{b + 1:02d}", f"{level}F"
        if level == 1:
            buildings.append({"id": bid, "floors": []})
        buildings[-1]["floors"].append({
            "id": fid, "level": level, "rated_load_kn_m2": 5.0, "area_m2": 1200.0,
            "zones": [{"id": "east", "area_m2": 600.0}, {"id": "west", "area_m2": 600.0}]})
        for zone in ("east", "west"):
            tenants.append({"id": f"t{len(tenants) + 1:04d}", "name": f"租户{len(tenants) + 1}",
                            "occupies": [{"building": bid, "floor": fid, "zone": zone}]})
        cells, gauges = PER_FLOOR
        for k in range(cells):
            out.append({"id": f"{bid}-{fid}-LC{k + 1:02d}", "kind": "load_cell",
                        "building": bid, "floor": fid, "zone": "east" if k < cells // 2
                        else "west", "driver": "lora"})
        for k in range(gauges):  # floor drains and sumps: the floor's, no zone
            out.append({"id": f"{bid}-{fid}-WL{k + 1:02d}", "kind": "water_level",
                        "building": bid, "floor": fid, "driver": "lora"})
    data = {
        "park": {"id": "bench", "name": "bench"},
        "gateway": {"id": "gw", "state_dir": str(workdir)},
        "brokers": {"local": {"host": "127.0.0.1"}},
        "uplink": {"broker": "local"},
        "landlord": {"id": "l", "name": "L"},
        "buildings": buildings,
        "tenants": tenants,
        "drivers": [{"id": "lora", "type": "mqtt", "broker": "local"}],
        "sensors": out,
        "rules": {"load_cell": {"high_warning": 8000.0, "high_critical": 10000.0},
                  "water_level": {"high_warning": 30.0, "high_critical": 50.0}},
        "telemetry": {"influxdb": {"url": url, "org": "-", "bucket": "bench",
                                   "secret_env": TOKEN_ENV},
                      "batch_points": BATCH_POINTS},
    }
    return ParkConfig.model_validate(data, context={"base_dir": workdir})


class Workload:
    """Rounds of one reading per sensor: a level per sensor plus device noise, at the devices'
    resolution; each sensor at its own millisecond of the round's second; ~2 % comm faults."""

    def __init__(self, park: ParkModel, start_s: float, seed: int = 6) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.n = len(park)
        self.start_s = start_s
        cell = np.array([s.config.kind == "load_cell" for s in park.sensors])
        self.level = np.where(cell, rng.uniform(200.0, 6000.0, self.n),
                              rng.uniform(2.0, 20.0, self.n))
        self.noise = np.where(cell, 2.0, 0.1)
        self.offset_ms = rng.integers(0, 1000, self.n)

    def round(self, k: int) -> ReadingBatch:
        value = np.round(self.level + self.rng.normal(0.0, 1.0, self.n) * self.noise, 1)
        quality = np.full(self.n, Quality.GOOD, np.uint8)
        fault = self.rng.random(self.n) < COMM_FAULTS
        value[fault] = np.nan
        quality[fault] = Quality.COMM_FAIL
        ts = self.start_s + k + self.offset_ms / 1000.0
        return ReadingBatch(np.arange(self.n, dtype=np.int32), value, ts, quality,
                            np.full(self.n, np.nan))


def counts(batches: list[ReadingBatch]) -> tuple[int, int]:
    """(points, value samples): comm faults have no value field."""
    return (sum(len(b) for b in batches),
            sum(int(np.isfinite(b.value).sum()) for b in batches))


# --- influxdb-client Points: how an application would write the same readings ------------------


class PointMaker:
    """One ``Point`` per reading, with the sink's tags and fields (and one tag of its own)."""

    def __init__(self, park: ParkModel, bench: str) -> None:
        park_id = park.cfg.park.id
        self.meta: list[tuple[str, list[tuple[str, str]]]] = []
        for s in park.sensors:
            tags = {"park": park_id, "building": s.config.building, "floor": s.config.floor,
                    "zone": s.config.zone, "tenant": ",".join(s.tenants), "sensor": s.id,
                    "bench": bench}
            self.meta.append((READING_MEASUREMENT[s.config.kind].name,
                              [(k, v) for k, v in tags.items() if v]))

    def points(self, b: ReadingBatch, start: int = 0, stop: int | None = None) -> list[Any]:
        from influxdb_client import Point, WritePrecision

        sl = slice(start, stop)
        out = []
        meta = self.meta
        for i, v, q, ms in zip(b.sensor[sl].tolist(), b.value[sl].tolist(),
                               b.quality[sl].tolist(), to_ms(b.ts[sl]).tolist(), strict=True):
            measurement, tags = meta[i]
            p = Point(measurement)
            for k, t in tags:
                p.tag(k, t)
            # a NaN value is left out of the line by the client itself, as the sink does
            out.append(p.field("value", v).field("quality", q).time(ms, WritePrecision.MS))
        return out


# --- measuring ----------------------------------------------------------------------------------


def proc_cpu_s(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a process (or one of its threads), from /proc."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU seconds used between construction and `done()` by this process, the server and
    optionally one thread of this process."""

    def __init__(self, server_pid: int, tid: Callable[[], int | None] | None = None) -> None:
        self.server_pid, self.tid = server_pid, tid
        self.t0 = time.perf_counter()
        self.own0 = time.process_time()
        self.server0 = proc_cpu_s(server_pid)
        self.thread0 = proc_cpu_s(os.getpid(), tid()) if tid else float("nan")

    def done(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        out = {"process_s": round(time.process_time() - self.own0, 2),
               "server_s": round(proc_cpu_s(self.server_pid) - self.server0, 2)}
        if self.tid:
            out["sink_thread_s"] = round(proc_cpu_s(os.getpid(), self.tid()) - self.thread0, 2)
        out["server_cores"] = round(out["server_s"] / wall, 2) if wall else 0.0
        return out


def settle(server_pid: int, timeout: float = 15.0) -> float:
    """Wait until the server is idle (under 5 % of a core over 0.25 s): its background work
    for the previous writes (new series, merges) is not charged to the next method.  The
    seconds waited."""
    t0 = time.monotonic()
    last = proc_cpu_s(server_pid)
    while time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        now = proc_cpu_s(server_pid)
        if now - last <= 0.0125:
            break
        last = now
    return round(time.monotonic() - t0, 2)


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.001) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def confirm(vm: Any, bench: str, values: int, points: int,
            complete: bool = True) -> dict[str, Any]:
    """Wait until the server holds every value and quality sample of one method (not long
    when the method itself says it did not write them all)."""
    t = time.perf_counter()
    timeout = CONFIRM_TIMEOUT_S if complete else 5.0
    got_values = vm.wait_samples(VALUES % bench, values, timeout=timeout)
    got_quality = vm.wait_samples(QUALITIES % bench, points, timeout=timeout)
    return {"value_samples": got_values, "value_samples_expected": values,
            "quality_samples": got_quality, "quality_samples_expected": points,
            "ok": got_values == values and got_quality == points,
            "confirm_s": round(time.perf_counter() - t, 2)}


def rate(points: int, seconds: float) -> float:
    return points / seconds if seconds > 0 else float("nan")


def measure_serialise(lines: ReadingLines, maker: PointMaker, batches: list[ReadingBatch],
                      point_rounds: int) -> dict[str, Any]:
    """Line protocol without the network: the sink's bulk serialiser on every round (text
    joined and encoded, as the sink sends it), Points built and serialised on a few rounds."""
    t = time.perf_counter()
    size = 0
    for b in batches:
        size += len("".join(text for text, _ in lines(b)).encode("utf-8"))
    sink_s = time.perf_counter() - t
    n = sum(len(b) for b in batches)
    few = batches[:point_rounds]
    t = time.perf_counter()
    point_size = 0
    for b in few:
        point_size += len("\n".join(p.to_line_protocol() for p in maker.points(b)).encode())
    point_s = time.perf_counter() - t
    m = sum(len(b) for b in few)
    return {"sink": {"points": n, "seconds": round(sink_s, 3),
                     "points_per_s": round(rate(n, sink_s)), "bytes_per_point":
                     round(size / n, 1)},
            "point": {"points": m, "rounds": len(few), "seconds": round(point_s, 3),
                      "points_per_s": round(rate(m, point_s)),
                      "bytes_per_point": round(point_size / m, 1)}}


def measure_sink(cfg: ParkConfig, park: ParkModel, vm: Any, warm: ReadingBatch,
                 batches: list[ReadingBatch], state_dir: Path,
                 queue_points: int | None) -> dict[str, Any]:
    """The rounds go to ``sink.readings()`` as fast as the sink takes them: a round is handed
    over as soon as fewer than `queue_points` points (default: half the sink's bound on
    memory) would then wait in the sink, so the sink always has work and never sheds."""
    from parkwatch.telemetry.sink import TelemetrySink

    sink = TelemetrySink(cfg, park, state_dir)
    queued = queue_points or sink.max_waiting // 2
    done_keys = ("written", "replayed", "rejected", "overflow")

    def accounted() -> int:
        pts = sink.stats()["points"]
        return sum(pts[k] for k in done_keys)

    sink.start()
    try:
        sink.readings(warm)
        if not wait_until(lambda: sink.stats()["points"]["written"] >= len(warm), 60):
            raise RuntimeError(f"sink did not write the warm-up round: {sink.stats()}")
        before = sink.stats()["points"]
        base = accounted()
        n, values = counts(batches)
        settled = settle(vm.proc.pid)
        waits = 0
        cpu = Cpu(vm.proc.pid, lambda: sink._thread.native_id)
        t0 = time.perf_counter()
        for b in batches:
            while (w := sink.stats()["waiting_points"]) and w + len(b) > queued:
                waits += 1
                time.sleep(0.001)
            sink.readings(b)
        t_handed = time.perf_counter() - t0
        wait_until(lambda: accounted() - base >= n, 300)
        seconds = time.perf_counter() - t0
        used = cpu.done()
        stats = sink.stats()
    finally:
        sink.stop(30)
    points = {k: v - before.get(k, 0) for k, v in stats["points"].items()}
    warm_n, warm_values = counts([warm])
    return {"points": n, "seconds": round(seconds, 3), "points_per_s": round(rate(n, seconds)),
            "queue_points": queued, "feeder_waits": waits, "handed_over_s": round(t_handed, 3),
            "complete": points["written"] == n, "cpu": used, "settle_s": settled,
            "sink_points": points, "write_errors": stats["write_errors"],
            "last_error": stats["last_error"],
            "server": confirm(vm, "", warm_values + values, warm_n + n,
                              points["written"] == n)}


def measure_point_batching(url: str, maker: PointMaker, vm: Any, warm: ReadingBatch,
                           batches: list[ReadingBatch]) -> dict[str, Any]:
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import WriteOptions

    written = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def on_success(_conf: Any, data: Any) -> None:
        with lock:
            written[0] += data.count(b"\n") + 1 if isinstance(data, bytes) else \
                data.count("\n") + 1

    def on_error(_conf: Any, _data: Any, exc: Exception) -> None:
        errors.append(repr(exc)[:300])

    client = InfluxDBClient(url=url, token=os.environ[TOKEN_ENV], org="-", enable_gzip=False)
    try:
        api = client.write_api(write_options=WriteOptions(batch_size=BATCH_POINTS,
                                                          flush_interval=1000),
                               success_callback=on_success, error_callback=on_error)
        api.write(bucket="bench-point", org="-", record=maker.points(warm))
        if not wait_until(lambda: written[0] >= len(warm), 60, 0.01):
            raise RuntimeError(f"batching write API did not write the warm-up round: {errors}")
        base = written[0]
        n, values = counts(batches)
        settled = settle(vm.proc.pid)
        cpu = Cpu(vm.proc.pid)
        t0 = time.perf_counter()
        for b in batches:
            api.write(bucket="bench-point", org="-", record=maker.points(b))
        t_handed = time.perf_counter() - t0
        api.close()
        seconds = time.perf_counter() - t0
        used = cpu.done()
    finally:
        client.close()
    warm_n, warm_values = counts([warm])
    return {"points": n, "seconds": round(seconds, 3), "points_per_s": round(rate(n, seconds)),
            "handed_over_s": round(t_handed, 3), "complete": written[0] - base == n,
            "cpu": used, "settle_s": settled, "points_acknowledged": written[0] - base,
            "errors": errors[:5],
            "server": confirm(vm, "point", warm_values + values, warm_n + n,
                              written[0] - base == n)}


def measure_point_sync(url: str, maker: PointMaker, vm: Any, warm: ReadingBatch,
                       batches: list[ReadingBatch]) -> dict[str, Any]:
    from influxdb_client import InfluxDBClient, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    client = InfluxDBClient(url=url, token=os.environ[TOKEN_ENV], org="-", enable_gzip=False)
    try:
        api = client.write_api(write_options=SYNCHRONOUS)

        def write(b: ReadingBatch) -> None:
            for start in range(0, len(b), BATCH_POINTS):
                api.write(bucket="bench-sync", org="-",
                          record=maker.points(b, start, start + BATCH_POINTS),
                          write_precision=WritePrecision.MS)

        write(warm)
        n, values = counts(batches)
        settled = settle(vm.proc.pid)
        cpu = Cpu(vm.proc.pid)
        t0 = time.perf_counter()
        for b in batches:
            write(b)
        seconds = time.perf_counter() - t0
        used = cpu.done()
    finally:
        client.close()
    warm_n, warm_values = counts([warm])
    return {"points": n, "seconds": round(seconds, 3), "points_per_s": round(rate(n, seconds)),
            "complete": True, "cpu": used, "settle_s": settled,
            "server": confirm(vm, "sync", warm_values + values, warm_n + n)}


def measure_server(cfg: ParkConfig, park: ParkModel, vm: Any, warm: ReadingBatch,
                   batches: list[ReadingBatch], in_flight: int) -> dict[str, Any]:
    """What the server takes when serialising costs nothing: the same readings, serialised
    beforehand by ``ReadingLines`` (5000-point payloads, a ``bench`` tag added), written back
    to back by ``InfluxWriter`` (as the sink writes) from `in_flight` threads at once."""
    import queue

    from parkwatch.telemetry.writer import InfluxWriter, Outcome

    bench = f"raw{in_flight}"
    lines = ReadingLines(park)
    lines.prefix = np.array([p.replace(",", f",bench={bench},", 1) for p in lines.prefix],
                            dtype=object)
    payloads: queue.SimpleQueue[tuple[bytes, int] | None] = queue.SimpleQueue()
    for b in batches:
        for text, k in lines(b):
            payloads.put((text.encode("utf-8"), k))
    for _ in range(in_flight):
        payloads.put(None)
    assert cfg.telemetry.influxdb is not None
    writers = [InfluxWriter(cfg.telemetry.influxdb) for _ in range(in_flight)]
    written = [0] * in_flight
    failed: list[str] = []
    warm_text = "".join(text for text, _ in lines(warm)).encode("utf-8")
    for w in writers:  # each opens its connection; the first creates the series
        if (res := w.write(warm_text)).outcome is not Outcome.OK:
            raise RuntimeError(f"server refused the warm-up payload: {res.error}")

    def run(k: int) -> None:
        while (item := payloads.get()) is not None:
            res = writers[k].write(item[0])
            if res.outcome is Outcome.OK:
                written[k] += item[1]
            else:
                failed.append(res.error)

    n, values = counts(batches)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(in_flight)]
    settled = settle(vm.proc.pid)
    cpu = Cpu(vm.proc.pid)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    used = cpu.done()
    for w in writers:
        w.close()
    warm_n, warm_values = counts([warm])
    return {"points": n, "in_flight": in_flight, "seconds": round(seconds, 3),
            "points_per_s": round(rate(n, seconds)), "complete": sum(written) == n,
            "cpu": used, "settle_s": settled, "errors": failed[:5],
            "server": confirm(vm, bench, warm_values + values, warm_n + n)}


# --- output -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import influxdb_client
    import urllib3

    from parkwatch.devtools.localtsdb import find_victoria

    vm = find_victoria()
    version = "?"
    with contextlib.suppress(OSError):
        import subprocess

        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"],
                             capture_output=True, text=True, timeout=5)
        version = out.stdout.strip() or "?"
    return bench_machine(
        numpy=np.__version__, influxdb_client=influxdb_client.__version__,
        urllib3=urllib3.__version__,
        victoria_metrics=f"{vm} (Debian {version})" if vm else "not installed")


def report(r: dict[str, Any]) -> list[str]:
    w = r["workload"]
    lines = [f"{w['sensors']} sensors × {w['rounds']} rounds = {w['points']:,} points "
             f"({w['value_samples']:,} with a value), batches of {BATCH_POINTS}, no gzip, "
             f"one VictoriaMetrics", ""]
    head = (f"  {'method':<34} {'points/s':>10} {'seconds':>8} {'CPU: ours':>10} "
            f"{'server':>7} {'server cores':>12}  on the server")
    lines += [head, "  " + "-" * (len(head) - 2)]
    labels = {"sink": "parkwatch TelemetrySink",
              "point_batching": "Point, batching WriteOptions",
              "point_sync": "Point, SYNCHRONOUS, 5000 a write"}
    for key, label in labels.items():
        m = r["methods"].get(key)
        if m is None:
            continue
        s = m["server"]
        cpu = m["cpu"]
        own = f"{cpu['process_s']:.2f}"
        if "sink_thread_s" in cpu:
            own = f"{cpu['sink_thread_s']:.2f}*"
        seen = ("all samples" if s["ok"] else
                f"{s['value_samples']}/{s['value_samples_expected']} values, "
                f"{s['quality_samples']}/{s['quality_samples_expected']} qualities")
        lines.append(f"  {label:<34} {m['points_per_s']:>10,.0f} {m['seconds']:>8.2f} "
                     f"{own:>10} {cpu['server_s']:>7.2f} {cpu['server_cores']:>12.2f}  "
                     f"{seen} ({s['confirm_s']:.1f} s)")
    if "sink" in r["methods"]:
        lines.append(f"  (* the sink thread alone; the rounds were handed over while fewer than "
                     f"{r['methods']['sink']['queue_points']:,} points waited in the sink)")
    for c in r["server_alone"]:
        s = c["server"]
        seen = "all samples" if s["ok"] else "SAMPLES MISSING"
        label = f"server alone, {c['in_flight']} in flight"
        lines.append(f"  {label:<34} {c['points_per_s']:>10,.0f} {c['seconds']:>8.2f} "
                     f"{c['cpu']['process_s']:>10.2f} {c['cpu']['server_s']:>7.2f} "
                     f"{c['cpu']['server_cores']:>12.2f}  {seen} ({s['confirm_s']:.1f} s)")
    if r["server_alone"]:
        lines.append("  (server alone: the same readings serialised beforehand, written back "
                     "to back by InfluxWriter)")
    sink = r["methods"].get("sink")
    if sink is not None and "sink_thread_s" in sink["cpu"]:
        busy = sink["cpu"]["sink_thread_s"] / sink["seconds"]
        lines.append(f"  the sink thread was busy {busy:.0%} of its wall time; the rest it waited "
                     "for the server's answers (one write in flight)")
    ser = r["serialise"]
    lines += [
        "",
        "  serialisation alone, no network:",
        f"    {'ReadingLines (the sink)':<32} {ser['sink']['points_per_s']:>10,.0f} points/s"
        f"  ({ser['sink']['bytes_per_point']:.0f} bytes/point)",
        f"    {'Point + to_line_protocol()':<32} {ser['point']['points_per_s']:>10,.0f} points/s"
        f"  ({ser['point']['rounds']} rounds)",
        "",
    ]
    ratio = r["ratio"]
    lines.append(f"baseline: {r['baseline']} at {r['baseline_points_per_s']:,.0f} points/s")
    lines.append(f"target: sink ≥ {TARGET_RATIO:g}× the best Point method: "
                 f"{'PASS' if r['met'] else 'FAIL'}, {ratio:.2f}×")
    for key, m in r["methods"].items():
        if not (m["complete"] and m["server"]["ok"]):
            lines.append(f"WARNING: {key} did not get every point onto the server"
                         + (f": {m['sink_points']}" if "sink_points" in m else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sensors", type=int, default=10_000,
                    help="sensors in the park (whole floors of 100)")
    ap.add_argument("--rounds", type=int, default=100, help="readings per sensor, timed")
    ap.add_argument("--quick", action="store_true", help="10 rounds: a smoke run")
    ap.add_argument("--point-serialise-rounds", type=int, default=10,
                    help="rounds for the Point serialisation-only figure")
    ap.add_argument("--sink-queue", type=int, default=None,
                    help="points the feeder lets wait in the sink (default: half the sink's "
                    "bound on memory)")
    ap.add_argument("--in-flight", type=int, nargs="*", default=[1, 2],
                    help="writes at once for the server-alone figures (none: skip them)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 10)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from parkwatch.devtools.localtsdb import LocalVictoria

    started = time.monotonic()
    info = machine()
    print(f"parkwatch telemetry benchmark: {info['nproc']} cores, Python {info['python']}, "
          f"influxdb-client {info['influxdb_client']}, {info['victoria_metrics']}", flush=True)
    os.environ.setdefault(TOKEN_ENV, "parkwatch-bench-token-0123456789")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="parkwatch-telemetry-bench-")))
        vm = stack.enter_context(LocalVictoria())
        cfg = park_config(args.sensors, tmp, vm.url)
        park = ParkModel(cfg)
        # an hour ago: inside the server's retention, never in the future
        start_s = float(int(time.time()) - 3600)
        work = Workload(park, start_s)
        warm = work.round(-1)
        batches = [work.round(k) for k in range(args.rounds)]
        n, values = counts(batches)
        print(f"  {len(park)} sensors, {args.rounds} rounds, {n:,} points", flush=True)
        lines = ReadingLines(park)
        result: dict[str, Any] = {
            "benchmark": "telemetry", "command": command_line(argv), "machine": info,
            "settings": {"batch_points": BATCH_POINTS, "flush_interval_ms": 1000,
                         "gzip": False, "precision": "ms", "comm_faults": COMM_FAULTS,
                         "target_ratio": TARGET_RATIO},
            "workload": {"sensors": len(park), "rounds": args.rounds, "points": n,
                         "value_samples": values,
                         "tenants": len(cfg.tenants),
                         "series_per_method": 2 * len(park),
                         "example_line": next(iter(lines(warm.take(slice(0, 1)))))[0].strip()},
        }
        print("  serialisation alone ...", flush=True)
        result["serialise"] = measure_serialise(
            lines, PointMaker(park, "none"), batches, min(args.point_serialise_rounds,
                                                          args.rounds))
        methods: dict[str, Any] = {}
        print("  parkwatch sink ...", flush=True)
        methods["sink"] = measure_sink(cfg, park, vm, warm, batches, tmp / "sink",
                                       args.sink_queue)
        print(f"    {methods['sink']['points_per_s']:,.0f} points/s", flush=True)
        ceiling = []
        for in_flight in args.in_flight:
            print(f"  the server alone: pre-serialised payloads, {in_flight} in flight ...",
                  flush=True)
            ceiling.append(measure_server(cfg, park, vm, warm, batches, in_flight))
            print(f"    {ceiling[-1]['points_per_s']:,.0f} points/s", flush=True)
        print("  influxdb-client Point, batching ...", flush=True)
        methods["point_batching"] = measure_point_batching(
            vm.url, PointMaker(park, "point"), vm, warm, batches)
        print(f"    {methods['point_batching']['points_per_s']:,.0f} points/s", flush=True)
        print("  influxdb-client Point, synchronous ...", flush=True)
        methods["point_sync"] = measure_point_sync(
            vm.url, PointMaker(park, "sync"), vm, warm, batches)
        print(f"    {methods['point_sync']['points_per_s']:,.0f} points/s", flush=True)
    result["methods"] = methods
    result["server_alone"] = ceiling
    best = max(("point_batching", "point_sync"), key=lambda k: methods[k]["points_per_s"])
    result["baseline"] = best
    result["baseline_points_per_s"] = methods[best]["points_per_s"]
    result["ratio"] = round(methods["sink"]["points_per_s"] / methods[best]["points_per_s"], 2)
    result["target"] = TARGET_RATIO
    result["all_points_written"] = all(m["complete"] and m["server"]["ok"]
                                       for m in methods.values())
    result["met"] = result["ratio"] >= TARGET_RATIO and result["all_points_written"]
    result["runtime_s"] = round(time.monotonic() - started, 1)
    print()
    print("\n".join(report(result)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(f"\nran {result['runtime_s']:.0f} s; wrote "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
