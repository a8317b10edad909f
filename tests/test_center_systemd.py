"""The command center under systemd's eyes (Type=notify): READY=1 once its console answers,
a status line, watchdog pings while its ingest runs, STOPPING=1 on SIGTERM; a real Unix
datagram socket stands in for systemd."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import REPO, wait_until
from parkwatch.devtools.localbroker import LocalMosquitto
from test_center_ingest import center_yaml
from test_sdnotify import NotifySocket


def test_the_center_says_ready_keeps_a_status_and_feeds_the_watchdog(
        broker: LocalMosquitto, tmp_path: Path) -> None:
    cfg = center_yaml(tmp_path / "center.yaml", broker, f"sqlite:///{tmp_path / 'c.db'}", "sd")
    log = tmp_path / "center.log"
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "1500000"}
    env.pop("WATCHDOG_PID", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "parkwatch", "center", "--config",
                                 str(cfg)], env=env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        ready = notify.wait("READY", "1", timeout=60)
        # ready means serving: the console (on the free port it took) answers at once
        url = re.search(r"console at (http://\S+)", log.read_text(encoding="utf-8"))
        assert url is not None, log.read_text(encoding="utf-8")
        with urllib.request.urlopen(url.group(1).rstrip("/") + "/login", timeout=10) as r:
            assert r.status == 200
        first = notify.wait("WATCHDOG", "1", after=ready, timeout=30)
        notify.wait("WATCHDOG", "1", after=first, timeout=30)
        wait_until(lambda: any(v.startswith("ok: ") for _t, v in notify.lines("STATUS")),
                   timeout=30, what="an ok status line once the broker is connected")
        proc.send_signal(signal.SIGTERM)
        stopping = notify.wait("STOPPING", "1", timeout=30)
        assert proc.wait(30) == 0
        assert stopping > ready
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()

