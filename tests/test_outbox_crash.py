"""Chaos: SIGKILL of the daemon at random moments while alarms flow loses nothing.

A real `parkwatch run` process delivers every alarm change to the command-center contract (the
test broker) and to a webhook that answers slowly, so committed changes queue in the outbox.
Devices keep changing alarms (fire buttons pressed and reset, water levels crossing their limits)
while the daemon is killed with SIGKILL again and again at random moments (the seed is printed;
set PARKWATCH_CHAOS_SEED to replay a run).  Before each restart the store shows committed
changes still pending in the outbox: the kill fell between commit and delivery.  At the end
every change in the store has reached both the webhook and the contract subscriber, none is
missing, duplicates carry the same (alarm_id, seq) and the same bytes, and each alarm's seqs
arrive as 1..n.  On the input side, every fire-button press the broker accepted raised its own
alarm: a press the daemon had taken but not yet committed when it died was not acknowledged to
the broker, which delivers it again to the restarted daemon.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

from conftest import REPO, Device, Subscriber, lora_park
from webhook_receiver import WebhookReceiver

PY = [sys.executable, "-m", "parkwatch"]
SECRET = "outbox-crash-test-secret-0123456789"
KILLS = 8
#: seconds the daemon runs after coming online before it is killed: drawn per kill
KILL_AFTER_S = (0.2, 1.8)
SLOW_S = 0.2  # the webhook's answer time while the kills go on
PUBLISH_EVERY_S = 0.03
BUTTONS = ("A-1F-FB1", "A-2F-FB1", "A-2F-FB2", "A-3F-FB1", "A-4F-FB1", "B-1F-FB1", "B-2F-FB1",
           "B-3F-FB1")
#: each water level cycles warning -> critical -> normal (B-B1-WL1 reports metres)
WATER = {"A-1F-WL1": (35, 55, 10), "B-B1-WL1": (0.45, 0.65, 0.10)}
ALL_CLEAR = [*((b, {"event": "reset"}) for b in BUTTONS),
             *((w, {"value": levels[-1]}) for w, levels in WATER.items())]


def write_config(tmp_path: Path, port: int, hook_url: str) -> Path:
    """The example park, LoRa sensors only, with a signed webhook subscriber told of everything."""
    data = lora_park(tmp_path, port)
    data["gateway"]["status_interval_s"] = 1
    secret = tmp_path / "hook.secret"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    data["alarms"]["targets"]["hook"] = {
        "type": "webhook", "url": hook_url, "secret_file": str(secret), "timeout_s": 5,
        "retry": {"initial_s": 0.2, "max_s": 1.0}}
    data["alarms"]["subscribers"].append({"id": "hook-all", "party": "any", "target": "hook"})
    path = tmp_path / "park.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


class Devices(threading.Thread):
    """Changes alarms without pause: buttons pressed and reset in turn, water levels cycling."""

    def __init__(self, device: Device) -> None:
        super().__init__(name="outbox-crash-devices", daemon=True)
        self.device = device
        self.stop_event = threading.Event()
        self.sent = 0
        self.presses: Counter[str] = Counter()  # accepted by the broker (QoS 1, PUBACK seen)

    def run(self) -> None:
        pressed = dict.fromkeys(BUTTONS, False)
        level = dict.fromkeys(WATER, 0)
        sensors = [*BUTTONS, *WATER]
        i = 0
        while not self.stop_event.wait(PUBLISH_EVERY_S):
            sensor = sensors[i % len(sensors)]
            i += 1
            if sensor in pressed:
                payload: dict[str, Any] = {"event": "reset" if pressed[sensor] else "press"}
                pressed[sensor] = not pressed[sensor]
            else:
                levels = WATER[sensor]
                payload = {"value": levels[level[sensor] % len(levels)]}
                level[sensor] += 1
            self.device.send(sensor, payload)
            self.sent += 1
            if payload.get("event") == "press":
                self.presses[sensor] += 1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen([*PY, "run", "--config", str(cfg)], stderr=err,
                                stdout=subprocess.DEVNULL, cwd=REPO)


def wait_online(sub: Subscriber, after: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for topic, payload, _ in sub.messages[after:]:
            if topic.endswith("/gateway") and payload and json.loads(payload)["state"] == "online":
                return
        time.sleep(0.02)
    raise AssertionError("daemon did not come online")


def wait_listening(sub: Subscriber, device: Device, timeout: float = 10.0,
                   after: int = 0) -> None:
    """Until the daemon's driver is subscribed: "online" on the uplink does not say so, and a
    press the broker accepts before that is dropped (there is no session to queue it for).
    A water level beyond its critical limit, sent until its alarm is raised, then cleared
    (seen in the uplink's messages from number `after` on: after a restart, the new ones)."""
    sensor, levels = next(iter(WATER.items()))

    def seen(event: str) -> bool:
        return any(json.loads(p)["sensor_id"] == sensor and json.loads(p)["event"] == event
                   for _k, p in uplink_events(sub, after))

    deadline = time.monotonic() + timeout
    while not seen("raised"):
        assert time.monotonic() < deadline, "the daemon never heard the sensors"
        device.send(sensor, {"value": levels[1]})
        time.sleep(0.2)
    device.send(sensor, {"value": levels[-1]})
    while not seen("cleared"):
        assert time.monotonic() < deadline, "the probe alarm was not cleared"
        time.sleep(0.05)


def query(db_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(db_path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def uplink_events(sub: Subscriber, after: int = 0) -> list[tuple[tuple[str, int], bytes]]:
    sub.events()  # validates each against the contract's JSON schema
    out = []
    for topic, payload, _ in list(sub.messages)[after:]:
        if topic.endswith("/events"):
            e = json.loads(payload)
            out.append(((e["alarm_id"], e["seq"]), payload))
    return out


def test_sigkill_between_commit_and_delivery_loses_no_change(broker, tmp_path, device):
    db_path = tmp_path / "state" / "alarms.db"
    sub = Subscriber(broker)
    hook = WebhookReceiver(SECRET).start()
    devices = Devices(device)
    procs: list[subprocess.Popen[bytes]] = []
    kills: list[dict[str, Any]] = []
    seed = int(os.environ.get("PARKWATCH_CHAOS_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    print(f"PARKWATCH_CHAOS_SEED={seed}")
    try:
        cfg = write_config(tmp_path, broker.port, hook.url)
        hook.delay_s = SLOW_S
        for n in range(KILLS):
            after = round(rng.uniform(*KILL_AFTER_S), 3)
            mark = len(sub.messages)
            proc = start(cfg, tmp_path / f"daemon-{n}.log")
            procs.append(proc)
            wait_online(sub, mark)
            if n == 0:  # from now on the broker keeps the daemon's session while it is down
                wait_listening(sub, device)
                devices.start()
            time.sleep(after)
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            received = {r.key for r in hook.posts()}
            pending = query(db_path, "SELECT target, alarm_id, seq FROM outbox "
                            "WHERE state='pending'")
            hook_pending = [(a, s) for t, a, s in pending if t == "hook"]
            kills.append({
                "after_s": after,
                "changes": query(db_path, "SELECT count(*) FROM changes")[0][0],
                "pending": len(pending),
                "hook_pending": len(hook_pending),
                # committed, and not even attempted: the kill fell between commit and delivery
                "hook_never_sent": len([k for k in hook_pending if k not in received]),
                "uplink_pending": len([1 for t, *_ in pending if t == "uplink"]),
            })

        # the last run: the webhook answers at once, the devices go quiet, everything drains
        devices.stop()
        hook.delay_s = 0.0
        mark = len(sub.messages)
        final = start(cfg, tmp_path / "daemon-final.log")
        procs.append(final)
        wait_online(sub, mark)
        for sensor, payload in ALL_CLEAR:  # no alarm left to escalate while we look
            device.send(sensor, payload)

        def drained() -> bool:
            if query(db_path, "SELECT count(*) FROM outbox WHERE state!='delivered'")[0][0]:
                return False
            keys = set(query(db_path, "SELECT alarm_id, seq FROM changes"))
            return keys <= {r.key for r in hook.delivered()} and keys <= {
                k for k, _ in uplink_events(sub)}

        deadline = time.monotonic() + 30
        while not drained():
            assert time.monotonic() < deadline, "the outbox did not drain"
            time.sleep(0.1)
        final.send_signal(signal.SIGTERM)
        assert final.wait(5) == 0

        # --- what the store committed, and what reached the receivers ----------------------
        changes = {(a, s): p.encode("utf-8") for a, s, p in
                   query(db_path, "SELECT alarm_id, seq, payload FROM changes")}
        outbox_hook = set(query(db_path, "SELECT alarm_id, seq FROM outbox WHERE target='hook'"))
        states = Counter(s for (s,) in query(db_path, "SELECT state FROM outbox"))
        hook_got = [(r.key, r.body) for r in hook.posts()]
        uplink_got = uplink_events(sub)
        figures = {"seed": seed, "kills": kills, "changes": len(changes),
                   "readings_sent": devices.sent,
                   "hook_posts": len(hook_got), "uplink_events": len(uplink_got),
                   "outbox_states": dict(states)}
        print(json.dumps(figures, indent=1))

        assert len(changes) >= 50, figures
        assert outbox_hook == set(changes), "every change is routed to the webhook"
        assert states.keys() == {"delivered"}, figures
        assert hook.bad_signatures == 0 and hook.missing_signatures == 0
        # most kills fell while committed changes waited in the outbox
        landed = [k for k in kills if k["hook_never_sent"] > 0]
        assert len(landed) >= len(kills) // 2, kills

        for name, got in (("webhook", hook_got), ("uplink", uplink_got)):
            keys = Counter(k for k, _ in got)
            missing = set(changes) - set(keys)
            assert not missing, f"{name}: {len(missing)} change(s) lost: {sorted(missing)[:5]}"
            assert set(keys) <= set(changes), f"{name}: events the store never committed"
            bodies: dict[tuple[str, int], set[bytes]] = defaultdict(set)
            for k, body in got:
                bodies[k].add(body)
            # a duplicate is the same change again: same (alarm_id, seq), same bytes
            assert all(b == {changes[k]} for k, b in bodies.items()), name
            # per alarm: seqs 1..n without a gap, first heard in that order
            first: dict[str, list[int]] = defaultdict(list)
            for alarm_id, seq in dict.fromkeys(k for k, _ in got):
                first[alarm_id].append(seq)
            for alarm_id, seqs in first.items():
                assert seqs == list(range(1, len(seqs) + 1)), (name, alarm_id, seqs)
            figures[f"{name}duplicate_ids"] = sum(n - 1 for n in keys.values())
        print(json.dumps({k: v for k, v in figures.items() if k.endswith("duplicates")}))

        # the input side: each press the broker accepted raised an alarm of its own
        raised: Counter[str] = Counter()
        for _, payload in dict(uplink_got).items():
            e = json.loads(payload)
            if e["event"] == "raised" and e["sensor_kind"] == "fire_button":
                raised[e["sensor_id"]] += 1
        assert raised == devices.presses, (seed, raised, devices.presses)

        for log in sorted(tmp_path.glob("daemon-*.log")):
            text = log.read_text(encoding="utf-8", errors="replace")
            assert "Traceback" not in text, f"{log.name}:\n{text[-3000:]}"
    finally:
        devices.stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        hook.stop()
        sub.close()
