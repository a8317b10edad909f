"""parkwatch replay: a recording through a config's rules, transitions printed for tuning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import EXAMPLE, REPO, Subscriber, example_config, wait_until
from parkwatch.daemon.app import Daemon

PY = [sys.executable, "-m", "parkwatch"]
T0 = 1_763_800_000.0


def config(tmp_path: Path, **load_cell: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["rules"]["load_cell"].update(load_cell)
    path = tmp_path / f"park-{len(list(tmp_path.glob('park-*')))}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def replay(cfg: Path, recording: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PY, "replay", "--config", str(cfg), str(recording), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


def write_recording(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_replay_prints_transitions_and_a_new_limit_changes_them(tmp_path):
    rec = write_recording(tmp_path / "day.jsonl", [
        {"batch": 1, "ts": T0, "sensor": "A-2F-LC1", "value": 7000, "quality": "good"},
        {"batch": 2, "ts": T0 + 10, "sensor": "A-2F-LC1", "value": 8500, "quality": "good"},
        {"batch": 3, "ts": T0 + 20, "sensor": "A-2F-LC1", "value": 10500, "quality": "good"},
        {"batch": 4, "ts": T0 + 30, "sensor": "A-2F-LC1", "value": 7000, "quality": "good"},
    ])
    out = replay(config(tmp_path), rec, "--json")
    assert out.returncode == 0, out.stderr
    # (the RS-485 sensors of the example are not in this recording: their silence shows too)
    rows = [r for r in map(json.loads, out.stdout.splitlines()) if r["source"] == "A-2F-LC1"]
    assert [(r["source"], r["rule"], r["from"], r["to"], r["value"], r["threshold"])
            for r in rows] == [
        ("A-2F-LC1", "high_threshold", "normal", "warning", 8500, 8000),
        ("A-2F-LC1", "high_threshold", "warning", "critical", 10500, 10000),
        ("A-2F-LC1", "high_threshold", "critical", "normal", 7000, 10000)]
    assert "replayed 4 reading(s) in 4 batch(es)" in out.stderr
    # tuning: with a raised warning limit the 8500 kg reading is no longer an alarm
    tuned = replay(config(tmp_path, high_warning=9000), rec, "--json")
    assert [r["to"] for r in map(json.loads, tuned.stdout.splitlines())
            if r["source"] == "A-2F-LC1"] == ["critical", "normal"]


def test_replay_fires_durations_and_silences_between_readings(tmp_path):
    """Time is the recording's: a duration falls due between readings, as in the daemon."""
    rec = write_recording(tmp_path / "r.jsonl", [
        {"batch": 1, "ts": T0, "sensor": "A-2F-LC1", "value": 9000},
        {"batch": 2, "ts": T0 + 100, "sensor": "A-2F-LC1", "value": 9100},
    ])
    out = replay(config(tmp_path, for_s=30.0), rec)
    assert out.returncode == 0, out.stderr
    (line,) = [x for x in out.stdout.splitlines() if "A-2F-LC1" in x]
    assert "A-2F-LC1" in line and "normal → warning" in line
    assert line.startswith("2025-11-22T08:27:10.000Z")  # T0 + 30 s, not the next reading


def test_bad_lines_and_unknown_sensors_are_reported_not_fatal(tmp_path):
    rec = tmp_path / "bad.jsonl"
    rec.write_text("\n".join([
        json.dumps({"ts": T0, "sensor": "A-2F-LC1", "value": 8100}),
        "{not json",
        json.dumps({"ts": "soon", "sensor": "A-2F-LC1", "value": 1}),
        json.dumps({"ts": T0 + 1, "sensor": "NOPE", "value": 1}),
        json.dumps({"ts": T0 + 2, "sensor": "A-2F-LC1", "quality": "sparkly"}),
    ]) + "\n", encoding="utf-8")
    out = replay(config(tmp_path), rec)
    assert out.returncode == 0
    assert "bad.jsonl:2: skipped" in out.stderr and "bad.jsonl:3: skipped" in out.stderr
    assert "bad.jsonl:5: skipped" in out.stderr
    assert "1 reading(s) of 'NOPE' skipped" in out.stderr
    # the one good reading raised a warning
    assert len([x for x in out.stdout.splitlines() if "A-2F-LC1" in x]) == 1


def test_missing_recording_and_bad_config_exit_nonzero(tmp_path):
    assert replay(config(tmp_path), tmp_path / "none.jsonl").returncode == 1
    broken = tmp_path / "broken.yaml"
    broken.write_text("park: {id: x}\n", encoding="utf-8")
    out = replay(broken, tmp_path / "none.jsonl")
    assert out.returncode == 2 and "broken.yaml" in out.stderr


def test_daemon_records_what_it_evaluates_and_replay_reproduces_its_alarms(broker, tmp_path,
                                                                           device):
    cfg = example_config(broker, tmp_path)
    recording = tmp_path / "rec.jsonl"
    sub = Subscriber(broker)
    daemon = Daemon(cfg, tmp_path / "state", record=recording)
    daemon.start()
    try:
        wait_until(lambda: daemon.drivers[0].subscribed.is_set(), timeout=5)
        for value in (5000, 8600, 10_400, 9000, 300):
            device.send("A-2F-LC1", {"value": value})
        device.send("A-3F-FB1", {"event": "press"})
        device.send("A-3F-FB1", {"event": "heartbeat", "battery": 80})
        sub.wait_events(lambda ev: len([e for e in ev if e["sensor_id"] in
                                         ("A-2F-LC1", "A-3F-FB1")]) >= 5)
    finally:
        daemon.stop()
        sub.close()
    live = [(e["sensor_id"], e["rule"], e["event"], e["severity"]) for e in sub.events()
            if e["sensor_id"] in ("A-2F-LC1", "A-3F-FB1")]
    lines = recording.read_text(encoding="utf-8").splitlines()
    assert any(json.loads(x)["quality"] == "heartbeat" for x in lines)
    # the example config: the bench config differs only in ports and paths, not in rules
    out = replay(EXAMPLE, recording, "--json")
    assert out.returncode == 0, out.stderr
    replayed = [(r["source"], r["rule"], r["to"])
                for r in map(json.loads, out.stdout.splitlines())
                if r["source"] in ("A-2F-LC1", "A-3F-FB1")]
    want = [(s, rule, sev if ev != "cleared" else "normal") for s, rule, ev, sev in live]
    # each sensor's changes in the same order; across sensors the live order may differ (a
    # fire alarm's raise overtakes other alarms' changes still queued for delivery)
    for sensor in ("A-2F-LC1", "A-3F-FB1"):
        assert [r for r in replayed if r[0] == sensor] == [w for w in want if w[0] == sensor]
    assert len(replayed) == len(want)
