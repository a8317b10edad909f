"""The linkage stage of the alarm path (联动): after the route stage, before the commit, the
changes of the open alarms switch the outputs they demand (:mod:`.demand`) through the bank
(:mod:`.bank`).  Before the commit, so that a press sounds the building without waiting for
the disk: what the open alarms demand is re-asserted from the store after any restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from parkwatch.alarms.lifecycle import Alarm, Change
from parkwatch.outputs import silencefile
from parkwatch.outputs.bank import OutputBank
from parkwatch.outputs.demand import Demand
from parkwatch.park import ParkModel

log = logging.getLogger("parkwatch.outputs")


class Linkage:
    """One config's demands on the daemon's output bank."""

    def __init__(self, park: ParkModel, bank: OutputBank) -> None:
        if [o.config for o in park.outputs] != [o.config for o in bank.outputs]:
            bank.bind(park)
        self.bank = bank
        self.state_dir = bank.state_dir
        #: alarm id -> who silenced it, when, how, and why
        self.silenced = silencefile.load(self.state_dir) if self.state_dir else {}
        self.demand = Demand(park, self.silenced)

    def observe(self, changes: list[Change]) -> None:
        """Alarm changes, right after the route stage: the outputs they switch, written."""
        changed = [c for c in changes if self.demand.observe(c.alarm)]
        if not changed:
            return
        c = changed[-1]
        why = f"{c.alarm.rule} {c.event} ({c.alarm.alarm_id})"
        if len(changed) > 1:
            why += f" and {len(changed) - 1} more change(s)"
        self.bank.apply(*self.demand.wanted(), why=why)
        self._forget_ended()

    def restore(self, alarms: Iterable[Alarm]) -> None:
        """The open alarms after a start, a restart or a reload: every output written as
        they demand."""
        for alarm in alarms:
            if alarm.active:
                self.demand.observe(alarm)
        self._forget_ended()
        self.bank.reassert(*self.demand.wanted())

    def silence(self, alarm_id: str, by: str, note: str | None, via: str) -> int | None:
        """An operator's silence of the audible outputs sounding for `alarm_id` and for the
        other alarms of its building; how many alarms were silenced (None: the alarm demands
        no output)."""
        d = self.demand.active.get(alarm_id)
        if d is None:
            return None
        new = self.demand.silence(d.building)
        if not new:
            return 0
        at = time.time()
        for a in new:
            self.silenced[a] = {"by": by, "at": at, "via": via, "note": note}
        self._save()
        log.warning("sounders of building %s silenced by %s via %s%s (%d alarm(s); strobes "
                    "stay on, the alarms stay active)", d.building, by, via,
                    f": {note}" if note else "", len(new))
        self.bank.apply(*self.demand.wanted(), why=f"silenced by {by}")
        return len(new)

    def view(self) -> dict[str, Any]:
        """The outputs, and the silenced alarms with who silenced them."""
        return {"outputs": self.bank.view(),
                "silenced": [{"alarm_id": a, **info} for a, info in self.silenced.items()]}

    def _forget_ended(self) -> None:
        """Silences of alarms that ended are forgotten (a new alarm sounds again)."""
        ended = [a for a in self.silenced if a not in self.demand.active]
        for a in ended:
            del self.silenced[a]
        self.demand.silenced &= set(self.demand.active)
        if ended:
            self._save()

    def _save(self) -> None:
        if self.state_dir is not None:
            try:
                silencefile.save(self.state_dir, self.silenced)
            except OSError as exc:
                log.error("silenced alarms not saved (%s): a restart would sound them again",
                          exc)
