"""The dispatch stage: hands each committed alarm change to the couriers of its targets.

The dispatcher owns the couriers (one per target, see :mod:`parkwatch.alarms.delivery`, built
by :mod:`parkwatch.alarms.couriers`): it is handed the set at the start and a reload's new set
(:meth:`Dispatcher.use`), and it swaps a replaced target's courier (:meth:`Dispatcher.hand_over`).
The alarm service calls it around each commit and never reaches past it.

**Why a ticket.**  A courier that is idle lets the committing thread publish a change itself
(express).  The dispatcher asks each courier *before* the commit whether it is idle
(:meth:`Dispatcher.prepare`), and a courier publishes at :meth:`Dispatcher.dispatch` only if it
has stayed idle, without reading the outbox, since then.  Otherwise a courier that woke between
the commit and the dispatch could read the new rows from the store, deliver them, fall idle
again and then be handed the same rows to publish: one change sent twice in normal operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Union

from parkwatch.alarms.delivery import Courier
from parkwatch.alarms.records import Record
from parkwatch.alarms.routing import hazard
from parkwatch.alarms.store import Pending
from parkwatch.config.delivery import UPLINK

if TYPE_CHECKING:
    from parkwatch.alarms.courierproc import CourierProcess

#: a target's courier: a thread of the daemon, or the uplink's in a process of its own
AnyCourier = Union[Courier, "CourierProcess"]

#: per target, the courier's idle mark (None: busy then) and read mark before a commit
Ticket = dict[str, tuple[int | None, int]]


class Dispatcher:
    """Couriers by target name, and the hand-over of committed (or unsaved) changes."""

    def __init__(self, on_events: Callable[[list[Any]], None] = lambda _p: None) -> None:
        #: target name → courier; replaced whole (never changed in place) on a reload, so a
        #: reader on another thread always sees one consistent mapping
        self.couriers: dict[str, AnyCourier] = {}
        self.on_events = on_events  # the committed events, e.g. to telemetry

    def use(self, couriers: dict[str, AnyCourier]) -> None:
        """Deliver through these couriers from now on (the set at the start, or a reload's):
        the mapping is replaced whole, in one assignment."""
        self.couriers = couriers

    def hand_over(self, name: str, new: AnyCourier) -> None:
        """A target whose config a reload changed: its courier stops before the new one starts
        (never two couriers on one target), the new one carries its counts on, takes its place
        and looks in the outbox at once."""
        old = self.couriers[name]
        old.stop()
        new.delivered, new.failures, new.expired = old.delivered, old.failures, old.expired
        new.start()
        self.couriers = {**self.couriers, name: new}
        new.wake()

    def __iter__(self) -> Iterator[AnyCourier]:
        return iter(dict(self.couriers).values())

    def carrying(self) -> bool:
        """Whether some courier has committed rows to carry to a target that takes them."""
        return any(c.carrying for c in self)

    def prepare(self) -> Ticket:
        """Before a commit: which couriers are idle, and since when."""
        return {name: (c.idle_mark(), c.read_mark()) for name, c in self.couriers.items()}

    def dispatch(self, records: list[Record], ticket: Ticket | None = None,
                 waits: Callable[[str, Record], bool] | None = None) -> None:
        """Committed changes: each target's rows to its courier in commit order, the command
        center first; an idle courier (per `ticket`) has them published from this thread, a
        busy one the fire alarms raised among them (see :mod:`parkwatch.alarms.express`).
        `waits(target, record)`: whether a row of the record's sensor still waits for that
        target (then its fire raise is left to the courier, which keeps the sensor's order)."""
        ticket = ticket or {}
        rows = by_target(records)
        fire = {(r.alarm_id, r.seq): r for r in records if fire_raise(r)}
        couriers = self.couriers
        for target in sorted(rows, key=lambda t: t != UPLINK):  # the command center first
            courier = couriers.get(target)
            if courier is None:
                continue
            pending = rows[target]
            idle, reads = ticket.get(target, (None, -1))
            if not courier.express(pending, idle) and fire:
                first = [(p, fire[p.alarm_id, p.seq]) for p in pending
                         if (p.alarm_id, p.seq) in fire]
                if first:
                    courier.priority(
                        [p for p, _ in first], reads, [r.source for _, r in first],
                        publish=waits is None or not any(waits(target, r) for _, r in first))
        self.on_events([r.doc or r.payload for r in records])

    def hold(self, records: list[Record]) -> None:
        """Changes the store could not commit (disk full): delivered from memory meanwhile."""
        for target, pending in by_target(records).items():
            courier = self.couriers.get(target)
            if courier is not None:
                courier.offer(pending)

    def start(self) -> None:
        for courier in self:
            courier.start()

    def stop(self, timeout: float) -> None:
        for courier in self:  # what is undelivered waits in the outbox
            courier.stop(timeout)


def fire_raise(r: Record) -> bool:
    """A fire alarm's first change: it may overtake every other alarm's changes (nothing of
    its own comes before it), on its way to disk and to the command center."""
    return r.seq == 1 and r.event == "raised" and r.doc is not None and hazard(r.doc) == "fire"


def by_target(records: list[Record]) -> dict[str, list[Pending]]:
    """Each change's deliveries as rows for their targets' couriers, in commit order (the id
    -1: the courier matches them to the store's rows by alarm, seq and subscriber)."""
    rows: dict[str, list[Pending]] = {}
    for r in records:
        for d in r.deliveries:
            rows.setdefault(d.target, []).append(Pending(
                -1, r.alarm_id, r.seq, d.subscriber, d.reason, 0, d.expires_at, r.at, r.at,
                r.payload, r.event))
    return rows
