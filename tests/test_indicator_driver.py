"""The weighing-indicator driver against simulated indicators on real pseudo-terminals."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parkwatch.drivers.serial_indicator.driver import IndicatorDriver, unit_factor
from parkwatch.firmware_sim.indicators import SimIndicator
from parkwatch.park import ParkModel
from parkwatch.readings import Quality
from parkwatch.schema import load_config

LOGGER = "parkwatch.drivers.serial_indicator"
SCALE, OFFSET = 2.0, 1.0  # the sensor's calibration: value = raw * 2 + 1

CONFIG = """\
park: {{id: t, name: T}}
gateway: {{id: gw, state_dir: state}}
brokers: {{local: {{host: 127.0.0.1, port: 1883}}}}
uplink: {{broker: local}}
landlord: {{id: ll, name: L}}
buildings:
  - id: A
    floors: [{{id: 2F, rated_load_kn_m2: 4.0, area_m2: 100}}]
drivers:
  - id: scale1
    type: serial_indicator
    port: {port}
    format: {fmt}
    baudrate: 9600
    silence_s: {silence_s}
    reopen_max_s: 1.0
sensors:
  - {{id: A-2F-LC1, kind: load_cell, building: A, floor: 2F, driver: scale1,
     scale: {scale}, offset: {offset}}}
"""


class Inbox:
    """Collects what the driver puts, as the daemon's inbox would, and lets a test wait."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, int, float, float, int]] = []
        self.cond = threading.Condition()

    def put(self, item: Any) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def readings(self, since: int = 0) -> list[tuple[float, int]]:
        with self.cond:
            return [(it[2], it[4]) for it in self.items[since:]]

    def __len__(self) -> int:
        with self.cond:
            return len(self.items)

    def wait(self, pred: Callable[[list[tuple[float, int]]], bool], since: int = 0,
             timeout: float = 5.0, what: str = "") -> list[tuple[float, int]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [(it[2], it[4]) for it in self.items[since:]]
                if pred(got):
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {got[-10:]}")
                self.cond.wait(left)


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Rig:
    def __init__(self, tmp_path: Path, fmt: str, silence_s: float = 2.0) -> None:
        port = tmp_path / "ttyIND0"
        cfg_file = tmp_path / "park.yaml"
        cfg_file.write_text(CONFIG.format(port=port, fmt=fmt, silence_s=silence_s,
                                          scale=SCALE, offset=OFFSET))
        self.cfg = cfg = load_config(cfg_file)
        self.park = ParkModel(cfg)
        self.sim = SimIndicator(port, baudrate=9600, fmt=fmt, period_s=0.03, decimals=1)
        self.inbox = Inbox()
        self.driver = IndicatorDriver(cfg.drivers[0], self.park, self.inbox, cfg)

    def start(self, sim: bool = True) -> Rig:
        if sim:
            self.sim.start()
        self.driver.start()
        return self

    def close(self) -> None:
        self.driver.stop()
        self.sim.stop()

    def shows(self, raw: float, quality: Quality = Quality.GOOD, since: int = 0,
              what: str = "") -> None:
        want = raw * SCALE + OFFSET
        self.inbox.wait(lambda got: (want, quality) in got, since,
                        what=what or f"{want} {quality.name}")


@pytest.fixture(params=["xk3190_a9", "and_line"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, request.param).start()
    yield r
    r.close()


@pytest.fixture
def and_rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, "and_line").start()
    yield r
    r.close()


def test_what_the_driver_queues_names_the_driver_so_a_reload_can_renumber_it(
        and_rig: Rig, tmp_path: Path) -> None:
    """A reload renumbers the readings a replaced driver queued before it stopped, by the
    driver they came from: each item names the driver itself, and the pipeline moves them to
    the new numbering (here: the sensor is gone, so they are dropped and counted)."""
    from parkwatch.alarms.store import AlarmStore
    from parkwatch.daemon.alarmpath import AlarmPath
    from parkwatch.rules.engine import RuleEngine

    and_rig.sim.set_weight(12.0)
    and_rig.shows(12.0)
    items = list(and_rig.inbox.items)
    assert items and all(item[0] is and_rig.driver for item in items)
    cfg, park = and_rig.cfg, and_rig.park
    path = AlarmPath.build(cfg, park, RuleEngine(park), AlarmStore(tmp_path / "a.db"),
                           lambda due: None)
    try:
        path.pipeline.retired = {and_rig.driver: np.full(len(park), -1, np.int64)}
        path.pipeline.process(items)
        assert path.pipeline.dropped_retired == len(items)
    finally:
        path.store.close()


def test_readings_arrive_scaled_with_receipt_time(rig: Rig) -> None:
    rig.sim.set_weight(1234.5)
    t0 = time.time()
    rig.shows(1234.5)
    rig.sim.set_weight(-20.3)
    rig.shows(-20.3)
    item = rig.inbox.items[-1]
    assert item[1] == 0  # the sensor's index
    assert t0 - 1 < item[3] <= time.time()
    # the pipeline decodes what was put; the driver's count follows
    batch = rig.driver.decode(list(rig.inbox.items))
    assert len(batch) == len(rig.inbox.items)
    assert rig.driver.accepted == len(batch)
    h = rig.driver.health()
    assert h["type"] == "serial_indicator" and h["open"] and h["connected"]
    assert h["last_frame_age_s"] is not None and h["last_frame_age_s"] < 1.0


def test_unstable_and_overload_mark_quality(and_rig: Rig) -> None:
    and_rig.sim.set_weight(500.0, "US")
    and_rig.shows(500.0, Quality.UNSTABLE)
    and_rig.sim.set_weight(99999.9, "OL")
    and_rig.shows(99999.9, Quality.OVERLOAD)
    and_rig.sim.set_weight(480.0, "ST", net=True)
    and_rig.shows(480.0, Quality.GOOD)


def test_units_convert_or_are_rejected(and_rig: Rig) -> None:
    and_rig.sim.unit = "t"  # indicator set to tonnes; the sensor's unit is kg
    and_rig.sim.set_weight(1.5)
    and_rig.shows(1500.0)
    and_rig.sim.unit = "lb"
    wait_until(lambda: and_rig.driver.rejections.total["unit_mismatch"] > 0,
               what="unit_mismatch")
    assert and_rig.driver.health()["connected"]  # frames arrive: not a silent indicator
    assert unit_factor("g", "kg") == 0.001 and unit_factor("KG", "kg") == 1.0
    assert unit_factor("lb", "kg") is None


def test_garbage_and_bad_frames_are_counted_and_the_next_frame_read(rig: Rig) -> None:
    rig.sim.set_weight(100.0)
    rig.shows(100.0)
    rej = rig.driver.rejections.total
    rig.sim.inject_garbage(data=b"\xff\x00noise on the line\x7f" * 3)
    wait_until(lambda: rej["garbage"] >= 1, what="garbage counted")
    n = len(rig.inbox)
    rig.shows(100.0, since=n, what="a reading after the junk")
    rig.sim.inject_bad_checksum()
    reason = "bad_checksum" if rig.sim.format.name == "xk3190_a9" else "bad_digits"
    wait_until(lambda: rej[reason] == 1, what=reason)
    n = len(rig.inbox)
    rig.sim.set_weight(101.0)
    rig.shows(101.0, since=n, what="a reading after the bad frame")
    # random junk too (any bytes): readings go on, and none of them is made up
    n = len(rig.inbox)
    for _ in range(5):
        rig.sim.inject_garbage(50)
        time.sleep(0.04)  # between the indicator's frames
    # the second reading after the last junk was sent after it: the junk is read by then
    after = len(rig.inbox)
    rig.inbox.wait(lambda got: len(got) >= 2, after, what="two readings after the junk")
    assert {v for v, _ in rig.inbox.readings(n)} == {101.0 * SCALE + OFFSET}
    assert rig.driver.health()["rejected"] == dict(rej)
    assert rig.driver.rejections.count >= 3


def test_cable_cut_is_comm_fail_logged_once_and_recovers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    r = Rig(tmp_path, "xk3190_a9")
    states: list[bool] = []
    r.driver.state_listeners.append(states.append)
    r.start()
    try:
        r.sim.set_weight(250.0)
        r.shows(250.0)
        n = len(r.inbox)
        r.sim.cut()
        r.inbox.wait(lambda got: any(q == Quality.COMM_FAIL for _, q in got), n,
                     what="comm_fail")
        assert math.isnan(next(v for v, q in r.inbox.readings(n) if q == Quality.COMM_FAIL))
        assert not r.driver.health()["open"]
        # out for several reopen attempts (0.5 s, then 1 s: reopen_max_s), still comm_fail
        # once a second meanwhile
        r.inbox.wait(lambda got: sum(q == Quality.COMM_FAIL for _, q in got) >= 3, n,
                     timeout=10, what="the cable out for several reopen attempts")
        r.sim.restore()
        n = len(r.inbox)
        r.shows(250.0, since=n, what="readings after the cable is back")
        assert r.driver.health()["open"]
        assert r.driver.reopens == 1
        assert states == [True, False, True]  # the gateway status follows the port
    finally:
        r.close()
    text = [rec.getMessage() for rec in caplog.records if rec.name == LOGGER]
    assert len([t for t in text if " lost (" in t]) == 1, text
    assert len([t for t in text if "recovered after" in t]) == 1, text
    lost = next(rec for rec in caplog.records if " lost (" in rec.getMessage())
    assert lost.levelno == logging.WARNING


def test_port_missing_at_start_is_comm_fail_until_it_appears(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    r = Rig(tmp_path, "and_line").start(sim=False)
    try:
        r.inbox.wait(lambda got: sum(q == Quality.COMM_FAIL for _, q in got) >= 2,
                     what="comm_fail, still, a second later")
        r.sim.set_weight(42.0)
        r.sim.start()
        r.shows(42.0)
    finally:
        r.close()
    text = [rec.getMessage() for rec in caplog.records if rec.name == LOGGER]
    assert len([t for t in text if " lost (" in t]) == 1, text
    assert len([t for t in text if "recovered after" in t]) == 1, text


def test_silent_indicator_is_comm_fail_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    r = Rig(tmp_path, "xk3190_a9", silence_s=0.3).start()
    try:
        r.sim.set_weight(10.0)
        r.shows(10.0)
        n = len(r.inbox)
        t0 = time.monotonic()
        r.sim.pause()
        r.inbox.wait(lambda got: sum(q == Quality.COMM_FAIL for _, q in got) >= 2, n,
                     timeout=4, what="comm_fail while silent")
        assert r.driver.health()["open"] and not r.driver.health()["connected"]
        fails = sum(q == Quality.COMM_FAIL for _, q in r.inbox.readings(n))
        assert fails <= 1 + (time.monotonic() - t0)  # at most one a second
        n = len(r.inbox)
        r.sim.resume()
        r.shows(10.0, since=n)
        assert r.driver.health()["connected"]
    finally:
        r.close()
    text = [rec.getMessage() for rec in caplog.records if rec.name == LOGGER]
    assert len([t for t in text if "indicator silent" in t]) == 1, text
    assert len([t for t in text if "talking again" in t]) == 1, text


def test_sample_config_fits_the_example_park(tmp_path: Path) -> None:
    import yaml

    import parkwatch.drivers.serial_indicator as pkg

    sample = yaml.safe_load((Path(pkg.__file__).parent / "sample.yaml").read_text())
    park = yaml.safe_load((Path(__file__).parent.parent / "examples" / "park.yaml").read_text())
    park["drivers"] += sample["drivers"]
    park["sensors"] += sample["sensors"]
    (tmp_path / "park.yaml").write_text(yaml.safe_dump(park, allow_unicode=True))
    cfg = load_config(tmp_path / "park.yaml")
    assert cfg.drivers[-1].type == "serial_indicator"


def test_stop_is_prompt_and_closes_the_port(tmp_path: Path) -> None:
    r = Rig(tmp_path, "xk3190_a9").start()
    r.sim.set_weight(1.0)
    r.shows(1.0)
    t0 = time.monotonic()
    r.driver.stop()
    assert time.monotonic() - t0 < 0.5
    # its reader thread is gone, the only one that reads the port: nothing comes after stop
    assert not any(t.name == "indicator-scale1" for t in threading.enumerate())
    assert not r.driver.health()["open"]
    r.sim.stop()
