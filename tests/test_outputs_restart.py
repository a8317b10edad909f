"""After a SIGKILL during a fire, the restarted daemon re-asserts the sounders the open alarm
demands within a second of telling systemd it is ready (a real subprocess, real ptys)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import REPO, wait_until
from parkwatch.firmware_sim.devices import SimulatedPark
from parkwatch.schema import load_config
from test_daemon_process import write_config
from test_sdnotify import NotifySocket

#: building A's relay-module outputs in the example park: (id, coil on slave 9 of rs485-a)
COILS = {"A-SND-1F": 0, "A-SND-3F": 1, "A-STB-1F": 2, "A-PA": 3}


def _start(cfg: Path, notify: NotifySocket, log: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": notify.address}
    return subprocess.Popen([sys.executable, "-m", "parkwatch", "run", "--config", str(cfg)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def test_a_sigkill_during_a_fire_then_restart_sounds_again_within_a_second_of_ready(
        broker: Any, tmp_path: Path, device: Any) -> None:
    cfg_path = write_config(tmp_path, broker.port)
    fleet = SimulatedPark(load_config(cfg_path), mqtt=False)
    fleet.start()
    relay = fleet.buses["rs485-a"].slaves[9]
    switched: list[tuple[float, int, int]] = []  # (monotonic, coil, value) as the relay saw
    relay.on_write = lambda table, reg, value: switched.append((time.monotonic(), reg, value))
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    log = (tmp_path / "daemon.log").open("wb")
    proc = _start(cfg_path, notify, log)
    try:
        notify.wait("READY", "1", timeout=30)
        device.send("A-3F-FB1", {"event": "press"})
        wait_until(lambda: all(fleet.output_on(o) for o in COILS), timeout=15,
                   what="building A's relays on")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # the power cut that killed the gateway dropped the relays too, and its USB serial
        # adapters come back as new devices (a pty with parity cannot be configured twice)
        for coil in COILS.values():
            relay.set_bit(f"9/co{coil}", False)
        for port in ("rs485-a", "rs485-b", "scale-a3"):
            fleet.cut(port)
            fleet.restore(port)
        assert not any(fleet.output_on(o) for o in COILS)
        killed = time.monotonic()
        proc = _start(cfg_path, notify, log)
        ready = notify.wait("READY", "1", after=killed, timeout=30)
        wait_until(lambda: all(fleet.output_on(o) for o in COILS), timeout=15,
                   what="the relays re-asserted")
        again = [t for t, reg, value in switched if t > killed and value == 1]
        assert len(again) >= len(COILS)
        assert max(again[:len(COILS)]) - ready <= 1.0, (ready, again)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        notify.close()
        fleet.stop()
        log.close()
    text = (tmp_path / "daemon.log").read_bytes().decode("utf-8", "replace")
    assert "outputs re-asserted for the open alarms" in text
