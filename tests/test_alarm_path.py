"""The alarm path as daemon/alarmpath.py builds it: every stage wired to the next, the pipeline's
own work run in turn with the input, and a fire button's latch moved only through the rule
engine's own interface (an operator's reset, a re-latch), whose transitions the alarm path
applies like a reading's."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from conftest import EXAMPLE
from parkwatch.alarms.service import Outcome
from parkwatch.alarms.store import AlarmStore
from parkwatch.daemon.alarmpath import AlarmPath, Taps
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.transitions import Severity
from parkwatch.schema import load_config

BUTTON = "A-3F-FB1"


class _Readings:
    """An input source whose items carry their readings ready-made: (source, batch)."""

    @staticmethod
    def decode(group: list[Any]) -> ReadingBatch:
        return ReadingBatch.concat([item[1] for item in group])


def _path(tmp_path: Path) -> tuple[AlarmPath, ParkModel, list[float | None]]:
    cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp_path)})
    park = ParkModel(cfg)
    engine = RuleEngine(park, start=time.time())
    armed: list[float | None] = []
    path = AlarmPath.build(cfg, park, engine, AlarmStore(tmp_path / "alarms.db"), armed.append,
                           Taps())
    return path, park, armed


def _press(park: ParkModel, value: float = 1.0) -> tuple[Any, ReadingBatch]:
    return (_Readings, ReadingBatch.from_columns([park.index[BUTTON]], [value], [time.time()],
                                                 [0]))


def test_every_stage_hands_on_to_the_next(tmp_path: Path) -> None:
    path, _park, _armed = _path(tmp_path)
    assert path.pipeline.inbox is path.inbox
    assert path.engine is path.pipeline.engine and path.alarms is path.pipeline.alarms
    assert path.alarms.engine is path.engine
    assert path.alarms.committer is path.committer
    assert path.committer.dispatcher is path.dispatcher
    engine, alarms = path.for_config(path.alarms.cfg, path.alarms.park)  # a reload's
    assert alarms.engine is engine and alarms.committer is path.committer
    assert engine is not path.engine
    path.store.close()


def test_a_call_runs_after_the_input_queued_before_it(tmp_path: Path) -> None:
    """Queued behind a press in the same batch, a call sees the press's alarm raised."""
    path, park, _armed = _path(tmp_path)
    path.committer.start()
    path.alarms.restore(set())
    seen: list[int] = []
    path.inbox.put(_press(park))
    path.inbox.call(lambda: seen.append(len(path.alarms.book.open)))
    done = path.inbox.barrier(lambda: None)
    path.pipeline.start()
    try:
        done.wait(10)
        assert seen == [1]
    finally:
        path.pipeline.stop(2.0)
        path.committer.stop(2.0)
        path.store.close()


def test_the_latch_moves_only_through_the_rule_engine(tmp_path: Path) -> None:
    """A press latches; an operator's reset is the engine's transition to normal (born of no
    reading), once; a re-latch is its transition to critical, of unlatched buttons only."""
    path, park, _armed = _path(tmp_path)
    engine, b = path.engine, park.index[BUTTON]
    pressed = engine.evaluate(_press(park)[1])
    assert pressed.new.tolist() == [int(Severity.CRITICAL)]
    reset = engine.reset_latch(b)
    assert (reset.sensor.tolist(), reset.old.tolist(), reset.new.tolist()) == (
        [b], [int(Severity.CRITICAL)], [int(Severity.NORMAL)])
    assert math.isnan(reset.value[0]) and math.isnan(reset.ts[0])
    assert len(engine.reset_latch(b)) == 0  # nothing latched any more
    again = engine.evaluate(_press(park)[1])  # the next press latches anew
    assert again.new.tolist() == [int(Severity.CRITICAL)]
    other = park.index["A-1F-FB1"]
    relatched = engine.relatch([b, other], 123.0)  # `b` is latched already
    assert relatched.sensor.tolist() == [other]
    assert (relatched.new.tolist(), relatched.value.tolist(), relatched.ts.tolist()) == (
        [int(Severity.CRITICAL)], [1.0], [123.0])
    assert len(engine.relatch([other], 124.0)) == 0
    assert np.isnan(relatched.threshold).all()
    path.store.close()


def test_an_operator_reset_keeps_the_press_in_the_cleared_event(tmp_path: Path) -> None:
    path, park, _armed = _path(tmp_path)
    alarms = path.alarms
    path.committer.start()
    try:
        alarms.restore(set())
        alarms.apply(path.engine.evaluate(_press(park)[1]))
        (alarm,) = alarms.book.open.values()
        value, observed_at = alarm.value, alarm.observed_at
        assert alarms.reset(alarm.alarm_id, "王工", "lost") is Outcome.DONE
        assert (alarm.active, alarm.value, alarm.observed_at) == (False, value, observed_at)
        assert (alarm.reset_by, alarm.reset_note) == ("王工", "lost")
        # the latch is off: a device reset changes nothing, the next press is a new alarm
        assert len(path.engine.evaluate(_press(park, 0.0)[1])) == 0
        assert len(path.engine.evaluate(_press(park)[1])) == 1
    finally:
        path.committer.stop(2.0)
        path.store.close()
