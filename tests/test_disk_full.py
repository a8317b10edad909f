"""Chaos: the state directory's disk fills up while the daemon runs.

The state directory of a real `parkwatch run` is a small tmpfs of its own, filled to the last
byte by another file while devices keep publishing.  What a field engineer must see:

* alarms are still delivered to the command center, within seconds, while nothing can be
  written (they wait in memory for the disk, and are sent from there meanwhile);
* telemetry that cannot be spooled is dropped and counted in /metrics;
* each failure is logged clearly, once, naming the disk error;
* once space is freed, the held alarm changes are committed and the outbox drains, without
  sending an alarm change again with different content.

Mounting a tmpfs needs root (as the CI machine runs); elsewhere the test is skipped.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO, Device, Subscriber, lora_park, wait_until, write_yaml
from parkwatch.devtools.localbroker import free_port

PY = [sys.executable, "-m", "parkwatch"]
SIZE = "16m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the state directory needs root")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs",
                    str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


class Filler(threading.Thread):
    """Keeps the disk full: whatever the daemon frees (a truncated WAL, a cut-off spool record)
    is taken again within milliseconds, until stopped; then the filler file is removed."""

    def __init__(self, disk: Path) -> None:
        super().__init__(name="disk-filler", daemon=True)
        self.path = disk / "filler"
        self.file = self.path.open("wb", buffering=0)
        self.halt = threading.Event()
        self.top_up()

    def top_up(self) -> None:
        for size in (1 << 20, 65536, 4096, 512, 1):
            try:
                while True:
                    self.file.write(b"\0" * size)
            except OSError:
                continue

    def run(self) -> None:
        while not self.halt.wait(0.005):
            self.top_up()

    def free(self) -> None:
        self.halt.set()
        self.join(5)
        self.file.close()
        self.path.unlink()


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode("utf-8")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def events(sub: Subscriber) -> list[dict[str, Any]]:
    return [e for e in sub.events() if e.get("sensor_id")]


def test_a_full_state_disk_still_delivers_alarms_and_counts_dropped_telemetry(
        broker, tmp_path, small_disk, device: Device):
    api_port = free_port()
    data = lora_park(tmp_path, broker.port)
    data["gateway"]["state_dir"] = str(small_disk)
    data["gateway"]["status_interval_s"] = 1
    data["api"]["port"] = api_port
    data["telemetry"]["flush_interval_s"] = 0.2
    cfg = write_yaml(data, tmp_path / "park.yaml")
    log_path = tmp_path / "daemon.log"
    sub = Subscriber(broker)
    with log_path.open("wb") as err:
        proc = subprocess.Popen([*PY, "run", "--config", str(cfg)], stderr=err,
                                stdout=subprocess.DEVNULL, cwd=REPO)
    try:
        # the first start: a press before the driver's subscription would reach no session
        wait_until(lambda: "driver lora: subscribed" in log_path.read_text("utf-8", "replace"),
                   10, "the daemon subscribed to its devices")
        device.send("A-1F-FB1", {"event": "press"})
        wait_until(lambda: [e["event"] for e in events(sub)] == ["raised"], 5, "first alarm")

        filler = Filler(small_disk)
        filler.start()
        assert os.statvfs(small_disk).f_bavail == 0
        full_at = time.monotonic()
        # the disk is full: readings keep coming (telemetry to spool), and alarms happen
        for k in range(40):
            device.send("A-1F-WL1", {"value": 10 + k % 5}, wait=False)
            time.sleep(0.02)
        device.send("B-1F-FB1", {"event": "press"})
        device.send("A-1F-WL1", {"value": 55})  # critical
        device.send("A-1F-FB1", {"event": "reset"})
        wait_until(lambda: {(e["sensor_id"], e["event"]) for e in events(sub)} >= {
            ("B-1F-FB1", "raised"), ("A-1F-WL1", "raised"), ("A-1F-FB1", "cleared")},
            10, "the alarms raised on a full disk to reach the command center")
        delivered_in = time.monotonic() - full_at

        def dropped() -> float:
            m = metrics(api_port)
            return sum(v for (name, _), v in m.items()
                       if name == "parkwatch_spool_dropped_points_total")

        # a spool record may still fit in the last page its file has; more readings will not
        deadline = time.monotonic() + 15
        while (dropped_points := dropped()) == 0:
            assert time.monotonic() < deadline, "no telemetry dropped and counted on a full disk"
            for k in range(300):
                device.send("B-B1-WL1", {"value": k % 7 / 100}, wait=False)  # metres, normal
            time.sleep(0.3)
        full_log = log_path.read_text(encoding="utf-8", errors="replace")
        assert "No space left on device" in full_log or "disk is full" in full_log, full_log
        store_errors = metrics(api_port)[("parkwatch_alarm_store_errors_total", ())]
        assert store_errors > 0, "the alarm store never failed: the memory path went untested"

        # space again: the held changes are committed and nothing is left to deliver
        filler.free()
        device.send("B-1F-FB1", {"event": "reset"})
        device.send("A-1F-WL1", {"value": 10})
        db = small_disk / "alarms.db"

        def drained() -> bool:
            con = sqlite3.connect(db, timeout=5)
            try:
                pending = con.execute("SELECT count(*) FROM outbox WHERE state='pending'")
                committed = con.execute("SELECT count(*) FROM changes")
                return pending.fetchone()[0] == 0 and committed.fetchone()[0] >= 6
            finally:
                con.close()

        wait_until(lambda: {(e["sensor_id"], e["event"]) for e in events(sub)} >= {
            ("B-1F-FB1", "cleared"), ("A-1F-WL1", "cleared")}, 10, "alarms after the disk")
        wait_until(drained, 15, "the held changes committed and the outbox drained")
        con = sqlite3.connect(db)
        changes = {(a, s): p.encode("utf-8") for a, s, p in
                   con.execute("SELECT alarm_id, seq, payload FROM changes")}
        con.close()
        got: dict[tuple[str, int], set[bytes]] = defaultdict(set)
        for topic, payload, _ in list(sub.messages):
            if topic.endswith("/events"):
                e = json.loads(payload)
                got[(e["alarm_id"], e["seq"])].add(payload)
        assert set(changes) <= set(got), "a committed change never reached the command center"
        assert set(got) <= set(changes), "an event the store never committed"
        assert all(bodies == {changes[k]} for k, bodies in got.items()), "a duplicate differs"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        text = log_path.read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in text, text[-4000:]
        print(json.dumps({"delivered_on_full_disk_s": round(delivered_in, 3),
                          "store_errors": store_errors, "dropped_points": dropped_points}))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        sub.close()
