"""The daemon's side of the uplink courier in a process of its own (``uplink.process: true``;
see :mod:`parkwatch.alarms.courierworker`).

To the dispatcher it is a courier like any other: it is woken when rows are committed, told
which fire raises to send first, handed changes the store could not commit; its counters,
its latencies (``/metrics``) and its broker connection (``ready``) are the worker's.  The
committing thread never publishes for it (the worker has the connection), but it hands the
worker the rows it commits while the worker's courier is idle, with the idle spell the worker
last reported, and the worker publishes them at once if that spell still lasts (express, see
:mod:`parkwatch.alarms.express`); fire raises are named to it with every commit.  The
worker's marks come back to the commit stage, which writes them with its next group.

A worker that dies is logged and started again, at once the first time and then with a growing
pause; the new one reads every undelivered row from the outbox again (the command center drops
what it already has by ``(alarm_id, seq)``), and the courier counts as not ready meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parkwatch.alarms.courierworker import courier_main
from parkwatch.alarms.express import key_of
from parkwatch.alarms.records import Mark
from parkwatch.alarms.store import Pending
from parkwatch.config.delivery import UPLINK
from parkwatch.config.model import ParkConfig

log = logging.getLogger("parkwatch.delivery")

#: pause before starting a dead worker again: doubled each time it dies young, up to the most
RESTART_S, RESTART_MAX_S = 1.0, 30.0
#: a worker that ran this long before dying was not crash-looping: the pause starts over
STABLE_S = 60.0
#: an idle mark is the worker's spell in these low bits, the worker's number above them
SPELL_BITS = 40
SPELL_MASK = (1 << SPELL_BITS) - 1


class CourierProcess:
    """The uplink courier, run by a worker process."""

    sender = None  # the worker's; nothing here publishes

    def __init__(self, cfg: ParkConfig, store_path: Path,
                 marks: Callable[[list[Mark]], None],
                 on_delivered: Callable[[float], None] | None = None) -> None:
        self.name = UPLINK
        self._cfg = cfg
        self.store_path = store_path
        self._marks = marks
        self.on_delivered = on_delivered
        #: the worker's broker connection is up
        self.ready = threading.Event()
        self.delivered = self.failures = self.expired = 0
        self.expressed = self.prioritised = 0
        self.failing = False
        self.idle = False
        self.last_latency_s: float | None = None
        self.restarts = 0
        #: the totals of the workers before this one
        self._base = (0, 0, 0, 0, 0)
        self._conn: Any = None
        self._proc: Any = None
        self._send_lock = threading.Lock()
        #: the idle spell the worker last reported, tagged with the worker (see idle_mark)
        self._spell: int | None = None
        self._spell_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parkwatch-courier-uplink",
                                        daemon=True)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a threaded daemon
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=courier_main, name="parkwatch-courier-uplink",
                           args=(self._cfg, str(self.store_path), theirs,
                                 logging.getLogger().level), daemon=True)
        proc.start()
        theirs.close()
        self._conn, self._proc = mine, proc
        self.started_at = time.monotonic()

    @property
    def alive(self) -> bool:
        """The reader runs (it restarts a dead worker itself); the watchdog asks."""
        return self._thread.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker once it has handed back its last marks."""
        self._stopping.set()
        self._send(("stop",))
        proc = self._proc
        if proc is not None:
            proc.join(max(timeout, 1.0))
            if proc.is_alive():
                log.warning("courier %s: its process did not stop; terminating it", self.name)
                proc.terminate()
                proc.join(2.0)
        self._thread.join(2.0)
        self.ready.clear()

    # --- what the dispatcher asks of a courier --------------------------------------------
    def idle_mark(self) -> int | None:
        """The worker's idle spell as last reported (None: busy, as far as is known), with
        the number of the worker in the high bits: a mark taken before a restart never
        matches a spell of the next worker."""
        return self._spell

    def read_mark(self) -> int:
        return -1  # the worker looks a fire raise up in the outbox instead

    def express(self, rows: list[Pending], mark: int | None) -> bool:
        """Committed rows: to the worker to publish if it is still in idle spell `mark`,
        else a wake-up (it reads them from the outbox).  False: the worker decides."""
        if mark is None or mark >> SPELL_BITS != self.restarts:
            self.wake()
            return False
        self._send(("express", rows, mark & SPELL_MASK))
        with self._spell_lock:  # it wakes now: the next commit wakes it until it is idle again
            if self._spell == mark:
                self._spell = None
        return False

    def priority(self, rows: list[Pending], mark: int, sources: list[str] | None = None,
                 publish: bool = True) -> bool:
        names = sources or [""] * len(rows)
        self._send(("first", [(*key_of(r), s) for r, s in zip(rows, names, strict=True)],
                    publish))
        return False

    def wake(self) -> None:
        self._send(("wake",))

    def offer(self, rows: list[Pending]) -> None:
        self._send(("offer", rows))

    @property
    def carrying(self) -> bool:
        return not self.idle and not self.failing and self.ready.is_set()

    def health(self) -> dict[str, object]:
        return {"delivered": self.delivered, "expressed": self.expressed,
                "prioritised": self.prioritised, "failures": self.failures,
                "expired": self.expired, "failing": self.failing, "process": self.pid,
                "restarts": self.restarts}

    # --- the worker's messages ------------------------------------------------------------
    def _run(self) -> None:
        pause = RESTART_S
        while True:
            self._read(self._conn)
            if self._stopping.is_set():
                return
            self.ready.clear()
            self._proc.join(1.0)
            code = self._proc.exitcode
            lived = time.monotonic() - self.started_at
            pause = RESTART_S if lived >= STABLE_S else pause
            log.error("courier %s: its process ended (exit code %s) after %.0f s; starting it "
                      "again in %.0f s", self.name, code, lived, pause if self.restarts else 0)
            if self.restarts and self._stopping.wait(pause):
                return
            if self.restarts:
                pause = min(pause * 2, RESTART_MAX_S)
            self.restarts += 1
            self._base = (self.delivered, self.failures, self.expired, self.expressed,
                          self.prioritised)
            self.idle = self.failing = False
            with self._spell_lock:
                self._spell = None
            self._spawn()

    def _read(self, conn: Any) -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            except Exception:  # a worker's bug: never the daemon's end
                log.exception("courier %s: a message from its process is unreadable",
                              self.name)
                continue
            what = msg[0]
            if what == "marks":
                self._marks(msg[1])
            elif what == "stats":
                self._stats(msg[1], msg[2])
            elif what == "idle":
                with self._spell_lock:
                    self._spell = self.restarts << SPELL_BITS | msg[1]
            elif what == "state":
                if msg[1]:
                    self.ready.set()
                else:
                    self.ready.clear()

    def _stats(self, stats: dict[str, Any], latencies: list[float]) -> None:
        base = self._base  # a new worker counts from 0; the totals shown keep growing
        self.delivered = base[0] + stats["delivered"]
        self.failures = base[1] + stats["failures"]
        self.expired = base[2] + stats["expired"]
        self.expressed = base[3] + stats["expressed"]
        self.prioritised = base[4] + stats["prioritised"]
        self.failing, self.idle = stats["failing"], stats["idle"]
        self.last_latency_s = stats["last_latency_s"]
        if self.on_delivered is not None:
            for latency in latencies:
                self.on_delivered(latency)

    def _send(self, msg: tuple[Any, ...]) -> None:
        # a worker gone: what it had not delivered is read again from the outbox by the next
        with self._send_lock, contextlib.suppress(OSError, ValueError, AttributeError):
            self._conn.send(msg)
