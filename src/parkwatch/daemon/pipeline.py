"""The alarm path, top to bottom: inbox → decode → rules → lifecycle → uplink.

Batching is adaptive: the pipeline thread takes whatever has arrived, evaluates it, delivers the
changes, and goes back for more.  It never waits for a batch to fill or a timer to tick, so a
lone fire-button press is evaluated the moment it arrives and a flood is evaluated in bulk.
"""

from __future__ import annotations

import logging
import threading
import time
from queue import Empty, SimpleQueue
from typing import Any

from parkwatch.alarms.lifecycle import AlarmBook
from parkwatch.alarms.uplink import UplinkPublisher
from parkwatch.readings import ReadingBatch
from parkwatch.rules.engine import RuleEngine

log = logging.getLogger("parkwatch.pipeline")

_STOP = object()


class _Calls:
    """Inbox source for work that must run on the pipeline thread (it owns the counters)."""

    @staticmethod
    def decode(items: list[tuple[Any, Any]]) -> ReadingBatch:
        for _, fn in items:
            fn()
        return ReadingBatch.empty()


_CALLS = _Calls()


class Inbox:
    """Where drivers drop raw input: (decoder, ...) tuples, decoded later in bulk."""

    def __init__(self) -> None:
        self.queue: SimpleQueue[Any] = SimpleQueue()
        self.put = self.queue.put

    def call(self, fn: Any) -> None:
        """Run ``fn()`` on the pipeline thread, in turn with the readings."""
        self.queue.put((_CALLS, fn))


class Pipeline:
    def __init__(self, inbox: Inbox, engine: RuleEngine, book: AlarmBook,
                 uplink: UplinkPublisher, max_batch: int = 50_000) -> None:
        self.inbox = inbox
        self.engine = engine
        self.book = book
        self.uplink = uplink
        self.max_batch = max_batch
        self.batches = 0
        self.errors = 0
        self.last_loop = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="parkwatch-pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self.inbox.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        get, get_nowait = self.inbox.queue.get, self.inbox.queue.get_nowait
        while True:
            items = [get()]
            try:
                while len(items) < self.max_batch:
                    items.append(get_nowait())
            except Empty:
                pass
            stop = any(item is _STOP for item in items)
            if stop:
                items = [item for item in items if item is not _STOP]
            try:
                self.process(items)
            except Exception:  # the alarm path must outlive any one bad batch
                self.errors += 1
                log.exception("pipeline: batch of %d input(s) failed", len(items))
            self.last_loop = time.monotonic()
            if stop:
                return

    def process(self, items: list[Any]) -> None:
        if not items:
            return
        by_source: dict[Any, list[Any]] = {}
        for item in items:
            by_source.setdefault(item[0], []).append(item)
        batch = ReadingBatch.concat([src.decode(group) for src, group in by_source.items()])
        self.batches += 1
        transitions = self.engine.evaluate(batch)
        if len(transitions):
            changes = self.book.apply(transitions)
            if changes:
                self.uplink.publish_changes(changes)
