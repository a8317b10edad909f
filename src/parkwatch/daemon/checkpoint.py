"""Keeps the daemon's rule state in its state directory (alarms live in the alarm store).

* ``rules.npz``: every rule-state array, copied on the pipeline thread after a batch with
  transitions and every ``checkpoint_interval_s`` otherwise, and written by a background thread
  so a large park never stalls the alarm path; written once more on stop.  While alarms keep
  changing, copies are at least a second apart, and further apart on a large park: copying
  and writing take at most :data:`BUDGET` of the time (a 22,000-sensor park's 4.9 MB, once a
  second, had cost 3-5 % of the CPU).

A crash loses at most the rule state since the last checkpoint, and the alarm book tolerates
most of that: a raise for an alarm that is already open, or a clear for one already cleared,
changes nothing.  The one loss it cannot tolerate is state still "in alarm" for a source whose
alarm the store cleared after the snapshot (a button still latched after its reset would
swallow the next press).  So a snapshot records when it was copied, and at the start every
source with an alarm cleared after that moment, and none active, starts afresh.  Active fire
alarms re-latch their buttons whatever the snapshot says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from parkwatch.alarms.commit import Committer
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.snapshot import restore_state, save_state, snapshot_arrays

log = logging.getLogger("parkwatch.state")

RULES_FILE = "rules.npz"
#: the share of time that copying and writing the rule state may take while alarms change
BUDGET = 0.01
#: but never further apart than this (a crash loses the rule state since the last copy)
MAX_GAP_S = 30.0


class StateKeeper:
    def __init__(self, engine: RuleEngine, state_dir: Path, min_gap_s: float = 1.0,
                 committer: Committer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # measures the gaps between copies and what a copy costs
        self.engine, self.park = engine, engine.park
        #: a copy is written only once every alarm change made before it is on disk: a file
        #: must never hold a rule state whose alarm a crash could still lose
        self.committer = committer
        self.rules_path = state_dir / RULES_FILE
        self.min_gap_s = min_gap_s
        self.saves = 0
        self.errors = 0
        self._last = 0.0
        self._dirty = False
        #: seconds the last copy and write took: the next copy waits that / BUDGET
        self._cost = 0.0
        self._copy_s = 0.0
        #: the latest copy waiting for the writer, with the engine whose rows it holds, the
        #: time it was taken (every alarm change committed before it is reflected in it) and
        #: the commit stage's submissions then
        self._pending: tuple[RuleEngine, dict[str, np.ndarray], float, int] | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._write_loop, name="parkwatch-state",
                                        daemon=True)

    # --- start --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (after :meth:`restore`: a checkpoint must not replace the state
        before it is read)."""
        self._thread.start()

    def restore(self, changed_since: Callable[[float], Collection[str]] | None = None) -> set[int]:
        """Load rule state; returns the sources (sensors, floors) whose state starts afresh
        (new, their config changed, or `changed_since(snapshot time)` names them), whose open
        alarms the alarm service then settles."""
        try:
            restored = restore_state(self.engine, self.rules_path, changed_since)
        except Exception as exc:  # a damaged snapshot must not keep the gateway down
            aside = self.rules_path.with_name(f"{RULES_FILE}.damaged-{int(time.time())}")
            self.rules_path.replace(aside)
            log.error("rule state %s unreadable (%s); moved to %s, starting afresh",
                      self.rules_path, exc, aside.name)
            restored = restore_state(self.engine, self.rules_path)
        if restored.lagging:
            log.warning("rule state of %s predates their alarm's clearing (the daemon stopped "
                        "before its next checkpoint): it starts afresh",
                        ", ".join(restored.lagging))
        if restored.saved_at is not None:
            log.info("rule state restored for %d sensor(s)/floor(s), saved %.0f s ago",
                     restored.kept, time.time() - restored.saved_at)
        if restored.reset:
            log.warning("config changed for %s: their rule state starts afresh",
                        ", ".join(restored.reset))
        kept = set(restored.kept_ids)
        return {i for i, ident in enumerate(self.park.rule_idents()) if ident not in kept}

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- on the pipeline thread -----------------------------------------------------------

    def rebind(self, engine: RuleEngine) -> None:
        """A reload built a new engine: keep its state from now on, and soon."""
        self.engine, self.park = engine, engine.park
        self.changed()

    def changed(self) -> None:
        """Rule state changed in a way worth keeping soon (a transition happened)."""
        self._dirty = True
        self.maybe_checkpoint()

    def maybe_checkpoint(self) -> float:
        """Checkpoint if a change is waiting and the last one is `gap_s` old; returns how
        long the pipeline may wait before calling again (inf: nothing waiting)."""
        if not self._dirty:
            return float("inf")
        left = self._last + self.gap_s - self.clock()
        if left <= 0:
            self.checkpoint()
            return float("inf")
        return left

    @property
    def gap_s(self) -> float:
        """How far apart copies are while alarms change (see :data:`BUDGET`)."""
        return min(max(self.min_gap_s, self._cost / BUDGET), MAX_GAP_S)

    def checkpoint(self) -> None:
        """Copy the rule state now; the background thread writes it."""
        self._last = started = self.clock()
        self._dirty = False
        mark = self.committer.submitted if self.committer is not None else 0
        arrays = snapshot_arrays(self.engine)
        self._copy_s = self.clock() - started
        pending = (self.engine, arrays, time.time(), mark)
        with self._cond:
            self._pending = pending
            self._cond.notify()

    # --- writer -----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                pending, self._pending = self._pending, None
                if pending is None:
                    return
            if not self._durable(pending[3]):
                continue  # stopping: the final save on close writes the quiet state
            self._write(*pending[:3])
            # the copy is as large as the rule state (2 MB with 10,000 sensors): not kept
            # while the thread waits for the next one
            del pending

    def _durable(self, mark: int) -> bool:
        """Wait until the alarm changes made before a copy are on disk; False if stopped."""
        if self.committer is None:
            return True
        while not self.committer.durable(mark, 1.0):
            with self._cond:
                if self._stop:
                    return False
        return True

    def _write(self, engine: RuleEngine, arrays: dict[str, Any], taken: float) -> None:
        started = self.clock()
        try:
            save_state(engine, self.rules_path, arrays, now=taken)
            self._cost = self._copy_s + self.clock() - started
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
        self._write(self.engine, snapshot_arrays(self.engine), time.time())
