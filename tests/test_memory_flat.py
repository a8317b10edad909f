"""Memory that stays flat (issue 22): what alarm churn, the HTTP API's readers and floods of
input leave behind once they are over."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from churn import churning
from parkwatch.alarms.store import AlarmStore
from parkwatch.alarms.views import POOL, StoreReader
from parkwatch.devtools.localbroker import LocalMosquitto


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_readers_on_many_threads_share_a_few_connections(tmp_path: Path) -> None:
    """The HTTP API reads on a thread per request: forty requests at once, then forty more,
    open at most POOL connections, and leave no descriptor behind (SQLite keeps the file of a
    connection closed while another holds a lock open until the last one closes)."""
    store = AlarmStore(tmp_path / "alarms.db")
    reader = StoreReader(store.path)
    baseline = _fds()
    answers: list[tuple[list, dict]] = []
    try:
        for _ in range(2):
            go = threading.Barrier(40)

            def read(go: threading.Barrier) -> None:
                go.wait()
                answers.append((reader.alarms(), reader.outbox_stats(0.0)))

            threads = [threading.Thread(target=read, args=(go,)) for _ in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert answers == [([], {})] * 80
        assert reader.opened <= POOL
        # each open connection holds the database, its log and its index: 3 descriptors
        assert _fds() <= baseline + 3 * POOL
    finally:
        reader.close()
        store.close()
    assert _fds() <= baseline


def test_a_closed_reader_keeps_no_connection(tmp_path: Path) -> None:
    baseline = _fds()
    store = AlarmStore(tmp_path / "alarms.db")
    reader = StoreReader(store.path)
    reader.alarms()
    reader.close()
    assert reader.alarm("nope") is None  # a read after close opens and closes its own
    assert reader.opened == 2
    store.close()
    assert _fds() == baseline


def test_alarm_churn_through_the_api_leaves_no_descriptor_behind(
        broker: LocalMosquitto, tmp_path: Path) -> None:
    """Fire cycles acknowledged through the HTTP API while four clients read the alarms all
    along: after the warm-up, the daemon's descriptors and threads come back to where they
    were."""
    with churning(broker, tmp_path) as churn:
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                statuses.add(churn.http("GET", "/api/alarms")[0])

        for _ in range(10):  # warm-up: every connection of the daemon opened once
            churn.fire_cycle(via_http=True)
        churn.settle()
        fds, threads = _fds(), threading.active_count()
        statuses: set[int] = set()
        pollers = [threading.Thread(target=poll) for _ in range(4)]
        for t in pollers:
            t.start()
        try:
            for _ in range(60):
                churn.fire_cycle(via_http=True)
        finally:
            stop.set()
            for t in pollers:
                t.join()
        churn.settle()
        assert statuses == {200}
        assert threading.active_count() == threads
        assert _fds() <= fds + 3 * POOL, "descriptors left behind by the API's readers"
