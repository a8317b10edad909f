"""The telemetry sink: readings, alarm events and aggregates to InfluxDB, through the spool
when the server is away.

The pipeline hands over references (a reading batch, committed event payloads) and goes back
to alarms; everything else happens on the sink's own thread:

    take what waits → line protocol in bulk → write, or append to the spool
                    → replay the spool in order while the server takes it

Flushes happen when `batch_points` are waiting or `flush_interval_s` has passed, alarm events
at once, except while the alarm path is busy (:attr:`TelemetrySink.alarms_busy`: changes wait
to be committed or carried to the command center): then the sink holds its flush for up to
:data:`YIELD_MAX_S`, so that building line protocol does not take the interpreter from the
alarms themselves in a storm; the points wait in memory, bounded as always.  Order is kept
per lane: while a lane has spooled records, new batches of that lane join the spool behind
them instead of overtaking them.  A crash loses at most what waits in
memory (one flush interval); see :mod:`parkwatch.telemetry.spool` for what is on disk.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parkwatch.alarms.routing import hazard
from parkwatch.config.model import ParkConfig
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rejections import Rejections
from parkwatch.telemetry.lineproto import ReadingLines, event_line, to_ms
from parkwatch.telemetry.spool import Spool
from parkwatch.telemetry.spoolfiles import EVENTS, TELEMETRY
from parkwatch.telemetry.writer import InfluxWriter, Outcome

log = logging.getLogger("parkwatch.telemetry")

SPOOL_DIR = "spool"
REPLAY_BUDGET_S = 0.5  # replay this long per round, then look at new data again
#: points waiting in memory beyond this (the thread cannot keep up: a disk that stalls, a
#: serialisation slower than the flood) drop the oldest waiting readings, counted as overflow
MAX_WAITING_FLUSHES = 20
#: the longest a flush waits for a busy alarm path, and how often it looks again meanwhile
YIELD_MAX_S = 5.0
YIELD_POLL_S = 0.05


class TelemetrySink:
    def __init__(self, cfg: ParkConfig, park: ParkModel, state_dir: Path,
                 writer: InfluxWriter | None = None) -> None:
        self.cfg = cfg.telemetry
        self.lines = ReadingLines(park)
        self.spool = Spool(state_dir / SPOOL_DIR, self.cfg.spool)
        self.writer = writer if writer is not None else (
            InfluxWriter(self.cfg.influxdb) if self.cfg.influxdb is not None else None)
        self.rejected = Rejections(log, "telemetry batch")
        self._waiting: deque[tuple[str, Any, int]] = deque()  # (kind, data, points)
        self._waiting_points = 0
        self._urgent = False
        self._cond = threading.Condition()
        self._stop = False
        self.points = {"written": 0, "spooled": 0, "replayed": 0, "rejected": 0, "overflow": 0}
        self.max_waiting = max(100_000, MAX_WAITING_FLUSHES * self.cfg.batch_points)
        self._overflow_logged = False
        self.write_errors = 0
        self.up: bool | None = None  # None: not tried yet
        self.last_error = ""
        self._retry_at = 0.0
        self._backoff = self.cfg.retry.initial_s
        #: whether alarm changes wait to be committed or delivered (the daemon sets it)
        self.alarms_busy: Callable[[], bool] = lambda: False
        #: flushes held for a busy alarm path (tests and /metrics read it)
        self.yielded = 0
        self._thread = threading.Thread(target=self._run, name="parkwatch-telemetry",
                                        daemon=True)

    # --- from other threads -------------------------------------------------------------------

    def readings(self, batch: ReadingBatch) -> None:
        """A batch the rules have seen (pipeline thread): queued, serialised later."""
        if not self.cfg.readings or not len(batch):
            return
        self._put("readings", batch, len(batch), urgent=False)

    def events(self, payloads: list[bytes | dict[str, Any]]) -> None:
        """Committed alarm events (contract JSON, or the event as built): written at once."""
        if payloads:
            self._put("events", payloads, len(payloads), urgent=True)

    def points_text(self, text: str, points: int) -> None:
        """Ready-made line protocol (aggregates) for the telemetry lane."""
        if points:
            self._put("text", text, points, urgent=False)

    def repark(self, park: ParkModel) -> None:
        """A reload renumbered the sensors (pipeline thread): readings queued from now on use
        the new park's tags; those queued before keep the old."""
        self._put("lines", ReadingLines(park), 0, urgent=False)

    def _put(self, kind: str, data: Any, points: int, urgent: bool) -> None:
        with self._cond:
            self._waiting.append((kind, data, points))
            self._waiting_points += points
            if self._waiting_points > self.max_waiting:
                self._shed()
            if urgent or self._waiting_points >= self.cfg.batch_points:
                self._urgent = True
                self._cond.notify()

    def _shed(self) -> None:
        """Memory is bounded too: drop the oldest waiting readings (never events), counted."""
        kept: deque[tuple[str, Any, int]] = deque()
        while self._waiting and self._waiting_points > self.max_waiting // 2:
            item = self._waiting.popleft()
            if item[0] in ("events", "lines"):
                kept.append(item)
                continue
            self._waiting_points -= item[2]
            self.points["overflow"] += item[2]
        self._waiting.extendleft(reversed(kept))
        if not self._overflow_logged:
            log.error("telemetry: more than %d points waiting in memory (the telemetry thread "
                      "cannot keep up); the oldest readings are dropped and counted as "
                      "overflow", self.max_waiting)
            self._overflow_logged = True

    def stats(self) -> dict[str, Any]:
        server = "none" if self.writer is None else ("up" if self.up else "down")
        return {"server": server, "points": dict(self.points),
                "write_errors": self.write_errors, "last_error": self.last_error,
                "waiting_points": self._waiting_points, "spool": self.spool.stats()}

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.writer is None:
            log.info("telemetry: no InfluxDB configured; keeping up to %d bytes in the spool",
                     self.cfg.spool.max_bytes)
        else:
            log.info("telemetry: writing to %s", self.writer.where)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Write or spool what waits in memory, then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("telemetry: still writing at stop; what waits in memory is lost")
            return
        self.spool.close()
        if self.writer is not None:
            self.writer.close()

    # --- the sink thread ----------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.cfg.flush_interval_s
        next_flush = time.monotonic() + interval
        while True:
            with self._cond:
                while not (self._stop or self._urgent):
                    now = time.monotonic()
                    if now >= next_flush:
                        break
                    wait = next_flush - now
                    if self.writer is not None and not self.spool.empty():
                        wait = min(wait, max(0.0, self._retry_at - time.time()))
                        if wait == 0.0:
                            break
                    self._cond.wait(wait)
                self._yield_to_alarms()
                items = list(self._waiting)
                self._waiting.clear()
                self._waiting_points = 0
                self._urgent = False
                stopping = self._stop
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + interval
            try:
                self._flush(items)
                if not stopping:
                    self._replay()
                self.spool.sync()
            except Exception:  # telemetry must never take the daemon down
                log.exception("telemetry: flush failed")
            if stopping:
                return

    def _yield_to_alarms(self) -> None:
        """Hold the flush (the condition held) while the alarm path is busy, up to
        :data:`YIELD_MAX_S`; a stop never waits."""
        until = time.monotonic() + YIELD_MAX_S
        held = False
        while not self._stop and self._busy():
            left = until - time.monotonic()
            if left <= 0:
                break
            held = True
            self._cond.wait(min(YIELD_POLL_S, left))
        self.yielded += held

    def _busy(self) -> bool:
        try:
            return self.alarms_busy()
        except Exception:  # a question about the alarm path must never stop telemetry
            log.exception("telemetry: asking whether the alarm path is busy failed")
            self.alarms_busy = lambda: False
            return False

    def _flush(self, items: list[tuple[str, Any, int]]) -> None:
        events: list[str] = []
        texts: list[bytes] = []
        n = 0
        first_ms = 0
        for kind, data, points in items:
            if kind == "events":
                events += (self._event(p) for p in data)
            elif kind == "lines":
                self.lines = data
            elif kind == "readings":
                if not texts:
                    first_ms = int(to_ms(data.ts[:1])[0])
                for pieces, k in self.lines.encoded(data):
                    texts += pieces
                    n += k
                    if n >= self.cfg.batch_points:
                        self._send(TELEMETRY, texts, n, first_ms)
                        texts, n = [], 0
            else:
                texts.append(data.encode("utf-8"))
                n += points
        encoded = [e.encode("utf-8") for e in events if e]
        if encoded:
            self._send(EVENTS, encoded, len(encoded), 0)
        if texts:
            self._send(TELEMETRY, texts, n, first_ms)

    def _event(self, payload: bytes | dict[str, Any]) -> str:
        try:
            event = payload if isinstance(payload, dict) else json.loads(payload)
            return event_line(event, hazard(event))
        except (ValueError, KeyError, TypeError) as exc:
            self.points["rejected"] += 1
            self.rejected.reject("bad_event", f"alarm event not written: {exc!r}")
            return ""

    def _send(self, lane: str, pieces: list[bytes], points: int, first_ms: int) -> None:
        """Write one batch (its pieces as they are: no joined copy), or spool it."""
        if (self.writer is not None and self.spool.empty(lane) and time.time() >= self._retry_at
                and not (self._stop and self.up is not True)):  # stopping: no slow first tries
            outcome = self._write(pieces, points)
            if outcome is not Outcome.RETRY:
                if outcome is Outcome.OK:
                    self.points["written"] += points
                return
        if self.spool.append(lane, b"".join(pieces), points, first_ms):
            self.points["spooled"] += points

    def _replay(self) -> None:
        """Send spooled records, oldest first (events lane first), while the server takes
        them; at most REPLAY_BUDGET_S per round so new data is looked at in between."""
        if self.writer is None:
            return
        deadline = time.monotonic() + REPLAY_BUDGET_S
        while time.monotonic() < deadline and time.time() >= self._retry_at:
            rec = self.spool.peek()
            if rec is None:
                return
            outcome = self._write(rec.payload, rec.points)
            if outcome is Outcome.RETRY:
                return
            if outcome is Outcome.OK:
                self.points["replayed"] += rec.points
            self.spool.pop(rec)
            if self.spool.empty():
                log.info("telemetry: spool drained")

    def _write(self, payload: bytes | list[bytes], points: int) -> Outcome:
        assert self.writer is not None
        result = self.writer.write(payload)
        if result.outcome is Outcome.OK:
            if self.up is not True:
                if self.up is False:
                    log.info("telemetry: %s takes writes again; replaying %d spooled "
                             "point(s)", self.writer.where, self.spool.points)
                self.up = True
            self._backoff = self.cfg.retry.initial_s
            return Outcome.OK
        self.last_error = result.error
        if result.outcome is Outcome.REFUSED:
            self.points["rejected"] += points
            self.rejected.reject("refused", f"{self.writer.where} refused {points} point(s): "
                                 f"{result.error}")
            return Outcome.REFUSED
        self.write_errors += 1
        if self.up is not False:
            log.warning("telemetry: cannot write to %s (%s); spooling, retrying with backoff",
                        self.writer.where, result.error)
            self.up = False
        self._retry_at = time.time() + self._backoff
        self._backoff = min(self._backoff * self.cfg.retry.factor, self.cfg.retry.max_s)
        return Outcome.RETRY
