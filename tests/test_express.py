"""Express delivery: an idle courier lets the committer publish a change at once, and the order
of a target's changes holds when it cannot.

A real Mosquitto, a real alarm store and the real uplink sender; the broker is frozen with
SIGSTOP to keep a courier busy waiting for a PUBACK.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_until
from parkwatch.alarms.channels.uplink import UplinkSender
from parkwatch.alarms.delivery import READ_AHEAD, Courier
from parkwatch.alarms.records import Delivery, Record
from parkwatch.alarms.senders import WINDOW
from parkwatch.alarms.store import AlarmStore, OutboxReader, Pending
from parkwatch.config.brokers import BrokerConfig
from parkwatch.config.delivery import Backoff
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.mqttlink.link import MqttLink, set_nodelay

EVENTS = "parkwatch/v1/p/events"


class _Topics:
    events = EVENTS

    @staticmethod
    def alarm(alarm_id: str) -> str:
        return f"parkwatch/v1/p/alarms/{alarm_id}"


class _Center:
    """The command center's client: every event payload, in arrival order."""

    def __init__(self, broker: LocalMosquitto) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        c.on_socket_open = lambda _c, _u, s: set_nodelay(s)
        c.on_message = self._on_message
        c.on_subscribe = lambda *_a: subscribed.set()
        c.connect(broker.host, broker.port)
        c.subscribe(EVENTS, qos=1)
        c.loop_start()
        assert subscribed.wait(5)
        self.client = c

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.events.append(json.loads(m.payload))

    def keys(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(e["alarm_id"], e["seq"]) for e in self.events]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _record(alarm_id: str, seq: int, now: float, sensor: str | None = None) -> Record:
    event = {"alarm_id": alarm_id, "seq": seq, "event": "raised" if seq == 1 else "acknowledged"}
    if sensor is not None:
        event["sensor_id"] = sensor
    return Record(alarm_id=alarm_id, source=sensor or "A-1F-FB1", rule="fire_button", seq=seq,
                  event=event["event"], active=True, acknowledged=seq > 1, closed=False,
                  next_due=None, at=now, state={}, payload=json.dumps(event).encode(),
                  deliveries=[Delivery("command-center", "uplink", "fire", now + 3600)],
                  suppressions=[])


def _rows(records: list[Record]) -> list[Pending]:
    return [Pending(-1, r.alarm_id, r.seq, d.subscriber, d.reason, 0, d.expires_at, r.at, r.at,
                    r.payload) for r in records for d in r.deliveries]


@pytest.fixture
def parts(broker: LocalMosquitto, tmp_path: Path) -> Iterator[tuple[AlarmStore, Courier, _Center,
                                                                   LocalMosquitto]]:
    yield from make_parts(broker, tmp_path)


def make_parts(broker: LocalMosquitto, tmp_path: Path) -> Iterator[
        tuple[AlarmStore, Courier, _Center, LocalMosquitto]]:
    """A store, an uplink courier on a real link, the command center's client, the broker."""
    store = AlarmStore(tmp_path / "alarms.db")
    link = MqttLink("uplink", BrokerConfig(host=broker.host, port=broker.port), "gw-uplink")
    link.start()
    assert link.connected.wait(5)
    center = _Center(broker)
    courier = Courier("uplink", UplinkSender(link, _Topics()), tmp_path / "alarms.db",
                      Backoff(initial_s=0.2, max_s=0.5), ready=link.connected)
    courier.start()
    yield store, courier, center, broker
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGCONT)  # never leave a test's broker frozen
    courier.stop()
    center.close()
    link.stop()
    store.close()


def _pending(path: Path) -> int:
    reader = OutboxReader(path, "uplink")
    try:
        return 0 if reader.head() is None else 1
    finally:
        reader.close()


def test_an_idle_courier_has_the_committer_publish_and_only_confirms(parts, tmp_path):
    store, courier, center, _broker = parts
    wait_until(lambda: courier.idle, 5, "the courier idle with an empty outbox")
    records = [_record("al-1", 1, time.time())]
    mark = courier.idle_mark()
    store.commit(records)
    courier.express(_rows(records), mark)
    # published from this thread, before the courier woke: it only waits for the PUBACK
    assert courier.expressed == 1
    wait_until(lambda: center.keys() == [("al-1", 1)], 5, "the event at the command center")
    wait_until(lambda: courier.delivered == 1 and _pending(tmp_path / "alarms.db") == 0, 5,
               "the row marked delivered")
    _after_a_marker(store, courier, center, tmp_path)  # a second copy would come before it
    assert center.keys() == [("al-1", 1), ("marker", 1)]
    assert courier.health()["expressed"] == 2 and courier.failures == 0


def test_a_busy_courier_declines_and_the_order_of_changes_holds(parts, tmp_path):
    store, courier, center, broker = parts
    wait_until(lambda: courier.idle, 5, "the courier idle with an empty outbox")
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)  # the broker takes packets but confirms nothing
    first = [_record("al-1", 1, time.time())]
    mark = courier.idle_mark()
    store.commit(first)
    courier.express(_rows(first), mark)  # published, and the courier now waits for its PUBACK
    wait_until(lambda: not courier.idle, 5, "the courier awake for the first change")
    later = [_record("al-1", 2, time.time()), _record("al-2", 1, time.time())]
    mark = courier.idle_mark()
    assert mark is None
    store.commit(later)
    courier.express(_rows(later), mark)  # busy: declined, the courier carries them after the first
    assert courier.expressed == 1
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(center.keys()) >= 3, 15, "all three changes delivered")
    wait_until(lambda: _pending(tmp_path / "alarms.db") == 0, 5, "the outbox empty")
    keys = center.keys()
    assert keys[:3] == [("al-1", 1), ("al-1", 2), ("al-2", 1)], keys
    assert set(keys) == {("al-1", 1), ("al-1", 2), ("al-2", 1)}  # a repeat only as the same
    assert courier.expressed == 1


def test_rows_the_courier_carried_itself_before_the_dispatch_are_not_published_again(
        parts, tmp_path):
    """The cause of duplicates in a storm: the courier, idle when the committer asked, woke
    between the commit and the dispatch, read the new row from the outbox, delivered it and fell
    idle again; handed the same row to publish, it must decline."""
    store, courier, center, _broker = parts
    wait_until(lambda: courier.idle, 5, "the courier idle with an empty outbox")
    records = [_record("al-1", 1, time.time())]
    mark = courier.idle_mark()
    assert mark is not None
    store.commit(records)
    courier.wake()  # woken for any reason: it reads the outbox and carries the row itself
    wait_until(lambda: courier.delivered == 1 and courier.idle, 5,
               "the courier done with the row and idle again")
    courier.express(_rows(records), mark)  # the dispatch that came late
    assert courier.expressed == 0
    # a later change arrives after anything published before it: once it is there, a second
    # copy of the first would have arrived too
    later = [_record("al-2", 1, time.time())]
    mark = courier.idle_mark()
    store.commit(later)
    courier.express(_rows(later), mark)
    wait_until(lambda: center.keys()[-1:] == [("al-2", 1)], 5, "the later change")
    assert center.keys() == [("al-1", 1), ("al-2", 1)]


def _backlog(store: AlarmStore, courier: Courier, broker: LocalMosquitto, n: int) -> None:
    """A storm's backlog: the broker frozen, the courier waiting for the PUBACKs of its window
    with `n` older changes queued behind it."""
    wait_until(lambda: courier.idle, 5, "the courier idle with an empty outbox")
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    store.commit([_record(f"wl-{k}", 1, time.time()) for k in range(n)])
    courier.wake()
    wait_until(lambda: not courier.idle and courier.read_mark() > 0, 5,
               "the courier busy with the backlog")


def test_a_fire_raise_overtakes_a_busy_couriers_backlog_once(parts, tmp_path):
    """Fire first to the command center: a fire alarm's first change, committed while the
    courier works through a backlog, is published at once, ahead of the backlog it has not
    sent yet, and still only once."""
    store, courier, center, broker = parts
    _backlog(store, courier, broker, 200)
    fire = [_record("fire-1", 1, time.time())]
    reads = courier.read_mark()
    store.commit(fire)
    assert courier.express(_rows(fire), courier.idle_mark()) is False  # busy
    assert courier.priority(_rows(fire), reads) is True
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(center.keys()) >= 201, 30, "the backlog and the fire raise")
    _after_a_marker(store, courier, center, tmp_path)
    keys = center.keys()[:-1]
    # behind at most the window the courier had in flight, ahead of the rest of the backlog
    assert keys.index(("fire-1", 1)) <= WINDOW, keys.index(("fire-1", 1))
    assert sorted(keys) == sorted({*keys}) and len(keys) == 201  # each exactly once
    assert courier.health()["prioritised"] == 1


def test_a_fire_raise_the_courier_has_read_already_is_left_to_it_and_sent_first(
        parts, tmp_path):
    """The courier read the outbox after the commit began: it may hold the fire row already,
    so the committer must not publish it too.  The courier sends it next, ahead of the
    backlog it has read and the backlog it has not (beyond its read-ahead)."""
    store, courier, center, broker = parts
    _backlog(store, courier, broker, 2 * READ_AHEAD + 10)
    fire = [_record("fire-1", 1, time.time())]
    reads = courier.read_mark()
    store.commit(fire)
    courier._begin_read()  # the courier began a read of the outbox since
    assert courier.priority(_rows(fire), reads) is False
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(center.keys()) >= 2 * READ_AHEAD + 11, 60,
               "the backlog and the fire raise")
    _after_a_marker(store, courier, center, tmp_path)
    keys = center.keys()[:-1]
    # behind at most the window the courier had in flight
    assert keys.index(("fire-1", 1)) <= WINDOW, keys.index(("fire-1", 1))
    assert sorted(keys) == sorted({*keys}) and len(keys) == 2 * READ_AHEAD + 11
    assert courier.health()["prioritised"] == 0


def test_a_fire_raise_committed_while_the_courier_is_in_the_middle_of_a_read_is_left_to_it(
        parts, tmp_path):
    """The courier had begun a read before the commit: its query may start after the commit and
    find the fire row (the store fixes what a read sees when the query starts), so the committer
    must not publish the row too (a fire raise arrived twice in one CI run of test_replay)."""
    store, courier, center, broker = parts
    _backlog(store, courier, broker, 10)
    courier._begin_read()  # a read begun, its query not yet run
    reads = courier.read_mark()
    fire = [_record("fire-1", 1, time.time())]
    store.commit(fire)
    assert courier.priority(_rows(fire), reads) is False
    courier._end_read()
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: center.keys().count(("fire-1", 1)) > 0, 30, "the fire raise, by the courier")
    _after_a_marker(store, courier, center, tmp_path)
    assert center.keys().count(("fire-1", 1)) == 1 and courier.health()["prioritised"] == 0


def test_a_fire_raise_in_the_couriers_read_ahead_moves_to_its_front(parts, tmp_path):
    """Committed with a backlog the courier then read: named by the committer, the fire raise
    goes out after the window in flight, not after the 100 changes read before it; the others
    keep their order."""
    store, courier, center, broker = parts
    wait_until(lambda: courier.idle, 5, "the courier idle with an empty outbox")
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    reads = courier.read_mark()
    backlog = [_record(f"wl-{k}", 1, time.time()) for k in range(100)]
    fire = [_record("fire-1", 1, time.time())]
    store.commit(backlog + fire)
    courier.wake()
    wait_until(lambda: not courier.idle and courier.read_mark() > reads, 5,
               "the courier busy with the backlog and the fire row")
    assert courier.priority(_rows(fire), reads) is False  # it has read since: its to send
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(center.keys()) >= 101, 30, "the backlog and the fire raise")
    _after_a_marker(store, courier, center, tmp_path)
    keys = center.keys()[:-1]
    assert keys.index(("fire-1", 1)) <= WINDOW, keys.index(("fire-1", 1))
    others = [k for k in keys if k != ("fire-1", 1)]
    assert others == [(f"wl-{k}", 1) for k in range(100)]


def test_a_fire_raise_left_to_the_courier_stays_behind_its_own_sensors_rows(parts, tmp_path):
    """A button reset just before it was pressed again: the first alarm's acknowledgement,
    in the courier's backlog read or unread, goes out before the new alarm's raise."""
    store, courier, center, broker = parts
    wait_until(lambda: courier.idle, 5, "the courier idle with an empty outbox")
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    reads = courier.read_mark()
    read = [_record(f"wl-{k}", 1, time.time(), "WL1") for k in range(60)]
    read[40] = _record("fb1-a", 2, time.time(), "FB1")  # read by the courier, in its queue
    store.commit(read)
    courier.wake()
    wait_until(lambda: not courier.idle and courier.read_mark() > reads, 5,
               "the courier busy with what it read")
    unread = [_record(f"wl-{k}", 1, time.time(), "WL1") for k in range(60, 120)]
    unread[30] = _record("fb2-a", 2, time.time(), "FB2")  # after its cursor, still unread
    store.commit(unread)
    fire = [_record("fb1-b", 1, time.time(), "FB1"), _record("fb2-b", 1, time.time(), "FB2"),
            _record("fb3-a", 1, time.time(), "FB3")]
    store.commit(fire)
    courier._begin_read()
    assert courier.priority(_rows(fire), reads, ["FB1", "FB2", "FB3"]) is False
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(center.keys()) >= 123, 30, "every change")
    _after_a_marker(store, courier, center, tmp_path)
    keys = center.keys()[:-1]
    at = {k: keys.index(k) for k in (("fb1-a", 2), ("fb1-b", 1), ("fb2-a", 2), ("fb2-b", 1),
                                     ("fb3-a", 1))}
    assert at[("fb3-a", 1)] <= WINDOW + 1, at  # nothing of FB3 ahead: straight after the window
    assert at[("fb1-a", 2)] < at[("fb1-b", 1)] < 60, at  # behind FB1's row, ahead of the rest
    assert at[("fb2-a", 2)] < at[("fb2-b", 1)], at  # FB2's row unread: it keeps its turn
    assert sorted(keys) == sorted({*keys}) and len(keys) == 123


def test_a_fire_raise_is_not_published_past_a_waiting_row_of_its_sensor(parts, tmp_path):
    """The commit stage's own publish of a fire raise: not while a change of the same button
    (its first alarm, reset just before the press) still waits in the courier's backlog; the
    courier then sends it, after that change and ahead of the rest."""
    from parkwatch.alarms.dispatch import Dispatcher

    store, courier, center, broker = parts
    dispatcher = Dispatcher()
    dispatcher.couriers = {"uplink": courier}
    wait_until(lambda: courier.idle, 5, "the courier idle with an empty outbox")
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    backlog = [_record(f"wl-{k}", 1, time.time(), "WL1") for k in range(80)]
    backlog[50] = _record("fb1-a", 2, time.time(), "FB1")
    store.commit(backlog)
    courier.wake()
    wait_until(lambda: not courier.idle and courier.read_mark() > 0, 5,
               "the courier busy with the backlog")
    fire = [_record("fb1-b", 1, time.time(), "FB1"), _record("fb2-a", 1, time.time(), "FB2")]
    for r in fire:
        r.doc = {"rule": "button_latch", "sensor_kind": "fire_button"}
    ticket = dispatcher.prepare()
    store.commit(fire[:1])
    dispatcher.dispatch(fire[:1], ticket, lambda target, r: store.sensor_waits(
        target, r.source, r.alarm_id, r.seq))
    assert courier.health()["prioritised"] == 0  # FB1's change waits: left to the courier
    ticket = dispatcher.prepare()
    store.commit(fire[1:])
    dispatcher.dispatch(fire[1:], ticket, lambda target, r: store.sensor_waits(
        target, r.source, r.alarm_id, r.seq))
    assert courier.health()["prioritised"] == 1  # nothing of FB2 waits: published at once
    os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: len(center.keys()) >= 82, 30, "every change")
    _after_a_marker(store, courier, center, tmp_path)
    keys = center.keys()[:-1]
    assert keys.index(("fb2-a", 1)) <= WINDOW, keys
    assert keys.index(("fb1-a", 2)) < keys.index(("fb1-b", 1)) <= 52, keys
    assert sorted(keys) == sorted({*keys}) and len(keys) == 82


def _after_a_marker(store: AlarmStore, courier: Courier, center: _Center, path: Path) -> None:
    """Once the outbox is empty, one more change through the idle courier: anything published
    before it (a second copy, say) has arrived once it has."""
    wait_until(lambda: _pending(path / "alarms.db") == 0, 10, "the outbox empty")
    wait_until(lambda: courier.idle, 5, "the courier idle")
    marker = [_record("marker", 1, time.time())]
    mark = courier.idle_mark()
    store.commit(marker)
    courier.express(_rows(marker), mark)
    wait_until(lambda: center.keys()[-1:] == [("marker", 1)], 10, "the marker")
