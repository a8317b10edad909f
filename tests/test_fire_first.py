"""Fire first on MQTT: a button press is evaluated before the readings queued ahead of it, and
no sensor's readings are ever reordered.

The example park's daemon in-process on a real Mosquitto; its pipeline is held on a gate while
a backlog of load-cell readings builds up behind it, so the order in which it then evaluates
them is deterministic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from conftest import EXAMPLE, Device, Subscriber, wait_until
from parkwatch.readings import ReadingBatch

BACKLOG = 5_000
LOAD_CELLS = ("A-2F-LC1", "A-2F-LC2", "A-3F-LC1", "B-2F-LC1")
BUTTON = "A-3F-FB1"


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Opened by the test; at the latest when it ends, so the pipeline is never left held."""
    g = threading.Event()
    yield g
    g.set()


def _hold(daemon: Any, gate: threading.Event) -> list[list[int]]:
    """Hold the pipeline on `gate`; returns the sensors of each batch it evaluates from then
    on, in order."""
    held = threading.Event()

    def wait() -> None:
        held.set()
        gate.wait(30)

    daemon.inbox.call(wait)
    assert held.wait(5)
    batches: list[list[int]] = []
    on_batch = daemon.pipeline.on_batch

    def record(batch: ReadingBatch) -> None:
        batches.append(batch.sensor.tolist())
        if on_batch is not None:
            on_batch(batch)

    daemon.pipeline.on_batch = record
    return batches


def _queued(daemon: Any, ordinary: int, urgent: int) -> bool:
    return (daemon.inbox.queue.qsize() >= ordinary
            and daemon.inbox.urgent.qsize() >= urgent)


def test_a_press_behind_a_backlog_of_readings_is_evaluated_first(
        daemon: Any, device: Device, subscriber: Subscriber, gate: threading.Event) -> None:
    batches = _hold(daemon, gate)
    lora = daemon.drivers[0]
    before = lora.accepted
    infos = [device.publish(f"devices/{LOAD_CELLS[k % 4]}/up", b'{"value": %d}' % (k % 500))
             for k in range(BACKLOG)]
    infos.append(device.publish(f"devices/{BUTTON}/up", b'{"event": "press"}'))
    for info in infos:
        info.wait_for_publish(10)
    # all of it waits in the inbox: the readings in the queue, the press in its lane (with its
    # wake-up mark in the queue behind the readings)
    wait_until(lambda: _queued(daemon, BACKLOG + 1, 1), 10, "the backlog in the inbox")
    gate.set()
    wait_until(lambda: sum(len(b) for b in batches) >= BACKLOG + 1, 30,
               "every message evaluated")
    assert lora.accepted - before == BACKLOG + 1
    button = daemon.park.index[BUTTON]
    assert batches[0] == [button], batches[0][:10]
    raised = subscriber.wait_events(
        lambda ev: any(e["sensor_id"] == BUTTON and e["event"] == "raised" for e in ev))
    assert [e["sensor_id"] for e in raised] == [BUTTON]


def test_one_sensors_readings_keep_their_order_in_either_lane(
        daemon: Any, device: Device, subscriber: Subscriber, gate: threading.Event) -> None:
    """A button pressed, reset and pressed again, and a load cell crossing its limit and back
    twice, all inside a backlog: each raises and clears in the order sent."""
    _hold(daemon, gate)
    lora = daemon.drivers[0]
    before = lora.accepted
    cell = "B-2F-LC1"
    steps = [(BUTTON, b'{"event": "press"}'), (cell, b'{"value": 9000}'),
             (BUTTON, b'{"event": "reset"}'), (cell, b'{"value": 100}'),
             (BUTTON, b'{"event": "press"}'), (cell, b'{"value": 9100}'),
             (cell, b'{"value": 50}')]
    infos = []
    sent = 0
    for sensor, payload in steps:
        for k in range(1_000):  # a stretch of other readings between the steps
            infos.append(device.publish(f"devices/{LOAD_CELLS[k % 3]}/up",
                                        b'{"value": %d}' % (k % 400)))
        infos.append(device.publish(f"devices/{sensor}/up", payload))
        sent += 1_001
    for info in infos:
        info.wait_for_publish(10)
    wait_until(lambda: _queued(daemon, sent, 3), 10, "the backlog in the inbox")
    gate.set()
    wait_until(lambda: lora.accepted - before == sent, 30, "every message evaluated")
    events = subscriber.wait_events(lambda ev: len(
        [e for e in ev if e["sensor_id"] in (BUTTON, cell)]) >= 7)
    by_sensor = {s: [(e["event"], e["severity"]) for e in events if e["sensor_id"] == s]
                 for s in (BUTTON, cell)}
    assert [e for e, _ in by_sensor[BUTTON]] == ["raised", "cleared", "raised"]
    assert by_sensor[cell] == [("raised", "warning"), ("cleared", "warning"),
                               ("raised", "warning"), ("cleared", "warning")]


class _Readings:
    """An inbox source whose items carry their readings ready-made: (source, batch)."""

    @staticmethod
    def decode(group: list[Any]) -> ReadingBatch:
        return ReadingBatch.concat([item[1] for item in group])


def _pipeline(tmp_path: Any, monkeypatch: Any) -> Any:
    """The example park's engine, alarm service and pipeline (not started: the test drives
    it), a storm's changes routed two at a time."""
    import time

    from parkwatch.alarms import chunks
    from parkwatch.alarms.service import AlarmService
    from parkwatch.alarms.store import AlarmStore
    from parkwatch.daemon.pipeline import Inbox, Pipeline
    from parkwatch.park import ParkModel
    from parkwatch.rules.engine import RuleEngine
    from parkwatch.schema import load_config

    monkeypatch.setattr(chunks, "ROUTE_CHUNK", 2)
    cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp_path)})
    park = ParkModel(cfg)
    engine = RuleEngine(park, start=time.time())
    service = AlarmService(cfg, park, engine, AlarmStore(tmp_path / "alarms.db"))
    service.restore(set())
    return Pipeline(Inbox(), engine, service)


def _reading(pipeline: Any, sensor: str, value: float, later: float = 0.0
             ) -> tuple[Any, ReadingBatch]:
    """One good reading of `sensor`, taken now (or `later` s from now)."""
    import time

    return (_Readings, ReadingBatch.from_columns([pipeline.alarms.park.index[sensor]], [value],
                                                 [time.time() + later], [0]))


def _committed(pipeline: Any) -> list[tuple[str, str]]:
    """(sensor or floor, event) of every change committed, in commit order."""
    rows = pipeline.alarms.store.db.execute("SELECT payload FROM changes ORDER BY rowid")
    events = [json.loads(r[0]) for r in rows]
    return [(e["sensor_id"] or e["floor"], e["event"]) for e in events]


def _press_when_first_chunk_is_handed_on(pipeline: Any, item: Any, monkeypatch: Any) -> None:
    committer = pipeline.alarms.committer
    submit = committer.submit

    def first(records: list[Any]) -> None:
        monkeypatch.setattr(committer, "submit", submit)
        submit(records)
        pipeline.inbox.put_urgent(item)  # pressed while the rest of the storm is routed

    monkeypatch.setattr(committer, "submit", first)


def test_a_press_during_a_storms_batch_goes_ahead_of_its_remaining_changes(
        tmp_path: Any, monkeypatch: Any) -> None:
    """A fire press that arrives while a storm's batch is being routed is evaluated and
    committed between two chunks of it, not after all of them."""
    p = _pipeline(tmp_path, monkeypatch)
    cells = [s for s in p.alarms.park.idents() if "-LC" in s][:6]
    _press_when_first_chunk_is_handed_on(p, _reading(p, BUTTON, 1.0, later=1.0), monkeypatch)
    p.process([_reading(p, c, 1e9) for c in cells])
    order = _committed(p)
    assert order[2] == (BUTTON, "raised"), order
    assert {s for s, _ in order[:2]} <= set(cells)
    assert set(cells) <= {s for s, _ in order}


def test_a_press_whose_sensor_changes_later_in_the_batch_waits_for_the_batch(
        tmp_path: Any, monkeypatch: Any) -> None:
    """Urgent input taken between chunks whose sensor still has changes in the chunks to
    come waits until the batch is done: one sensor's changes never change order."""
    p = _pipeline(tmp_path, monkeypatch)
    cells = [s for s in p.alarms.park.idents() if "-LC" in s][:6]
    last = cells[-1]
    _press_when_first_chunk_is_handed_on(p, _reading(p, last, 0.0, later=1.0), monkeypatch)
    p._ordinary([_reading(p, c, 1e9) for c in cells])  # as the pipeline's loop hands it on
    order = _committed(p)
    assert [e for s, e in order if s == last] == ["raised", "cleared"]
    assert order[-1] == (last, "cleared")
    assert not p._early


def test_urgent_input_behind_input_set_aside_waits_behind_it(tmp_path: Any,
                                                             monkeypatch: Any) -> None:
    """Two readings of one sensor taken between chunks: the first is set aside (its sensor
    changes later in the batch); the second, taken when nothing of that sensor is left in the
    batch, still comes after the first, not before it."""
    from parkwatch.rules.registry import RULE_NAMES
    from parkwatch.rules.transitions import Transitions

    p = _pipeline(tmp_path, monkeypatch)
    cell = next(s for s in p.alarms.park.idents() if "-LC" in s)
    idx = p.alarms.park.index[cell]

    def rest(sensor: int) -> list[Transitions]:
        return [Transitions.build(np.array([sensor]), RULE_NAMES.index("high_threshold"),
                                  np.array([0]), np.array([0]), np.array([0.0]),
                                  np.array([0.0]), np.array([0.0]))]

    p.inbox.put_urgent(_reading(p, cell, 1e9, later=1.0))  # raises
    p._urgent_between(rest(idx))  # its sensor changes in the chunks to come: set aside
    p.inbox.put_urgent(_reading(p, cell, 0.0, later=2.0))  # clears
    p._urgent_between(rest(idx + 1))  # nothing of its sensor to come, but behind the first
    assert len(p._early) == 2 and not _committed(p)
    p._set_aside()
    assert [e for s, e in _committed(p) if s == cell] == ["raised", "cleared"]


def test_urgent_input_that_cannot_be_decoded_between_chunks_is_counted_and_settled(
        tmp_path: Any, monkeypatch: Any) -> None:
    """A press that cannot be decoded, taken between chunks, does not stop the batch in
    hand; it is counted as an error and acknowledged as a failed batch is (a redelivery
    would fail again)."""
    from parkwatch.rules.transitions import Transitions

    p = _pipeline(tmp_path, monkeypatch)
    settled: list[Any] = []

    class Garbled:
        @staticmethod
        def decode(group: list[Any]) -> ReadingBatch:
            raise ValueError("garbled frame")

        @staticmethod
        def settle(group: list[Any]) -> None:
            settled.extend(group)

    item = (Garbled, b"\x00")
    p.inbox.put_urgent(item)
    p._urgent_between([Transitions.empty()])
    assert p.errors == 1 and settled == [item] and not p._early
