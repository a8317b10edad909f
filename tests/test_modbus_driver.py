"""The Modbus RTU driver against simulated slaves on a real pty with real line timing."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Subscriber, wait_until
from parkwatch.drivers.modbus_rtu.driver import ModbusRtuDriver
from parkwatch.firmware_sim.modbus_wiring import build_bus_from_config
from parkwatch.park import ParkModel
from parkwatch.readings import Quality
from parkwatch.schema import load_config

HEAD = """
park: {{id: bench, name: 试验园区}}
gateway: {{id: gw-bench, state_dir: state, status_interval_s: 5}}
brokers: {{local: {{host: 127.0.0.1, port: {port}}}}}
uplink: {{broker: local}}
landlord: {{id: l, name: 业主}}
buildings: [{{id: A, floors: [{{id: 1F, rated_load_kn_m2: 4.0, area_m2: 500}}]}}]
tenants: [{{id: t1, name: 租户一, occupies: [{{building: A, floor: 1F}}]}}]
rules: {{load_cell: {{high_warning: 8000, high_critical: 10000, deadband: 100}}}}
drivers:
  - id: bus
    type: modbus_rtu
    port: {tty}
    baudrate: {baud}
    parity: E
    poll_interval_s: {interval}
    di_interval_s: {di_interval}
    timeout_s: {timeout}
    retries: 0
    quarantine_after: 2
    reprobe_s: 0.5
    backoff_max_s: 1.0
    comm_fault_after_s: {comm_fault}
    reopen_max_s: 0.5
sensors:
"""


def write_config(tmp_path: Path, n_cells: int, *, di: bool = False, baud: int = 9600,
                 interval: float = 0.5, di_interval: float = 0.2, timeout: float = 0.1,
                 comm_fault: float = 30, port: int = 1883) -> Path:
    text = HEAD.format(tty=tmp_path / "ttyRS485", baud=baud, interval=interval,
                       di_interval=di_interval, timeout=timeout, comm_fault=comm_fault,
                       port=port)
    for i in range(1, n_cells + 1):
        text += (f"  - {{id: LC{i:02d}, kind: load_cell, building: A, floor: 1F, driver: bus, "
                 f"address: '{i}/hr0:int32:cdab', scale: 0.1}}\n")
    if di:
        text += ("  - {id: FB1, kind: fire_button, building: A, floor: 1F, driver: bus, "
                 "address: '100/di0'}\n")
    path = tmp_path / "park.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Collect:
    """An inbox that keeps what the driver hands over, with arrival times."""

    def __init__(self) -> None:
        self.items: list[tuple] = []
        self.sources: list[Any] = []  # who each item names as the one that decodes it

    def put(self, item: tuple) -> None:
        self.items.append((time.monotonic(), *item[1:]))
        self.sources.append(item[0])

    def good_times(self, sensor: int) -> list[float]:
        return [t for t, s, _, _, q in self.items if s == sensor and q == Quality.GOOD]


def test_live_slaves_keep_their_schedule_while_a_dead_one_is_quarantined(tmp_path):
    cfg = load_config(write_config(tmp_path, 10, interval=0.25, timeout=0.1))
    park = ParkModel(cfg)
    bus = build_bus_from_config(cfg.drivers[0], cfg).start()
    bus.slaves[7].alive = False  # a slave that has lost power
    inbox = Collect()
    drv = ModbusRtuDriver(cfg.drivers[0], park, inbox, cfg)
    drv.start()
    live = [park.index[f"LC{i:02d}"] for i in range(1, 11) if i != 7]
    try:
        wait_until(lambda: drv.health()["slaves"][7]["quarantined"], timeout=30,
                   what="the dead slave quarantined")
        # counted in polls, not seconds, so that a busy machine cannot fail it: once the dead
        # slave is quarantined, every live slave keeps being polled, all of them alike
        start = {s: len(inbox.good_times(s)) for s in live}
        dead_before = bus.stats.per_slave.get(7, 0)
        wait_until(lambda: min(len(inbox.good_times(s)) - start[s] for s in live) >= 12,
                   timeout=60, what="12 more polls of every live slave")
        polls = [len(inbox.good_times(s)) - start[s] for s in live]
        dead_requests = bus.stats.per_slave.get(7, 0) - dead_before
        assert max(polls) - min(polls) <= 2, polls  # no live slave skipped for the dead one
        # the dead slave costs the bus only its re-probes (every 1 s at most, against a live
        # slave's poll every 0.25 s): not one per round
        assert dead_requests <= 2 + max(polls) // 3, (dead_requests, polls)
        assert any(q == Quality.COMM_FAIL for _, s, _, _, q in inbox.items
                   if s == park.index["LC07"])
        # it recovers by itself when it answers again
        bus.slaves[7].alive = True
        bus.set_sensor("LC07", 1234.5)
        wait_until(lambda: not drv.health()["slaves"][7]["quarantined"], timeout=30)
        wait_until(lambda: any(v == 1234.5 and q == Quality.GOOD for _, s, v, _, q in inbox.items
                               if s == park.index["LC07"]), timeout=30)
        assert bus.t35_violations == 0
    finally:
        drv.stop()
        bus.stop()


def test_fire_button_on_a_busy_9600_baud_bus_alarms_within_one_di_interval(tmp_path, broker):
    """30 load-cell slaves keep the bus ~80% busy; the DI lane still gets the press through:
    the first DI poll after the press reads it, and it comes after at most the bulk reads that
    fit into one DI interval, not after a round of all 30 cells.  Counted in the bus's own
    transactions, not in seconds, so that a busy machine cannot fail it."""
    from parkwatch.daemon.app import Daemon

    di_interval = 0.2
    cfg = load_config(write_config(tmp_path, 30, di=True, interval=1.0, di_interval=di_interval,
                                   timeout=0.1, port=broker.port))
    bus = build_bus_from_config(cfg.drivers[0], cfg).start()
    # every request the slaves answer, in the order they answer it: (address, DI bit or None)
    answered: list[tuple[int, bool | None]] = []
    for address, slave in bus.slaves.items():
        def record(request, address=address, respond=slave.respond):  # type: ignore[no-untyped-def]
            response = respond(request)
            bits = getattr(response, "bits", None) if address == 100 else None
            answered.append((address, bool(bits[0]) if bits else None))
            return response
        slave.respond = record  # type: ignore[method-assign]
    sub = Subscriber(broker)
    daemon = Daemon(cfg, tmp_path / "state")
    daemon.start()
    line = cfg.drivers[0]
    # the longest transaction on this bus: a 2-register read, 8 + 9 characters, plus t3.5 twice
    longest = 17 * 11 / line.baudrate + 2 * line.t35
    # the bulk reads one DI interval holds, one more already on the wire when it falls due,
    # and one for the press landing just as a DI poll went out
    bound = math.ceil(di_interval / longest) + 2
    waits = []
    try:
        wait_until(lambda: sum(1 for a, _ in answered if a != 100) >= 40, timeout=30,
                   what="the bulk schedule in its steady state")
        for k in range(5):
            later = len(answered) + 3 + 5 * k
            wait_until(lambda later=later: len(answered) >= later, timeout=30,
                       what="presses at varied moments of the DI cycle")
            mark = len(answered)
            bus.set_sensor("FB1", True)
            events = sub.wait_events(lambda ev, k=k: len(
                [e for e in ev if e["sensor_id"] == "FB1" and e["event"] == "raised"]) > k)
            after = answered[mark:]
            seen = next(i for i, (a, bit) in enumerate(after) if a == 100 and bit)
            waits.append((sum(1 for a, _ in after[:seen] if a != 100),
                          sum(1 for a, _ in after[:seen] if a == 100)))
            bus.set_sensor("FB1", False)
            sub.wait_events(lambda ev, k=k: len(
                [e for e in ev if e["sensor_id"] == "FB1" and e["event"] == "cleared"]) > k)
        raised = [e for e in events if e["event"] == "raised"]
        assert all(e["severity"] == "critical" and e["tenants"] == ["t1"] for e in raised)
        # (bulk reads, DI polls that read no press yet) between each press and the DI poll
        # that read it
        assert all(bulk <= bound and di <= 1 for bulk, di in waits), (waits, bound)
        stats = bus.stats
        assert stats.t35_violations == 0
        assert all(stats.per_slave.get(i, 0) >= 2 for i in range(1, 31)), "bulk polls starved"
    finally:
        daemon.stop()
        sub.close()
        bus.stop()


def test_pulled_port_recovers_by_itself_with_a_comm_fault_alarm_and_one_log_line_each(
        tmp_path, broker, caplog):
    from parkwatch.daemon.app import Daemon

    caplog.set_level(logging.INFO, logger="parkwatch")
    cfg = load_config(write_config(tmp_path, 3, di=True, interval=0.2, comm_fault=1.0,
                                   port=broker.port))
    bus = build_bus_from_config(cfg.drivers[0], cfg).start()
    sub = Subscriber(broker)
    daemon = Daemon(cfg, tmp_path / "state")
    daemon.start()
    try:
        wait_until(lambda: daemon.drivers[0].accepted > 10, timeout=5)
        bus.cut()
        events = sub.wait_events(lambda ev: {e["sensor_id"] for e in ev
                                             if e["rule"] == "comm_fault"} ==
                                 {"LC01", "LC02", "LC03", "FB1"}, timeout=6)
        fault = next(e for e in events if e["rule"] == "comm_fault")
        assert fault["event"] == "raised" and fault["severity"] == "warning"
        assert fault["unit"] == "s" and fault["threshold"] == 1.0
        # the port stays away for two failed attempts to reopen it: still only one
        # 'unavailable' line
        wait_until(lambda: daemon.drivers[0].health()["failed_reopens"] >= 2, timeout=10,
                   what="two failed attempts to reopen the port")
        bus.restore()
        sub.wait_events(lambda ev: len([e for e in ev if e["rule"] == "comm_fault"
                                        and e["event"] == "cleared"]) == 4, timeout=6)
        lost = [r for r in caplog.records if "port unavailable" in r.getMessage()]
        back = [r for r in caplog.records if "port is back" in r.getMessage()]
        assert len(lost) == 1 and len(back) == 1, [r.getMessage() for r in caplog.records]
        # the floor's sum was unknown while its cells were unreachable: a data alarm, no load one
        floor = [(e["event"], e["floor"]) for e in sub.wait_events(lambda ev: any(
            e["rule"] == "floor_data" and e["event"] == "cleared" for e in ev))
            if e["rule"] == "floor_data"]
        assert floor[0][0] == "raised" and floor[-1][0] == "cleared", floor
        assert {e["rule"] for e in sub.events()} == {"comm_fault", "floor_data"}
    finally:
        daemon.stop()
        sub.close()
        bus.stop()


@pytest.mark.parametrize("baud", [9600, 115200])
def test_values_arrive_decoded_and_scaled(tmp_path, baud):
    cfg = load_config(write_config(tmp_path, 2, di=True, baud=baud, interval=0.05))
    park = ParkModel(cfg)
    bus = build_bus_from_config(cfg.drivers[0], cfg).start()
    bus.set_sensor("LC01", -42.3)
    bus.set_sensor("LC02", 98765.4)
    bus.set_sensor("FB1", True)
    inbox = Collect()
    drv = ModbusRtuDriver(cfg.drivers[0], park, inbox, cfg)
    drv.start()
    try:
        def latest(sensor: str) -> float | None:
            vals = [v for _, s, v, _, q in inbox.items if s == park.index[sensor]
                    and q == Quality.GOOD]
            return vals[-1] if vals else None

        wait_until(lambda: None not in (latest("LC01"), latest("LC02"), latest("FB1")))
        assert latest("LC01") == pytest.approx(-42.3)
        assert latest("LC02") == pytest.approx(98765.4)
        assert latest("FB1") == 1.0
        # each item names the driver, by which a reload renumbers what it queued
        assert inbox.sources and all(src is drv for src in inbox.sources)
    finally:
        drv.stop()
        bus.stop()
