"""Alarm latency under load: a reading or a button press on the sensor broker → its event at a
subscriber on the uplink, p50/p99/max, idle, at 5,000 readings/s and at half the maximum load.

Targets (p99): ≤ 1 ms idle, ≤ 2 ms at 5,000 readings/s, ≤ 10 ms at half the maximum load.

The set-up is ``ingest.py``'s: a private Mosquitto for the sensors, a second one for the
uplink, a private VictoriaMetrics for telemetry, the daemon as ``parkwatch run --config FILE``
in a process of its own, on the same generated park of 1,000 MQTT load cells.  The park adds
8 probe fire buttons (``PB00`` ...) and 8 probe load cells (``PL00`` ...).  Flap detection
stays on but with ``high: 1.0``, so it never fires: a probe sensor changes state with every
reading by design, which would otherwise be held back as flapping after a few changes.

**The floor.**  First, a bare paho relay (``mqttload.RelayProcess``) stands in for the
daemon: each probe becomes an event on the uplink straight from paho's ``on_message``, with no
rules, no store and no hand-over between threads.  Its idle latency (phase ``relay``) is what
paho and the two brokers cost on this machine before the daemon does any work.

**Background load.**  ``mqttload.py`` publishes readings of the 1,000 load cells (values below
every limit) at the phase's rate, paced every 2 ms, from a process of its own: none (idle),
5,000/s, and half the maximum sustained rate.

**The maximum, found in the same run.**  Between the 5k and the half phase, this script looks
for the maximum itself, on the same brokers, VictoriaMetrics and daemon process that the half
phase then loads: ``ingest.py``'s steps (``run_step``: ``--search-step-seconds`` of readings
with 10 alarms raised and cleared; a step passes when the daemon keeps up, every point is
stored and every event arrives) and its search (``next_rate``: up 10 % a step while they pass,
just under what the daemon got through after a failure, then halving the gap), until the
lowest failing rate is within ``--search-resolution`` of the highest passing one, after
``--search-steps`` steps or after ``--search-budget`` s.  The half phase runs at half the
highest rate that passed, seconds later.  A ``results/ingest.json`` on disk (which may come
from another hour or another machine) only chooses the first rate tried; it is never the
maximum.  ``--max-rate`` or ``--half-rate`` skip the search.  The JSON's ``max_rate`` says
where the maximum came from: the search's steps, when the passing step was measured, and
whether the search converged.

**Probes.**  20 a second (``--probe-rate``), in turn on the 16 probe sensors: a button gets
``{"event":"press"}`` then, on its next turn, ``{"event":"reset"}``; a load cell gets
12 000 kg (above the 10 000 kg critical limit) then 1 000 kg.  Each is expected to produce one
``raised`` or ``cleared`` event.  A probe device (a raw socket with TCP_NODELAY, QoS 0, in the
listener's process) takes ``time.monotonic()`` just before it writes the packet; the
command-center subscriber (paho, TCP_NODELAY, in the same spawned process, not the daemon's)
takes it when the event arrives.  ``CLOCK_MONOTONIC`` is one clock for the whole machine.
Probes start 1 s into the load and stop 1 s before it ends; 32 probes before the first phase
are a warm-up and not counted.

``--profile`` also samples the daemon with py-spy during each phase (when py-spy is
installed) and lists where its threads spend their time.

Run from the repository root::

    .venv/bin/python benchmarks/latency.py    # < 2.5 min; writes benchmarks/results/latency.json
    .venv/bin/python benchmarks/latency.py --seconds 10 --half-rate 12000   # no search

The exit code is 0 whether or not the targets are met; the output says which are.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from benchinfo import command_line, cpu_probe_ms, summary  # noqa: E402
from ingest import ALARM_VALUE, PARK, Bench, Profile, machine, next_rate, run_step  # noqa: E402
from mqttload import RelayProcess  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "latency.json"
INGEST = ROOT / "benchmarks" / "results" / "ingest.json"
PROBES = 8  # fire buttons and as many load cells
TARGETS_MS = {"idle": 1.0, "5k": 2.0, "half": 10.0}
NORMAL_VALUE = 1000.0
#: the search's first rate when no results/ingest.json suggests one
SEARCH_START = 40_000.0


# --- probes ---------------------------------------------------------------------------------


def probe_schedule(start: int, count: int) -> list[tuple[str, str, bytes, str]]:
    """Probes `start` .. `start + count - 1`: (sensor, topic, payload, expected event).  Probe
    k goes to sensor k mod 16 (buttons first); every other turn of a sensor raises, the
    next clears."""
    out = []
    for k in range(start, start + count):
        j, turn = k % (2 * PROBES), k // (2 * PROBES)
        raise_ = turn % 2 == 0
        if j < PROBES:
            sid = f"PB{j:02d}"
            payload = b'{"event":"press"}' if raise_ else b'{"event":"reset"}'
        else:
            sid = f"PL{j - PROBES:02d}"
            payload = b'{"value":%.1f}' % (ALARM_VALUE if raise_ else NORMAL_VALUE)
        out.append((sid, f"devices/{sid}/up", payload, "raised" if raise_ else "cleared"))
    return out


def match(probes: list[tuple[str, str, bytes, str]], sent: list[float],
          events: list[tuple[float, str, str, str, int]]) -> list[tuple[str, str, float | None]]:
    """For each probe the first unused event of its sensor and kind that came after it:
    (sensor, event, latency s or None when it never came)."""
    by_key: dict[tuple[str, str], collections.deque[float]] = collections.defaultdict(
        collections.deque)
    for t, sid, ev, _aid, _seq in sorted(events):
        by_key[(sid, ev)].append(t)
    out: list[tuple[str, str, float | None]] = []
    for (sid, _topic, _payload, ev), t0 in zip(probes, sent, strict=True):
        q = by_key[(sid, ev)]
        while q and q[0] < t0:
            q.popleft()  # an event older than the probe belongs to no probe of this phase
        out.append((sid, ev, q.popleft() - t0 if q else None))
    return out


# --- one phase ------------------------------------------------------------------------------


def run_phase(b: Bench, name: str, rate: float, seconds: float, probe_rate: float,
              probe_start: int, last_ts: int, profile_dir: Path | None) -> dict[str, Any]:
    n_probes = int(probe_rate * max(0.0, seconds - 2.0)) // (4 * PROBES) * (4 * PROBES)
    probes = probe_schedule(probe_start, n_probes)
    ts_base = max(int(time.time() * 1000), last_ts + 1)
    n = int(rate * seconds)
    if n:
        b.load.build({"topics": b.topics, "messages": n, "ts_base_ms": ts_base})
    acc0 = b.daemon.accepted()
    ev0 = b.listener.ask("count")
    cpu0 = b.cpu()
    prof = Profile(b.daemon.pid, profile_dir / f"{name}.txt") if profile_dir else None
    start_at = time.monotonic() + 0.2
    result = b.load.send_async(rate, start_at) if n else None
    sent_times = b.listener.ask("probes", [(t, p) for _s, t, p, _e in probes], probe_rate,
                                start_at + 1.0)
    load = result() if result is not None else None
    time.sleep(0.5)  # the last events
    profile = prof.stop() if prof else None
    deadline = time.monotonic() + 10
    while n and b.daemon.accepted() - acc0 < (load or {}).get("sent", 0) + n_probes and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    cpu1 = b.cpu()
    accepted = b.daemon.accepted() - acc0
    events = b.listener.ask("events", ev0)
    matched = match(probes, sent_times, events)
    lat = [x for _s, _e, x in matched if x is not None]
    out: dict[str, Any] = {
        "phase": name, "rate": rate, "seconds": seconds, "probes": len(probes),
        "missing": sum(x is None for _s, _e, x in matched),
        "latency": summary(lat),
        "by_kind": {
            label: summary([x for s, e, x in matched if x is not None and s.startswith(pfx)
                            and e == ev])
            for label, pfx, ev in (("press → raised", "PB", "raised"),
                                   ("reset → cleared", "PB", "cleared"),
                                   ("reading → raised", "PL", "raised"),
                                   ("reading → cleared", "PL", "cleared"))},
        "slowest_ms": sorted((round(x * 1000, 3) for x in lat), reverse=True)[:5],
        "load": None if load is None else {
            "sent": load["sent"], "achieved_rate": round(load["achieved_rate"], 1),
            "behind_max_ms": round(load["behind_max_s"] * 1000, 2),
            "cpu_s": round(load["cpu_s"], 3)},
        "daemon_accepted": accepted,
        "daemon_kept_up": accepted >= (load["sent"] if load else 0) + len(probes),
        "cpu_s": {p: round(cpu1[p] - cpu0[p], 2) for p in cpu0},
        "last_ts": ts_base + (n // 1000 if n else 0),
    }
    target = TARGETS_MS.get(name)
    if target is not None and lat:
        out["target_p99_ms"] = target
        out["met"] = out["latency"]["p99_ms"] <= target and not out["missing"]
    if profile is not None:
        out["profile"] = profile
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def search_start(args: argparse.Namespace, probe_ms: float | None) -> tuple[float, str]:
    """The first rate the search tries, and why: ``--search-start``; else the maximum in
    results/ingest.json, scaled by the two runs' speed probes (that file may come from another
    hour or machine: it is only a starting point); else SEARCH_START."""
    if args.search_start:
        return args.search_start, "--search-start"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        res = json.loads(INGEST.read_text(encoding="utf-8"))
        best = float(res["max_sustained_rate"])
        if best > 0:
            m = res.get("machine") or {}
            how = f"the maximum of {INGEST.relative_to(ROOT)} of {m.get('timestamp', '?')}, " \
                f"{best:,.0f}/s"
            then = m.get("cpu_probe_ms")
            if then and probe_ms:
                best *= float(then) / probe_ms
                how += f", × its speed probe / this run's ({then:g} / {probe_ms:g} ms)"
            return best, how
    return SEARCH_START, "default (no results/ingest.json)"


def search_max(b: Bench, args: argparse.Namespace, last_ts: int) -> tuple[dict[str, Any], int]:
    """The highest rate the daemon sustains now, with ingest.py's steps and search: a step
    passes when the daemon keeps up, VictoriaMetrics stores every reading and every expected
    event arrives.  Returns the record for latency.json's ``max_rate`` and the last device
    time used."""
    started = time.monotonic()
    t_start = _now()
    probe_ms = cpu_probe_ms()  # the machine's speed now, for the first rate
    seed, seed_from = search_start(args, probe_ms)
    print(f"  max-rate search: from {seed:,.0f}/s ({seed_from}), {args.search_step_seconds:g} s "
          f"steps, resolution {args.search_resolution:.0%}, budget {args.search_budget:g} s",
          flush=True)
    steps: list[dict[str, Any]] = []
    queue = [seed]
    while queue and len(steps) < args.search_steps:
        if time.monotonic() - started > args.search_budget:
            print("    time budget spent", flush=True)
            break
        rate = queue.pop(0)
        step = run_step(b, len(steps), rate, args.search_step_seconds, 0.25, 1.0, 5.0, last_ts)
        step["at"] = _now()
        last_ts = step["last_ts"]
        steps.append(step)
        why = "" if step["pass"] else ": FAIL (" + ", ".join(
            w for w, bad in (("backlog", not step["keeps_up"]),
                             ("points missing", not step["stored_all"]),
                             ("events missing", not step["events_all"])) if bad) + ")"
        print(f"    {rate:,.0f}/s -> daemon {step['daemon_rate']:,.0f}/s, drain "
              f"{step['drain_s']:.3f} s{why or ': pass'}", flush=True)
        if not step["keeps_up"]:
            time.sleep(1.0)  # run_step waited for the backlog; let the daemon settle
        nxt = next_rate(steps, seed, args.search_resolution, 0.01 * seed)
        if nxt is not None:
            queue.append(nxt)
    passed = [s for s in steps if s["pass"]]
    best = max(passed, key=lambda s: s["rate"], default=None)
    failed = [s["rate"] for s in steps if not s["pass"]]
    lowest_failed = min(failed, default=None)
    converged = best is not None and lowest_failed is not None and \
        lowest_failed <= best["rate"] * (1 + args.search_resolution)
    record: dict[str, Any] = {
        "source": "search", "rate": best["rate"] if best else None,
        "measured_at": best["at"] if best else None,
        "lowest_failed_rate": lowest_failed, "converged": converged,
        "search": {
            "started_at": t_start, "runtime_s": round(time.monotonic() - started, 1),
            "cpu_probe_ms": probe_ms,
            "start_rate": round(seed, 1), "start_from": seed_from,
            "step_s": args.search_step_seconds, "resolution": args.search_resolution,
            "max_steps": args.search_steps, "budget_s": args.search_budget,
            "steps": [{k: s[k] for k in (
                "rate", "at", "pass", "keeps_up", "stored_all", "events_all", "stopped_early",
                "daemon_rate", "sent", "drain_s", "worst_lag_s", "points_stored",
                "points_expected", "events_received", "events_expected", "cpu_s")}
                for s in steps]}}
    if best is None:
        print("    no rate passed", flush=True)
    else:
        print(f"    maximum: {best['rate']:,.0f}/s (measured {best['at']}"
              + (f"; {lowest_failed:,.0f}/s failed" if lowest_failed else "; none failed: a "
                 "lower bound") + ")", flush=True)
    return record, last_ts


def given_max(args: argparse.Namespace) -> dict[str, Any] | None:
    """The maximum (or the half rate) from the command line: no search."""
    if args.half_rate:
        return {"source": "--half-rate", "rate": None, "half_rate": args.half_rate}
    if args.max_rate:
        return {"source": "--max-rate", "rate": args.max_rate}
    return None


def half_from(mx: dict[str, Any]) -> tuple[float | None, str]:
    """The half phase's rate and where it came from, for the JSON and the output."""
    if mx["source"] == "--half-rate":
        return mx["half_rate"], "--half-rate"
    if mx["source"] == "--max-rate":
        return mx["rate"] / 2, f"--max-rate {mx['rate']:,.0f}/s, halved"
    if mx["rate"] is None:
        tried = [s["rate"] for s in mx["search"]["steps"]]
        return None, ("no rate passed in this run's max-rate search" + (
            f" (lowest tried {min(tried):,.0f}/s)" if tried else " (no step ran)"))
    failed = mx.get("lowest_failed_rate")
    return mx["rate"] / 2, (
        f"half of {mx['rate']:,.0f}/s, the highest rate sustained in this run's search "
        f"(measured {mx['measured_at']}; " + (f"{failed:,.0f}/s failed" if failed else
                                              "no rate failed: a lower bound") + ")")


def report(res: dict[str, Any]) -> list[str]:
    lines = [f"  {'phase':<6} {'load/s':>8} {'probes':>6} {'p50':>7} {'p90':>7} {'p99':>7} "
             f"{'max':>7} ms  {'miss':>4}  {'cpu: daemon':>11} {'mosq':>5}  target p99"]
    lines.append("  " + "-" * (len(lines[0]) - 2))
    for p in res["phases"]:
        s = p["latency"]
        tgt = p.get("target_p99_ms")
        verdict = "" if tgt is None else f"≤ {tgt:g} ms: {'PASS' if p.get('met') else 'FAIL'}"
        lines.append(f"  {p['phase']:<6} {p['rate']:>8,.0f} {p['probes']:>6} "
                     f"{s.get('p50_ms', math.nan):>7.2f} {s.get('p90_ms', math.nan):>7.2f} "
                     f"{s.get('p99_ms', math.nan):>7.2f} {s.get('max_ms', math.nan):>7.2f}     "
                     f"{p['missing']:>4}  {p['cpu_s']['daemon']:>11.2f} "
                     f"{p['cpu_s']['mosquitto']:>5.2f}  {verdict}")
        for label, k in p["by_kind"].items():
            if k:
                lines.append(f"    {label:<18} p50 {k['p50_ms']:.2f}  p99 {k['p99_ms']:.2f}  "
                             f"max {k['max_ms']:.2f} ms")
        if p["load"] and not p["daemon_kept_up"]:
            lines.append("    the daemon did NOT keep up with this load")
    for skipped in res.get("skipped", []):
        lines.append(f"  {skipped}")
    half = next((p for p in res["phases"] if p["phase"] == "half"), None)
    if half is not None:
        lines.append(f"  half load: {half.get('rate_from', '?')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--probe-rate", type=float, default=20.0, help="probes per second")
    ap.add_argument("--max-rate", type=float, default=None,
                    help="the maximum sustained rate (default: searched for in this run)")
    ap.add_argument("--half-rate", type=float, default=None,
                    help="the rate of the half-load phase itself (no search)")
    ap.add_argument("--search-start", type=float, default=None,
                    help="the search's first rate (default: results/ingest.json's maximum, "
                    f"else {SEARCH_START:,.0f})")
    ap.add_argument("--search-step-seconds", type=float, default=5.0,
                    help="load per search step (ingest.py's default)")
    ap.add_argument("--search-resolution", type=float, default=0.05,
                    help="the search stops when the lowest failing rate is within this of the "
                    "highest passing one")
    ap.add_argument("--search-steps", type=int, default=7, help="at most this many steps")
    ap.add_argument("--search-budget", type=float, default=55.0,
                    help="s of search after which no new step starts")
    ap.add_argument("--phases", nargs="*", default=["relay", "idle", "5k", "half"],
                    choices=["relay", "idle", "5k", "half"],
                    help="relay: the bare paho relay in the daemon's place, idle (the floor)")
    ap.add_argument("--profile", type=Path, nargs="?", const=Path("."), default=None,
                    help="sample the daemon with py-spy during each phase; raw stacks go to "
                    "this directory (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    started = time.monotonic()
    info = machine()
    print(f"parkwatch alarm-latency benchmark: {info['nproc']} cores, load {info['loadavg']}, "
          f"Python {info['python']}, paho-mqtt {info['paho_mqtt']}, {info['mosquitto']}",
          flush=True)
    max_rate = given_max(args)
    rates: dict[str, float | None] = {"idle": 0.0, "5k": 5000.0}
    phases: list[dict[str, Any]] = []
    skipped = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="parkwatch-latency-bench-")))
        profile_dir = None
        if args.profile is not None:
            profile_dir = tmp / "profiles" if args.profile == Path(".") else args.profile
            profile_dir.mkdir(parents=True, exist_ok=True)
        b = Bench(stack, tmp, probes=PROBES, flapping={"history": 20, "high": 1.0, "low": 0.5})
        b.start_clients()
        probe_next = last_ts = 0
        warm_s = 2.0 + 4 * PROBES / args.probe_rate
        if "relay" in args.phases:  # the floor first, on the same brokers and probes
            relay = RelayProcess((b.broker.host, b.broker.port), (b.uplink.host, b.uplink.port),
                                 f"parkwatch/v1/{PARK}/events", ALARM_VALUE)
            b.daemon = relay  # type: ignore[assignment]
            warm = run_phase(b, "warmup", 0.0, warm_s, args.probe_rate, 0, 0, None)
            print(f"  relay: bare paho relay in the daemon's place, idle, for "
                  f"{args.seconds:g} s ...", flush=True)
            p = run_phase(b, "relay", 0.0, args.seconds, args.probe_rate, warm["probes"],
                          warm["last_ts"], None)
            relay.stop()
            phases.append(p)
            probe_next, last_ts = warm["probes"] + p["probes"], p["last_ts"]
            s = p["latency"]
            print(f"    p50 {s.get('p50_ms', math.nan):.2f} ms, p99 "
                  f"{s.get('p99_ms', math.nan):.2f} ms, {p['missing']} missing", flush=True)
        b.start_daemon()
        # warm-up: one full raise/clear turn of every probe sensor, idle, not counted
        warm = run_phase(b, "warmup", 0.0, warm_s, args.probe_rate, probe_next, last_ts, None)
        probe_next, last_ts = probe_next + warm["probes"], warm["last_ts"]
        print(f"  warm-up: {warm['probes']} probes, {warm['missing']} missing", flush=True)
        for name in args.phases:
            if name == "relay":
                continue
            rate_from = None
            if name == "half":
                if max_rate is None:  # the maximum now, on this daemon, just before the phase
                    max_rate, last_ts = search_max(b, args, last_ts)
                    time.sleep(2.0)  # the search's last step's telemetry and events
                rates["half"], rate_from = half_from(max_rate)
            rate = rates[name]
            if rate is None:
                skipped.append(f"half: skipped, {rate_from}")
                print(f"  half: skipped, {rate_from}", flush=True)
                continue
            print(f"  {name}: {rate:,.0f} readings/s for {args.seconds:g} s ...", flush=True)
            p = run_phase(b, name, rate, args.seconds, args.probe_rate, probe_next, last_ts,
                          profile_dir)
            probe_next += p["probes"]
            last_ts = p["last_ts"]
            if rate_from is not None:
                p["rate_from"] = rate_from
            phases.append(p)
            s = p["latency"]
            print(f"    p50 {s.get('p50_ms', math.nan):.2f} ms, p99 "
                  f"{s.get('p99_ms', math.nan):.2f} ms, max {s.get('max_ms', math.nan):.2f} ms,"
                  f" {p['missing']} missing", flush=True)
        rc = b.daemon.stop()
    elapsed = time.monotonic() - started
    result = {"benchmark": "alarm latency under load", "command": command_line(argv),
              "machine": info,
              "settings": {"seconds": args.seconds, "probe_rate": args.probe_rate,
                           "probe_sensors": 2 * PROBES, "background_sensors": 1000,
                           "targets_p99_ms": TARGETS_MS, "park": PARK},
              "warmup": {k: warm[k] for k in ("probes", "missing", "latency")},
              "max_rate": max_rate, "phases": phases, "skipped": skipped, "daemon_exit": rc,
              "runtime_s": round(elapsed, 1)}
    print()
    print("\n".join(report(result)))
    for p in phases:
        prof = p.get("profile")
        if not prof:
            continue
        print(f"\n  where the daemon's threads spent their samples, {p['phase']} "
              f"({prof['samples']} samples):")
        for t, d in prof["threads"].items():
            print(f"    {t}: {d['samples']}; mostly in "
                  + ", ".join(f"{f} {c}" for f, c in d["leaf"][:4]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(f"\nran {elapsed:.0f} s; wrote "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
