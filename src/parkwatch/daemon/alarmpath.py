"""The alarm path: its stages named, and built here, once, in the order input goes through them
(Alertmanager's notification pipeline is the model: one place to read the path top to bottom).

    inbox → decode → evaluate → lifecycle → route → linkage → commit → dispatch → couriers

=========  ==============================================  ======================================
stage      object                                          what it does (thread)
=========  ==============================================  ======================================
inbox      :class:`~parkwatch.daemon.inbox.Inbox`          drivers drop raw input here, fire
                                                           buttons in an urgent lane (drivers')
decode     each driver's ``decode(items)``                 queued input into one batch of
                                                           readings, in bulk (pipeline)
evaluate   :class:`~parkwatch.rules.engine.RuleEngine`     readings into rule transitions,
                                                           vectorised (pipeline)
lifecycle  :class:`~parkwatch.alarms.lifecycle.AlarmBook`  transitions, operators' commands and
                                                           the escalation clock into alarm
                                                           changes (pipeline)
route      :class:`~parkwatch.alarms.route.Route`          each change's contract event (built
                                                           once), drill, timers and who is told:
                                                           a record for the store (pipeline)
linkage    :class:`~parkwatch.outputs.linkage.Linkage`     the sounders, strobes and relays the
                                                           open alarms demand, switched through
                                                           the output bank (pipeline; the
                                                           drivers' threads write)
commit     :class:`~parkwatch.alarms.commit.Committer`     records to the store in groups, one
                                                           fsync each (its own)
dispatch   :class:`~parkwatch.alarms.dispatch.Dispatcher`  what is on disk to the couriers of its
                                                           targets (commit's)
couriers   :class:`~parkwatch.alarms.delivery.Courier`     one per target: delivers, retries
                                                           until acknowledged (one each)
=========  ==============================================  ======================================

The :class:`~parkwatch.daemon.pipeline.Pipeline` thread runs decode and evaluate and hands the
transitions to the :class:`~parkwatch.alarms.service.AlarmService`, which holds the lifecycle,
route and linkage stages of one config and hands their records to the commit stage.

Two lifetimes: the inbox, the pipeline, commit, dispatch and the couriers last as long as the
daemon; evaluate, lifecycle and route belong to one config, and a reload builds them again
(:meth:`AlarmPath.for_config`) and swaps them in between two batches.  The couriers are the
daemon's to build (one per configured target); this module builds the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parkwatch.alarms.commit import Committer
from parkwatch.alarms.dispatch import Dispatcher
from parkwatch.alarms.service import AlarmService
from parkwatch.alarms.store import AlarmStore
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.clockwatch import ClockWatch
from parkwatch.daemon.inbox import Inbox
from parkwatch.daemon.pipeline import Pipeline
from parkwatch.outputs.bank import OutputBank
from parkwatch.outputs.linkage import Linkage
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rules.engine import RuleEngine

if TYPE_CHECKING:
    from parkwatch.daemon.checkpoint import StateKeeper
    from parkwatch.recording import Recorder


def _ignore(_events: list[Any]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Taps:
    """Who watches the path without being a stage of it (telemetry, self-metrics)."""

    #: the committed events, after dispatch
    events: Callable[[list[Any]], None] = _ignore
    #: each evaluated batch of readings, once its alarm changes are handed on
    readings: Callable[[ReadingBatch], None] | None = None
    #: ("batch" or "tick", seconds) of each rule evaluation
    rules: Callable[[str, float], None] | None = None
    #: ("queued" or "written", seconds) of each commit
    commits: Callable[[str, float], None] | None = None


@dataclass(slots=True)
class AlarmPath:
    """The stages the daemon keeps for its lifetime; evaluate, lifecycle and route (one
    config's) are the pipeline's current :attr:`engine` and :attr:`alarms`."""

    inbox: Inbox
    dispatcher: Dispatcher
    committer: Committer
    pipeline: Pipeline
    store: AlarmStore
    #: (re)arms the timer of the next escalation step, reminder or closing (None: none due)
    on_due: Callable[[float | None], None]
    #: the outputs the linkage stage switches (None: none)
    outputs: OutputBank | None = None

    @staticmethod
    def build(cfg: ParkConfig, park: ParkModel, engine: RuleEngine, store: AlarmStore,
              on_due: Callable[[float | None], None], taps: Taps | None = None,
              keeper: StateKeeper | None = None,
              recorder: Recorder | None = None,
              outputs: OutputBank | None = None,
              clockwatch: ClockWatch | None = None) -> AlarmPath:
        """Every stage, in order.  `engine` comes built, its rule state restored (the daemon
        restores it before building anything else, for memory's sake)."""
        taps = taps or Taps()
        # inbox: where the drivers (built by the daemon with it) drop their input
        inbox = Inbox()
        # decode: each driver's own, run by the pipeline
        # evaluate: `engine`
        # dispatch, built before commit, which hands over to it; its couriers come later
        dispatcher = Dispatcher(on_events=taps.events)
        # commit: on a thread of its own
        committer = Committer(store, dispatcher)
        committer.on_commit = taps.commits
        # lifecycle, route and linkage (its output bank, which outlives a config, comes built)
        alarms = _alarm_stages(cfg, park, engine, store, committer, on_due, outputs)
        # the thread that runs decode and evaluate and hands on to lifecycle and route
        pipeline = Pipeline(inbox, engine, alarms, keeper=keeper, recorder=recorder,
                            clockwatch=clockwatch,
                            on_batch=taps.readings, on_evaluated=taps.rules)
        return AlarmPath(inbox, dispatcher, committer, pipeline, store, on_due, outputs)

    @property
    def engine(self) -> RuleEngine:
        """The evaluate stage in force."""
        return self.pipeline.engine

    @property
    def alarms(self) -> AlarmService:
        """The lifecycle and route stages in force."""
        return self.pipeline.alarms

    def for_config(self, cfg: ParkConfig, park: ParkModel) -> tuple[RuleEngine, AlarmService]:
        """A reload's evaluate, lifecycle and route stages for a new config, built beside the
        running ones; the caller swaps them into the pipeline between two batches."""
        engine = RuleEngine(park, start=time.time())
        return engine, _alarm_stages(cfg, park, engine, self.store, self.committer, self.on_due,
                                     self.outputs)


def _alarm_stages(cfg: ParkConfig, park: ParkModel, engine: RuleEngine, store: AlarmStore,
                  committer: Committer, on_due: Callable[[float | None], None],
                  outputs: OutputBank | None) -> AlarmService:
    """Lifecycle, route and linkage of one config: the alarm service builds its book
    (lifecycle) and its :class:`~parkwatch.alarms.route.Route`, switches the outputs through
    its :class:`~parkwatch.outputs.linkage.Linkage` and hands its records to `committer`."""
    linkage = (Linkage(park, outputs) if outputs is not None
               and (park.outputs or outputs.outputs) else None)
    return AlarmService(cfg, park, engine, store, committer=committer, on_due=on_due,
                        linkage=linkage)
