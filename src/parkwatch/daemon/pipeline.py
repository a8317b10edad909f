"""The pipeline thread of the alarm path (its stages are named and built in
:mod:`parkwatch.daemon.alarmpath`):

    inbox → decode → evaluate → lifecycle → route → commit → dispatch → couriers

This thread takes the input from the **inbox** (:mod:`parkwatch.daemon.inbox`) and runs
**decode** (each driver turns its queued input into readings, in bulk), **evaluate** (the rule
engine, vectorised, into transitions), then the alarm service (:mod:`parkwatch.alarms.service`:
**lifecycle** and **route**).  **commit** (:mod:`parkwatch.alarms.commit`) has a thread of its
own and hands what is on disk to **dispatch** (:mod:`parkwatch.alarms.dispatch`), which owns
the couriers.

Batching is adaptive: the pipeline thread takes whatever has arrived, evaluates it, delivers the
changes, and goes back for more.  It never waits for a batch to fill or a timer to tick, so a
lone fire-button press is evaluated the moment it arrives and a flood is evaluated in bulk.

Time-driven rules (durations, no-data, stale floor cells) are served by the same thread: it
waits for input only until the rule engine's next deadline, then lets the clock tick, so a
pending duration fires when it falls due, not at the next poll.

**Fire first.**  A driver puts fire-button input in the inbox's urgent lane
(:meth:`Inbox.put_urgent`).  The pipeline empties that lane before every slice of ordinary
input (at most :data:`SLICE` items), so a press never waits behind a backlog of readings queued
before it, only behind the slice in hand; and between the chunks of a storm's alarm changes
(:meth:`AlarmService.apply`), so it does not wait for all of them to be routed either.  Every
message of a button goes through the lane, so one sensor's readings are never reordered.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

import numpy as np

from parkwatch.alarms.service import AlarmService
from parkwatch.daemon.inbox import CONTROL, STOP, Barrier, Call, Inbox, Item, Source
from parkwatch.plausible import screen
from parkwatch.readings import ReadingBatch
from parkwatch.rules.clock_step import ClockStepRule
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.transitions import Transitions

if TYPE_CHECKING:
    from parkwatch.daemon.checkpoint import StateKeeper
    from parkwatch.daemon.clockwatch import ClockWatch
    from parkwatch.recording import Recorder

log = logging.getLogger("parkwatch.pipeline")

#: ordinary items evaluated between two looks at the urgent lane
SLICE = 4096


class Pipeline:
    def __init__(self, inbox: Inbox, engine: RuleEngine, alarms: AlarmService,
                 max_batch: int = 50_000,
                 keeper: StateKeeper | None = None, recorder: Recorder | None = None,
                 clock: Any = time.time,
                 on_batch: Callable[[ReadingBatch], None] | None = None,
                 on_evaluated: Callable[[str, float], None] | None = None,
                 clockwatch: ClockWatch | None = None) -> None:
        self.inbox = inbox
        #: looked at before each batch and tick: a step of the wall clock is known before the
        #: first reading stamped after it is judged
        self.clockwatch = clockwatch
        self.engine = engine
        self.alarms = alarms
        self.max_batch = max_batch
        self.keeper = keeper
        self.recorder = recorder
        self.clock = clock
        self.on_batch = on_batch  # telemetry: after the alarm path, never before it
        #: self-metrics: ("batch" or "tick", seconds) of each rule evaluation
        self.on_evaluated = on_evaluated
        self.batches = 0
        self.ticks = 0
        self.errors = 0
        self._stuck = False
        self.last_loop = time.monotonic()
        #: when the batch or tick in hand began (monotonic); None while waiting for input,
        #: so a health check tells a hung pipeline from an idle one
        self.busy_since: float | None = None
        #: drivers a reload replaced, with their old → new sensor index map (-1: removed):
        #: their last readings, queued after the swap, still count, under their new index
        self.retired: dict[Any, np.ndarray] = {}
        self.dropped_retired = 0  # readings of sensors a reload removed
        #: urgent input taken between two chunks of a storm but set aside, its sensor having
        #: changes in the chunks still to come: evaluated first once the batch is done
        self._early: deque[tuple[dict[Source, list[Item]], ReadingBatch]] = deque()
        self._thread = threading.Thread(target=self._run, name="parkwatch-pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        """The pipeline thread is alive (a health check reads it from another thread)."""
        return self._thread.is_alive()

    @property
    def stuck(self) -> bool:
        """Rules were still due after the last clock tick, so the clock is ticked at most
        once a second until it moves them again (a health warning)."""
        return self._stuck

    def _watch_clock(self) -> None:
        """A step of the wall clock raises the gateway's clock_step alarm; a backward one
        also rebases the engine's last reading times (see :meth:`RuleEngine.rebase`)."""
        if self.clockwatch is not None:
            step = self.clockwatch.check()
            if step < 0:
                self.engine.rebase(step)
            if step:
                # the gateway's own fault alarm (rules/clock_step.py), raised and cleared
                rule = self.engine.kinds.get("clock_step")
                if isinstance(rule, ClockStepRule):
                    for change in rule.report(step, self.clockwatch.wall()):
                        self.deliver(change)

    def stop(self, timeout: float = 1.0) -> None:
        self.inbox.put(STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        get, get_nowait = self.inbox.queue.get, self.inbox.queue.get_nowait
        floor = 0.0  # least wait; raised only if the clock stops moving the rules
        while True:
            wait = max(self.engine.next_due() - self.clock(), floor)
            if self.keeper is not None:  # a change waiting to be saved bounds the wait too
                wait = min(wait, self.keeper.maybe_checkpoint())
            try:
                # input and control; the control is split out below
                items: list[Any] = [get(timeout=min(wait, 3600.0)) if wait > 0 else get_nowait()]
            except Empty:  # woken by the clock: a rule deadline, or a checkpoint to save
                self._watch_clock()
                if self.engine.next_due() <= self.clock():
                    floor = self._tick_due()
                continue
            try:
                while len(items) < self.max_batch:
                    items.append(get_nowait())
            except Empty:
                pass
            self._watch_clock()
            marks = [k for k, item in enumerate(items) if item.__class__ in CONTROL]
            stop = False
            if marks:
                start = 0
                for k in marks:
                    if start < k:
                        self._ordinary(items[start:k])
                    self._urgent()  # control comes after the input queued before it
                    item = items[k]
                    if item is STOP:
                        stop = True
                    elif item.__class__ is Call:
                        self._guarded(item.fn)
                    elif item.__class__ is Barrier:
                        self._guarded(item.run)
                    start = k + 1  # (WAKE: the urgent lane, just emptied, was all it meant)
                items = items[start:]
            if items:
                self._ordinary(items)
            if self.engine.next_due() <= self.clock():  # a steady flood must not starve the clock
                floor = self._tick_due()
            self.last_loop = time.monotonic()
            if stop:
                return

    def _urgent(self) -> None:
        """Evaluate everything in the urgent lane, as one batch, after what was set aside
        from it in the middle of a batch (:meth:`_urgent_between`)."""
        self._set_aside()
        lane = self.inbox.urgent
        if not lane.empty():
            self._guarded(self.process, self._drain(lane))
            self._set_aside()

    def _set_aside(self) -> None:
        while self._early:
            self._guarded(self._settled, *self._early.popleft())

    @staticmethod
    def _drain(lane: SimpleQueue[Item]) -> list[Item]:
        items = []
        with contextlib.suppress(Empty):
            while True:
                items.append(lane.get_nowait())
        return items

    def _urgent_between(self, rest: list[Transitions]) -> None:
        """Between two chunks of a storm's alarm changes: a fire press waiting in the urgent
        lane is evaluated and its changes handed on now, ahead of the chunks still to come,
        unless one of those concerns its sensor, or input set aside before waits (a sensor's
        changes never change order): then it waits for the end of the batch, still ahead of
        any input queued after it."""
        lane = self.inbox.urgent
        if lane.empty():
            return
        by_source = _by_source(self._drain(lane))
        try:
            batch = self._decoded(by_source)
        except Exception:  # as in process(): settled all the same; the batch in hand goes on
            self.errors += 1
            log.exception("pipeline: decoding urgent input failed")
            self._settle(by_source)
            return
        # behind what was set aside already, or a change of its sensor still to come: later
        if self._early or (len(batch) and np.isin(
                batch.sensor, np.concatenate([t.sensor for t in rest])).any()):
            self._early.append((by_source, batch))
            return
        try:
            self._settled(by_source, batch)
        except Exception:
            self.errors += 1
            log.exception("pipeline: urgent input failed")

    def _ordinary(self, items: list[Item]) -> None:
        """Ordinary input, a slice at a time, the urgent lane emptied before each."""
        for start in range(0, len(items), SLICE):
            self._urgent()
            self._guarded(self.process, items[start:start + SLICE])
        self._set_aside()  # a press set aside during the last slice goes now

    def _tick_due(self) -> float:
        """Tick; the least wait before the next one (0, or 1 s if the tick did not help)."""
        due = self.engine.next_due()
        self._guarded(self.tick)
        if self.engine.next_due() > due:
            if self._stuck:
                log.info("pipeline: the clock moves the rules again")
                self._stuck = False
            return 0.0
        if not self._stuck:
            log.error("pipeline: rules still due at %.3f after a tick; ticking at most once a "
                      "second", due)
            self._stuck = True
        return 1.0

    def _guarded(self, fn: Any, *args: Any) -> None:
        self.busy_since = time.monotonic()
        try:
            fn(*args)
        except Exception:  # the alarm path must outlive any one bad batch
            self.errors += 1
            log.exception("pipeline: %s failed", getattr(fn, "__name__", fn))
        finally:
            self.busy_since = None

    def tick(self) -> None:
        """Let the clock move the rules (durations, silences, stale cells)."""
        self.ticks += 1
        started = time.perf_counter()
        transitions = self.engine.tick(self.clock())
        if self.on_evaluated is not None:
            self.on_evaluated("tick", time.perf_counter() - started)
        self.deliver(transitions)

    def deliver(self, transitions: Transitions) -> None:
        if not len(transitions):
            return
        self.alarms.apply(transitions, between=self._urgent_between)
        if self.keeper is not None:
            self.keeper.changed()

    def _decode(self, src: Source, group: list[Item]) -> ReadingBatch:
        batch = self._renumbered(src, src.decode(group))
        # every driver's readings are screened for values no sensor can send; the built-in
        # drivers did so as they decoded (their accepted count excludes them), this catches
        # an extension driver's (counted in its rejections)
        return screen(batch, getattr(src, "rejections", None), self.engine.park.ident)

    def _renumbered(self, src: Source, batch: ReadingBatch) -> ReadingBatch:
        """A retired driver's readings under their sensors' new index (see ``retired``)."""
        remap = self.retired.get(src) if self.retired else None
        if remap is None or not len(batch):
            return batch
        sensor = remap[batch.sensor]
        keep = sensor >= 0
        if not keep.all():
            self.dropped_retired += int(np.count_nonzero(~keep))
        moved = batch.take(keep.nonzero()[0])
        moved.sensor = sensor[keep].astype(np.int32)
        return moved

    def process(self, items: list[Item]) -> None:
        if not items:
            return
        by_source = _by_source(items)
        batch = None
        try:
            batch = self._decoded(by_source)
        finally:
            if batch is None:  # the decoding failed: settle what came all the same
                self._settle(by_source)
        self._settled(by_source, batch)

    def _settled(self, by_source: dict[Source, list[Item]], batch: ReadingBatch) -> None:
        """Evaluate `batch`, then settle its sources' input: a source that acknowledges its
        input (MQTT QoS 1) does so only once the alarm changes are committed, or after a
        failure that a redelivery would repeat."""
        try:
            self._evaluate(batch)
        finally:
            self._settle(by_source)

    def _settle(self, by_source: dict[Source, list[Item]]) -> None:
        settles = [(settle, group) for src, group in by_source.items()
                   if (settle := getattr(src, "settle", None)) is not None]
        if settles:
            self.alarms.committer.after(lambda: _settle(settles))

    def _decoded(self, by_source: dict[Source, list[Item]]) -> ReadingBatch:
        return ReadingBatch.concat([self._decode(src, group)
                                    for src, group in by_source.items()])

    def _evaluate(self, batch: ReadingBatch) -> None:
        if not len(batch):
            return
        self.batches += 1
        if self.recorder is not None:
            self.recorder.write(batch)
        started = time.perf_counter()
        transitions = self.engine.evaluate(batch)
        if self.on_evaluated is not None:
            self.on_evaluated("batch", time.perf_counter() - started)
        self.deliver(transitions)
        if self.on_batch is not None:
            self.on_batch(batch)


def _by_source(items: list[Item]) -> dict[Source, list[Item]]:
    """Input by its source (each decodes its own in bulk), in order of first appearance."""
    by_source: dict[Source, list[Item]] = {}
    for item in items:
        by_source.setdefault(item[0], []).append(item)
    return by_source


def _settle(settles: list[tuple[Callable[[list[Item]], None], list[Item]]]) -> None:
    for settle, group in settles:
        settle(group)
