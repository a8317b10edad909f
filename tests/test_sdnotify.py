"""The daemon under systemd's eyes: the sd_notify datagrams it sends on a real Unix socket
(READY, STATUS, WATCHDOG, RELOADING, STOPPING), and the watchdog pings stopping when the alarm
path hangs or one of its loops dies, so that systemd restarts it."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import lora_park, wait_until, write_yaml
from parkwatch.daemon.supervisor import Supervisor
from parkwatch.sdnotify import Notifier, watchdog_timeout


class NotifySocket:
    """What systemd listens on: a datagram socket that records every message with its time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode("utf-8").split("\n")))

    def lines(self, key: str) -> list[tuple[float, str]]:
        """(time, value) of every `key=value` line received."""
        return [(t, line.split("=", 1)[1]) for t, msg in list(self.messages) for line in msg
                if line.startswith(f"{key}=")]

    def wait(self, key: str, value: str | None = None, after: float = 0.0,
             timeout: float = 10.0) -> float:
        """When a `key[=value]` line arrived after `after` (monotonic)."""
        found: list[float] = []

        def arrived() -> bool:
            found[:] = [t for t, v in self.lines(key) if t > after and value in (None, v)]
            return bool(found)

        wait_until(arrived, timeout=timeout, what=f"{key}={value or '*'} on the notify socket")
        return found[0]

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(str(tmp_path / "notify.sock"))
    yield s
    s.close()


def test_notifier_speaks_to_path_and_abstract_sockets_and_is_silent_without_one(tmp_path):
    for address in (str(tmp_path / "n.sock"), f"@parkwatch-test-{os.getpid()}"):
        listener = NotifySocket(address)
        try:
            n = Notifier.from_environment({"NOTIFY_SOCKET": address})
            assert n.ready("ok; 0 open alarm(s)") and n.watchdog() and n.stopping()
            listener.wait("STOPPING", "1")
            assert [m for _, m in listener.messages] == [
                ["READY=1", "STATUS=ok; 0 open alarm(s)"], ["WATCHDOG=1"],
                ["STOPPING=1", "STATUS=stopping"]]
            n.close()
        finally:
            listener.close()
    quiet = Notifier.from_environment({})
    assert not quiet.enabled and quiet.notify("READY=1") is False
    gone = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert gone.watchdog() is False  # logged once, never raised


def test_watchdog_timeout_reads_systemds_environment():
    assert watchdog_timeout({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_timeout({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) \
        == 30.0
    assert watchdog_timeout({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_timeout({}) is None
    assert watchdog_timeout({"WATCHDOG_USEC": "soon"}) is None


def test_the_daemon_tells_systemd_ready_watchdog_reloading_and_stopping(tmp_path, broker,
                                                                        notify):
    config = write_yaml(lora_park(tmp_path, broker.port), tmp_path / "park.yaml")
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"}
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "parkwatch", "run", "--config", str(config)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = notify.wait("READY", "1", timeout=20)
        first = notify.messages[0][1]
        assert "READY=1" in first and [x for x in first if x.startswith("STATUS=ok; ")], first
        # the pings come at a quarter of the 0.4 s timeout, and keep coming
        wait_until(lambda: len([t for t, _ in notify.lines("WATCHDOG") if t > ready]) >= 8,
                   what="watchdog pings")
        pings = [t for t, _ in notify.lines("WATCHDOG") if t > ready]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 0.4, gaps  # always inside the timeout

        # a broken config on SIGHUP: reloading, then ready again on the old config
        good = config.read_text(encoding="utf-8")
        config.write_text(good.replace("sensors:", "sensors: [", 1), encoding="utf-8")
        hup = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait("RELOADING", "1", after=hup)
        notify.wait("READY", "1", after=reloading)
        assert any("last reload FAILED" in v for t, v in notify.lines("STATUS") if t > reloading)
        after = time.monotonic()
        notify.wait("WATCHDOG", "1", after=after)  # still alive and well
        assert proc.poll() is None

        config.write_text(good, encoding="utf-8")
        hup = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait("RELOADING", "1", after=hup)
        ready = notify.wait("READY", "1", after=reloading)
        status = [v for t, v in notify.lines("STATUS") if t >= ready]
        assert status and "FAILED" not in status[0]

        term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        notify.wait("STOPPING", "1", after=term)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert "systemd watchdog: 0.4 s" in text
    assert "reload failed, still running on the previous config" in text
    assert "not pinging" not in text


@contextlib.contextmanager
def supervising(daemon: Any, notify: NotifySocket, watchdog_s: float) -> Iterator[Supervisor]:
    sup = Supervisor(daemon, Notifier(notify.address), None, watchdog_s=watchdog_s)
    thread = threading.Thread(target=sup.run, name="supervisor-under-test")
    thread.start()
    try:
        notify.wait("READY", "1")
        yield sup
    finally:
        sup.request_stop()
        thread.join(5)
    assert not thread.is_alive()
    notify.wait("STOPPING", "1")


@pytest.fixture
def supervised(daemon: Any, notify: NotifySocket) -> Iterator[Supervisor]:
    """The in-process daemon under a supervisor with a 0.4 s watchdog: pings every 0.1 s, and
    none once the pipeline made no progress for 0.2 s."""
    with supervising(daemon, notify, 0.4) as sup:
        yield sup


def withheld(sup: Supervisor, caplog: Any, why: str) -> int:
    """Until the supervisor stops pinging for `why`, and has checked three more times without
    a ping (a definite sign, not a pause): its ping count then."""
    wait_until(lambda: "systemd watchdog: not pinging" in caplog.text and why in caplog.text,
               5, "the pings withheld")
    pings, checks = sup.pings, sup.checks
    wait_until(lambda: sup.checks >= checks + 3, 5, "three more watchdog checks")
    assert sup.pings == pings, "a ping while the alarm path was not alive"
    return pings


def test_a_hung_alarm_pipeline_stops_the_watchdog_pings(daemon, notify, supervised, caplog):
    wait_until(lambda: len(notify.lines("WATCHDOG")) >= 3, what="pings while all is well")
    release = threading.Event()
    daemon.inbox.call(lambda: release.wait(10))  # a rule that never returns
    try:
        withheld(supervised, caplog, "the alarm pipeline made no progress")
        last = max(t for t, _ in notify.lines("WATCHDOG"))
        # hung for more than twice systemd's timeout (0.4 s) since the last ping
        wait_until(lambda: time.monotonic() - last > 0.9, 5, "the hang to outlast the timeout")
        assert caplog.text.count("systemd watchdog: not pinging") == 1  # logged once
    finally:
        release.set()
    resumed = notify.wait("WATCHDOG", "1", after=last + 0.9, timeout=3)  # alive: pings resume
    assert "pinging resumed" in caplog.text
    # no ping between the last one before the hang and the first after it
    assert not [t for t, _ in notify.lines("WATCHDOG") if last < t < resumed - 0.001]


def test_a_busy_pipeline_that_makes_progress_is_not_hung(daemon, notify, device, caplog):
    # a flood keeps the pipeline busy batch after batch, but it moves: the pings go on
    stop = threading.Event()

    def flood() -> None:
        k = 0
        while not stop.is_set():
            device.send("A-1F-WL1", {"value": (k % 20) / 10}, wait=False)
            k += 1
            if k % 200 == 0:
                time.sleep(0.01)

    t = threading.Thread(target=flood)
    with supervising(daemon, notify, 2.0):  # pings every 0.5 s
        t.start()
        try:
            start = time.monotonic()
            wait_until(lambda: daemon.engine.stats["evaluated"] > 2000, what="the flood")
            wait_until(lambda: len([x for x, _ in notify.lines("WATCHDOG") if x > start]) >= 5,
                       10, "pings during the flood")
            pings = [x for x, _ in notify.lines("WATCHDOG") if x > start]
            # one ping may come late on a loaded machine; systemd would act only after 2 s
            assert max(b - a for a, b in itertools.pairwise(pings)) < 1.5
        finally:
            stop.set()
            t.join(5)
    assert "not pinging" not in caplog.text


def test_a_dead_delivery_loop_stops_the_watchdog_pings(daemon, notify, supervised, caplog):
    wait_until(lambda: len(notify.lines("WATCHDOG")) >= 2, what="pings while all is well")
    daemon.couriers["journal"].stop()  # as if its thread had died
    withheld(supervised, caplog, "not running: courier journal")


def test_the_status_line_follows_the_daemon(daemon, notify, supervised, device, broker):
    device.send("A-3F-FB1", {"event": "press"})
    wait_until(lambda: any("1 open alarm(s), 1 active" in v for _, v in notify.lines("STATUS")),
               what="the status line to count the fire alarm")
    broker.stop()
    wait_until(lambda: any("uplink DISCONNECTED" in v for _, v in notify.lines("STATUS")),
               what="the status line to say the uplink is down")
    assert any(v.startswith("UNHEALTHY") for _, v in notify.lines("STATUS"))
    broker.start()
    wait_until(lambda: notify.lines("STATUS")[-1][1].startswith("ok; "), timeout=10,
               what="the status line to recover")
