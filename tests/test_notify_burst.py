"""Issue 23, done-when 4: a burst of 100 alarms on one robot target with a 20-a-minute limit.
Every alarm appears in a message, no window exceeds 20, nothing is lost across a SIGKILL in
the middle.

A real `parkwatch run` process sends to a local DingTalk robot (tests/chat_robots.py) that
checks the signature and refuses a message over its rate, as DingTalk does (errcode 130101).
The minute is scaled down to 6 s on both sides (the target's `rate_limit` and the robot's), so
the test runs in seconds; the robot records when each message arrived. 100 water gauges go
over their limit one after the other; the daemon is killed with SIGKILL once the robot has
taken the window's share for alarms that are not fire (15 of 20: 5 are kept for fire), so the
restarted daemon must know of those 15 messages from disk and wait, and then fold what waits.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from chat_robots import DingTalkRobot
from conftest import Device, Subscriber, lora_park
from test_outbox_crash import query, start, wait_online

SECRET = "SEC" + "0123456789abcdef" * 4
WINDOW_S = 6.0  # DingTalk's minute, scaled down
PER_WINDOW = 20
GAUGES = [f"A-1F-W{n:03d}" for n in range(100)]


def write_config(tmp_path: Path, port: int, url: str) -> Path:
    data: dict[str, Any] = lora_park(tmp_path, port)
    data["gateway"]["status_interval_s"] = 1
    data["sensors"] += [{"id": g, "kind": "water_level", "building": "A", "floor": "1F",
                         "driver": "lora", "unit": "cm"} for g in GAUGES]
    secret = tmp_path / "ding.secret"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    data["alarms"]["targets"]["ding"] = {
        "type": "dingtalk", "url": url, "secret_file": str(secret),
        "rate_limit": {"messages": PER_WINDOW, "per_s": WINDOW_S},
        "retry": {"initial_s": 0.2, "max_s": 1.0}}
    data["alarms"]["subscribers"].append({"id": "officers", "party": "any", "target": "ding"})
    path = tmp_path / "park.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def publish(device: Device, gauges: list[str]) -> None:
    """Each gauge over its limit in turn, at a steady pace (the broker keeps what comes while
    the daemon is down for its session)."""
    for gauge in gauges:
        device.send(gauge, {"value": 60})
        time.sleep(0.02)


def raised(sub: Subscriber, sensor: str) -> bool:
    return any(json.loads(p).get("sensor_id") == sensor and json.loads(p)["event"] == "raised"
               for t, p, _ in list(sub.messages) if t.endswith("/events"))


def listed(robot: DingTalkRobot) -> set[str]:
    with robot._lock:
        texts = [m["text"]["content"] for m in robot.accepted]
    return {a for t in texts for a in re.findall(r"编号：(\S+)", t)}


def test_a_burst_of_100_keeps_the_rate_and_loses_nothing_across_a_sigkill(
        broker: Any, tmp_path: Path, device: Device) -> None:
    db = tmp_path / "state" / "alarms.db"
    sub = Subscriber(broker)
    procs: list[subprocess.Popen[bytes]] = []
    with DingTalkRobot(SECRET, per_window=PER_WINDOW, window_s=WINDOW_S) as robot:
        try:
            cfg = write_config(tmp_path, broker.port, robot.url)
            mark = len(sub.messages)
            procs.append(start(cfg, tmp_path / "daemon-1.log"))
            wait_online(sub, mark)
            deadline = time.monotonic() + 15
            while not raised(sub, GAUGES[0]):  # until the driver is subscribed (and after,
                # the broker keeps its session while the daemon is down)
                assert time.monotonic() < deadline, "the daemon never heard the gauges"
                device.send(GAUGES[0], {"value": 60})
                time.sleep(0.2)
            burst = threading.Thread(target=publish, args=(device, GAUGES[1:]), daemon=True)
            burst.start()
            # the window's share for alarms that are not fire is used: kill the daemon
            robot.wait_for(lambda got: len(got) >= PER_WINDOW - PER_WINDOW // 4, 20)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(5)
            killed_at = time.monotonic()
            before = len(robot.accepted)
            pending = query(db, "SELECT count(*) FROM outbox WHERE target='ding' AND "
                            "state='pending'")[0][0]
            assert pending > 0 or burst.is_alive(), "the kill fell after the burst"
            burst.join(10)

            mark = len(sub.messages)
            procs.append(start(cfg, tmp_path / "daemon-2.log"))
            wait_online(sub, mark)
            ids = {a for (a,) in query(db, "SELECT DISTINCT alarm_id FROM outbox "
                                            "WHERE target='ding'")}
            deadline = time.monotonic() + 60
            while not (len(ids) >= len(GAUGES) and ids <= listed(robot)):
                assert time.monotonic() < deadline, (
                    f"{len(ids - listed(robot))} of {len(ids)} alarms never reached the robot; "
                    f"refused {robot.refused}")
                time.sleep(0.1)
                ids = {a for (a,) in query(db, "SELECT DISTINCT alarm_id FROM outbox "
                                                "WHERE target='ding'")}
            procs[1].send_signal(signal.SIGTERM)
            assert procs[1].wait(10) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
            sub.close()
        times = sorted(robot.times)
    after_restart = [t for t in times if t > killed_at]
    figures = {"alarms": len(ids), "messages": len(times), "before_kill": before,
               "per_window": robot.per_window_counts(),
               "most_in_any_window": robot.most_in_window(),
               "first_after_restart_s": round(after_restart[0] - times[before - 1], 2)}
    print(json.dumps(figures))
    assert robot.refused == [], "the robot refused a message as too fast"
    assert robot.most_in_window() <= PER_WINDOW
    # the restarted daemon knew of the window: the next message waited for room in it
    assert after_restart[0] - times[0] >= WINDOW_S * 0.99
    assert len(times) < 40  # what was over was folded, not sent one by one
