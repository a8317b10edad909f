"""Memory that stays flat (issue 22): what alarm churn, the HTTP API's readers and floods of
input leave behind once they are over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from churn import churning
from conftest import wait_until
from parkwatch.alarms.store import AlarmStore
from parkwatch.alarms.views import POOL, StoreReader
from parkwatch.daemon.memory import TRIM_EVERY_S, trim_heap
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
        # the API's thread of the last request ends just after its answer
        wait_until(lambda: threading.active_count() <= threads, 5, "the API's threads ended")
        assert _fds() <= fds + 3 * POOL, "descriptors left behind by the API's readers"


TRIM_PROBE = """
import json
from parkwatch.daemon.memory import one_malloc_arena, resident, trim_heap
one_malloc_arena()
def burst():  # 30 MB of 1 KiB blocks (from malloc's heap, past pymalloc); one in 50 outlives it
    blocks = [bytearray(1024) for _ in range(30000)]
    return blocks[::50]
kept = burst()
before = resident()
first = trim_heap()
again = trim_heap()  # nothing new since: not walked again
kept += burst()
after_another = trim_heap()
print(json.dumps({"before": before, "first": first, "again": again,
                  "another": after_another, "after": resident()}))
"""


def test_the_holes_a_burst_leaves_in_the_heap_go_back_to_the_system() -> None:
    """A burst (a flood of junk queued faster than it is rejected, a storm of alarm changes)
    frees its blocks, but glibc keeps the pages between the ones still in use: 25 MB here,
    resident for good before the daemon trimmed its heap."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True,
                         timeout=60, env=env, check=True)
    got = json.loads(out.stdout)
    assert got["first"] > 20 << 20 and got["again"] == 0 and got["another"] > 20 << 20
    assert got["after"] < got["before"] - (20 << 20)


def test_the_daemon_trims_its_heap_every_so_often(broker: LocalMosquitto, tmp_path: Path) -> None:
    with churning(broker, tmp_path) as churn:
        interval, _due, job = churn.daemon.timers._every["trim"]
        assert interval == TRIM_EVERY_S <= 60 and job is trim_heap


def test_scrapes_at_once_leave_no_descriptor_behind(broker: LocalMosquitto,
                                                    tmp_path: Path) -> None:
    """/metrics reads the outbox on one connection kept for every scrape (each scrape opened
    and closed one: a descriptor stayed open for every scrape that overlapped another)."""
    with churning(broker, tmp_path) as churn:
        churn.fire_cycle()
        assert churn.http_text("/metrics")[0] == 200
        fds = _fds()
        statuses: list[int] = []

        def scrape(go: threading.Barrier) -> None:
            go.wait()
            statuses.append(churn.http_text("/metrics")[0])

        for _ in range(2):
            go = threading.Barrier(20)
            threads = [threading.Thread(target=scrape, args=(go,)) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert statuses == [200] * 40
        wait_until(lambda: _fds() <= fds + 2, 5, "the scrapes' descriptors closed")
