"""Fire first through the commit stage: a fire alarm's first change is written ahead of the
changes queued before it, in a transaction of its own; every other change keeps its order, and
what waits for a submission to be on disk still waits for all of it.

A real alarm store on disk and the real committer thread; the order of commits is read back
from the outbox, whose ids grow in commit order."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from conftest import wait_until
from parkwatch.alarms.commit import Committer
from parkwatch.alarms.dispatch import Dispatcher
from parkwatch.alarms.records import Delivery, Record
from parkwatch.alarms.store import AlarmStore

AT = 1_765_000_000.0


def _record(alarm_id: str, seq: int, kind: str, source: str | None = None,
            event: str | None = None) -> Record:
    event = event or ("raised" if seq == 1 else "acknowledged")
    rule = "button_latch" if kind == "fire_button" else "high_threshold"
    doc = {"alarm_id": alarm_id, "seq": seq, "event": event, "rule": rule, "sensor_kind": kind}
    return Record(alarm_id=alarm_id, source=source or f"S-{alarm_id}", rule=rule, seq=seq,
                  event=event, active=True, acknowledged=seq > 1, closed=False, next_due=None,
                  at=AT + seq, state={}, payload=json.dumps(doc).encode(),
                  deliveries=[Delivery("command-center", "uplink", "all", AT + 3600)],
                  suppressions=[], doc=doc)


def _outbox_order(store: AlarmStore) -> list[tuple[str, int]]:
    return [(a, s) for a, s in store.db.execute("SELECT alarm_id, seq FROM outbox ORDER BY id")]


def test_a_fire_raise_is_committed_ahead_of_the_changes_queued_before_it(tmp_path: Path) -> None:
    store = AlarmStore(tmp_path / "alarms.db")
    dispatched: list[list[tuple[str, int]]] = []

    class Recording(Dispatcher):
        def dispatch(self, records, ticket=None, waits=None):  # type: ignore[no-untyped-def]
            dispatched.append([(r.alarm_id, r.seq) for r in records])

    committer = Committer(store, Recording())
    committer.start()
    entered, go = threading.Event(), threading.Event()

    def hold() -> None:  # the committer busy with a group while more is submitted
        entered.set()
        go.wait(30)

    settled: list[list[tuple[str, int]]] = []
    try:
        committer.chore(hold)
        assert entered.wait(10)
        committer.submit([_record("wl-1", 1, "water_level"), _record("wl-2", 1, "water_level")])
        # a batch holding both a water alarm and a fire press: only the fire raise goes first,
        # and what waits for this submission waits for all of it
        committer.submit([_record("wl-3", 1, "water_level"), _record("fb-1", 1, "fire_button")],
                         after=lambda: settled.append(_outbox_order(store)))
        # a later change of a fire alarm is no raise: it keeps its place
        committer.submit([_record("fb-0", 2, "fire_button")])
        go.set()
        assert committer.flush(30)
        assert committer.durable(committer.submitted, 5)
    finally:
        go.set()
        committer.stop(10)
        store.close()
    store = AlarmStore(tmp_path / "alarms.db")
    try:
        assert _outbox_order(store) == [("fb-1", 1), ("wl-1", 1), ("wl-2", 1), ("wl-3", 1),
                                        ("fb-0", 2)]
    finally:
        store.close()
    # written and handed on first, in a transaction of its own; then the rest as one group
    assert dispatched == [[("fb-1", 1)], [("wl-1", 1), ("wl-2", 1), ("wl-3", 1), ("fb-0", 2)]]
    assert committer.groups == 2 and committer.committed == 5
    # the submission's `after` ran once its water change was on disk too
    assert len(settled) == 1 and ("wl-3", 1) in settled[0]


def test_a_fire_raise_never_overtakes_a_change_of_its_own_sensor(tmp_path: Path) -> None:
    """A button reset and pressed again: its first alarm's clear, queued or handed over in the
    same batch, stays ahead of the new alarm's raise; a press on another button overtakes."""
    store = AlarmStore(tmp_path / "alarms.db")
    committer = Committer(store, Dispatcher())
    committer.start()
    entered, go = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        go.wait(30)

    try:
        committer.chore(hold)
        assert entered.wait(10)
        committer.submit([_record("wl-1", 1, "water_level"),
                          _record("fb1-a", 2, "fire_button", "FB1", "cleared")])
        committer.submit([_record("fb1-b", 1, "fire_button", "FB1")])  # FB1's clear is queued
        # one batch: FB2 pressed, reset and pressed again, and a press on FB3
        committer.submit([_record("fb2-a", 1, "fire_button", "FB2"),
                          _record("fb2-a", 2, "fire_button", "FB2", "cleared"),
                          _record("fb2-b", 1, "fire_button", "FB2"),
                          _record("fb3-a", 1, "fire_button", "FB3")])
        go.set()
        assert committer.flush(30)
        assert _outbox_order(store) == [
            ("fb2-a", 1), ("fb3-a", 1),  # ahead: nothing of their sensors before them
            ("wl-1", 1), ("fb1-a", 2), ("fb1-b", 1), ("fb2-a", 2), ("fb2-b", 1)]
    finally:
        go.set()
        committer.stop(10)
        store.close()


def test_commits_go_on_while_the_log_is_folded_beside_them(tmp_path: Path, monkeypatch) -> None:
    """A fold (its copy and fsync of the database file) never holds up a commit: a fire
    press must not wait for it."""
    from parkwatch.alarms import store as store_module

    store = AlarmStore(tmp_path / "alarms.db")
    folding, release = threading.Event(), threading.Event()
    real = store.checkpoint

    def slow_checkpoint(db) -> None:  # type: ignore[no-untyped-def]
        folding.set()
        release.wait(30)
        real(db)

    monkeypatch.setattr(store, "checkpoint", slow_checkpoint)
    committer = Committer(store, Dispatcher())
    committer.start()
    try:
        for k in range(store_module.FOLD_EVERY):  # the last of these makes a fold due
            committer.submit([_record(f"wl-{k}", 1, "water_level")])
            assert committer.flush(10)
        assert folding.wait(10)  # the folder is in the middle of its fold ...
        committer.submit([_record("fb-9", 1, "fire_button")])
        assert committer.flush(10)  # ... and the fire raise is committed all the same
        assert ("fb-9", 1) in _outbox_order(store) and store.folds == 0
        assert committer.alive
        release.set()
        wait_until(lambda: store.folds == 1, 10, "the fold, once released")
    finally:
        release.set()
        committer.stop(10)
        store.close()
