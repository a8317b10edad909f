"""An MQTT driver in a worker process of its own (``process: true``): the same readings, alarms,
fire-first lane and acknowledgements after the commit as in the daemon, a worker that dies is
started again without losing a QoS 1 message, and a daemon that dies takes its worker along.

The example park's daemon, in-process (its ``lora`` driver in a real child process) or as a
``parkwatch run`` subprocess, on a real Mosquitto."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    Device,
    Subscriber,
    example_config,
    lora_park,
    process_alive,
    wait_until,
    write_yaml,
)

EVENTS = "parkwatch/v1/xinqiao/events"
BUTTON = "A-3F-FB1"


@pytest.fixture
def pdaemon(broker: Any, tmp_path: Path, serial_devices: Any) -> Iterator[Any]:
    from parkwatch.daemon.app import Daemon

    cfg = example_config(broker, tmp_path, {("drivers", 0, "process"): True})
    d = Daemon(cfg)
    d.start()
    lora = _lora(d)
    wait_until(lambda: lora.link.connected.is_set(), timeout=30,
               what="the worker process to subscribe")
    yield d
    d.stop()
    assert not process_alive(lora.pid)  # stopping the daemon stops its worker


def _lora(d: Any) -> Any:
    return next(drv for drv in d.drivers if drv.id == "lora")


def _of(events: list[dict[str, Any]], sensor: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["sensor_id"] == sensor and e["event"] == kind]


def test_readings_and_presses_raise_alarms_through_the_worker(pdaemon, subscriber, device):
    lora = _lora(pdaemon)
    assert lora.pid != os.getpid() and process_alive(lora.pid)
    device.send("A-2F-LC1", {"value": 10_250})
    device.send(BUTTON, {"event": "press"})
    events = subscriber.wait_events(lambda ev: _of(ev, BUTTON, "raised")
                                    and _of(ev, "A-2F-LC1", "raised"))
    (load,) = _of(events, "A-2F-LC1", "raised")
    assert (load["value"], load["unit"], load["severity"]) == (10_250, "kg", "critical")
    device.send("A-2F-LC1", b"{not json")  # logged by the worker, counted by the daemon
    wait_until(lambda: lora.health()["rejected"].get("malformed_json", 0) == 1,
               what="the worker's rejection to be counted")
    health = lora.health()
    assert health["connected"] and health["accepted"] == 2 and health["process"] == lora.pid


def _hold(d: Any) -> threading.Event:
    """Hold the pipeline until the returned gate opens."""
    gate, held = threading.Event(), threading.Event()

    def wait() -> None:
        held.set()
        gate.wait(60)

    d.inbox.call(wait)
    assert held.wait(5)
    return gate


def test_a_killed_worker_is_restarted_and_an_unsettled_press_comes_again(pdaemon, subscriber,
                                                                          device, caplog):
    """The worker acknowledges a QoS 1 press only once the daemon has committed what it
    caused: a worker killed before that gets it again from the broker's session."""
    lora = _lora(pdaemon)
    gate = _hold(pdaemon)
    try:
        device.send(BUTTON, {"event": "press"})
        wait_until(lambda: pdaemon.inbox.urgent.qsize() == 1,
                   what="the press in the daemon's urgent lane")
        first = lora.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not lora.link.connected.is_set(), what="the driver to count as down")
        wait_until(lambda: lora.pid != first and lora.link.connected.is_set(), timeout=30,
                   what="a new worker to subscribe")
        # not acknowledged by the dead worker: the broker sends the press to the new one
        wait_until(lambda: pdaemon.inbox.urgent.qsize() == 2, timeout=10,
                   what="the unacknowledged press to be delivered again")
    finally:
        gate.set()
    events = subscriber.wait_events(lambda ev: _of(ev, BUTTON, "raised"))
    assert len(_of(events, BUTTON, "raised")) == 1  # the latch: one press, one alarm
    assert lora.restarts == 1
    assert any("worker process ended" in r.getMessage() for r in caplog.records)
    # and the new worker settles: the next press is acknowledged (none left to redeliver)
    device.send("A-2F-LC1", {"value": 10_250})
    subscriber.wait_events(lambda ev: _of(ev, "A-2F-LC1", "raised"))
    assert lora.health()["connected"]


def test_the_worker_ends_with_a_killed_daemon(broker, tmp_path):
    data = lora_park(tmp_path, broker.port)
    data["drivers"][0]["process"] = True
    cfg = write_yaml(data, tmp_path / "park.yaml")
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "parkwatch", "run", "--config", str(cfg)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        def workers() -> list[int]:
            """The daemon's children that run a worker (not multiprocessing's own helper)."""
            return [int(p) for p in os.listdir("/proc") if p.isdigit() and
                    _ppid(int(p)) == proc.pid and b"spawn_main" in _cmdline(int(p))]

        wait_until(lambda: bool(workers()), timeout=30, what="the daemon's worker process")
        (worker,) = workers()
        wait_until(lambda: b"subscribed to" in (tmp_path / "daemon.log").read_bytes(),
                   timeout=30, what="the worker to subscribe")
        sub, dev = Subscriber(broker, EVENTS), Device(broker)
        try:
            dev.send(BUTTON, {"event": "press"})
            sub.wait_events(lambda ev: _of(ev, BUTTON, "raised"), timeout=30)
        finally:
            dev.close()
            sub.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not process_alive(worker), timeout=10,
                   what="the orphaned worker to notice and end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return -1


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_a_batch_crosses_the_pipe_as_it_was_sent(n: int) -> None:
    """The worker's batch frame: every column, bit for bit (NaN batteries, the urgent flag and
    the ack id too), in arrays the daemon may write to; a pickled message is not a frame."""
    import pickle

    import numpy as np

    from parkwatch.drivers.mqtt import wire
    from parkwatch.readings import ReadingBatch

    rng = np.random.default_rng(n)
    battery = np.where(rng.random(n) < 0.5, rng.uniform(0, 100, n), np.nan)
    sent = ReadingBatch(rng.integers(0, 20_000, n).astype(np.int32), rng.normal(0, 1e4, n),
                        1.7e9 + rng.random(n), rng.integers(0, 7, n).astype(np.uint8), battery)
    for urgent, ack in ((True, None), (False, 7), (False, 2**40)):
        got_urgent, got, got_ack = wire.decode(wire.encode(urgent, sent, ack)) or (None, None,
                                                                                 None)
        assert (got_urgent, got_ack) == (urgent, ack)
        assert got is not None and len(got) == n
        for col in ("sensor", "value", "ts", "quality", "battery"):
            a, b = getattr(sent, col), getattr(got, col)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), col
        got.value[:] = 0.0  # the daemon's own arrays, not views of a read-only buffer
    assert wire.decode(pickle.dumps(("state", True), protocol=5)) is None
    with pytest.raises(ValueError):
        wire.decode(wire.encode(False, sent, None) + b"x")
    with pytest.raises(ValueError):  # cut short inside its header
        wire.decode(wire.encode(False, sent, None)[:5])
