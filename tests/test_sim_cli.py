"""`parkwatch sim` plays a scenario against the daemon of the same park config."""

from __future__ import annotations

import subprocess
import sys
import time

import yaml

from conftest import EXAMPLE, REPO, Subscriber
from parkwatch.firmware_sim.devices import bench_overrides
from parkwatch.schema import load_config


def test_cable_cut_scenario_raises_and_clears_comm_faults(broker, tmp_path):
    """A field engineer's bench: sim and daemon as two processes on one config."""
    from parkwatch.daemon.app import Daemon

    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for d in data["drivers"]:
        if d["type"] == "modbus_rtu":
            d["comm_fault_after_s"] = 1.0
            d["reopen_max_s"] = 1.0
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    overrides = bench_overrides(load_config(path), broker.port, tmp_path)
    data2 = yaml.safe_load(path.read_text(encoding="utf-8"))
    for (section, *rest), value in overrides.items():  # write the bench config out as a file
        node = data2[section]
        for key in rest[:-1]:
            node = node[key]
        node[rest[-1]] = value
    path.write_text(yaml.safe_dump(data2, allow_unicode=True), encoding="utf-8")

    sub = Subscriber(broker)
    sim = subprocess.Popen([sys.executable, "-m", "parkwatch", "sim", "--config", str(path),
                            "--scenario", "cable_cut", "--speed", "2"], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    daemon = None
    try:
        # the sim creates the ptys at the configured paths; then the daemon starts on them
        deadline = time.monotonic() + 10
        while not (tmp_path / "tty-rs485-b").exists():
            assert time.monotonic() < deadline, sim.stderr.read()
            time.sleep(0.05)
        daemon = Daemon(load_config(path))
        daemon.start()
        out, err = sim.communicate(timeout=60)
        assert sim.returncode == 0, err
        assert "cable cut" in out and "cable repaired" in out
        events = sub.wait_events(lambda ev: any(e["rule"] == "comm_fault" and
                                                e["event"] == "cleared" for e in ev), timeout=10)
        faults = [e for e in events if e["rule"] == "comm_fault"]
        assert {e["sensor_id"] for e in faults} >= {"B-B1-WL2", "B-3F-LC2", "B-1F-FB2"}, [
            (e["rule"], e["sensor_id"], e["event"], e["observed_at"]) for e in events]
        # floors weighed by the cut-off cells lose their sum for a while: data alarms, no load
        # ones; the bus's relay outputs cannot be checked while it is cut: output faults
        assert {e["rule"] for e in events} <= {"comm_fault", "floor_data", "output_fault"}, [
            (e["rule"], e["sensor_id"], e["event"], e["observed_at"]) for e in events]
        assert {e["sensor_id"] for e in events if e["rule"] == "floor_data"} == {None}
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
        if daemon is not None:
            daemon.stop()
        sub.close()
