"""The alarm path from a rule transition (or an operator's command, or the escalation clock) to
durable deliveries, top to bottom (every stage is named and built in
:mod:`parkwatch.daemon.alarmpath`):

1. **lifecycle**: the alarm book (:class:`AlarmBook`) turns it into changes (raised,
   acknowledged, ...); a storm goes through this stage and the next a chunk at a time, fire
   first (:mod:`parkwatch.alarms.chunks`);
2. **route** (:class:`~parkwatch.alarms.route.Route`): each change becomes its contract event
   (built once), a raise is matched to a declared drill, its escalation ladder or closing
   policy starts, and the change is routed to subscribers (or suppressed);
2b. **linkage** (:class:`~parkwatch.outputs.linkage.Linkage`): the outputs (sounders, strobes,
   relays) the open alarms demand are switched, before the commit so that a press sounds the
   building without waiting for the disk;
3. **commit** (:mod:`parkwatch.alarms.commit`): the changes are written to the store, grouped
   with whatever else waits, on a thread of their own;
4. **dispatch** (:mod:`parkwatch.alarms.dispatch`): only then are they handed to the couriers.

Before these, the pipeline (:mod:`parkwatch.daemon.pipeline`) **decodes** the drivers' input
and the rule engine **evaluates** it into transitions.  An operator's reset of a fire alarm
goes through the rule engine too (:meth:`~parkwatch.rules.engine.RuleEngine.reset_latch`): its
transition clears the alarm like a reading's.

Escalation steps and reminders wait in a heap ordered by when they fall due, so the cost of a
change does not grow with the number of open alarms (nothing here scans them per batch).

Everything here runs on the pipeline thread, the only owner of the open alarms.  An operator's
command returns once its change is on disk.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from enum import StrEnum

from parkwatch.alarms import chunks
from parkwatch.alarms.chunks import change_chunks, transition_chunks
from parkwatch.alarms.commit import Committer
from parkwatch.alarms.dispatch import Dispatcher
from parkwatch.alarms.lifecycle import FLOAT_FIELDS, Alarm, AlarmBook, Change
from parkwatch.alarms.route import Route, state_of
from parkwatch.alarms.store import AlarmStore
from parkwatch.config.model import ParkConfig
from parkwatch.outputs.linkage import Linkage
from parkwatch.park import ParkModel
from parkwatch.rejections import Rejections
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.output_fault import OutputFaultRule
from parkwatch.rules.transitions import Severity, Transitions

log = logging.getLogger("parkwatch.alarms")


#: the states of an open alarm (cleared and acknowledged is closed)
OPEN_STATES = ("active_unacknowledged", "active_acknowledged", "cleared_unacknowledged")


class Outcome(StrEnum):
    """What became of an operator's command (HTTP status in parentheses)."""

    DONE = "done"                      # (200) acknowledged / reset
    ALREADY = "already"                # (200) nothing to do: already acknowledged / cleared
    UNKNOWN = "unknown"                # (404) no such open alarm
    NOT_OPERATOR = "not_operator"      # (403) `by` is not a configured operator
    NOT_RESETTABLE = "not_resettable"  # (409) only fire alarms are reset


class AlarmService:
    def __init__(self, cfg: ParkConfig, park: ParkModel, engine: RuleEngine, store: AlarmStore,
                 clock: Callable[[], float] = time.time,
                 dispatcher: Dispatcher | None = None, committer: Committer | None = None,
                 on_due: Callable[[float | None], None] = lambda _t: None,
                 linkage: Linkage | None = None) -> None:
        self.cfg = cfg
        self.park = park
        self.engine = engine
        self.store = store
        self.clock = clock
        #: the lifecycle stage: the open alarms, and their changes
        self.book = AlarmBook(clock)
        #: the route stage: each change's record, with its event and its deliveries
        self.route = Route(cfg, park, self.book.open, self._schedule)
        self.router = self.route.router
        self.operators = {o.id for o in cfg.alarms.operators}
        #: open alarms by (hazard, state), kept with every change: a scrape or a status must
        #: not walk 100,000 open alarms
        self.tally: Counter[tuple[str, str]] = self.route.tally
        #: the commit stage; without one given, each change commits at once on this thread
        self.committer = committer if committer is not None else Committer(
            store, dispatcher if dispatcher is not None else Dispatcher(), threaded=False)
        self.on_due = on_due
        #: the linkage stage (None: a park without outputs, or a test without drivers)
        self.linkage = linkage
        #: changes are being routed and handed to the commit stage (the pipeline's thread),
        #: and when that last began (time.monotonic)
        self.routing = False
        self.changed_at = -math.inf
        self.refused = Rejections(log, "operator command")
        self.orphans: list[str] = []
        self._armed: float | None = None
        #: (due, alarm_id) of every escalation step or reminder to come; an entry whose alarm
        #: has closed or moved on is stale and dropped when it reaches the top
        self._due: list[tuple[float, str]] = []

    # --- start ----------------------------------------------------------------------------

    def restore(self, fresh: set[int]) -> None:
        """Put the store's open alarms back; `fresh` sources (rule state starting afresh) have
        their non-fire alarms cleared and their fire alarms re-latched."""
        index = {ident: i for i, ident in enumerate(self.park.idents())}
        orphans = []
        latched = []
        for source, state in self.store.open_alarms():
            i = index.get(source)
            if i is None:
                orphans.append(state["alarm_id"])
                log.warning("open alarm %s of %s dropped: no such sensor or floor in the config "
                            "any more; its retained state is removed", state["alarm_id"], source)
                continue
            alarm = Alarm(**{**state, **{k: math.nan for k in FLOAT_FIELDS
                                         if state.get(k, 0.0) is None},
                             "sensor": i, "severity": Severity(state["severity"]),
                             "told": tuple(state["told"])})
            self.book.open[alarm.alarm_id] = alarm
            self._schedule(alarm)
            self.tally[(self._hazard(alarm), state_of(alarm))] += 1
            if alarm.active:
                self.book.active_by_key[(alarm.sensor, alarm.rule)] = alarm
                self.route.inhibitor.observe(alarm, self._hazard(alarm))  # a source again
                if alarm.latching:  # a fire alarm outlives a config change and a lost checkpoint
                    latched.append(i)
        # their buttons latched again, so a device reset clears them; the transitions are
        # these alarms, restored already: nothing to raise
        self.engine.relatch(latched, self.clock())
        if orphans:
            now = self.clock()
            self.committer.chore(lambda: self.store.forget(orphans, now))
        self.orphans = orphans
        self._commit(self.book.clear_sources(fresh))
        self.committer.flush()
        faults = self.engine.kinds.get("output_fault")
        if isinstance(faults, OutputFaultRule):
            faults.seed(a.sensor for a in self.book.open.values()
                        if a.active and a.rule == "output_fault")
        if self.linkage is not None:
            self.linkage.restore(self.book.open.values())
        if self.book.open:
            log.info("%d open alarm(s) restored from the store", len(self.book.open))
        self._arm()

    # --- inputs -----------------------------------------------------------------------------

    def apply(self, transitions: Transitions,
              between: Callable[[list[Transitions]], None] | None = None) -> int:
        """Rule transitions in, a chunk at a time (:mod:`parkwatch.alarms.chunks`); returns
        the number of alarm changes handed to the commit stage (committed at once without a
        thread of its own).  `between` is called after each chunk but the last, with the
        chunks still to come: the pipeline takes a fire press in there."""
        parts = transition_chunks(transitions, self.park, chunks.ROUTE_CHUNK)
        n = 0
        for k, part in enumerate(parts):
            n += self._commit(self.book.apply(part))
            if between is not None and k + 1 < len(parts):
                between(parts[k + 1:])
        return n

    def _command(self, what: str, alarm_id: str, by: str, via: str,
                 change: Callable[[], list[Change]]) -> Outcome | list[Change]:
        """The refusals every operator command shares; else the changes it made."""
        if by not in self.operators:
            self.refused.reject("not_operator", f"{what} of {alarm_id} via {via} by {by!r}, "
                                "who is not in alarms.operators")
            return Outcome.NOT_OPERATOR
        try:
            changes = change()
        except KeyError:
            self.refused.reject("unknown_alarm", f"{what} of {alarm_id} via {via} by {by}: no "
                                "such open alarm")
            return Outcome.UNKNOWN
        except ValueError:
            return Outcome.NOT_RESETTABLE
        return changes or Outcome.ALREADY

    def acknowledge(self, alarm_id: str, by: str, note: str | None = None,
                    via: str = "local") -> Outcome:
        changes = self._command("ack", alarm_id, by, via,
                                lambda: self.book.acknowledge(alarm_id, by, note))
        if isinstance(changes, Outcome):
            return changes
        log.info("alarm %s acknowledged by %s via %s%s", alarm_id, by, via,
                 f": {note}" if note else "")
        self._commit(changes)
        self.committer.flush()
        return Outcome.DONE

    def reset(self, alarm_id: str, by: str, note: str | None = None,
              via: str = "local") -> Outcome:
        """An operator's explicit reset of a fire alarm (e.g. a wireless button that is lost)."""
        changes = self._command("reset", alarm_id, by, via, lambda: self._reset(alarm_id, by, note))
        if isinstance(changes, Outcome):
            return changes
        log.warning("fire alarm %s reset by operator %s via %s%s", alarm_id, by, via,
                    f": {note}" if note else "")
        self._commit(changes)
        self.committer.flush()
        return Outcome.DONE

    def silence(self, alarm_id: str, by: str, note: str | None = None,
                via: str = "local") -> Outcome:
        """An operator's silence (消音) of the sounders an alarm sounds, and of the others of
        its building: strobes stay on, every alarm stays active and unacknowledged."""
        if by not in self.operators:
            self.refused.reject("not_operator", f"silence of {alarm_id} via {via} by {by!r}, "
                                "who is not in alarms.operators")
            return Outcome.NOT_OPERATOR
        if alarm_id not in self.book.open:
            self.refused.reject("unknown_alarm", f"silence of {alarm_id} via {via} by {by}: "
                                "no such open alarm")
            return Outcome.UNKNOWN
        done = self.linkage.silence(alarm_id, by, note, via) if self.linkage else None
        return Outcome.DONE if done else Outcome.ALREADY

    def _reset(self, alarm_id: str, by: str, note: str | None) -> list[Change]:
        """The rule engine resets the button's latch; its transition clears the alarm."""
        alarm = self.book.resettable(alarm_id)
        if alarm is None:
            return []
        return self.book.reset(alarm, by, note, self.engine.reset_latch(alarm.sensor))

    def escalate_due(self) -> int:
        """Escalation steps, reminders and closings that have fallen due; each fires once."""
        now = self.clock()
        changes: list[Change] = []
        while (alarm := self._pop_due(now)) is not None:
            if alarm.close_at is not None and alarm.close_at <= now:
                log.info("alarm %s closed automatically: cleared %.0f s ago and nobody "
                         "acknowledged it (alarms.close_unacknowledged_after_s)",
                         alarm.alarm_id, now - alarm.changed_at)
                changes.append(self.book.auto_close(alarm))
                continue
            ladder = self.router.ladders[alarm.ladder]
            while alarm.next_step_at is not None and alarm.next_step_at <= now:
                level = alarm.escalation_level + 1
                alarm.next_step_at = (alarm.escalation_base + ladder.steps[level].after_s
                                      if level < len(ladder.steps) else None)
                changes.append(self.book.escalate(alarm, level))
            if alarm.next_reminder_at is not None and alarm.next_reminder_at <= now:
                every = ladder.reminder_every_s or math.inf
                missed = math.floor((now - alarm.next_reminder_at) / every)
                alarm.next_reminder_at += (missed + 1) * every  # one reminder for a long gap
                changes.append(self.book.remind(alarm))
            self._schedule(alarm)
        return self._commit(changes)

    def next_due(self) -> float | None:
        """When the next escalation step or reminder falls due (None: none will)."""
        heap, open_ = self._due, self.book.open
        while heap:
            due, alarm_id = heap[0]
            alarm = open_.get(alarm_id)
            if alarm is not None and alarm.next_due == due:
                return due
            heapq.heappop(heap)  # stale: the alarm closed, was acknowledged or moved on
        return None

    def _pop_due(self, now: float) -> Alarm | None:
        """The next alarm whose escalation step or reminder is due by `now`, taken off the
        heap (its next one goes back on with :meth:`_schedule`)."""
        due = self.next_due()
        if due is None or due > now:
            return None
        return self.book.open[heapq.heappop(self._due)[1]]

    def _schedule(self, alarm: Alarm) -> None:
        due = alarm.next_due
        if due is not None:
            heapq.heappush(self._due, (due, alarm.alarm_id))

    # --- the commit ----------------------------------------------------------------------

    def _commit(self, changes: list[Change]) -> int:
        """The stages after the lifecycle, in order: route (each change's event built once,
        its timers set, its subscribers chosen), then commit and dispatch (the commit stage,
        which hands what is on disk to the dispatcher)."""
        if not changes:
            return 0
        now = self.clock()
        self.routing = True
        self.changed_at = time.monotonic()
        try:
            for part in change_chunks(changes, self._fire, chunks.ROUTE_CHUNK):
                records = [self.route.record(change, now) for change in part]
                if self.linkage is not None:
                    self.linkage.observe(part)
                self.committer.submit(records)
        finally:
            self.routing = False
        self._arm()
        return len(changes)

    def _fire(self, change: Change) -> bool:
        return self.route.hazard_of(change.alarm) == "fire"

    def _hazard(self, alarm: Alarm) -> str:
        """fire, overload, water or fault, as the routing sees it."""
        return self.route.hazard_of(alarm)

    def retry_unsaved(self) -> None:
        self.committer.retry()

    @property
    def unsaved(self) -> int:
        """Alarm changes a failing store commit still holds (not yet on disk nor sent)."""
        return self.committer.unsaved

    @property
    def committed(self) -> int:
        return self.committer.committed

    @property
    def store_errors(self) -> int:
        return self.committer.store_errors

    @property
    def dispatcher(self) -> Dispatcher:
        return self.committer.dispatcher

    def adopt(self, old: AlarmService) -> None:
        """Take over a predecessor's counters (a reload): the metrics never run backwards;
        and the command center's mutes, which no config holds."""
        self.refused = old.refused
        self.router.mutes = old.router.mutes

    def _arm(self) -> None:
        due = self.next_due()
        if due != self._armed:
            self._armed = due
            self.on_due(due)

    # --- views ------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Open alarms by state (active/cleared × unacknowledged/acknowledged)."""
        out = dict.fromkeys(OPEN_STATES, 0)
        for (_hz, state), n in list(self.tally.items()):
            out[state] += n
        return out
