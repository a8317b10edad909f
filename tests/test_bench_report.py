"""benchmarks/report.py: rows from synthetic results, the README block, idempotence. No
benchmark runs here."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from conftest import bench_module

REPO = Path(__file__).resolve().parent.parent
report = bench_module("report")

MACHINE = {"nproc": 2, "python": "3.11.7", "loadavg": [0.5, 0.4, 0.3], "cpu_probe_ms": 12.4,
           "timestamp": "2026-11-23T10:00:00+00:00"}

INGEST = {"benchmark": "ingest", "command": ".venv/bin/python benchmarks/ingest.py",
          "machine": MACHINE, "settings": {"sensors": 1000, "target_ratio": 0.95},
          "bare": {"rate": 40000.0}, "max_sustained_rate": 30000.0, "ratio": 0.75,
          "met": False, "runtime_s": 60.0}

LATENCY = {"benchmark": "alarm latency under load", "command": "x", "machine": MACHINE,
           "settings": {"targets_p99_ms": {"idle": 1.0, "5k": 2.0, "half": 10.0}},
           "phases": [
               {"phase": "idle", "rate": 0.0, "missing": 0, "target_p99_ms": 1.0, "met": True,
                "latency": {"p50_ms": 0.4, "p99_ms": 0.9, "max_ms": 3.0}},
               {"phase": "5k", "rate": 5000.0, "missing": 2, "target_p99_ms": 2.0, "met": False,
                "latency": {"p50_ms": 0.5, "p99_ms": 1.5, "max_ms": 4.0}}],
           "skipped": ["half: skipped, no ingest result (run benchmarks/ingest.py)"]}

RULES = {"benchmark": "rules", "when": "2026-11-22T20:56:48+00:00",
         "machine": {"python": "3.11.7", "cpus": 2},
         "rows": [
             {"mode": "thresholds", "order": "arrival", "sensors": 1003, "ns_per_sensor": 51.8},
             {"mode": "thresholds", "order": "arrival", "sensors": 99994, "ns_per_sensor": 8.4,
              "target_ns": 15.0, "meets_target": True},
             {"mode": "all", "order": "poll", "sensors": 99994, "ns_per_sensor": 55.0,
              "target_ns": 50.0, "meets_target": False}]}

BUS = {"benchmark": "modbus_rtu bus throughput", "machine": MACHINE,
       "settings": {"single_target": 0.9, "scaling_target": 0.9},
       "cases": [
           {"baud": 9600, "buses": 1, "ratio": 0.985, "scaling": None, "t35_violations": 0,
            "pass": True},
           {"baud": 115200, "buses": 4, "ratio": 0.94, "scaling": 0.95, "t35_violations": 3,
            "pass": False}]}


def by_figure(rows: list[dict], prefix: str) -> dict:
    (hit,) = [r for r in rows if r["figure"].startswith(prefix)]
    return hit


def test_rows_carry_value_unit_target_and_verdict() -> None:
    rows = report.summarise({"ingest": INGEST, "latency": LATENCY, "rules": RULES, "bus": BUS})
    assert set(rows[0]) == {"benchmark", "case", "figure", "value", "unit", "target", "met"}
    ratio = by_figure([r for r in rows if r["benchmark"] == "ingest"], "highest sustained rate /")
    assert (ratio["value"], ratio["unit"], ratio["target"], ratio["met"]) == (75.0, "%", "≥ 95 %",
                                                                             False)
    info = by_figure(rows, "bare paho")
    assert info["target"] is None and info["met"] is None
    lat = [r for r in rows if r["benchmark"] == "latency"]
    assert by_figure([r for r in lat if r["case"] == "idle"], "p99")["met"] is True
    # the benchmark's own verdict counts: a p99 inside the target with lost probes is a miss
    p99_5k = by_figure([r for r in lat if r["case"].startswith("5k")], "p99")
    assert p99_5k["met"] is False and "2 probes" in p99_5k["figure"]
    half = [r for r in lat if r["case"] == "half load"]
    assert half[0]["figure"].startswith("not run (skipped, no ingest result")
    assert half[0]["target"] == "≤ 10 ms"
    rules = [r for r in rows if r["benchmark"] == "rules"]
    assert [(r["value"], r["target"], r["met"]) for r in rules] == [
        (8.4, "≤ 15 ns", True), (55.0, "≤ 50 ns", False)]  # the 1e3 row has no target
    bus = [r for r in rows if r["benchmark"] == "bus"]
    one_bus = by_figure([r for r in bus if r["case"] == "9600 baud, 1 bus"], "polls/s")
    assert (one_bus["value"], one_bus["target"], one_bus["met"]) == (98.5, "≥ 90 %", True)
    scaling = by_figure(bus, "scaling")
    assert scaling["value"] == 95.0 and scaling["met"] is False and "3 t3.5" in scaling["figure"]


def test_the_half_load_says_where_its_maximum_came_from() -> None:
    half = {"phase": "half", "rate": 30000.0, "missing": 0, "target_p99_ms": 10.0, "met": True,
            "latency": {"p50_ms": 3.0, "p99_ms": 9.0, "max_ms": 12.0},
            "rate_from": "half of 60,000/s, the highest rate sustained in this run's search"}
    found = {**LATENCY, "phases": [*LATENCY["phases"], half], "skipped": [],
             "max_rate": {"source": "search", "rate": 60000.0,
                          "measured_at": "2026-11-23T10:01:02+00:00",
                          "lowest_failed_rate": 62000.0, "converged": True}}
    rows = [r for r in report.summarise({"latency": found}) if r["case"].startswith("half")]
    assert {r["case"] for r in rows} == {"half load (30 000/s)"}
    mx = by_figure(rows, "maximum sustained rate")
    assert mx["figure"] == "maximum sustained rate, found by this run's search at " \
        "2026-11-23T10:01:02+00:00"
    assert (mx["value"], mx["unit"], mx["target"]) == (60000.0, "readings/s", None)
    assert by_figure(rows, "p99")["met"] is True
    given = {**found, "max_rate": {"source": "--max-rate", "rate": 60000.0}}
    rows = report.summarise({"latency": given})
    assert by_figure(rows, "maximum sustained rate")["figure"].endswith("given (--max-rate)")
    # the half rate given directly: no maximum to show
    direct = {**found, "max_rate": {"source": "--half-rate", "rate": None, "half_rate": 30000.0}}
    assert not [r for r in report.summarise({"latency": direct})
                if r["figure"].startswith("maximum")]


def test_a_missing_benchmark_is_one_not_run_row() -> None:
    rows = report.summarise({"ingest": INGEST})
    names = [r["benchmark"] for r in rows if r["figure"].startswith("not run")]
    assert names == ["latency", "rules", "bus", "telemetry", "startup", "alarms", "linkage",
                     "gb26875", "center", "center_board", "peers", "openalarms", "soak"]
    startup = next(r for r in rows if r["benchmark"] == "startup")
    assert startup["value"] is None and startup["met"] is None and "1.5 s" in startup["target"]


def test_an_unreadable_result_does_not_stop_the_report() -> None:
    rows = report.summarise({"bus": {"cases": [{"baud": 9600}]}})
    assert by_figure([r for r in rows if r["benchmark"] == "bus"], "not run (unreadable")


def test_markdown_puts_every_figure_next_to_its_target() -> None:
    rows = report.summarise({"ingest": INGEST, "rules": RULES})
    lines = report.table(rows)
    assert lines[0] == "| benchmark | case | figure | target | met |"
    assert ("| ingest | 1 000 MQTT sensors | highest sustained rate / bare paho subscriber: "
            "75.0 % | ≥ 95 % | **missed** |") in lines
    assert "| rules | thresholds, arrival order, 99 994 sensors | evaluate per sensor (median " \
        "batch): 8.4 ns | ≤ 15 ns | met |" in lines
    assert any(ln.startswith("| bus | — | not run") and ln.endswith("| not run |")
               for ln in lines)


README = """# parkwatch

## Performance

Measured on the machine;
two lines of intro.

**Bus** table follows.

## Layout
"""


def test_block_is_inserted_after_the_intro_then_replaced_in_place() -> None:
    rows = report.summarise({"ingest": INGEST})
    sources = [report.source(n, {"ingest": INGEST}.get(n)) for n in report.BENCHMARKS]
    block = report.block(rows, sources)
    once = report.replace_block(README, block)
    assert once.index("two lines of intro.") < once.index(report.BEGIN) \
        < once.index(report.END) < once.index("**Bus**")
    assert "two lines of intro.\n\n<!-- bench:begin -->" in once
    assert "<!-- bench:end -->\n\n**Bus**" in once
    assert "`.venv/bin/python benchmarks/ingest.py`; 2 cores, Python 3.11.7, " \
        "2026-11-23T10:00:00+00:00" in once
    assert "- `bus`: not run" in once
    assert report.replace_block(once, block) == once  # idempotent
    other = report.block(report.summarise({}), sources)
    twice = report.replace_block(once, other)
    assert twice.count(report.BEGIN) == 1 and "75.0 %" not in twice
    def outside(text: str) -> tuple[str, str]:
        return text[:text.index(report.BEGIN)], text[text.index(report.END):]
    assert outside(twice) == outside(once)
    with pytest.raises(ValueError):
        report.replace_block(README + report.BEGIN, block)


def test_results_older_than_the_run_are_flagged() -> None:
    since = dt.datetime(2026, 11, 23, 11, tzinfo=dt.UTC)
    assert report.source("ingest", INGEST, since)["earlier_run"] is True
    rules = report.source("rules", RULES, dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    assert rules["earlier_run"] is False and rules["nproc"] == 2  # the older machine format
    assert "from an earlier run" in report.source_line(report.source("ingest", INGEST, since))
    assert "command not recorded" in report.source_line(rules)


def test_main_writes_summary_and_readme_and_changes_nothing_when_rerun(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "ingest.json").write_text(json.dumps(INGEST), encoding="utf-8")
    (results / "rules.json").write_text(json.dumps(RULES), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    argv = ["--results", str(results), "--readme", str(readme)]
    assert report.main(argv) == 0
    first = (readme.read_text(encoding="utf-8"),
             (results / "summary.json").read_text(encoding="utf-8"))
    assert report.main(argv) == 0  # summary.json itself is not read as a result
    assert (readme.read_text(encoding="utf-8"),
            (results / "summary.json").read_text(encoding="utf-8")) == first
    summary = json.loads(first[1])
    assert {r["benchmark"] for r in summary["rows"]} >= {"ingest", "rules", "alarms"}
    assert "1 of 3 targets met" in first[0].replace("\n", " ")


def test_each_source_line_says_how_fast_the_machine_was() -> None:
    """The load average misses a shared virtual machine's slow hours; the speed probe, taken
    as each benchmark starts, shows them next to the result."""
    line = report.source_line(report.source("ingest", INGEST))
    assert "load average 0.5" in line and "speed probe 12.4 ms" in line
    old = {**INGEST, "machine": {k: v for k, v in MACHINE.items() if k != "cpu_probe_ms"}}
    assert "speed probe" not in report.source_line(report.source("ingest", old))


# --- the detail tables of bus and rules ----------------------------------------------------

BUS_FULL = {"benchmark": "modbus_rtu bus throughput",
            "command": ".venv/bin/python benchmarks/bus.py", "machine": MACHINE,
            "settings": {"seconds": 6.0, "warmup": 1.0, "slaves_per_bus": 10,
                         "single_target": 0.9, "scaling_target": 0.9},
            "cases": [
                {"baud": 9600, "buses": 1, "polls_per_s": 35.8318, "theoretical_per_s": 36.3636,
                 "ratio": 0.9854, "scaling": None, "t35_violations": 0, "failed_polls": 0,
                 "timeouts": 0, "bad_frames": 0, "collisions": 0, "pass": True},
                {"baud": 115200, "buses": 4, "polls_per_s": 734.8, "theoretical_per_s": 780.75,
                 "ratio": 0.9411, "scaling": 0.85, "t35_violations": 2, "failed_polls": 0,
                 "timeouts": 1, "bad_frames": 0, "collisions": 0, "pass": False}]}

RULES_FULL = {"benchmark": "rules",
              "command": ".venv/bin/python benchmarks/rules.py --sizes 1000 100000",
              "machine": MACHINE, "targets_ns_at_1e5": {"thresholds": 15.0, "all": 50.0},
              "rows": [
                  {"mode": "thresholds", "order": "arrival", "sensors": 1003,
                   "ns_per_sensor": 40.25, "reference_ns_per_sensor": 1418.9, "speedup": 35.2,
                   "floor_ns_per_sensor": 3.12, "x_floor": 12.9},
                  {"mode": "thresholds", "order": "poll", "sensors": 1003, "ns_per_sensor": 40.5,
                   "floor_ns_per_sensor": 3.04, "x_floor": 13.32},
                  {"mode": "thresholds", "order": "arrival", "sensors": 99994,
                   "ns_per_sensor": 7.64, "ns_per_sensor_mean": 7.76,
                   "next_due_ns_per_sensor": 0.012, "target_ns": 15.0, "meets_target": True,
                   "floor_ns_per_sensor": 0.84, "x_floor": 9.1},
                  {"mode": "thresholds", "order": "poll", "sensors": 99994,
                   "ns_per_sensor": 7.29, "ns_per_sensor_mean": 7.4,
                   "next_due_ns_per_sensor": 0.011, "target_ns": 15.0, "meets_target": True,
                   "floor_ns_per_sensor": 0.71, "x_floor": 10.27},
                  {"mode": "all", "order": "arrival", "sensors": 99994, "ns_per_sensor": 56.21,
                   "ns_per_sensor_mean": 66.42, "next_due_ns_per_sensor": 10.04,
                   "target_ns": 50.0, "meets_target": False,
                   "floor_ns_per_sensor": 0.83, "x_floor": 67.72},
                  {"mode": "all", "order": "poll", "sensors": 99994, "ns_per_sensor": 46.9,
                   "ns_per_sensor_mean": 51.25, "next_due_ns_per_sensor": 10.28,
                   "target_ns": 50.0, "meets_target": True}]}


def test_bus_table_is_rendered_from_the_results() -> None:
    lines = report.bus_detail(BUS_FULL)
    assert lines[0].startswith("Latest run: `.venv/bin/python benchmarks/bus.py`, "
                               "2026-11-23T10:00:00+00:00; 10 slaves per bus")
    assert "| baud | buses | polls/s | line limit | % of limit | scaling vs 4 × one bus | " \
        "target |" in lines
    assert "| 9600 | 1 | 35.8 | 36.4 | 98.5 % | – | ≥ 90 %: met |" in lines
    assert "| 115200 | 4 | 734.8 | 780.8 | 94.1 % | 85.0 % | linear, ≥ 90 % of 4 × one bus: " \
        "**missed** |" in lines
    assert "115200 baud, 4 buses (t3.5 violations 2, timeouts 1)." in " ".join(lines[-1].split())
    clean = {**BUS_FULL, "cases": BUS_FULL["cases"][:1]}
    assert report.bus_detail(clean)[-1].startswith("No case had a t3.5 violation")
    # a figure the results do not hold is a dash, and no claim about faults is made
    sparse = report.bus_detail(BUS)
    assert "| 9600 | 1 | – | – | 98.5 % | – | ≥ 90 %: met |" in sparse
    assert not any(ln.startswith("No case") for ln in sparse)
    assert sparse[0] == "Latest run: command not recorded, 2026-11-23T10:00:00+00:00."


def test_rules_table_is_rendered_from_the_results() -> None:
    lines = report.rules_detail(RULES_FULL)
    assert lines[0].startswith("Latest run: `.venv/bin/python benchmarks/rules.py --sizes 1000 "
                               "100000`")
    assert "| rules | sensors | arrival ns/sensor | poll ns/sensor | floor ns/sensor " \
        "(arrival / poll) | × floor (arrival / poll) | reference ns/sensor (speed-up) | " \
        "target at 1e5 |" in lines
    body = [ln for ln in lines if ln.startswith(("| thresholds", "| all kinds"))]
    # the multiple of the floor timed in the same run, per order; an order without it is "–"
    assert body == [
        "| thresholds | 1 003 | 40.2 | 40.5 | 3.1 / 3.0 | 12.9× / 13.3× | 1 419 (35×) | – |",
        "| thresholds | 99 994 | 7.6 | 7.3 | 0.84 / 0.71 | 9.1× / 10.3× | – | ≤ 15 ns: met |",
        "| all kinds | 99 994 | 56.2 | 46.9 | 0.83 / – | 67.7× / – | – | ≤ 50 ns: arrival "
        "**missed**, poll met |"]
    text = "\n".join(lines)
    assert "The floor is the least work any rule engine does for a threshold check" in text
    assert "Targets at 1e5 sensors: 3 of 4 met; missed: all kinds, arrival order (56.2 ns)." \
        in text
    assert "- all kinds: mean 66.4 / 51.2 ns, `next_due()` 10.0 / 10.3 ns" in lines
    assert "- thresholds: mean 7.8 / 7.4 ns, `next_due()` 0.01 / 0.01 ns" in lines


def test_rules_table_without_a_1e5_run_judges_nothing() -> None:
    lines = report.rules_detail(RULES)  # the older format: no targets, no poll order at 1e3
    assert "| thresholds | 1 003 | 51.8 | – | – | – | – | – |" in lines
    assert "| thresholds | 99 994 | 8.4 | – | – | – | – | ≤ 15 ns: arrival met |" in lines
    assert not any(ln.startswith("The floor is") for ln in lines)  # no floor in older results
    small = report.rules_detail({**RULES_FULL, "rows": RULES_FULL["rows"][:2]})
    assert "| all kinds | 1e5: not run | – | – | – | – | – | ≤ 50 ns: not run |" in small
    assert small[-1] == "No 1e5-sensor case in this run: the targets are not judged."


def test_a_detail_block_says_when_its_results_are_missing_or_unreadable() -> None:
    missing = report.detail_block("bus", None)
    assert missing.startswith("<!-- bench-bus:begin -->\n<!-- generated by benchmarks/report.py")
    assert "Not run: no readable `benchmarks/results/bus.json`." in missing
    assert missing.endswith("<!-- bench-bus:end -->\n")
    assert "Unreadable `benchmarks/results/rules.json`" in report.detail_block(
        "rules", {"rows": [{"mode": "all"}]})
    assert "Not run: no readable `benchmarks/results/alarms.json`." in report.detail_block(
        "alarms", None)
    assert "Unreadable `benchmarks/results/alarms.json`" in report.detail_block(
        "alarms", {"press": {"raised": {"stages": {"commit": 0.9}}}})
    assert "Not run: no readable `benchmarks/results/telemetry.json`." in report.detail_block(
        "telemetry", None)
    assert "Unreadable `benchmarks/results/telemetry.json`" in report.detail_block(
        "telemetry", {"methods": {"sink": 491010}})


# --- the detail tables of alarms and telemetry ---------------------------------------------

STAGE_NAMES = ("broker_in", "queue", "decode", "rules", "alarms", "commit", "pickup",
               "broker_out")
STAGE_P50 = (0.586, 0.073, 0.126, 0.345, 0.394, 0.892, 0.037, 0.436)
STAGE_P99 = (0.792, 0.139, 0.202, 0.444, 0.503, 1.935, 0.089, 0.796)

ALARMS_FULL = {"benchmark": "alarms", "command": ".venv/bin/python benchmarks/alarms.py",
               "machine": MACHINE,
               "settings": {"cycles": 200, "warmup": 5, "requirement_s": 10.0,
                            "stages": {n: f"what {n} spans" for n in STAGE_NAMES}},
               "press": {"buttons": ["A-1F-FB1", "A-2F-FB1"], "cycles": 200, "warmup": 5,
                         "gap_s": 0.05, "error": None,
                         "raised": {"p50_ms": 2.937, "p99_ms": 4.299, "max_ms": 4.567,
                                    "stages": {n: {"p50_ms": a, "p99_ms": b} for n, a, b in
                                               zip(STAGE_NAMES, STAGE_P50, STAGE_P99,
                                                   strict=True)}}}}

SERVER_OK = {"ok": True}
TELEMETRY_FULL = {
    "benchmark": "telemetry", "command": ".venv/bin/python benchmarks/telemetry.py",
    "machine": MACHINE, "settings": {"batch_points": 5000, "target_ratio": 4.0},
    "workload": {"sensors": 10000, "rounds": 100, "points": 1000000},
    "serialise": {"sink": {"points_per_s": 1753444}, "point": {"points_per_s": 85292}},
    "methods": {
        "sink": {"seconds": 2.037, "points_per_s": 491010, "complete": True,
                 "cpu": {"sink_thread_s": 0.58}, "server": SERVER_OK},
        "point_batching": {"seconds": 20.129, "points_per_s": 49679, "complete": True,
                           "server": SERVER_OK},
        "point_sync": {"seconds": 14.209, "points_per_s": 70377, "complete": True,
                       "server": SERVER_OK}},
    "server_alone": [{"in_flight": 1, "seconds": 1.079, "points_per_s": 926741},
                     {"in_flight": 2, "seconds": 1.021, "points_per_s": 978996}],
    "baseline": "point_sync", "baseline_points_per_s": 70377, "ratio": 6.98, "target": 4.0,
    "all_points_written": True, "met": True}


def test_alarms_table_is_rendered_from_the_results() -> None:
    lines = report.alarms_detail(ALARMS_FULL)
    assert " ".join(lines[0].split()) == ("Latest run: `.venv/bin/python benchmarks/alarms.py`, "
                        "2026-11-23T10:00:00+00:00; 200 press cycles over 2 MQTT fire buttons, "
                        "5 warm-up cycles not counted:")
    assert "| stage | what | p50 ms | p99 ms |" in lines
    body = [ln for ln in lines if ln.startswith("| `") or ln.startswith("| press")]
    assert body == [
        "| `broker_in` | what broker_in spans | 0.59 | 0.79 |",
        "| `queue` | what queue spans | 0.07 | 0.14 |",
        "| `decode` | what decode spans | 0.13 | 0.20 |",
        "| `rules` | what rules spans | 0.34 | 0.44 |",
        "| `alarms` | what alarms spans | 0.39 | 0.50 |",
        "| `commit` | what commit spans | 0.89 | 1.94 |",
        "| `pickup` | what pickup spans | 0.04 | 0.09 |",
        "| `broker_out` | what broker_out spans | 0.44 | 0.80 |",
        "| press → `raised` | end to end: device publish → the command center's on_message | "
        "2.94 | 4.30 |"]
    text = " ".join(" ".join(lines).split())
    assert "the stages add up to 2.89 ms of the total's 2.94 ms; the longest is `commit`, " \
        "0.89 ms." in text
    assert "error" not in text
    failed = {**ALARMS_FULL, "press": {**ALARMS_FULL["press"], "error": "no subscriber"}}
    assert report.alarms_detail(failed)[-1] == "The run reported an error: no subscriber."


def test_alarms_table_shows_a_stage_without_figures_as_dashes() -> None:
    raised = ALARMS_FULL["press"]["raised"]
    stages = {n: s for n, s in raised["stages"].items() if n != "pickup"}
    stages["commit"] = {"p50_ms": 0.892}
    sparse = {"command": "x", "press": {"raised": {"p50_ms": 2.937, "stages": stages}}}
    lines = report.alarms_detail(sparse)
    assert lines[0] == "Latest run: `x`:"
    assert "| `pickup` | – | – | – |" in lines and "| `commit` | – | 0.89 | – |" in lines
    assert "| press → `raised` | end to end: device publish → the command center's on_message " \
        "| 2.94 | – |" in lines
    assert not any("add up" in ln for ln in lines)  # a stage short: no sum is claimed
    (only,) = report.alarms_detail({"machine": MACHINE, "press": None})
    assert " ".join(only.split()) == ("Latest run: command not recorded, "
                                      "2026-11-23T10:00:00+00:00; no press cycles in this run, "
                                      "so no stage figures.")


def test_telemetry_table_is_rendered_from_the_results() -> None:
    lines = report.telemetry_detail(TELEMETRY_FULL)
    assert " ".join(lines[0].split()) == (
        "Latest run: `.venv/bin/python benchmarks/telemetry.py`, 2026-11-23T10:00:00+00:00; "
        "10 000 sensors × 100 rounds = 1 000 000 points, batches of 5 000:")
    assert "| method | points/s | seconds | × the best `Point` method | target |" in lines
    body = [ln for ln in lines if ln.startswith(("| parkwatch", "| influxdb"))]
    assert body == [
        "| parkwatch `TelemetrySink` (bulk line protocol) | 491 010 | 2.037 | 7.0× | ≥ 4×: met |",
        "| influxdb-client `Point`, synchronous writes of 5 000 (the baseline) | 70 377 | 14.209 "
        "| 1.0× | – |",
        "| influxdb-client `Point`, batching `WriteOptions` | 49 679 | 20.129 | 0.7× | – |"]
    text = " ".join(" ".join(lines).split())
    assert "Every method got every point onto the server" in text
    assert "the sink turns 1 753 444 readings/s into line protocol, `Point` objects 85 292/s." \
        in text
    assert "takes 926 741 points/s (978 996 with 2 writes in flight), so the sink runs at about " \
        "53 % of what this server accepts from one writer." in text
    assert "The sink's thread was busy 28 % of its time" in text
    lost = {**TELEMETRY_FULL, "met": False, "methods": {
        **TELEMETRY_FULL["methods"],
        "sink": {**TELEMETRY_FULL["methods"]["sink"], "server": {"ok": False}}}}
    lines = report.telemetry_detail(lost)
    assert any(ln.endswith("| 7.0× | ≥ 4×: **missed** |") for ln in lines)
    assert "Not every point reached the server (such a method fails the target): parkwatch " \
        "`TelemetrySink` (bulk line protocol)." in " ".join(" ".join(lines).split())


def test_telemetry_figures_the_results_do_not_hold_are_dashes() -> None:
    sparse = {"machine": MACHINE, "ratio": 3.5, "baseline": "point_batching",
              "methods": {"sink": {"points_per_s": 400000},
                          "point_batching": {"points_per_s": 100000, "seconds": 10.0}}}
    lines = report.telemetry_detail(sparse)
    assert lines[0] == "Latest run: command not recorded, 2026-11-23T10:00:00+00:00:"
    body = [ln for ln in lines if ln.startswith(("| parkwatch", "| influxdb"))]
    assert body == [
        "| parkwatch `TelemetrySink` (bulk line protocol) | 400 000 | – | 3.5× | ≥ 4×: "
        "**missed** |",
        "| influxdb-client `Point`, batching `WriteOptions` (the baseline) | 100 000 | 10.000 | "
        "1.0× | – |",
        "| influxdb-client `Point`, synchronous writes | – | – | – | – |"]
    text = " ".join(" ".join(lines).split())
    assert "the sink turns – readings/s into line protocol, `Point` objects –/s." in text
    assert "takes – points/s, so the sink runs at about – of what" in text
    assert "Every method" not in text and "busy" not in text  # nothing claimed without figures


DETAIL_README = f"""# parkwatch

## Performance

Intro.

{report.BEGIN}
old main table
{report.END}

**Modbus RTU bus throughput**: prose before.

{report.markers("bus")[0]}
| 9600 | 1 | 1.0 | stale |
{report.markers("bus")[1]}

Prose after the bus table.

{report.markers("rules")[0]}
stale rules table
{report.markers("rules")[1]}

Prose after the rules table.

**Where the alarm latency goes**: prose before.

{report.markers("alarms")[0]}
| `commit` | stale | 9.99 | 9.99 |
{report.markers("alarms")[1]}

Prose after the alarms table.

{report.markers("telemetry")[0]}
| stale telemetry table |
{report.markers("telemetry")[1]}

Prose after the telemetry table.

{report.markers("peers")[0]}
| stale peers table |
{report.markers("peers")[1]}
"""


def _peer(max_rate: float, p99_1k: float, p99_5k: float, dups: int = 0,
          complete: bool = True) -> dict:
    fixed = {"1000": {"n": 250, "p50_ms": p99_1k / 2, "p99_ms": p99_1k,
                      "cpu_us_per_reading": 300.0},
             "5000": {"n": 1250, "p50_ms": p99_5k / 2, "p99_ms": p99_5k,
                      "cpu_us_per_reading": 80.0}}
    return {"steps": [{}], "max_rate": max_rate, "fixed": fixed, "peak_rss_mb": 60.0,
            "duplicates": dups, "search_complete": complete}


PEERS_FULL = {
    "benchmark": "peers", "command": ".venv/bin/python benchmarks/peers.py",
    "machine": {**MACHINE, "node_red": "4.1.15", "node": "v20.20.2"},
    "results": {
        "quiet": {"parkwatch": _peer(90000.0, 3.0, 4.0, complete=False),
                  "node-red": _peer(30000.0, 2.0, 2.0), "floor": _peer(45000.0, 1.0, 1.5)},
        "storm": {"parkwatch": _peer(8000.0, 4.0, 30.0, dups=3),
                  "node-red": _peer(8100.0, 2.5, 3.0), "floor": _peer(12000.0, 1.5, 2.0)}}}

DETAIL_RESULTS = {"bus": BUS_FULL, "rules": RULES_FULL, "alarms": ALARMS_FULL,
                  "telemetry": TELEMETRY_FULL, "peers": PEERS_FULL}


def test_detail_blocks_are_replaced_in_place_and_nothing_else_changes() -> None:
    text = DETAIL_README
    for name, res in DETAIL_RESULTS.items():
        text = report.replace_detail(text, name, report.detail_block(name, res))
    assert "stale" not in text and "| 9600 | 1 | 35.8 | 36.4 | 98.5 % |" in text
    assert "prose before.\n\n<!-- bench-bus:begin -->" in text
    assert "<!-- bench-bus:end -->\n\nProse after the bus table." in text
    assert "<!-- bench-rules:end -->\n\nProse after the rules table.\n" in text
    assert text.index("Prose after the bus table") < text.index("Targets at 1e5 sensors")
    assert "prose before.\n\n<!-- bench-alarms:begin -->" in text
    assert "<!-- bench-alarms:end -->\n\nProse after the alarms table.\n" in text
    assert "<!-- bench-telemetry:end -->\n\nProse after the telemetry table.\n" in text
    assert "| storm | highest rate, readings/s | 8 000 | 8 100 | 12 000 | 0.99× | 0.67× |" \
        in text
    assert text.index("Prose after the rules table") < text.index("| `commit` | what commit") \
        < text.index("Prose after the alarms table") < text.index("| 491 010 | 2.037 |") \
        < text.index("Prose after the telemetry table")
    assert "old main table" in text
    again = text
    for name, res in DETAIL_RESULTS.items():
        again = report.replace_detail(again, name, report.detail_block(name, res))
    assert again == text  # idempotent
    with pytest.raises(ValueError):
        report.replace_detail(DETAIL_README.replace(report.markers("rules")[1], ""), "rules",
                              report.detail_block("rules", RULES_FULL))


def test_detail_blocks_without_markers_follow_the_main_block_in_order() -> None:
    text = report.replace_block(README, report.block(report.summarise({}), []))
    for name, res in DETAIL_RESULTS.items():
        text = report.replace_detail(text, name, report.detail_block(name, res))
    places = [text.index(m) for n in report.DETAILS for m in report.markers(n)]
    assert text.index(report.END) < places[0] and places == sorted(places) \
        and places[-1] < text.index("**Bus** table follows.")
    assert f"{report.END}\n\n{report.markers('bus')[0]}" in text
    assert f"{report.markers('rules')[1]}\n\n{report.markers('alarms')[0]}" in text
    assert f"{report.markers('telemetry')[1]}\n\n{report.markers('peers')[0]}" in text
    assert f"{report.markers('peers')[1]}\n\n**Bus** table follows." in text
    with pytest.raises(ValueError):
        report.replace_detail(README, "bus", report.detail_block("bus", BUS_FULL))


def test_main_rewrites_the_detail_blocks_of_the_readme(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for name, res in DETAIL_RESULTS.items():
        (results / f"{name}.json").write_text(json.dumps(res), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(DETAIL_README, encoding="utf-8")
    argv = ["--results", str(results), "--readme", str(readme)]
    assert report.main(argv) == 0
    text = readme.read_text(encoding="utf-8")
    assert "stale" not in text and "old main table" not in text
    assert "| 115200 | 4 | 734.8 | 780.8 | 94.1 % | 85.0 % |" in text
    assert "| all kinds | 99 994 | 56.2 | 46.9 | 0.83 / – | 67.7× / – | – | ≤ 50 ns: arrival " \
        "**missed**, poll met |" in text
    assert "| `commit` | what commit spans | 0.89 | 1.94 |" in text
    assert "| parkwatch `TelemetrySink` (bulk line protocol) | 491 010 | 2.037 | 7.0× |" in text
    assert all(text.count(m) == 1 for n in report.DETAILS for m in report.markers(n))
    assert report.main(argv) == 0
    assert readme.read_text(encoding="utf-8") == text


# --- peers.py: parkwatch against Node-RED and the floor -------------------------------------


def test_peers_rows_judge_parkwatch_against_node_red() -> None:
    rows = [r for r in report.summarise({"peers": PEERS_FULL}) if r["benchmark"] == "peers"]
    storm = [r for r in rows if r["case"].startswith("storm")]
    quiet = [r for r in rows if r["case"].startswith("quiet")]
    assert rows[0]["case"].startswith("storm")  # the storm first: the workload that decides
    rate = by_figure(storm, "highest rate, parkwatch / Node-RED")
    # 0.99 shows as such, not rounded up to a "1.0×" next to a miss
    assert (rate["target"], rate["met"]) == ("≥ 1×", False)
    assert report.fmt_value(rate["value"], rate["unit"]) == "0.99×"
    assert by_figure(quiet, "highest rate, parkwatch / Node-RED")["met"] is True  # 3× met
    assert by_figure(quiet, "highest rate, parkwatch (search cut short")["value"] == 90000.0
    assert [(r["figure"].split(",")[0], r["met"]) for r in storm if "p99" in r["figure"]] == [
        ("p99 at 1k/s", False), ("p99 at 5k/s", False)]
    dups = by_figure(storm, "parkwatch duplicates")
    assert (dups["value"], dups["target"], dups["met"]) == (3, "≤ 0 events", False)
    assert by_figure(quiet, "parkwatch duplicates")["met"] is True


def test_peers_rows_without_node_red_have_no_figure() -> None:
    skipped = {**PEERS_FULL, "results": {"storm": {
        "parkwatch": PEERS_FULL["results"]["storm"]["parkwatch"],
        "node-red": {"skipped": "node and npm not found"}}}}
    rows = report.summarise({"peers": skipped})
    rate = by_figure([r for r in rows if r["benchmark"] == "peers"],
                     "highest rate, parkwatch / Node-RED")
    assert rate["value"] is None and rate["met"] is None and rate["target"] == "≥ 1×"
    assert report.verdict(rate) == "no figure"
    lines = report.peers_detail(skipped)
    assert "| storm | highest rate, readings/s | 8 000 | – | – | – | – |" in lines
    assert "storm, Node-RED: skipped (node and npm not found)." in " ".join(lines)


def test_peers_table_is_rendered_from_the_results() -> None:
    lines = report.peers_detail(PEERS_FULL)
    assert " ".join(lines[0].split()) == (
        "Latest run: `.venv/bin/python benchmarks/peers.py`, 2026-11-23T10:00:00+00:00; "
        "Node-RED 4.1.15 on Node.js v20.20.2; speed probe 12.4 ms, load average 0.5:")
    assert "| workload | figure | parkwatch | Node-RED | bare paho relay | parkwatch / Node-RED " \
        "| parkwatch / floor |" in lines
    assert "| storm | p99 at 5k/s, ms | 30.00 | 3.00 | 2.00 | 10.00× | 15.00× |" in lines
    assert "| storm | duplicates | 3 | 0 | 0 | – | – |" in lines
    assert "| quiet | highest rate, readings/s | 90 000 | 30 000 | 45 000 | 3.00× | 2.00× |" \
        in lines
    assert lines.index("| storm | duplicates | 3 | 0 | 0 | – | – |") < \
        lines.index("| quiet | duplicates | 0 | 0 | 0 | – | – |")
    assert "quiet, parkwatch: the search was cut short by the time budget, so its highest " \
        "rate is a lower bound." in " ".join(" ".join(lines).split())
    assert "Unreadable `benchmarks/results/peers.json`" in report.detail_block(
        "peers", {"results": {"storm": "not a mapping"}})


def test_open_alarms_and_the_fire_press_in_a_storm_are_held_to_their_targets() -> None:
    openalarms = {"benchmark": "openalarms", "command": "x", "machine": MACHINE,
                  "settings": {"open": 100_000},
                  "cpu": {"ratio": 1.013, "target_ratio": 1.1, "meets_target": True},
                  "burst": {"target_s": 2.0, "burst_s": {"100000": 7.96, "0": 1.5}}}
    peers = {"benchmark": "peers", "command": "x", "machine": MACHINE, "results": {"storm": {
        "parkwatch": {"steps": [], "max_rate": 20_000, "duplicates": 0,
                      "fire_probe": {"p99_ratio": 6.58}},
        "node-red": {"steps": [], "max_rate": 12_000}}}}
    rows = report.summarise({"openalarms": openalarms, "peers": peers})
    mine = [(r["figure"], r["value"], r["target"], r["met"]) for r in rows
            if r["benchmark"] == "openalarms"]
    assert mine == [("CPU per reading, open / none", 1.013, "≤ 1.1×", True),
                    ("last at the command center, 0 open", 1.5, "≤ 2 s", True),
                    ("last at the command center, 100 000 open", 7.96, "≤ 2 s", False)]
    fire = by_figure([r for r in rows if r["benchmark"] == "peers"], "fire press p99")
    assert (fire["value"], fire["target"], fire["met"]) == (6.58, "≤ 2×", False)
    # a run without the open-alarms benchmark says so, with what it would be held to
    missing = [r for r in report.summarise({}) if r["benchmark"] == "openalarms"]
    assert missing[0]["figure"].startswith("not run") and "2 s" in missing[0]["target"]


def test_peers_rows_name_the_durable_commit_on_the_same_disk() -> None:
    res = {**PEERS_FULL, "machine": {**PEERS_FULL.get("machine", {}),
                                     "commit_floor": {"n": 300, "p50_ms": 1.6, "p99_ms": 4.2},
                                     "commit_floor_spaced": {"n": 100, "p50_ms": 1.2,
                                                             "p99_ms": 2.8}}}
    rows = [r for r in report.summarise({"peers": res}) if r["benchmark"] == "peers"]
    floor = by_figure(rows, "a durable commit alone (SQLite WAL, fsync), back to back")
    assert (floor["case"], floor["value"], floor["unit"], floor["target"]) == (
        "this disk", 4.2, "ms", None)
    spaced = by_figure(rows, "a durable commit alone (SQLite WAL, fsync), 20 ms apart")
    assert (spaced["case"], spaced["value"]) == ("this disk", 2.8)
    assert not [r for r in report.summarise({"peers": PEERS_FULL})
                if r["figure"].startswith("a durable commit")]


def test_the_soak_row_shows_the_drift_and_the_counts_against_their_targets() -> None:
    verdict = {"met": False, "rss": {"level_mb": 64.1, "max_drift_mb": 2.8, "band_mb": 3.0,
                                     "slope_mb_per_h": 0.4, "met": True},
               "threads": {"level": 14, "max_change": 0, "met": True},
               "fds": {"level": 23, "max_change": 2, "met": False}}
    soak = {"settings": {"minutes": 30.0}, "verdict": verdict, "machine": MACHINE}
    rows = [r for r in report.summarise({"soak": soak}) if r["benchmark"] == "soak"]
    assert {r["case"] for r in rows} == {"30 min: readings, alarm churn, acks, junk, HTTP bursts"}
    rss = by_figure(rows, "RSS after the warm-up")
    assert (rss["value"], rss["target"], rss["met"]) == (2.8, "≤ 3 MB", True)
    assert "64.1 MB" in rss["figure"]
    assert by_figure(rows, "threads")["met"] is True
    fds = by_figure(rows, "open descriptors")
    assert (fds["value"], fds["target"], fds["met"]) == (2, "≤ 0 descriptors", False)
    assert "| 0.4 MB/h |" not in "\n".join(report.table(rows))  # a figure without a target
    assert any("RSS trend after the warm-up: 0.4 MB/h" in ln for ln in report.table(rows))
    short = {"settings": {"minutes": 0.1}, "verdict": {"met": None, "why": "too few samples"}}
    (only,) = [r for r in report.summarise({"soak": short}) if r["benchmark"] == "soak"]
    assert only["figure"] == "not run (too few samples)" and only["met"] is None


def test_the_monitoring_center_uplink_is_judged_on_its_p99_and_after_a_drop() -> None:
    res = {"settings": {"confirm_timeout_s": 1.0}, "figures": {
        "confirmed": {"p50_ms": 5.8, "p99_ms": 12.5, "max_ms": 14.0},
        "after_drop": {"p99_ms": 1211.3}, "uplink_raised": {"p99_ms": 6.3}}}
    rows = [r for r in report.summarise({"gb26875": res}) if r["benchmark"] == "gb26875"]
    judged = {(r["case"][:30], r["figure"]): r["met"] for r in rows if r["target"]}
    assert judged == {("fire-button press → frame conf", "p99"): False,
                      ("the same, first frame dropped ", "p99"): True}


def test_a_bus_reached_through_a_serial_server_is_named_and_held_to_its_own_target() -> None:
    res = {**BUS_FULL, "settings": {**BUS_FULL["settings"], "tcp_target": 0.85},
           "cases": [{"baud": 115200, "buses": 1, "transport": "rtu_tcp", "polls_per_s": 174.0,
                      "theoretical_per_s": 195.2, "ratio": 0.891, "pass": True}]}
    lines = report.bus_detail(res)
    assert "| 115200 | 1, via a serial server | 174.0 | 195.2 | 89.1 % | – | ≥ 85 %: met |" \
        in lines, lines
