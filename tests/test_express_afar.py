"""Express delivery for a courier in a process of its own (``uplink.process: true``): the
committer cannot ask that courier anything before a commit, so the courier reports each idle
spell as it begins, the committer hands the last one back with the rows, and the courier
publishes them only if that spell still lasts; a fire raise is looked up in the outbox and
published at once unless the courier may hold it already.  No change is ever published twice.

The courier's side with a real Mosquitto and a real store (the same parts as test_express);
the daemon's side with a real pipe; the whole with the daemon and its courier process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Subscriber, example_config, wait_until
from parkwatch.alarms.courierproc import SPELL_BITS, CourierProcess
from parkwatch.alarms.senders import WINDOW
from parkwatch.alarms.store import OutboxReader, Pending
from parkwatch.config.delivery import UPLINK
from parkwatch.devtools.localbroker import LocalMosquitto
from test_express import _after_a_marker, _backlog, _record, _rows, make_parts


@pytest.fixture
def parts(broker: LocalMosquitto, tmp_path: Path) -> Iterator[Any]:
    yield from make_parts(broker, tmp_path)


def _stored(path: Path, alarm_id: str, seq: int) -> Pending:
    """The row as the outbox holds it (with its id), as the courier process looks it up."""
    reader = OutboxReader(path, "uplink")
    try:
        row = reader.pending(alarm_id, seq, "command-center")
    finally:
        reader.close()
    assert row is not None
    return row


def _idle_spells(courier: Any) -> list[int]:
    """The idle spells `courier` reports from now on, once it has reported a fresh one."""
    spells: list[int] = []
    courier.on_idle = spells.append
    courier.wake()  # a fresh idle spell, reported as it begins
    wait_until(lambda: courier.idle and spells, 5, "an idle spell reported")
    return spells


def test_the_idle_spell_reported_is_the_mark_that_publishes_at_once(parts, tmp_path):
    store, courier, center, _broker = parts
    spells = _idle_spells(courier)
    records = [_record("al-1", 1, time.time())]
    store.commit(records)
    assert courier.express(_rows(records), spells[-1]) is True
    assert courier.expressed == 1
    wait_until(lambda: center.keys() == [("al-1", 1)], 5, "the event at the command center")
    _after_a_marker(store, courier, center, tmp_path)
    assert center.keys() == [("al-1", 1), ("marker", 1)]


def test_a_spell_that_ended_since_it_was_reported_publishes_nothing(parts, tmp_path):
    """The courier woke after reporting the spell, carried the row itself and fell idle again:
    the rows handed over with the old spell are not published a second time."""
    store, courier, center, _broker = parts
    spells = _idle_spells(courier)
    old = spells[-1]
    records = [_record("al-1", 1, time.time())]
    store.commit(records)
    courier.wake()
    wait_until(lambda: courier.delivered == 1 and courier.idle and spells[-1] > old, 5,
               "the courier done with the row and idle in a new spell")
    assert courier.express(_rows(records), old) is False
    _after_a_marker(store, courier, center, tmp_path)
    assert center.keys() == [("al-1", 1), ("marker", 1)] and courier.expressed == 1


def test_a_fire_raise_the_courier_has_not_read_overtakes_its_backlog_once(parts, tmp_path):
    store, courier, center, broker = parts
    _backlog(store, courier, broker, 200)
    store.commit([_record("fire-1", 1, time.time(), "FB1")])
    assert courier.priority_read([_stored(tmp_path / "alarms.db", "fire-1", 1)], ["FB1"])
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(center.keys()) >= 201, 30, "the backlog and the fire raise")
    _after_a_marker(store, courier, center, tmp_path)
    keys = center.keys()[:-1]
    assert keys.index(("fire-1", 1)) <= WINDOW, keys.index(("fire-1", 1))
    assert sorted(keys) == sorted({*keys}) and len(keys) == 201
    assert courier.health()["prioritised"] == 1


def test_a_fire_raise_behind_the_couriers_cursor_is_left_to_it_and_sent_first(parts, tmp_path):
    """Read by the courier already (it may have it in flight): not published from outside,
    but moved to the front of what the courier has not sent."""
    store, courier, center, broker = parts
    wait_until(lambda: courier.idle, 5, "the courier idle with an empty outbox")
    os.kill(broker.proc.pid, signal.SIGSTOP)
    reads = courier.read_mark()
    store.commit([_record(f"wl-{k}", 1, time.time()) for k in range(100)]
                 + [_record("fire-1", 1, time.time(), "FB1")])
    courier.wake()
    wait_until(lambda: not courier.idle and courier.read_mark() > reads, 5,
               "the courier busy with the backlog and the fire row")
    wait_until(lambda: not courier._reading, 5, "the courier's read done")
    assert not courier.priority_read([_stored(tmp_path / "alarms.db", "fire-1", 1)], ["FB1"])
    courier.wake()
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(center.keys()) >= 101, 30, "the backlog and the fire raise")
    _after_a_marker(store, courier, center, tmp_path)
    keys = center.keys()[:-1]
    assert keys.index(("fire-1", 1)) <= WINDOW, keys.index(("fire-1", 1))
    assert sorted(keys) == sorted({*keys}) and len(keys) == 101
    assert courier.health()["prioritised"] == 0


def test_a_fire_raise_its_commit_published_already_is_not_published_again(parts, tmp_path):
    """The commit's rows went out through the express lane, fire raise included; the fire
    raise named afterwards is left alone (the courier, held here, has not even read it)."""
    store, courier, center, _broker = parts
    spells = _idle_spells(courier)
    courier.stop()  # the courier's thread ends; what it would confirm stays with the lane
    fire = [_record("fire-1", 1, time.time(), "FB1")]
    store.commit(fire)
    assert courier.express(_rows(fire), spells[-1]) is True
    assert courier.priority_read([_stored(tmp_path / "alarms.db", "fire-1", 1)], ["FB1"])
    assert courier.expressed == 1 and courier.prioritised == 0  # published once
    wait_until(lambda: center.keys() == [("fire-1", 1)], 5, "the event at the command center")


def test_a_mark_from_before_the_worker_restarted_only_wakes_the_new_one(broker, tmp_path):
    """Spells count from 0 in every worker: a mark the committer took from a worker that died
    since must never match the next worker's spell of the same number."""
    proc = CourierProcess(example_config(broker, tmp_path), tmp_path / "alarms.db",
                          lambda _m: None)
    mine, theirs = multiprocessing.Pipe()
    proc._conn = mine
    try:
        rows = _rows([_record("al-1", 1, time.time())])
        proc._spell = 3  # spell 3 of worker 0
        proc.express(rows, proc.idle_mark())
        assert theirs.recv()[:3:2] == ("express", 3) and proc.idle_mark() is None
        old = 0 << SPELL_BITS | 4
        proc.restarts = 1  # worker 0 died; worker 1 is in its own spell 4
        proc._spell = 1 << SPELL_BITS | 4
        proc.express(rows, old)
        assert theirs.recv() == ("wake",)
        assert proc.idle_mark() == 1 << SPELL_BITS | 4  # its own spell still stands
    finally:
        mine.close()
        theirs.close()


def test_a_quiet_alarm_is_published_by_the_courier_process_at_once(broker, tmp_path,
                                                                   serial_devices, device):
    """The daemon with its uplink courier in a process: a change committed while that
    courier is idle goes out through the express lane, and arrives once."""
    from parkwatch.daemon.app import Daemon

    d = Daemon(example_config(broker, tmp_path, {("uplink", "process"): True}))
    events = Subscriber(broker, "parkwatch/v1/xinqiao/events")
    d.start()
    try:
        courier = d.couriers[UPLINK]
        assert isinstance(courier, CourierProcess)
        wait_until(lambda: courier.ready.is_set() and courier.idle_mark() is not None, 30,
                   "the courier process connected and idle")
        device.send("A-2F-LC1", {"value": 10_250})
        wait_until(lambda: courier.expressed >= 1 and courier.delivered >= 1, 10,
                   "the change expressed and confirmed")
        device.send("A-3F-FB1", {"event": "press"})
        wait_until(lambda: courier.delivered >= 2, 10, "the fire raise delivered")
        # the cell back to normal last: anything published before its event arrives before it
        device.send("A-2F-LC1", {"value": 1_000})
        got = events.wait_events(lambda ev: any(
            e["sensor_id"] == "A-2F-LC1" and e["event"] == "cleared" for e in ev), 10)
        keys = [(e["alarm_id"], e["seq"]) for e in got]
        assert len(keys) == len(set(keys)) >= 3, keys
        assert {e["sensor_id"] for e in got if e["event"] == "raised"} == {"A-2F-LC1",
                                                                           "A-3F-FB1"}
    finally:
        d.stop()
        events.close()
