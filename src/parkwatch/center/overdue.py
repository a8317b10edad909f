"""The center's watch over hazard tickets' deadlines: every ``tickets.check_interval_s`` it
escalates the open tickets that are overdue (:meth:`escalate_overdue`) with the notices of the
people each escalation reaches (:mod:`parkwatch.center.notices`, sent by its courier), logs
each escalation once, and tells the listeners (the courier: there is something to send).

Several center instances may watch one database: each escalation is a transaction that checks
the ticket's step count, so a ticket is escalated to a level once, by whichever instance came
first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from parkwatch.center.config import TicketsConfig
from parkwatch.center.notices import notices_of
from parkwatch.center.store import CenterStore, StoreError

log = logging.getLogger("parkwatch.center")

Listener = Callable[[dict[str, Any]], None]


class OverdueWatch:
    def __init__(self, cfg: TicketsConfig, store: CenterStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.listeners: list[Listener] = []
        self.escalated = 0  # escalations made by this instance (/metrics)
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="parkwatch-center-overdue",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def check(self) -> list[dict[str, Any]]:
        """One look: the tickets escalated now."""
        done = self.store.escalate_overdue(self.clock(),
                                           tuple(self.cfg.escalate_after_hours),
                                           notices_of(self.cfg.notify))
        for t in done:
            self.escalated += 1
            log.warning("center: hazard ticket %s (%s %s, %s) is overdue: escalated to level "
                        "%d", t["ticket_id"], t["park"], t.get("building") or "-",
                        t.get("tenant") or "landlord", t["escalation_level"])
            for listener in self.listeners:
                try:
                    listener(t)
                except Exception:  # one listener's failure stops neither the others nor us
                    log.exception("center: a listener failed on ticket %s's escalation",
                                  t["ticket_id"])
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
                if self._failing:
                    self._failing = False
                    log.warning("center: overdue tickets are checked again")
            except StoreError as exc:  # the database away: the next round tries again
                if not self._failing:
                    self._failing = True
                    log.error("center: cannot check overdue tickets (%s); trying again every "
                              "%.0f s", exc, self.cfg.check_interval_s)
            except Exception:  # a bug or a database error not translated: never end the watch
                log.exception("center: checking overdue tickets failed; trying again in %.0f s",
                              self.cfg.check_interval_s)
            self._stop.wait(self.cfg.check_interval_s)
