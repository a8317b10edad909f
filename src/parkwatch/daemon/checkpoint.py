"""Keeps the daemon's durable state in its state directory: rule state and open alarms.

* ``alarms.json``: the open alarms, rewritten (atomically) after every batch that changed one.
* ``rules.npz``: every rule-state array, copied on the pipeline thread after a batch with
  transitions (at most once a second) and every ``checkpoint_interval_s`` otherwise, and written
  by a background thread so a large park never stalls the alarm path; written once more on stop.

A crash loses at most the rule state since the last checkpoint; the alarm book tolerates that
(a raise for an alarm that is already open, or a clear for one already cleared, changes nothing).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from parkwatch.alarms.bookfile import load_book, save_book
from parkwatch.alarms.lifecycle import AlarmBook, Change
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.snapshot import restore_state, save_state, snapshot_arrays

log = logging.getLogger("parkwatch.state")

RULES_FILE = "rules.npz"
ALARMS_FILE = "alarms.json"


class StateKeeper:
    def __init__(self, engine: RuleEngine, book: AlarmBook, state_dir: Path,
                 min_gap_s: float = 1.0) -> None:
        self.engine, self.book, self.park = engine, book, engine.park
        self.rules_path = state_dir / RULES_FILE
        self.alarms_path = state_dir / ALARMS_FILE
        self.min_gap_s = min_gap_s
        self.saves = 0
        self.errors = 0
        self.orphans: list[str] = []  # open alarms whose sensor left the config
        self._last = 0.0
        self._dirty = False
        self._pending: dict[str, np.ndarray] | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._write_loop, name="parkwatch-state",
                                        daemon=True)

    # --- start --------------------------------------------------------------------------

    def restore(self) -> list[Change]:
        """Load rule state and open alarms; clear open alarms whose state could not be kept.

        Returns the changes to publish (clears of alarms whose sensor's config changed)."""
        try:
            restored = restore_state(self.engine, self.rules_path)
        except Exception as exc:  # a damaged snapshot must not keep the gateway down
            aside = self.rules_path.with_name(f"{RULES_FILE}.damaged-{int(time.time())}")
            self.rules_path.replace(aside)
            log.error("rule state %s unreadable (%s); moved to %s, starting afresh",
                      self.rules_path, exc, aside.name)
            restored = restore_state(self.engine, self.rules_path)
        try:
            orphans = load_book(self.book, self.park, self.alarms_path)
        except Exception as exc:
            aside = self.alarms_path.with_name(f"{ALARMS_FILE}.damaged-{int(time.time())}")
            self.alarms_path.replace(aside)
            log.error("open alarms %s unreadable (%s); moved to %s", self.alarms_path, exc,
                      aside.name)
            orphans = []
        if restored.saved_at is not None:
            log.info("rule state restored for %d sensor(s)/floor(s), saved %.0f s ago; "
                     "%d open alarm(s)", restored.kept, time.time() - restored.saved_at,
                     len(self.book.open))
        if restored.reset:
            log.warning("config changed for %s: their rule state starts afresh",
                        ", ".join(restored.reset))
        for row in orphans:
            log.warning("open alarm %s of %s dropped: no such sensor or floor in the config "
                        "any more; its retained state is removed", row["alarm_id"], row["sensor"])
        self.orphans = [row["alarm_id"] for row in orphans]
        kept = set(restored.kept_ids)
        fresh = {i for i, ident in enumerate(self.park.idents()) if ident not in kept}
        changes = self.book.clear_sources(fresh)
        if changes or orphans:
            self.book_changed()
        self._thread.start()
        return changes

    # --- on the pipeline thread -----------------------------------------------------------

    def book_changed(self) -> None:
        try:
            save_book(self.book, self.park, self.alarms_path)
        except OSError as exc:
            self.errors += 1
            log.error("cannot save open alarms to %s: %s", self.alarms_path, exc)

    def changed(self) -> None:
        """Rule state changed in a way worth keeping soon (a transition happened)."""
        self._dirty = True
        self.maybe_checkpoint()

    def maybe_checkpoint(self) -> float:
        """Checkpoint if a change is waiting and the last one is `min_gap_s` old; returns how
        long the pipeline may wait before calling again (inf: nothing waiting)."""
        if not self._dirty:
            return float("inf")
        left = self._last + self.min_gap_s - time.monotonic()
        if left <= 0:
            self.checkpoint()
            return float("inf")
        return left

    def checkpoint(self) -> None:
        """Copy the rule state now; the background thread writes it."""
        self._last = time.monotonic()
        self._dirty = False
        arrays = snapshot_arrays(self.engine)
        with self._cond:
            self._pending = arrays
            self._cond.notify()

    # --- writer -----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                arrays, self._pending = self._pending, None
                if arrays is None:
                    return
            self._write(arrays)

    def _write(self, arrays: dict[str, Any]) -> None:
        try:
            save_state(self.engine, self.rules_path, arrays)
            self.saves += 1
        except OSError as exc:
            self.errors += 1
            log.error("cannot save rule state to %s: %s", self.rules_path, exc)

    def close(self) -> None:
        """Final save, once the pipeline has stopped (so the state is quiet)."""
        with self._cond:
            self._stop = True
            self._pending = None
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self._write(snapshot_arrays(self.engine))
        self.book_changed()
