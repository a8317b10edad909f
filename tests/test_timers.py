"""The daemon's timers: periodic jobs keep their rhythm, a one-shot job runs once at its wall
time (or at once when late), can be moved or cancelled, and a failing job neither stops the
thread nor loses its schedule."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from conftest import wait_until
from parkwatch.daemon.timers import Timers


@pytest.fixture
def timers():
    t = Timers("test-timers")
    t.start()
    yield t
    t.stop()


class _Runs:
    def __init__(self) -> None:
        self.at: list[float] = []
        self.event = threading.Event()

    def __call__(self) -> None:
        self.at.append(time.monotonic())
        self.event.set()


def test_a_periodic_job_runs_every_interval_from_when_it_was_added(timers):
    runs = _Runs()
    t0 = time.monotonic()
    timers.every("tick", 0.1, runs)
    wait_until(lambda: len(runs.at) >= 5, what="five runs")
    # never early: the k-th run is k intervals after the job was added (a loaded machine may
    # run it later, never sooner), the first one interval away, not at once
    assert all(at - t0 >= 0.1 * (k + 1) - 0.001 for k, at in enumerate(runs.at[:5])), (
        [round(at - t0, 3) for at in runs.at])


def test_a_job_that_falls_behind_runs_once_not_in_a_burst(timers):
    runs = _Runs()

    def slow() -> None:
        runs()
        if len(runs.at) == 1:
            time.sleep(0.35)  # three and a half intervals missed

    timers.every("slow", 0.1, slow)
    wait_until(lambda: len(runs.at) >= 4, what="four runs")
    gaps = [b - a for a, b in zip(runs.at, runs.at[1:], strict=False)]
    assert min(gaps) > 0.04, gaps  # the missed runs were not made up back to back


def test_a_one_shot_job_runs_once_at_its_wall_time(timers):
    runs = _Runs()
    due = time.time() + 0.2
    timers.at("escalation", due, runs)
    assert runs.event.wait(2)
    ran_at = time.time() - (time.monotonic() - runs.at[0])
    assert ran_at >= due - 0.01
    assert ran_at - due < 1.0  # at its time, not at some later tick (generous: a busy machine)
    assert "escalation" not in timers.pending()  # done with: it cannot run again
    assert len(runs.at) == 1


def test_a_one_shot_job_already_due_runs_at_once(timers):
    runs = _Runs()
    t0 = time.monotonic()
    timers.at("late", time.time() - 3600, runs)
    assert runs.event.wait(2)
    assert runs.at[0] - t0 < 0.1


def test_a_one_shot_job_moved_or_cancelled_runs_only_as_last_set(timers):
    first, second = _Runs(), _Runs()
    timers.at("escalation", time.time() + 0.15, first)
    timers.at("escalation", time.time() + 0.3, second)  # the same name: replaces it
    assert second.event.wait(2)
    assert first.at == []
    cancelled = _Runs()
    timers.at("escalation", time.time() + 0.1, cancelled)
    timers.at("escalation", None)
    assert timers.pending() == {}
    # a job due after the cancelled one's time: the timer thread runs jobs in the order they
    # fall due, so once this one ran, the cancelled one would have run before it
    after = _Runs()
    timers.at("marker", time.time() + 0.2, after)
    assert after.event.wait(2)
    assert cancelled.at == []


def test_a_failing_job_is_logged_and_keeps_its_schedule(timers, caplog):
    runs = _Runs()

    def broken() -> None:
        runs()
        raise RuntimeError("inbox closed")

    with caplog.at_level(logging.ERROR, logger="parkwatch.daemon.timers"):
        timers.every("status", 0.05, broken)
        wait_until(lambda: len(runs.at) >= 3, what="runs after failing")  # it ran again
    assert timers.running
    failed = [r for r in caplog.records if "timer status" in r.getMessage()]
    assert failed and "inbox closed" in str(failed[0].exc_info[1])


def test_pending_lists_each_job_as_a_wall_time(timers):
    timers.every("checkpoint", 30, lambda: None)
    due = time.time() + 600
    timers.at("escalation", due, lambda: None)
    pending = timers.pending()
    assert abs(pending["checkpoint"] - (time.time() + 30)) < 0.5
    assert pending["escalation"] == due


def test_stop_ends_the_thread_and_no_job_runs_after_it():
    t = Timers("stop-test")
    runs = _Runs()
    t.every("tick", 0.05, runs)
    t.start()
    assert runs.event.wait(2)
    t.stop(1.0)
    assert not t.running  # its only thread has ended: no job runs after stop
    assert not any(th.name == "stop-test" for th in threading.enumerate())


def test_an_interval_must_be_positive():
    with pytest.raises(ValueError, match="timer tick: interval must be > 0 s"):
        Timers().every("tick", 0, lambda: None)
