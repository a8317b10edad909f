"""The alarm store's write-ahead log stays near 1 MiB under alarm churn and never grows much
past 4 MiB (docs/alarms.md, "The store"): a fold that leaves more than 1 MiB in the log starts
it over when no one uses it, past 4 MiB it waits for its readers to, and the commit that starts
it over cuts the file back to 1 MiB."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from churn import churning
from parkwatch.alarms import fold as fold_module
from parkwatch.alarms.fold import WAL_CAP, Folder
from parkwatch.alarms.records import Delivery, Record
from parkwatch.alarms.store import WAL_LIMIT, AlarmStore, connect
from parkwatch.devtools.localbroker import LocalMosquitto

AT = 1_763_800_000.0


def _big(k: int, size: int = 64_000) -> Record:
    """A change with a payload of `size` bytes: a few of them fill the log fast."""
    doc = {"alarm_id": f"A{k:05d}", "seq": 1, "event": "raised", "pad": "x" * size}
    return Record(alarm_id=f"A{k:05d}", source=f"S-{k}", rule="high_threshold", seq=1,
                  event="raised", active=True, acknowledged=False, closed=False, next_due=None,
                  at=AT + k, state={}, payload=json.dumps(doc).encode(),
                  deliveries=[Delivery("command-center", "uplink", "all", AT + 3600)],
                  suppressions=[], doc=doc)


def _wal(store: AlarmStore) -> int:
    return os.path.getsize(f"{store.path}-wal")


def _store(path: Path) -> AlarmStore:
    """A store whose log only the folder folds, as in the daemon (Folder.start)."""
    store = AlarmStore(path)
    store.db.execute("PRAGMA wal_autocheckpoint=0")
    return store


def _fill(store: AlarmStore, bytes_: int) -> int:
    """Commits until the log holds `bytes_`; the next record's number."""
    k = 0
    while _wal(store) < bytes_:
        store.commit([_big(k)])
        k += 1
        assert k < 1000
    return k


def test_a_log_past_1_mib_starts_over_at_the_fold_and_its_file_is_cut_back(
        tmp_path: Path) -> None:
    store = _store(tmp_path / "alarms.db")
    folder = Folder(store)
    db = connect(store.path)
    db.execute("PRAGMA busy_timeout=0")
    try:
        k = _fill(store, 2 * WAL_LIMIT)
        folder.fold(db)
        assert store.folds == 1 and store.restarts == 1
        store.commit([_big(k)])  # writes from the log's start, and cuts the file
        assert _wal(store) <= WAL_LIMIT
    finally:
        db.close()
        store.close()


def test_a_fold_under_1_mib_does_not_ask_for_a_restart(tmp_path: Path) -> None:
    store = _store(tmp_path / "alarms.db")
    db = connect(store.path)
    try:
        _fill(store, WAL_LIMIT // 2)
        Folder(store).fold(db)
        assert store.folds == 1 and store.restarts == 0
    finally:
        db.close()
        store.close()


def _reading(path: Path, hold_s: float, started: threading.Event) -> threading.Thread:
    """A reader of the log that keeps its read open for `hold_s`."""
    def read() -> None:
        r = sqlite3.connect(path, isolation_level=None)
        try:
            r.execute("BEGIN")
            r.execute("SELECT count(*) FROM changes").fetchall()
            started.set()
            time.sleep(hold_s)
            r.execute("COMMIT")
        finally:
            r.close()

    t = threading.Thread(target=read)
    t.start()
    return t


def test_past_the_cap_a_fold_waits_for_the_logs_readers_and_starts_it_over(
        tmp_path: Path) -> None:
    store = _store(tmp_path / "alarms.db")
    db = connect(store.path)
    db.execute("PRAGMA busy_timeout=0")
    started = threading.Event()
    try:
        _fill(store, WAL_CAP + WAL_LIMIT)
        reader = _reading(store.path, 0.05, started)  # reads what is in the log
        assert started.wait(5)
        t = time.monotonic()
        Folder(store).fold(db)
        waited = time.monotonic() - t
        reader.join(5)
        assert store.restarts == 1 and waited >= 0.03  # it waited for the reader
    finally:
        db.close()
        store.close()


def test_a_reader_that_outlasts_the_wait_costs_a_restart_not_a_commit(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fold_module, "CAP_WAIT_MS", 20)
    store = _store(tmp_path / "alarms.db")
    db = connect(store.path)
    db.execute("PRAGMA busy_timeout=0")
    started = threading.Event()
    try:
        k = _fill(store, WAL_CAP + WAL_LIMIT)
        reader = _reading(store.path, 1.0, started)
        assert started.wait(5)
        Folder(store).fold(db)  # gives up after 20 ms: the next fold tries again
        assert store.folds == 1 and store.restarts == 0
        store.commit([_big(k)])  # the writer is free again at once
        reader.join(5)
    finally:
        db.close()
        store.close()


def test_under_alarm_churn_the_log_stays_within_its_bound(
        broker: LocalMosquitto, tmp_path: Path) -> None:
    """Fire cycles back to back (press, reset, acknowledgement: about ten commits each, with
    the couriers reading every change), the log's file watched all along."""
    wal = tmp_path / "state" / "alarms.db-wal"
    largest = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                largest[0] = max(largest[0], wal.stat().st_size)
            stop.wait(0.002)

    watcher = threading.Thread(target=watch)
    with churning(broker, tmp_path) as churn:
        watcher.start()
        try:
            for _ in range(250):
                churn.fire_cycle()
            churn.settle()
        finally:
            stop.set()
            watcher.join()
        store = churn.daemon.store
        assert store.folds >= 50
    # before: 10 to 26 MB here (the log started over only by luck); 1 to 2.5 MB now
    assert largest[0] <= WAL_CAP + WAL_LIMIT, f"{largest[0] / 2**20:.1f} MiB"
