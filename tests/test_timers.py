"""The daemon's timers: periodic jobs keep their rhythm, a one-shot job runs once at its wall
time (or at once when late), can be moved or cancelled, and a failing job neither stops the
thread nor loses its schedule."""

from __future__ import annotations

import logging
import threading
import time

import pytest

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
    time.sleep(0.55)
    assert 4 <= len(runs.at) <= 6, runs.at
    assert runs.at[0] - t0 >= 0.099  # not at once: the first run is one interval away
    gaps = [b - a for a, b in zip(runs.at, runs.at[1:], strict=False)]
    assert all(0.05 < g < 0.2 for g in gaps), gaps


def test_a_job_that_falls_behind_runs_once_not_in_a_burst(timers):
    runs = _Runs()

    def slow() -> None:
        runs()
        if len(runs.at) == 1:
            time.sleep(0.35)  # three and a half intervals missed

    timers.every("slow", 0.1, slow)
    time.sleep(0.75)
    gaps = [b - a for a, b in zip(runs.at, runs.at[1:], strict=False)]
    assert gaps and min(gaps) > 0.04, gaps  # the missed runs were not made up back to back
    assert 3 <= len(runs.at) <= 5, runs.at


def test_a_one_shot_job_runs_once_at_its_wall_time(timers):
    runs = _Runs()
    due = time.time() + 0.2
    timers.at("escalation", due, runs)
    assert runs.event.wait(2)
    ran_at = time.time() - (time.monotonic() - runs.at[0])
    assert ran_at >= due - 0.01
    assert ran_at - due < 0.15
    time.sleep(0.3)
    assert len(runs.at) == 1
    assert "escalation" not in timers.pending()


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
    time.sleep(0.3)
    assert cancelled.at == []
    assert timers.pending() == {}


def test_a_failing_job_is_logged_and_keeps_its_schedule(timers, caplog):
    runs = _Runs()

    def broken() -> None:
        runs()
        raise RuntimeError("inbox closed")

    with caplog.at_level(logging.ERROR, logger="parkwatch.daemon.timers"):
        timers.every("status", 0.05, broken)
        time.sleep(0.3)
    assert len(runs.at) >= 3  # it ran again after failing
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
    assert not t.running
    n = len(runs.at)
    time.sleep(0.2)
    assert len(runs.at) == n


def test_an_interval_must_be_positive():
    with pytest.raises(ValueError, match="timer tick: interval must be > 0 s"):
        Timers().every("tick", 0, lambda: None)
