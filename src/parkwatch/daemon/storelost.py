"""A damaged alarm store must not hide an alarm: what the daemon does when it cannot read it.

The store is moved aside and the daemon starts with no open alarms.  Its rule state, which says
which conditions are already alarming, would then keep those alarms from ever being raised again:
it is set aside too, so every condition is raised afresh by its next reading.  A latched fire
button has no next reading (a press is sent once): its alarm is raised again at the start.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import numpy as np

from parkwatch.alarms.commit import Committer
from parkwatch.alarms.service import AlarmService
from parkwatch.alarms.store import AlarmStore
from parkwatch.daemon.checkpoint import StateKeeper
from parkwatch.park import ParkModel
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.snapshot import restore_state

log = logging.getLogger("parkwatch")


def open_store(path: Path) -> tuple[AlarmStore, bool]:
    """The alarm store at `path`, and whether it was lost: an unreadable one is moved aside
    (with its WAL files dropped) and a new, empty one is opened in its place."""
    try:
        return AlarmStore(path), False
    except (sqlite3.DatabaseError, ValueError) as exc:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        path.replace(aside)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        log.error("alarm store %s unreadable (%s); moved to %s, starting with no open "
                  "alarms", path, exc, aside.name)
        return AlarmStore(path), True


def forget_rule_state(keeper: StateKeeper, park: ParkModel, started_at: float) -> list[int]:
    """The alarm store was lost: rule state that says "already alarming" would keep those
    alarms from ever being raised again.  The rule state is set aside too, so every
    condition is raised afresh by its next reading; the fire buttons it had latched (a
    press is sent once) are returned, to be raised again at once."""
    path = keeper.rules_path
    if not path.exists():
        return []
    try:
        old = RuleEngine(park, start=started_at)
        restore_state(old, path)
        latched = np.flatnonzero(old.button_latch.latched).tolist()
    except Exception as exc:  # unreadable too: the keeper moves it aside and starts afresh
        log.error("rule state %s unreadable as well (%s)", path, exc)
        return []
    aside = path.with_name(f"{path.name}.store-lost-{int(time.time())}")
    path.replace(aside)
    log.error("alarm store lost: rule state moved to %s so that every alarm condition is "
              "raised again; %d latched fire button(s) raised again now", aside.name,
              len(latched))
    return latched


def raise_again(buttons: list[int], engine: RuleEngine, alarms: AlarmService,
                committer: Committer, keeper: StateKeeper) -> None:
    """Fire alarms of buttons latched before the alarm store was lost: latched and raised
    anew (the press itself is not sent again)."""
    alarms.apply(engine.relatch(buttons, time.time()))
    committer.flush()
    keeper.changed()
