"""The daemon and the demo as real processes: start, alarm, stop on signals, leave nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from conftest import EXAMPLE, REPO, Subscriber, wait_until

PY = [sys.executable, "-m", "parkwatch"]


def write_config(tmp_path: Path, port: int) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["brokers"]["local"]["port"] = port
    data["gateway"]["state_dir"] = str(tmp_path / "state")
    data["gateway"]["status_interval_s"] = 1
    data["api"]["port"] = 0  # a free port: never clash with a gateway's 9466 or another test
    for d in data["drivers"]:  # never a real /dev/ttyUSB* of the machine running the tests
        if d["type"] != "mqtt":
            d["port"] = str(tmp_path / f"tty-{d['id']}")
    path = tmp_path / "park.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def start_daemon(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*PY, "run", "--config", str(cfg)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=REPO)


def wait_status(sub: Subscriber, state: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for topic, payload, _ in reversed(sub.messages):
            if topic.endswith("/gateway") and payload:
                status = json.loads(payload)
                if status["state"] == state:
                    return status
                break
        time.sleep(0.05)
    raise AssertionError(f"no {state} status; got {[m[1] for m in sub.messages][-3:]}")


def wait_listening(sub: Subscriber, timeout: float = 10.0) -> dict:
    """The daemon online with its MQTT driver subscribed (it refreshes its status then):
    a device's reading sent now is heard."""
    def latest() -> dict | None:
        for topic, payload, _ in reversed(list(sub.messages)):
            if topic.endswith("/gateway") and payload:
                status = json.loads(payload)
                if status["state"] == "online" and status["drivers"]["lora"]["connected"]:
                    return status
        return None

    wait_until(lambda: latest() is not None, timeout, "the daemon online and listening")
    return latest() or {}


def test_daemon_runs_alarms_and_stops_on_sigterm_within_2s(broker, tmp_path, device):
    sub = Subscriber(broker)
    proc = start_daemon(write_config(tmp_path, broker.port))
    try:
        wait_listening(sub)
        device.send("B-2F-FB1", {"event": "press"})
        events = sub.wait_events(lambda ev: any(e["sensor_id"] == "B-2F-FB1" for e in ev))
        # the RS-485 ports of this config are absent: their floors' data alarms come too
        events = [e for e in events if e["sensor_id"] == "B-2F-FB1"]
        assert events[0]["event"] == "raised" and events[0]["severity"] == "critical"

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert time.monotonic() - t0 < 2.0, "SIGTERM must stop the daemon within 2 s"
        offline = wait_status(sub, "offline")
        assert offline.get("reason") == "stopped"
        err = proc.stderr.read()  # type: ignore[union-attr]
        assert "received SIGTERM" in err and "parkwatch stopped" in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_sigint_stops_cleanly_too(broker, tmp_path):
    sub = Subscriber(broker)
    proc = start_daemon(write_config(tmp_path, broker.port))
    try:
        wait_status(sub, "online")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(3) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_killed_daemon_is_reported_offline_by_its_last_will(broker, tmp_path):
    sub = Subscriber(broker)
    proc = start_daemon(write_config(tmp_path, broker.port))
    try:
        wait_status(sub, "online")
        proc.kill()
        proc.wait(5)
        assert wait_status(sub, "offline") == {"state": "offline"}
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_demo_shows_all_three_hazards_and_leaves_no_process(tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([*PY, "demo", "--speed", "4"], capture_output=True, text=True,
                          timeout=90, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for word in ("【火警】", "楼层称重", "水位", "closed"):
        assert word in out, f"{word!r} missing from the demo output:\n{out}"
    shown = re.search(r"raised \(([^)]*)\)", out)
    assert shown and {"fire_button", "load_cell", "water_level"} <= set(
        shown.group(1).split(", ")), out
    # the command center's console, with a login, and every event stored by the center
    assert re.search(r"^command center console: http://127\.0\.0\.1:\d+/  login district-duty"
                     r" / password \S{12,}", out, re.M), out
    stored = re.search(r"^command center: (\d+) alarm event\(s\) stored", out, re.M)
    total = re.search(r"^(\d+) alarm event\(s\): ", out, re.M)
    assert stored and total and int(stored.group(1)) == int(total.group(1)) > 0, out
    # the press sounds building A (its relay module and its wireless sounder), the reset
    # silences it; building B's sounders stay off (its sump pump runs with the flood)
    for output in ("A-SND-1F 一层声报警器", "A-STB-1F", "A-PA", "A-SND-W1"):
        on, off = out.find(f"联动 {output}"), out.rfind(f"联动 {output}")
        assert 0 <= on < off and "启动" in out[on:out.index("\n", on)], out
        assert "停止" in out[off:out.index("\n", off)], out
    assert 0 <= out.find("联动 A-SND-1F") < out.find("【火警复位】")
    assert "联动 B-SND-1F" not in out and "联动 B-PUMP-B1 地下一层集水坑排水泵 启动" in out
    # the private broker died with the demo: no mosquitto child of ours is left
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "parkwatch-demo-" not in ps and "parkwatch-mqtt-" not in ps


def test_ctrl_c_stops_the_demo_cleanly(tmp_path):
    """Ctrl-C, the documented way to stop the demo early, reaches the whole foreground
    process group: the demo stops its daemon, devices and broker in order and says so, with
    exit code 0, no broker lost on the way and no complaint about alarms it was not let show."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen([*PY, "demo", "--speed", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)  # a group of its own, as a terminal's job
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("raised" in x for x in lines), 60, "the demo's first alarm")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(5)
    err = proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]
    assert "demo stopped with Ctrl-C" in "".join(lines)
    for word in ("Traceback", "ERROR", "WARNING", "lost", "did not show"):
        assert word not in err, err
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "parkwatch-demo-" not in ps


def test_heartbeat_counts_open_alarms_by_state_and_driver_health(broker, tmp_path, device):
    sub = Subscriber(broker)
    proc = start_daemon(write_config(tmp_path, broker.port))
    try:
        wait_listening(sub)
        device.send("B-2F-FB1", {"event": "press"})
        fire = sub.wait_events(lambda ev: any(e["sensor_id"] == "B-2F-FB1" for e in ev))
        fire_id = next(e["alarm_id"] for e in fire if e["sensor_id"] == "B-2F-FB1")
        device.publish("parkwatch/v1/xinqiao/commands/ack",
                       json.dumps({"alarm_id": fire_id, "by": "张三"}).encode())
        sub.wait_events(lambda ev: any(e["event"] == "acknowledged" for e in ev))
        sub.messages.clear()
        beats = []
        deadline = time.monotonic() + 5
        while len(beats) < 2 and time.monotonic() < deadline:  # every status_interval_s (1 s)
            beats = [json.loads(p) for t, p, _ in list(sub.messages) if t.endswith("/gateway")]
            time.sleep(0.05)
        assert len(beats) >= 2, "the status is refreshed every status_interval_s"
        beat = beats[-1]
        assert beat["state"] == "online"
        # the fire alarm is active and acknowledged; the unplugged RS-485 buses leave their
        # floors' data alarms active and unacknowledged
        assert beat["alarms"]["active_acknowledged"] == 1
        assert beat["open_alarms"] == sum(beat["alarms"].values())
        assert beat["drivers"]["lora"]["connected"] is True
        assert beat["drivers"]["rs485-b"]["connected"] is False
        assert beat["targets"]["uplink"]["pending"] == 0
        assert beat["targets"]["uplink"]["delivered"] >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
        sub.close()
