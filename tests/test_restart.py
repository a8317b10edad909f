"""Restarts keep the alarm state: no open alarm is raised again, a pending duration fires on time.

Real daemon processes on a real broker: the first is stopped (SIGTERM) or killed (SIGKILL) while
alarms are open and a duration is pending, the second starts on the same state directory.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import REPO, Subscriber, wait_until
from parkwatch.park import ParkModel
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.snapshot import plain_fields, restore_state, save_state
from parkwatch.schema import load_config
from test_daemon_process import write_config as daemon_config

PY = [sys.executable, "-m", "parkwatch"]
HOLD = 6.0  # rules.load_cell.for_s in these tests


def write_config(tmp_path: Path, port: int, **rules: Any) -> Path:
    """The process tests' config (test broker, state in tmp_path) with load-cell durations."""
    path = daemon_config(tmp_path, port)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["rules"]["load_cell"].update({"for_s": HOLD, **rules})
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def start(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*PY, "run", "--config", str(cfg)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=REPO)


def wait_online(sub: Subscriber, after: int) -> None:
    """Until a status after message `after` says online with the MQTT driver connected (the
    daemon refreshes its status when a driver connects): readings sent now are heard."""
    def ready() -> bool:
        for topic, payload, _ in sub.messages[after:]:
            if topic.endswith("/gateway") and payload:
                status = json.loads(payload)
                if status["state"] == "online" and status["drivers"]["lora"]["connected"]:
                    return True
        return False

    wait_until(ready, 15, "the daemon online with its drivers connected")


def sensor_events(sub: Subscriber, sensor: str) -> list[tuple[str, str, str]]:
    """A sensor's events as the command center takes them: a redelivery after a kill (the
    change was sent but not yet marked delivered) is dropped by its (alarm_id, seq)."""
    seen: set[tuple[str, int]] = set()
    out = []
    for e in sub.events():
        if e["sensor_id"] == sensor and (e["alarm_id"], e["seq"]) not in seen:
            seen.add((e["alarm_id"], e["seq"]))
            out.append((e["event"], e["alarm_id"], e["severity"]))
    return out


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> str:
    proc.send_signal(sig)
    proc.wait(5)
    return proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]


def test_sigterm_restart_neither_reraises_nor_forgets_a_pending_duration(broker, tmp_path,
                                                                          device):
    cfg = write_config(tmp_path, broker.port)
    sub = Subscriber(broker)
    first = start(cfg)
    second = None
    try:
        wait_online(sub, 0)
        device.send("A-3F-FB1", {"event": "press"})  # fire: latched until reset
        device.send("A-1F-WL1", {"value": 35})  # water above warning (no duration on water)
        sub.wait_events(lambda ev: len([e for e in ev if e["event"] == "raised"]) >= 2)
        t_over = time.time()
        device.send("A-2F-LC1", {"value": 9000})  # overload: pending for HOLD seconds
        # a reading behind it that raises at once: once its alarm is out, the overload has
        # been taken (and is still pending: it would have been published before)
        device.send("B-B1-WL1", {"value": 0.5})  # 50 cm (the gauge reports metres): warning
        sub.wait_events(lambda ev: any(e["sensor_id"] == "B-B1-WL1" for e in ev))
        assert sensor_events(sub, "A-2F-LC1") == []  # still pending
        err = stop(first, signal.SIGTERM)
        assert "Traceback" not in err, err
        state = tmp_path / "state"
        assert (state / "rules.npz").exists() and (state / "alarms.db").exists()

        fire = sensor_events(sub, "A-3F-FB1")
        water = sensor_events(sub, "A-1F-WL1")
        assert [e[0] for e in fire] == ["raised"] and [e[0] for e in water] == ["raised"]
        mark = len(sub.messages)
        second = start(cfg)
        wait_online(sub, mark)
        # the pending overload fires on time: HOLD after the reading, with the daemon restarted
        # in between (generous bound for a loaded CI machine)
        sub.wait_events(lambda ev: any(e["sensor_id"] == "A-2F-LC1" for e in ev),
                        timeout=HOLD + 5)
        fired_at = time.time()
        (over,) = [e for e in sub.events() if e["sensor_id"] == "A-2F-LC1"]
        assert over["event"] == "raised" and over["severity"] == "warning"
        assert t_over + HOLD - 0.5 <= fired_at <= t_over + HOLD + 1.5, fired_at - t_over
        # the same readings again change nothing: the alarms are still the open ones, and
        # they end under the ids they were raised with, with nothing in between
        device.send("A-1F-WL1", {"value": 36})
        device.send("A-3F-FB1", {"event": "press"})
        device.send("A-3F-FB1", {"event": "reset"})
        device.send("A-1F-WL1", {"value": 10})
        sub.wait_events(lambda ev: len([e for e in ev if e["event"] == "cleared"]) >= 2)
        assert [e[:2] for e in sensor_events(sub, "A-3F-FB1")] == [
            ("raised", fire[0][1]), ("cleared", fire[0][1])]
        assert [e[:2] for e in sensor_events(sub, "A-1F-WL1")] == [
            ("raised", water[0][1]), ("cleared", water[0][1])]
        err = stop(second, signal.SIGTERM)
        assert "rule state restored" in err and "Traceback" not in err, err
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        sub.close()


def test_sigkill_restart_does_not_raise_open_alarms_again(broker, tmp_path, device):
    cfg = write_config(tmp_path, broker.port, for_s=0.0)
    sub = Subscriber(broker)
    first = start(cfg)
    second = None
    try:
        wait_online(sub, 0)
        device.send("B-2F-FB1", {"event": "press"})
        device.send("A-2F-LC1", {"value": 10_500})
        sub.wait_events(lambda ev: len([e for e in ev if e["event"] == "raised"]) >= 2)
        time.sleep(0.2)
        first.kill()  # no goodbye, no final save
        first.wait(5)
        mark = len(sub.messages)
        second = start(cfg)
        wait_online(sub, mark)
        device.send("B-2F-FB1", {"event": "press"})
        device.send("A-2F-LC1", {"value": 10_400})
        # both end after that: a raise again would have come first, each sensor's changes
        # in order
        device.send("B-2F-FB1", {"event": "reset"})
        device.send("A-2F-LC1", {"value": 100})
        sub.wait_events(lambda ev: len([e for e in ev if e["event"] == "cleared"]) >= 2)
        for sensor in ("B-2F-FB1", "A-2F-LC1"):
            events = sensor_events(sub, sensor)
            assert [e[0] for e in events] == ["raised", "cleared"], (sensor, events)
            assert events[0][1] == events[1][1]  # the alarm raised before the kill
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        sub.close()


def test_a_kill_before_the_checkpoint_of_a_reset_does_not_swallow_the_next_press(
        broker, tmp_path, device):
    """The snapshot still holds the button latched; the store says its alarm was reset.  The
    store wins: the next press raises a new alarm (it used to vanish into the stale latch)."""
    cfg = write_config(tmp_path, broker.port, for_s=0.0)
    rules = tmp_path / "state" / "rules.npz"
    sub = Subscriber(broker)
    first = start(cfg)
    second = None
    try:
        wait_online(sub, 0)
        time.sleep(1.1)  # the press is then more than min_gap_s after any earlier checkpoint
        before = rules.stat().st_mtime_ns if rules.exists() else None
        device.send("B-2F-FB1", {"event": "press"})
        sub.wait_events(lambda ev: sensor_events(sub, "B-2F-FB1") != [])
        deadline = time.monotonic() + 15  # a loaded machine stretches the checkpoint gap
        # the checkpoint right after the press's batch: the button latched
        while not rules.exists() or rules.stat().st_mtime_ns == before:
            assert time.monotonic() < deadline, "no checkpoint after the press"
            time.sleep(0.005)
        saved = rules.stat().st_mtime_ns
        device.send("B-2F-FB1", {"event": "reset"})
        sub.wait_events(lambda ev: len(sensor_events(sub, "B-2F-FB1")) == 2)
        first.kill()  # within the second before the next checkpoint may be taken
        first.wait(5)
        assert rules.stat().st_mtime_ns == saved, "the reset reached the snapshot: no test"
        mark = len(sub.messages)
        second = start(cfg)
        wait_online(sub, mark)
        device.send("B-2F-FB1", {"event": "press"})
        sub.wait_events(lambda ev: len(sensor_events(sub, "B-2F-FB1")) >= 3)
        events = sensor_events(sub, "B-2F-FB1")
        assert [e for e, _, _ in events] == ["raised", "cleared", "raised"]
        assert events[0][1] != events[2][1]  # a new alarm
        err = stop(second, signal.SIGTERM)
        assert "B-2F-FB1 predates their alarm's clearing" in err, err
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        sub.close()


def test_changed_limits_reset_only_that_sensors_state(tmp_path):
    """A config reload or restart keeps the state of unchanged sensors only."""
    path = write_config(tmp_path, 1883, for_s=0.0)
    park = ParkModel(load_config(path))
    engine = RuleEngine(park, start=100.0)
    from parkwatch.readings import ReadingBatch

    a2, a3 = park.index["A-2F-LC1"], park.index["A-3F-LC1"]
    engine.evaluate(ReadingBatch.from_columns([a2, a3], [9000.0, 9000.0], [101.0, 101.0], [0, 0]))
    save_state(engine, tmp_path / "rules.npz")

    changed = load_config(path, {("sensors", 7, "thresholds"): {"high_warning": 9500}})
    assert changed.sensors[7].id == "A-3F-LC1"
    park2 = ParkModel(changed)
    engine2 = RuleEngine(park2, start=500.0)
    restored = restore_state(engine2, tmp_path / "rules.npz")
    assert restored.reset == ["A-3F-LC1"] and "A-2F-LC1" in restored.kept_ids
    level = engine2.kinds["threshold"].level
    assert level[a2] == 1 and level[a3] == 0
    # clocks of the last sign of life start at the new start, not in the past
    assert np.all(engine2.kinds["no_data"].heard >= 500.0)


def test_fingerprints_read_the_fields_a_dump_would_give(tmp_path):
    """The fingerprints read each sensor field by field (a dump would give every compact model
    a dict to keep): the result must be the dump, or a gateway upgraded across this change
    would reset the rule state of every sensor, latched fire alarms included."""
    example = load_config(REPO / "src" / "parkwatch" / "examples" / "park.yaml")
    mine = load_config(write_config(tmp_path, 1883, for_s=0.0))
    changed = load_config(write_config(tmp_path, 1883, for_s=0.0),
                          {("sensors", 7, "thresholds"): {"high_warning": 9500, "deadband": 5},
                           ("sensors", 7, "rate"): {"window_s": 30}})
    sensors = [*example.sensors, *mine.sensors, *changed.sensors]
    assert any(s.thresholds is not None for s in sensors)
    for s in sensors:
        assert plain_fields(s, exclude="name") == s.model_dump(exclude={"name"}), s.id


def test_a_snapshot_of_the_previous_format_restores(tmp_path):
    """Format 1 kept a fingerprint string a row; a gateway upgraded to format 2 must restore
    it (state kept where the config is unchanged, reset where it changed), not start afresh."""
    path = write_config(tmp_path, 1883, for_s=0.0)
    park = ParkModel(load_config(path))
    engine = RuleEngine(park, start=100.0)
    from parkwatch.readings import ReadingBatch

    a2, a3 = park.index["A-2F-LC1"], park.index["A-3F-LC1"]
    engine.evaluate(ReadingBatch.from_columns([a2, a3], [9000.0, 9000.0], [101.0, 101.0], [0, 0]))
    snap = tmp_path / "rules.npz"
    save_state(engine, snap)
    with np.load(snap) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    assert meta["format"] == 2 and isinstance(meta["fingerprints"]["sensor"], str)
    # format 1: the meta as a numpy str, a fingerprint string a row
    w = len(meta["fingerprints"]["sensor"]) // len(meta["ids"]["sensor"])
    meta["format"] = 1
    meta["fingerprints"] = {space: [fps[i:i + w] for i in range(0, len(fps), w)]
                            for space, fps in meta["fingerprints"].items()}
    np.savez(snap, __meta__=np.array(json.dumps(meta)), **arrays)

    changed = load_config(path, {("sensors", 7, "thresholds"): {"high_warning": 9500}})
    engine2 = RuleEngine(ParkModel(changed), start=500.0)
    restored = restore_state(engine2, snap)
    assert restored.reset == ["A-3F-LC1"]
    assert restored.kept == len(park) + len(park.groups) - 1
    level = engine2.kinds["threshold"].level
    assert level[a2] == 1 and level[a3] == 0


def test_a_snapshot_of_an_unknown_format_is_refused(tmp_path):
    park = ParkModel(load_config(write_config(tmp_path, 1883, for_s=0.0)))
    snap = tmp_path / "rules.npz"
    np.savez(snap, __meta__=np.frombuffer(json.dumps({"format": 9}).encode(), np.uint8))
    with pytest.raises(ValueError, match="snapshot format 9, this parkwatch reads 1, 2"):
        restore_state(RuleEngine(park), snap)
