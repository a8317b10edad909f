"""Every benchmark figure next to its target: collects ``benchmarks/results/*.json`` into
``benchmarks/results/summary.json`` and into the table between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` in README.md (inserted after the intro of "## Performance" when missing).

One row per figure: benchmark, case, figure, value, unit, target and met (true, false, or null
for a figure without a target). A benchmark without a results file gives a "not run" row.

Five benchmarks also get their detail table in a block of its own further down the README, from
their results file alone, between ``<!-- bench-NAME:begin -->`` and ``<!-- bench-NAME:end -->``:
``bus`` (one row per case: polls/s against the line limit, scaling, target and verdict),
``rules`` (one row per mode and size: ns/sensor in each order, the floor timed in the same run
and the multiple of it, the reference, the target at 1e5),
``alarms`` (one row per stage of press → raised: what it spans, p50 and p99, then the end to end
figures), ``telemetry`` (one row per method: points/s, seconds, times the best ``Point``
method, the target; then serialisation alone and the server alone) and ``peers`` (per workload,
one row per figure: parkwatch, Node-RED and the bare relay side by side, and parkwatch's ratio
to each). A block without its markers
is inserted after the block before it. A figure the results do not hold is "–"; a missing or
unreadable results file gives a one-line notice.

Nothing is measured here, and the output depends only on the results files: running it twice
changes nothing.

Run from the repository root (``make bench`` runs it after the benchmarks)::

    .venv/bin/python benchmarks/report.py
    .venv/bin/python benchmarks/report.py --since 2026-11-23T10:00:00+00:00   # flag older results
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
SUMMARY_NAME = "summary.json"

Row = dict[str, Any]
Result = dict[str, Any]

#: a ratio shown with two decimals ("0.97×"), where one would round a miss up to "1.0×"
RATIO = "ratio"

# the table's order: the issue's, then the alarm path
BENCHMARKS = ("ingest", "latency", "rules", "bus", "telemetry", "startup", "alarms", "linkage",
              "gb26875", "center", "center_board", "peers", "openalarms", "soak")
# what each benchmark is held to, for its "not run" row
TARGETS = {
    "ingest": "≥ 95 % of a bare paho subscriber",
    "latency": "p99 ≤ 1 ms idle, ≤ 2 ms at 5k/s, ≤ 10 ms at half load",
    "rules": "≤ 15 ns/sensor thresholds, ≤ 50 ns/sensor all kinds, at 1e5 sensors",
    "bus": "≥ 90 % of the line limit; 4 buses linear (≥ 90 % of 4 × 1 bus); ≥ 85 % through "
           "a serial server",
    "telemetry": "≥ 4× the influxdb-client Point method",
    "startup": "start → ready ≤ 1.5 s, RSS ≤ 80 MB (10k sensors)",
    "alarms": "press → raised p99 ≤ 10 s (GB 26875.1)",
    "linkage": "press → coil set p99 ≤ 1.5× the line's floor (busy 9600-baud bus); press → "
               "DingTalk robot p99 ≤ 2× the uplink event's",
    "gb26875": "press → frame confirmed by the city fire monitoring center p99 ≤ 10 ms (10 s "
               "of GB 26875.1 by three orders of magnitude); ≤ 10 s after a dropped frame",
    "center": "command-center ingest ≥ 50 % of the database's own bulk insert of the same rows "
              "(PostgreSQL and SQLite)",
    "center_board": "command-center board: gateway publish → row in the browser p99 ≤ 500 ms",
    "peers": "storm ≥ 1×, quiet ≥ 3× Node-RED's rate; p99 ≤ Node-RED's; no duplicates; "
             "a fire press in the storm p99 ≤ 2× idle",
    "openalarms": "CPU per reading with 100,000 open alarms ≤ 1.10× none; a burst of 10,000 "
                  "changes at the command center ≤ 2 s",
    "soak": "after the warm-up: RSS within ±3 MB of its level, threads and descriptors constant "
            "(30 min; not in make bench)",
}


# --- rows ---------------------------------------------------------------------------------------

def _num(x: float) -> str:
    """A limit as written in a target: 95, 1.5, 10 000."""
    return f"{x:,g}".replace(",", " ")


def target_text(op: str, limit: float, unit: str) -> str:
    if unit == RATIO:
        unit = "×"
    sep = "" if unit in ("×",) else " "
    return f"{op} {_num(limit)}{sep}{unit}"


def judge(value: float | None, op: str, limit: float) -> bool | None:
    if value is None:
        return None
    return value <= limit if op == "≤" else value >= limit


def row(benchmark: str, case: str, figure: str, value: float | None, unit: str,
        target: tuple[str, float] | None = None, met: bool | None = None) -> Row:
    """One figure. With a target (op, limit in the figure's unit) and no verdict given, the
    verdict is the comparison; a verdict given (the benchmark's own) takes precedence."""
    text = None
    if target is not None:
        op, limit = target
        text = target_text(op, limit, unit)
        if met is None:
            met = judge(value, op, limit)
    if isinstance(value, float):
        value = round(value, 4)
    return {"benchmark": benchmark, "case": case, "figure": figure, "value": value,
            "unit": unit, "target": text, "met": None if text is None else met}


def not_run(benchmark: str, why: str = "no results file") -> Row:
    return {"benchmark": benchmark, "case": "—", "figure": f"not run ({why})", "value": None,
            "unit": None, "target": TARGETS.get(benchmark), "met": None}


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def rows_ingest(res: Result) -> list[Row]:
    b = "ingest"
    target = 100.0 * res.get("settings", {}).get("target_ratio", 0.95)
    case = f"{res.get('settings', {}).get('sensors', 1000):,} MQTT sensors".replace(",", " ")
    return [
        row(b, case, "highest sustained rate / bare paho subscriber", _pct(res.get("ratio")), "%",
            ("≥", target), res.get("met")),
        row(b, case, "highest sustained rate", res.get("max_sustained_rate"), "readings/s"),
        row(b, case, "bare paho subscriber", res.get("bare", {}).get("rate"), "messages/s"),
    ]


LATENCY_CASES = {"relay": "idle, bare paho relay (the floor: no work)", "idle": "idle",
                 "5k": "5k readings/s", "half": "half load"}


def rows_latency(res: Result) -> list[Row]:
    b = "latency"
    targets = res.get("settings", {}).get("targets_p99_ms", {})
    out: list[Row] = []
    seen = set()
    for p in res.get("phases", []):
        name = p.get("phase", "?")
        seen.add(name)
        case = LATENCY_CASES.get(name, name)
        if name == "half" and p.get("rate"):
            case = f"half load ({p['rate']:,.0f}/s)".replace(",", " ")
        lat = p.get("latency") or {}
        p99 = "p99" + (f" ({p['missing']} probes without event)" if p.get("missing") else "")
        tgt = p.get("target_p99_ms", targets.get(name))
        out.append(row(b, case, "p50", lat.get("p50_ms"), "ms"))
        out.append(row(b, case, p99, lat.get("p99_ms"), "ms",
                       None if tgt is None else ("≤", tgt), p.get("met")))
        out.append(row(b, case, "max", lat.get("max_ms"), "ms"))
        mx = res.get("max_rate") or {}
        if name == "half" and mx.get("rate"):  # where the half comes from
            how = "found by this run's search" if mx.get("source") == "search" else \
                f"given ({mx.get('source')})"
            if mx.get("source") == "search" and mx.get("measured_at"):
                how += f" at {mx['measured_at']}"
            out.append(row(b, case, f"maximum sustained rate, {how}", mx["rate"], "readings/s"))
    for name, tgt in targets.items():
        if name in seen:
            continue
        why = next((s.split(": ", 1)[-1] for s in res.get("skipped", [])
                    if s.startswith(f"{name}:")), "phase not run")
        r = not_run(b, why)
        r.update(case=LATENCY_CASES.get(name, name), target=target_text("≤", tgt, "ms"))
        out.append(r)
    return out


def rows_rules(res: Result) -> list[Row]:
    b = "rules"
    out = []
    for r in res.get("rows", []):
        if "target_ns" not in r:
            continue  # only the 1e5 rows have a target; the other sizes show the scaling
        case = f"{'all kinds' if r['mode'] == 'all' else r['mode']}, {r['order']} order, " + \
            f"{r['sensors']:,} sensors".replace(",", " ")
        out.append(row(b, case, "evaluate per sensor (median batch)", r.get("ns_per_sensor"),
                       "ns", ("≤", r["target_ns"]), r.get("meets_target")))
    if not out:
        out.append(not_run(b, "no 1e5-sensor case in the results"))
    return out


def rows_bus(res: Result) -> list[Row]:
    b = "bus"
    target = 100.0 * res.get("settings", {}).get("single_target", 0.9)
    scaling = 100.0 * res.get("settings", {}).get("scaling_target", 0.9)
    tcp = 100.0 * res.get("settings", {}).get("tcp_target", 0.85)
    out = []
    for c in res.get("cases", []):
        buses = c["buses"]
        case = f"{c['baud']} baud, {buses} bus{'es' if buses > 1 else ''}"
        note = f" ({c['t35_violations']} t3.5 violations)" if c.get("t35_violations") else ""
        if c.get("transport") == "rtu_tcp":  # through a serial server (issue 26)
            out.append(row(b, case + " via a serial server", "polls/s of the line limit" + note,
                           _pct(c.get("ratio")), "%", ("≥", tcp), c.get("pass")))
        elif buses == 1:
            out.append(row(b, case, "polls/s of the line limit" + note, _pct(c.get("ratio")),
                           "%", ("≥", target), c.get("pass")))
        else:
            out.append(row(b, case, "polls/s of the line limit", _pct(c.get("ratio")), "%"))
            out.append(row(b, case, f"scaling: polls/s of {buses} × 1 bus" + note,
                           _pct(c.get("scaling")), "%", ("≥", scaling), c.get("pass")))
    return out


def rows_telemetry(res: Result) -> list[Row]:
    b = "telemetry"
    methods = res.get("methods", {})
    base = res.get("baseline", "")
    case = f"{res.get('workload', {}).get('points', 0):,} points".replace(",", " ")
    note = "" if res.get("all_points_written", True) else " (not every point written)"
    return [
        row(b, case, f"TelemetrySink / best Point method ({base}){note}", res.get("ratio"), "×",
            ("≥", res.get("target", 4.0)), res.get("met")),
        row(b, case, "TelemetrySink", methods.get("sink", {}).get("points_per_s"), "points/s"),
        row(b, case, f"influxdb-client Point ({base})", res.get("baseline_points_per_s"),
            "points/s"),
    ]


def rows_startup(res: Result) -> list[Row]:
    b = "startup"
    s = res.get("summary", {})
    t = s.get("targets", {})
    ready, rss = t.get("start_to_ready_s", {}), t.get("rss_mb", {})
    n = res.get("settings", {}).get("sensors") or res.get("park", {}).get("sensors", 0)
    runs = res.get("settings", {}).get("runs")
    case = f"{n:,} sensors".replace(",", " ") + (f", {runs} starts" if runs else "")
    r_t, m_t = ready.get("target", 1.5), rss.get("target", 80.0)
    return [
        row(b, case, "start → READY=1, slowest start", ready.get("max", s.get("ready_max_s")),
            "s", ("≤", r_t), ready.get("pass")),
        row(b, case, "start → READY=1, median", s.get("ready_median_s"), "s"),
        row(b, case, "peak RSS (VmHWM)", rss.get("max_vmhwm", s.get("hwm_max_mb")), "MB",
            ("≤", m_t), rss.get("pass")),
        row(b, case, "RSS (VmRSS) at ready and after readings", rss.get("max_vmrss"), "MB",
            ("≤", m_t)),
    ]


def rows_alarms(res: Result) -> list[Row]:
    b = "alarms"
    press = res.get("press") or {}
    limit_ms = 1000.0 * res.get("settings", {}).get("requirement_s", 10.0)
    out = []
    raised = press.get("raised") or {}
    case = "fire-button press → raised at the command center"
    out.append(row(b, case, "p50", raised.get("p50_ms"), "ms"))
    out.append(row(b, case, "p99", raised.get("p99_ms"), "ms", ("≤", limit_ms)))
    out.append(row(b, case, "max", raised.get("max_ms"), "ms"))
    for key, case in (("cleared", "reset → cleared"), ("acknowledged", "ack → acknowledged")):
        out.append(row(b, case, "p99", (press.get(key) or {}).get("p99_ms"), "ms"))
    burst = res.get("burst") or {}
    if burst:
        case = f"burst of {burst.get('cells', 0):,} overloads".replace(",", " ")
        out.append(row(b, case, "last raised at the command center", burst.get("last_raised_s"),
                       "s"))
    return out


def rows_linkage(res: Result) -> list[Row]:
    """Press → the sounder's coil set against the line's floor, and press → the robot's
    message against the uplink event of the same presses (issue 23)."""
    b = "linkage"
    f = res.get("figures") or {}
    line = res.get("line") or {}
    coil, robot, uplink = f.get("coil") or {}, f.get("robot") or {}, f.get("uplink_raised") or {}
    lost = "" if f.get("all_measured", True) else \
        f" ({f.get('measured')} of {f.get('presses')} presses measured)"
    baud = f"{line.get('baudrate', 9600)} baud"
    case = f"fire press → sounder coil set, busy {baud} bus"
    return [
        row(b, case, f"p99 / the line's floor of {_ms(coil.get('floor_ms'))} ms" + lost,
            coil.get("p99_over_floor"), RATIO, ("≤", coil.get("target_ratio", 1.5)),
            coil.get("met")),
        row(b, case, "p50", coil.get("p50_ms"), "ms"),
        row(b, case, "p99", coil.get("p99_ms"), "ms"),
        row(b, "fire press → DingTalk robot message accepted",
            "p99 / the uplink event's p99" + lost, robot.get("p99_over_uplink_p99"), RATIO,
            ("≤", robot.get("target_ratio", 2.0)), robot.get("met")),
        row(b, "fire press → DingTalk robot message accepted", "p99", robot.get("p99_ms"), "ms"),
        row(b, "fire press → raised at the command center (the peer)", "p99",
            uplink.get("p99_ms"), "ms"),
    ]


def rows_gb26875(res: Result) -> list[Row]:
    """Press → the city fire monitoring center's confirm over GB/T 26875.3 (issue 26), also
    when the center dropped the first frame; the contract's event of the same press beside."""
    b = "gb26875"
    figures = res.get("figures") or {}
    ok = figures.get("confirmed") or {}
    case = "fire-button press → frame confirmed by the monitoring center"
    out = [row(b, case, "p50", ok.get("p50_ms"), "ms"),
           row(b, case, "p99", ok.get("p99_ms"), "ms", ("≤", 10.0)),
           row(b, case, "max", ok.get("max_ms"), "ms")]
    drop = figures.get("after_drop") or {}
    out.append(row(b, "the same, first frame dropped by the center (resent after its "
                   f"confirm timeout, {res.get('settings', {}).get('confirm_timeout_s', '?')} s, "
                   "and the first backoff)", "p99",
                   drop.get("p99_ms"), "ms", ("≤", 10_000.0)))
    up = figures.get("uplink_raised") or {}
    ratio = (ok["p99_ms"] / up["p99_ms"]) if ok.get("p99_ms") and up.get("p99_ms") else None
    out.append(row(b, case, "p99 / the uplink event's p99 (same presses, same run)", ratio,
                   RATIO))
    out.append(row(b, "the same press → raised at the command center (MQTT contract, the "
                   "peer)", "p99", up.get("p99_ms"), "ms"))
    return out


def rows_center(res: Result) -> list[Row]:
    """The command center's ingest against the database's own bulk insert (issue 24)."""
    out: list[Row] = []
    s = res.get("settings") or {}
    for backend, name in (("postgresql", "PostgreSQL"), ("sqlite", "SQLite")):
        r = (res.get("backends") or {}).get(backend)
        if r is None:
            continue
        case = f"{s.get('parks', 100)} parks, {r.get('events')} events, {name}"
        out += [row("center", case, "ingest / the database's bulk insert", r.get("ratio"), RATIO,
                    ("≥", r.get("target", 0.5)), r.get("met")),
                row("center", case, "ingest", r.get("ingest_per_s"), "events/s"),
                row("center", case, "bulk insert of the same rows", r.get("bulk_per_s"),
                    "events/s")]
    return out


def rows_center_board(res: Result) -> list[Row]:
    """The command center's board: an event published → its row in a real browser (issue 24),
    next to the same events' publish → received by the center (the broker's hop)."""
    s = res.get("settings") or {}
    case = f"{s.get('events')} events, one at a time, SQLite"
    b = res.get("board_ms") or {}
    got = res.get("received_ms") or {}
    seen = res.get("seen_in_browser")
    out = [row("center_board", case, "publish → row in the browser, p99", b.get("p99"), "ms",
               ("≤", s.get("target_p99_ms", 500.0)), res.get("met")),
           row("center_board", case, "publish → row in the browser, p50", b.get("p50"), "ms"),
           row("center_board", case, "publish → row in the browser, p90", b.get("p90"), "ms"),
           row("center_board", case, "publish → row in the browser, max", b.get("max"), "ms"),
           row("center_board", case, "publish → received by the center, p99", got.get("p99"),
               "ms"),
           row("center_board", case, "events seen in the browser", seen, "events",
               ("≥", s.get("events") or 0))]
    return out


PEERS_WORKLOADS = {"storm": "storm: 5 % of readings change an alarm's state",
                   "quiet": "quiet: 10 alarm changes a second"}
#: issue 20: parkwatch's highest rate against Node-RED's, per workload
PEERS_RATE_TARGETS = {"storm": 1.0, "quiet": 3.0}
PEERS_SYSTEMS = {"parkwatch": "parkwatch", "node-red": "Node-RED", "floor": "bare paho relay"}


def _peer(res: Result, workload: str, system: str) -> Result:
    """One system's results on one workload, {} when it did not run."""
    got = ((res.get("results") or {}).get(workload) or {}).get(system) or {}
    return got if "steps" in got else {}


def _peer_fixed(r: Result, rate: str, key: str) -> float | None:
    return ((r.get("fixed") or {}).get(rate) or {}).get(key)


def _peer_ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def rows_peers(res: Result) -> list[Row]:
    """Per workload: parkwatch's highest rate against Node-RED's, its p99 at 1k/s and 5k/s
    against Node-RED's, and its duplicates (issue 20's targets)."""
    b = "peers"
    out: list[Row] = []
    for wl, case in PEERS_WORKLOADS.items():
        if wl not in (res.get("results") or {}):
            continue
        pw, nr = _peer(res, wl, "parkwatch"), _peer(res, wl, "node-red")
        cut = "" if pw.get("search_complete", True) else " (search cut short: at least)"
        out.append(row(b, case, "highest rate, parkwatch / Node-RED",
                       _peer_ratio(pw.get("max_rate"), nr.get("max_rate")), RATIO,
                       ("≥", PEERS_RATE_TARGETS[wl])))
        out.append(row(b, case, "highest rate, parkwatch" + cut, pw.get("max_rate"),
                       "readings/s"))
        for rate, label in (("1000", "1k/s"), ("5000", "5k/s")):
            out.append(row(b, case, f"p99 at {label}, parkwatch / Node-RED",
                           _peer_ratio(_peer_fixed(pw, rate, "p99_ms"),
                                       _peer_fixed(nr, rate, "p99_ms")), RATIO, ("≤", 1.0)))
        out.append(row(b, case, "parkwatch duplicates (an alarm_id and seq twice)",
                       pw.get("duplicates"), "events", ("≤", 0)))
        fire = pw.get("fire_probe") or {}
        if fire:
            out.append(row(b, case, "fire press p99 in the storm at half the highest rate / "
                           "idle", fire.get("p99_ratio"), RATIO, ("≤", 2.0)))
    machine = res.get("machine") or {}
    for key, how in (("commit_floor", "back to back"), ("commit_floor_spaced", "20 ms apart")):
        floor = machine.get(key) or {}
        if out and floor:  # what stands under parkwatch's p99: a durable commit on this disk
            out.append(row(b, "this disk", f"a durable commit alone (SQLite WAL, fsync), "
                           f"{how}, p99", floor.get("p99_ms"), "ms"))
    if not out:
        out.append(not_run(b, "no workload in the results"))
    return out


def rows_openalarms(res: Result) -> list[Row]:
    """CPU per reading with many open alarms against none, and the burst's seconds with none
    and with them (issue 20)."""
    b = "openalarms"
    out: list[Row] = []
    cpu = res.get("cpu") or {}
    n_open = f"{res.get('settings', {}).get('open', 0):,}".replace(",", " ")
    if cpu:
        case = f"storm, {n_open} open alarms"
        out.append(row(b, case, "CPU per reading, open / none", cpu.get("ratio"), RATIO,
                       ("≤", cpu.get("target_ratio", 1.1)),
                       met=bool(cpu.get("meets_target")) if "meets_target" in cpu else None))
    burst = res.get("burst") or {}
    for key, seconds in sorted((burst.get("burst_s") or {}).items(), key=lambda kv: int(kv[0])):
        case = "burst of 10 000 alarm changes"
        opened = f"{int(key):,}".replace(",", " ")
        out.append(row(b, case, f"last at the command center, {opened} open", seconds, "s",
                       ("≤", burst.get("target_s", 2.0))))
    if not out:
        out.append(not_run(b, "no figures in the results"))
    return out


def rows_soak(res: Result) -> list[Row]:
    """The soak's verdict: how far RSS strayed from its level after the warm-up, and how much
    the threads and descriptors changed (issue 22)."""
    b = "soak"
    v = res.get("verdict") or {}
    minutes = (res.get("settings") or {}).get("minutes")
    case = (f"{_num(minutes)} min" if minutes else "?") + \
        ": readings, alarm churn, acks, junk, HTTP bursts"
    if res.get("daemon_died"):
        return [not_run(b, "the daemon died during the run") | {"case": case}]
    if v.get("met") is None:
        return [not_run(b, v.get("why") or "no verdict") | {"case": case}]
    rss, threads, fds = v["rss"], v["threads"], v["fds"]
    return [
        row(b, case, f"RSS after the warm-up, furthest from its level of "
            f"{rss['level_mb']:.1f} MB", rss.get("max_drift_mb"), "MB",
            ("≤", rss.get("band_mb", 3.0)), rss.get("met")),
        row(b, case, "RSS trend after the warm-up", rss.get("slope_mb_per_h"), "MB/h"),
        row(b, case, f"threads, most changed from {threads['level']}", threads.get("max_change"),
            "threads", ("≤", 0), threads.get("met")),
        row(b, case, f"open descriptors, most changed from {fds['level']}", fds.get("max_change"),
            "descriptors", ("≤", 0), fds.get("met")),
    ]


EXTRACTORS: dict[str, Callable[[Result], list[Row]]] = {
    "ingest": rows_ingest, "latency": rows_latency, "rules": rows_rules, "bus": rows_bus,
    "telemetry": rows_telemetry, "startup": rows_startup, "alarms": rows_alarms,
    "linkage": rows_linkage, "gb26875": rows_gb26875, "center": rows_center,
    "center_board": rows_center_board, "peers": rows_peers,
    "openalarms": rows_openalarms, "soak": rows_soak,
}


def summarise(results: dict[str, Result | None]) -> list[Row]:
    """Every figure of every benchmark, in the table's order; "not run" for a missing one."""
    out: list[Row] = []
    names = [*BENCHMARKS, *sorted(set(results) - set(BENCHMARKS))]
    for name in names:
        res = results.get(name)
        if res is None:
            out.append(not_run(name))
        elif name in EXTRACTORS:
            try:
                out.extend(EXTRACTORS[name](res))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                out.append(not_run(name, f"unreadable results: {type(exc).__name__} {exc}"))
        # a results file of a benchmark this report does not know is left out
    return out


# --- where each result comes from ---------------------------------------------------------------

def source(name: str, res: Result | None, since: dt.datetime | None = None) -> dict[str, Any]:
    """The command and machine line of one result."""
    if res is None:
        return {"benchmark": name, "file": None}
    m = res.get("machine", {})
    stamp = m.get("timestamp") or res.get("when")
    out = {"benchmark": name, "file": f"benchmarks/results/{name}.json",
           "command": res.get("command"), "nproc": m.get("nproc", m.get("cpus")),
           "python": m.get("python"), "loadavg": (m.get("loadavg") or [None])[0],
           "cpu_probe_ms": m.get("cpu_probe_ms"), "timestamp": stamp,
           "runtime_s": res.get("runtime_s")}
    if since is not None and stamp:
        out["earlier_run"] = _when(stamp) < since
    return out


def _when(stamp: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(stamp)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


# --- rendering ----------------------------------------------------------------------------------

def fmt_value(value: Any, unit: str | None) -> str:
    if value is None:
        return "no figure"
    if not isinstance(value, int | float):
        return f"{value} {unit or ''}".strip()
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "×":
        return f"{value:.1f}×"
    if unit == RATIO:
        return f"{value:.2f}×"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ns":
        return f"{value:.1f} ns"
    if unit in ("MB", "MB/h"):
        return f"{value:.1f} {unit}"
    return f"{value:,.0f} {unit}".replace(",", " ")


def verdict(r: Row) -> str:
    if r["figure"].startswith("not run"):
        return "not run"
    if r["target"] is None:
        return "–"
    return {True: "met", False: "**missed**", None: "no figure"}[r["met"]]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Iterable[Row]) -> list[str]:
    lines = ["| benchmark | case | figure | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        fig = r["figure"] if r["figure"].startswith("not run") else \
            f"{r['figure']}: {fmt_value(r['value'], r['unit'])}"
        lines.append("| " + " | ".join(_cell(c) for c in (
            r["benchmark"], r["case"], fig, r["target"] or "–", verdict(r))) + " |")
    return lines


def source_line(s: dict[str, Any]) -> str:
    if s.get("file") is None:
        return f"- `{s['benchmark']}`: not run (no `benchmarks/results/{s['benchmark']}.json`)"
    cmd = f"`{s['command']}`" if s.get("command") else "command not recorded"
    parts = [f"{s['nproc']} cores" if s.get("nproc") else None,
             f"Python {s['python']}" if s.get("python") else None,
             s.get("timestamp"),
             f"load average {s['loadavg']}" if s.get("loadavg") is not None else None,
             f"speed probe {s['cpu_probe_ms']} ms" if s.get("cpu_probe_ms") else None,
             f"ran {s['runtime_s']:.0f} s" if s.get("runtime_s") else None]
    line = f"- `{s['benchmark']}`: {cmd}; " + ", ".join(p for p in parts if p)
    if s.get("earlier_run"):
        line += " (**from an earlier run**: this run did not replace it)"
    return line


def tally(rows: Iterable[Row]) -> tuple[int, int]:
    """(targets met, targets judged): a figure with a target that has no value counts as not
    met."""
    judged = [r for r in rows if r["target"] is not None and not r["figure"].startswith("not run")]
    return sum(1 for r in judged if r["met"] is True), len(judged)


def block(rows: list[Row], sources: list[dict[str, Any]]) -> str:
    """The README block, markers included."""
    met, judged = tally(rows)
    missing = [r["benchmark"] + ("" if r["case"] == "—" else f" ({r['case']})")
               for r in rows if r["figure"].startswith("not run")]
    head = (f"**Every figure next to its target** (`make bench` runs all benchmarks, in "
            f"about 15 minutes on 2 cores, then `benchmarks/report.py` rewrites this table and "
            f"`benchmarks/results/summary.json`): {met} of {judged} targets met")
    if missing:
        head += f"; not run: {', '.join(dict.fromkeys(missing))}"
    lines = [BEGIN, "<!-- generated by benchmarks/report.py: edit that, not this block -->",
             textwrap.fill(head + ".", 100, break_long_words=False, break_on_hyphens=False),
             "", *table(rows), "",
             "Where each result comes from (the speed probe times a fixed piece of Python work "
             "as the benchmark starts: a larger figure, a slower machine at that moment):", "",
             *(source_line(s) for s in sources), END]
    return "\n".join(lines) + "\n"


def _swap(text: str, new_block: str, begin: str, end: str) -> str | None:
    """Text with the block between the markers replaced; None when it has neither marker."""
    new_block = new_block.rstrip("\n") + "\n"
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        tail = text[stop + len(end):]
        return text[:start] + new_block + tail.removeprefix("\n")
    if start >= 0 or stop >= 0:
        raise ValueError(f"README has only one of the markers {begin} {end}")
    return None


def replace_block(text: str, new_block: str) -> str:
    """README text with the block between the markers replaced; without markers, the block is
    inserted after the first paragraph under "## Performance"."""
    swapped = _swap(text, new_block, BEGIN, END)
    if swapped is not None:
        return swapped
    new_block = new_block.rstrip("\n") + "\n"
    lines = text.splitlines(keepends=True)
    try:
        i = next(k for k, ln in enumerate(lines) if ln.rstrip() == "## Performance") + 1
    except StopIteration:
        raise ValueError("README has no '## Performance' section") from None
    while i < len(lines) and not lines[i].strip():
        i += 1  # blank lines after the heading
    while i < len(lines) and lines[i].strip() and not lines[i].startswith("#"):
        i += 1  # the intro paragraph
    return "".join(lines[:i]) + "\n" + new_block + "".join(lines[i:])


# --- the detail tables: bus, rules, alarms, telemetry -------------------------------------------

DETAILS = ("bus", "rules", "alarms", "telemetry", "peers")  # in the README's order
DASH = "–"
RULES_MODES = {"thresholds": "thresholds", "all": "all kinds"}
RULES_ORDERS = ("arrival", "poll")
RULES_TARGET_SIZE = 100_000


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench-{name}:begin -->", f"<!-- bench-{name}:end -->"


def _fixed(x: float | None, digits: int = 1) -> str:
    return DASH if x is None else f"{x:,.{digits}f}".replace(",", " ")


def _percent(ratio: float | None) -> str:
    return DASH if ratio is None else fmt_value(100.0 * ratio, "%")


def _word(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "no figure"}[met]


def _md(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(_cell(c) for c in cells) + " |" for cells in body)]


def _fill(text: str) -> str:
    return textwrap.fill(text, 100, break_long_words=False, break_on_hyphens=False)


def _latest_run(res: Result) -> str:
    cmd = f"`{res['command']}`" if res.get("command") else "command not recorded"
    stamp = (res.get("machine") or {}).get("timestamp") or res.get("when")
    return f"Latest run: {cmd}" + (f", {stamp}" if stamp else "")


BUS_FAULTS = (("t35_violations", "t3.5 violations"), ("failed_polls", "failed polls"),
              ("timeouts", "timeouts"), ("bad_frames", "bad frames"),
              ("collisions", "collisions"))


def bus_detail(res: Result) -> list[str]:
    """The bus table (one row per case, in the run's order) and the line faults, if any."""
    s = res.get("settings", {})
    single, scaling = 100.0 * s.get("single_target", 0.9), 100.0 * s.get("scaling_target", 0.9)
    cases = res.get("cases", [])
    multi = sorted({c["buses"] for c in cases if c["buses"] > 1})
    tcp = 100.0 * s.get("tcp_target", 0.85)
    head = ["baud", "buses", "polls/s", "line limit", "% of limit",
            f"scaling vs {multi[0] if len(multi) == 1 else 'n'} × one bus", "target"]
    body = []
    for c in cases:
        one = c["buses"] == 1
        served = c.get("transport") == "rtu_tcp"
        tgt = target_text("≥", tcp if served else single, "%") if one else \
            f"linear, {target_text('≥', scaling, '%')} of {c['buses']} × one bus"
        body.append([str(c["baud"]), f"{c['buses']}, via a serial server" if served
                     else str(c["buses"]), _fixed(c.get("polls_per_s")),
                     _fixed(c.get("theoretical_per_s")), _percent(c.get("ratio")),
                     DASH if one else _percent(c.get("scaling")), f"{tgt}: {_word(c.get('pass'))}"])
    run = _latest_run(res)
    if "slaves_per_bus" in s and "seconds" in s:
        run += (f"; {s['slaves_per_bus']} slaves per bus, {s.get('warmup', 0):g} s warm-up and "
                f"{s['seconds']:g} s measured per case")
    faults = []
    for c in cases:
        found = [f"{label} {c[k]}" for k, label in BUS_FAULTS if c.get(k)]
        if found:
            faults.append(f"{c['baud']} baud, {c['buses']} bus{'es' if c['buses'] > 1 else ''} "
                          f"({', '.join(found)})")
    if faults:
        note = ("Line faults (a t3.5 violation fails its case; -1: a simulator did not "
                "report): " + "; ".join(faults) + ".")
    elif cases and all(k in c for c in cases for k, _ in BUS_FAULTS):
        note = ("No case had a t3.5 violation, a failed poll, a timeout, a bad frame or a "
                "collision.")
    else:
        note = ""
    return [_fill(run + "."), "", *_md(head, body), *(["", _fill(note)] if note else [])]


def _rules_met(r: Result) -> bool | None:
    met = r.get("meets_target")
    return judge(r.get("ns_per_sensor"), "≤", r["target_ns"]) if met is None else met


def _rules_verdict(orders: dict[str, Result]) -> str:
    """"≤ 15 ns: met" when every order is judged alike, else the verdict of each order."""
    judged = {o: r for o, r in orders.items() if r.get("target_ns") is not None}
    if not judged:
        return DASH
    tgt = target_text("≤", next(iter(judged.values()))["target_ns"], "ns")
    words = {o: _word(_rules_met(r)) for o, r in judged.items()}
    if len(set(words.values())) == 1 and set(words) == set(RULES_ORDERS):
        return f"{tgt}: {next(iter(words.values()))}"
    return f"{tgt}: " + ", ".join(f"{o} {w}" for o, w in words.items())


def _ns(x: float | None) -> str:
    return DASH if x is None else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def _per_order(orders: dict[str, Result], key: str, fmt: Callable[[float], str]) -> str:
    """"a / p": one figure per order (arrival / poll), "–" for an order without it; "–" alone
    when no order has it."""
    vals = [orders.get(o, {}).get(key) for o in RULES_ORDERS]
    if all(v is None for v in vals):
        return DASH
    return " / ".join(DASH if v is None else fmt(v) for v in vals)


def rules_detail(res: Result) -> list[str]:
    """The rules table: one row per mode and size run, each order in a column, then the floor
    (gather, compare, flatnonzero: timed in the same run) and the engine's multiple of it in
    each order; the target size, when the run left it out, is a "not run" row (other sizes
    are just not shown)."""
    runs = res.get("rows", [])
    targets = res.get("targets_ns_at_1e5", {})
    modes = list(dict.fromkeys([*RULES_MODES, *(r["mode"] for r in runs)]))
    cells: dict[tuple[str, int], dict[str, Result]] = {}
    for r in runs:
        cells.setdefault((r["mode"], r["sensors"]), {})[r["order"]] = r
    body = []
    for mode in modes:
        sizes = sorted(n for m, n in cells if m == mode)
        missing = [n for n in (RULES_TARGET_SIZE,) if not any(abs(k - n) < 0.05 * n
                                                              for k in sizes)]
        for n in sorted([*sizes, *missing]):
            name = RULES_MODES.get(mode, mode)
            if n in missing:
                tgt = DASH
                if n == RULES_TARGET_SIZE and mode in targets:
                    tgt = f"{target_text('≤', targets[mode], 'ns')}: not run"
                body.append([name, f"1e{len(str(n)) - 1}: not run", DASH, DASH, DASH, DASH,
                             DASH, tgt])
                continue
            orders = {o: cells[mode, n][o] for o in
                      sorted(cells[mode, n], key=lambda o: (o not in RULES_ORDERS, o))}
            ref = next((r for r in orders.values()
                        if r.get("reference_ns_per_sensor") is not None), None)
            ref_cell = DASH if ref is None else _fixed(ref["reference_ns_per_sensor"], 0) + (
                f" ({ref['speedup']:.0f}×)" if ref.get("speedup") else "")
            body.append([name, f"{n:,}".replace(",", " ")] + [
                _fixed(orders.get(o, {}).get("ns_per_sensor")) for o in RULES_ORDERS]
                + [_per_order(orders, "floor_ns_per_sensor", _ns),
                   _per_order(orders, "x_floor", lambda x: fmt_value(x, "×")),
                   ref_cell, _rules_verdict(orders)])
    head = ["rules", "sensors", "arrival ns/sensor", "poll ns/sensor",
            "floor ns/sensor (arrival / poll)", "× floor (arrival / poll)",
            "reference ns/sensor (speed-up)", "target at 1e5"]
    out = [_fill(_latest_run(res) + "; medians of the timed batches:"), "", *_md(head, body)]
    if any(r.get("x_floor") is not None for r in runs):
        out += ["", _fill("The floor is the least work any rule engine does for a threshold "
                          "check: each reading's limit gathered (`limit[sensor]`), one compare, "
                          "`np.flatnonzero`; timed in the same run on the same batches, so its "
                          "multiple depends less on the machine than the nanoseconds do.")]
    judged = [r for r in runs if r.get("target_ns") is not None]
    if judged:
        missed = [f"{RULES_MODES.get(r['mode'], r['mode'])}, {r['order']} order "
                  f"({_ns(r.get('ns_per_sensor'))} ns)"
                  for r in judged if _rules_met(r) is not True]
        met = len(judged) - len(missed)
        out += ["", _fill(f"Targets at 1e5 sensors: {met} of {len(judged)} met"
                          + (f"; missed: {'; '.join(missed)}." if missed else "."))]
        big = [(mode, {r["order"]: r for r in judged if r["mode"] == mode}) for mode in modes]
        out += ["", _fill("At 1e5 sensors, per sensor in arrival / poll order: the mean batch "
                          "(the table has the median) and `next_due()`, which the pipeline asks "
                          "between batches:"), ""]
        for mode, orders in big:
            if orders:
                mean = " / ".join(_ns(orders.get(o, {}).get("ns_per_sensor_mean"))
                                  for o in RULES_ORDERS)
                due = " / ".join(_ns(orders.get(o, {}).get("next_due_ns_per_sensor"))
                                 for o in RULES_ORDERS)
                out.append(f"- {RULES_MODES.get(mode, mode)}: mean {mean} ns, "
                           f"`next_due()` {due} ns")
    else:
        out += ["", "No 1e5-sensor case in this run: the targets are not judged."]
    return out


ALARM_STAGES = ("broker_in", "queue", "decode", "rules", "alarms", "commit", "pickup",
                "broker_out")  # alarms.py's, device to command center


def _ms(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}"


def alarms_detail(res: Result) -> list[str]:
    """Where press → raised goes: one row per stage (the run's description, p50 and p99), then
    the end-to-end figures; a stage the run did not time is a row of dashes."""
    run = _latest_run(res)
    press = res.get("press")
    if not press:
        return [_fill(run + "; no press cycles in this run, so no stage figures.")]
    raised = press.get("raised") or {}
    what = (res.get("settings") or {}).get("stages") or {}
    timed = raised.get("stages") or {}
    names = list(dict.fromkeys([*ALARM_STAGES, *what, *timed]))
    body = [[f"`{n}`", what.get(n, DASH), _ms((timed.get(n) or {}).get("p50_ms")),
             _ms((timed.get(n) or {}).get("p99_ms"))] for n in names]
    body.append(["press → `raised`", "end to end: device publish → the command center's "
                 "on_message", _ms(raised.get("p50_ms")), _ms(raised.get("p99_ms"))])
    buttons, cycles = press.get("buttons"), press.get("cycles")
    if cycles and buttons:
        run += (f"; {cycles} press cycles over {len(buttons)} MQTT fire buttons"
                + (f", {press['warmup']} warm-up cycles not counted" if press.get("warmup")
                   else ""))
    out = [_fill(run + ":"), "", *_md(["stage", "what", "p50 ms", "p99 ms"], body)]
    p50s = {n: (timed.get(n) or {}).get("p50_ms") for n in names}
    known = {n: v for n, v in p50s.items() if v is not None}
    if known and len(known) == len(p50s) and raised.get("p50_ms") is not None:
        longest = max(known, key=known.__getitem__)
        out += ["", _fill(f"At the median the stages add up to {_ms(sum(known.values()))} ms of "
                          f"the total's {_ms(raised['p50_ms'])} ms; the longest is `{longest}`, "
                          f"{_ms(known[longest])} ms. A p99 is each stage's own: the p99s do not "
                          "add up.")]
    if press.get("error"):
        out += ["", _fill(f"The run reported an error: {press['error']}.")]
    return out


TELEMETRY_METHODS = {"sink": "parkwatch `TelemetrySink` (bulk line protocol)",
                     "point_sync": "influxdb-client `Point`, synchronous writes",
                     "point_batching": "influxdb-client `Point`, batching `WriteOptions`"}


def _count(x: float | None) -> str:
    return _fixed(x, 0)


def telemetry_detail(res: Result) -> list[str]:
    """The telemetry table (one row per method: points/s, seconds, times the best `Point`
    method, the target), then serialisation alone and the server alone."""
    s, w = res.get("settings") or {}, res.get("workload") or {}
    methods = res.get("methods") or {}
    base = res.get("baseline")
    base_rate = res.get("baseline_points_per_s", (methods.get(base) or {}).get("points_per_s"))
    batch = s.get("batch_points")
    target = res.get("target", s.get("target_ratio", 4.0))
    body = []
    for key in dict.fromkeys(["sink", *([base] if base else []), *TELEMETRY_METHODS, *methods]):
        m = methods.get(key) or {}
        rate = m.get("points_per_s")
        label = TELEMETRY_METHODS.get(key, f"`{key}`")
        if key == "point_sync" and batch:
            label += f" of {_count(batch)}"
        if key == base:
            label += " (the baseline)"
        times = res.get("ratio") if key == "sink" else \
            None if rate is None or not base_rate else rate / base_rate
        tgt = DASH
        if key == "sink":
            met = res.get("met")
            tgt = f"{target_text('≥', target, '×')}: " \
                f"{_word(judge(times, '≥', target) if met is None else met)}"
        body.append([label, _count(rate), _fixed(m.get("seconds"), 3),
                     DASH if times is None else fmt_value(times, "×"), tgt])
    head = ["method", "points/s", "seconds", "× the best `Point` method", "target"]
    run = _latest_run(res)
    if w.get("sensors") and w.get("rounds") and w.get("points"):
        run += (f"; {_count(w['sensors'])} sensors × {w['rounds']} rounds = "
                f"{_count(w['points'])} points")
    if batch:
        run += f", batches of {_count(batch)}"
    out = [_fill(run + ":"), "", *_md(head, body)]
    lost = [TELEMETRY_METHODS.get(k, k) for k, m in methods.items()
            if m.get("complete") is False or (m.get("server") or {}).get("ok") is False]
    if lost:
        out += ["", _fill("Not every point reached the server (such a method fails the target): "
                          + "; ".join(lost) + ".")]
    elif methods and all("ok" in (m.get("server") or {}) for m in methods.values()):
        out += ["", "Every method got every point onto the server (checked after its time)."]
    ser = res.get("serialise") or {}
    alone = {c.get("in_flight"): c for c in res.get("server_alone") or []}
    one = (alone.get(1) or {}).get("points_per_s")
    sink = methods.get("sink") or {}
    share = DASH if sink.get("points_per_s") is None or not one else \
        f"{100.0 * sink['points_per_s'] / one:.0f} %"
    more = "".join(f" ({_count(c.get('points_per_s'))} with {k} writes in flight)"
                   for k, c in alone.items() if k != 1)
    text = (f"Serialisation alone (no network): the sink turns "
            f"{_count((ser.get('sink') or {}).get('points_per_s'))} readings/s into line "
            f"protocol, `Point` objects {_count((ser.get('point') or {}).get('points_per_s'))}/s."
            f" The server alone, fed ready-made line protocol one write at a time, takes "
            f"{_count(one)} points/s{more}, so the sink runs at about {share} of what this server "
            "accepts from one writer.")
    thread, secs = (sink.get("cpu") or {}).get("sink_thread_s"), sink.get("seconds")
    if thread is not None and secs:
        text += (f" The sink's thread was busy {100.0 * thread / secs:.0f} % of its time; the "
                 "rest it waited for the server's answers.")
    return [*out, "", _fill(text)]


PEERS_FIGURES: list[tuple[str, Callable[[Result], float | None], Callable[[float], str]]] = [
    ("highest rate, readings/s", lambda r: r.get("max_rate") or None, _count),
    ("p50 at 1k/s, ms", lambda r: _peer_fixed(r, "1000", "p50_ms"), _ms),
    ("p99 at 1k/s, ms", lambda r: _peer_fixed(r, "1000", "p99_ms"), _ms),
    ("p50 at 5k/s, ms", lambda r: _peer_fixed(r, "5000", "p50_ms"), _ms),
    ("p99 at 5k/s, ms", lambda r: _peer_fixed(r, "5000", "p99_ms"), _ms),
    ("CPU per reading at 5k/s, µs", lambda r: _peer_fixed(r, "5000", "cpu_us_per_reading"),
     _fixed),
    ("peak RSS, MB", lambda r: r.get("peak_rss_mb"), _fixed),
    ("duplicates", lambda r: r.get("duplicates"), _count),
]


def _times(x: float | None) -> str:
    return DASH if x is None else fmt_value(x, RATIO)


def peers_detail(res: Result) -> list[str]:
    """Per workload, one row per figure: the three systems side by side and parkwatch's ratio
    to Node-RED and to the floor; then what was skipped or cut short."""
    body = []
    notes = []
    m = res.get("machine") or {}
    for wl in PEERS_WORKLOADS:
        if wl not in (res.get("results") or {}):
            continue
        per = {s: _peer(res, wl, s) for s in PEERS_SYSTEMS}
        for name, get, fmt in PEERS_FIGURES:
            vals = {s: (get(r) if r else None) for s, r in per.items()}
            cells = [DASH if v is None else fmt(v) for v in vals.values()]
            ratios = [_times(None if name == "duplicates" else
                             _peer_ratio(vals["parkwatch"], vals[o]))
                      for o in ("node-red", "floor")]
            body.append([wl, name, *cells, *ratios])
        for s, label in PEERS_SYSTEMS.items():
            raw = ((res.get("results") or {}).get(wl) or {}).get(s) or {}
            if "skipped" in raw:
                notes.append(f"{wl}, {label}: skipped ({raw['skipped']})")
            elif "error" in raw:
                notes.append(f"{wl}, {label}: failed ({raw['error']})")
            elif raw and not raw.get("search_complete", True):
                notes.append(f"{wl}, {label}: the search was cut short by the time budget, "
                             f"so its highest rate is a lower bound")
    run = _latest_run(res)
    nr = m.get("node_red")
    if nr:
        run += f"; Node-RED {nr} on Node.js {m.get('node') or '?'}"
    if m.get("cpu_probe_ms"):
        run += (f"; speed probe {m['cpu_probe_ms']} ms, load average "
                f"{(m.get('loadavg') or ['?'])[0]}")
    head = ["workload", "figure", *PEERS_SYSTEMS.values(), "parkwatch / Node-RED",
            "parkwatch / floor"]
    out = [_fill(run + ":"), "", *_md(head, body)]
    if notes:
        out += ["", _fill("; ".join(notes) + ".")]
    return out


DETAIL_LINES: dict[str, Callable[[Result], list[str]]] = {
    "bus": bus_detail, "rules": rules_detail, "alarms": alarms_detail,
    "telemetry": telemetry_detail, "peers": peers_detail}


def detail_block(name: str, res: Result | None) -> str:
    """The README block of one benchmark's detail table, markers included."""
    begin, end = markers(name)
    file = f"benchmarks/results/{name}.json"
    lines = [begin, f"<!-- generated by benchmarks/report.py from {file}: edit that, not this "
             "block -->"]
    if res is None:
        lines.append(f"Not run: no readable `{file}`.")
    else:
        try:
            lines.extend(DETAIL_LINES[name](res))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            lines.append(f"Unreadable `{file}`: {type(exc).__name__} {exc}.")
    return "\n".join([*lines, end]) + "\n"


def replace_detail(text: str, name: str, new_block: str) -> str:
    """README text with the detail block of ``name`` replaced; without its markers, the block
    is inserted after the main block, or after the detail block before it in DETAILS."""
    begin, end = markers(name)
    swapped = _swap(text, new_block, begin, end)
    if swapped is not None:
        return swapped
    anchors = [END, *(markers(d)[1] for d in DETAILS[:DETAILS.index(name)])]
    found = [text.find(a) + len(a) for a in anchors if a in text]
    if not found:
        raise ValueError(f"README has neither {begin} nor {END}")
    i = max(found)
    i += text[i:i + 1] == "\n"
    return text[:i] + "\n" + new_block.rstrip("\n") + "\n" + text[i:]


# --- files --------------------------------------------------------------------------------------

def load_results(folder: Path) -> dict[str, Result | None]:
    """Every results/<name>.json (the summary excepted); None for a known benchmark without one
    or with a file that is not JSON."""
    out: dict[str, Result | None] = dict.fromkeys(BENCHMARKS)
    for path in sorted(folder.glob("*.json")):
        if path.name == SUMMARY_NAME:
            continue
        try:
            out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            out[path.stem] = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of <name>.json")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--since", type=_when, default=None, metavar="ISO-TIME",
                    help="flag results older than this (make bench passes its start time)")
    args = ap.parse_args(argv)
    results = load_results(args.results)
    rows = summarise(results)
    sources = [source(n, results.get(n), args.since) for n in BENCHMARKS]
    summary = {"rows": rows, "sources": sources}
    (args.results / SUMMARY_NAME).write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = replace_block(args.readme.read_text(encoding="utf-8"), block(rows, sources))
    for name in DETAILS:
        text = replace_detail(text, name, detail_block(name, results.get(name)))
    args.readme.write_text(text, encoding="utf-8")
    print("\n".join(table(rows)))
    met, judged = tally(rows)
    print(f"\n{met} of {judged} targets met; wrote {args.results / SUMMARY_NAME} and the "
          f"tables in {args.readme.name} (all figures, {', '.join(DETAILS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
