"""The bus scheduler: the one owner of an RS-485 port, one request on the wire at a time.

An RS-485 bus is half duplex, so every request to every slave on a port goes through this
thread, in this order of preference (the same whether the port is the gateway's own or a
serial server's over TCP, and for a Modbus TCP connection: its :class:`~.link.Link` carries
the requests, see :mod:`.link`):

1. writes to outputs (sounders, strobes, relays) and their read-backs, the moment they come
   (:mod:`.outputs`): an alarm's sounders never wait behind a poll but the one on the wire;
2. the priority lane: discrete-input polls (fire-button contacts) whenever they are due;
3. the periodic checks of the outputs;
4. bulk register polls, earliest due first.

Between transactions the line is left silent for t3.5.  A slave that does not answer within
``timeout_s`` is retried ``retries`` times; after ``quarantine_after`` failed polls in a row it
is quarantined: its polls are skipped (its sensors report comm_fail at their usual cadence, at
no cost to the bus) and it is re-probed after ``reprobe_s``, doubling up to ``backoff_max_s``,
so one dead slave cannot stall the others.  A port that errors or vanishes is closed and
reopened (a TCP connection reconnected) with backoff from 0.5 s up to the link's
``reopen_max_s``; meanwhile every sensor reports comm_fail at its cadence.  Losses and
recoveries are logged once each.

The loop is a thread of its own rather than jobs on the daemon's timers: a half-duplex bus
needs one serialised queue with priorities and millisecond timing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from parkwatch.drivers.modbus_rtu.blocks import PollBlock
from parkwatch.drivers.modbus_rtu.config import ModbusMaster
from parkwatch.drivers.modbus_rtu.link import Link
from parkwatch.drivers.tcpstream import LinkPending

log = logging.getLogger("parkwatch.drivers.modbus")

_PENDING_POLL_S = 0.05  # how often a connect under way is looked at

OnValues = Callable[[PollBlock, np.ndarray, float], None]
OnFail = Callable[[PollBlock, float], None]


@dataclass
class BusJob:
    """One request that is not a poll (an output's write or read-back): its frame, the length
    of a normal answer, and who is told the answer's PDU (None: no valid answer)."""

    slave: int
    request: bytes
    response_len: int
    on_answer: Callable[[Any], None]


@dataclass
class SlaveState:
    slave: int
    failures_in_row: int = 0
    quarantined: bool = False
    probe_at: float = 0.0
    backoff: float = 0.0
    polls: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    exceptions: int = 0


class BusScheduler:
    def __init__(self, cfg: ModbusMaster, blocks: list[PollBlock],
                 on_values: OnValues, on_fail: OnFail, link: Link) -> None:
        self.cfg = cfg
        self.link = link
        self.name = link.name
        self.blocks = blocks
        self.lane = [b for b in blocks if b.priority == 0]
        self.bulk = [b for b in blocks if b.priority != 0]
        self.slaves = {b.slave: SlaveState(b.slave) for b in blocks}
        self.on_values = on_values
        self.on_fail = on_fail
        #: called with True/False when the port opens or is lost
        self.state_listeners: list[Callable[[bool], None]] = []
        #: the link while it is open, else None
        self.port: Link | None = None
        self.port_lost_at: float | None = None
        self._reopen_at = 0.0
        self._reopen_backoff = 0.5
        self.bus_free_at = 0.0
        self._lane_streak = 0
        self.transactions = 0
        #: attempts to reopen a lost port that failed, since it was lost (health)
        self.failed_reopens = 0
        self.busy_s = 0.0
        #: output writes and read-backs (first of all), and output checks (after the lane)
        self.writes: deque[BusJob] = deque()
        self.checks: deque[BusJob] = deque()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"parkwatch-bus-{cfg.id}",
                                        daemon=True)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        now = time.monotonic()
        for i, b in enumerate(self.blocks):
            b.next_due = now + 0.001 * i  # spread the first round, keep the order stable
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._close()
        with contextlib.suppress(OSError):  # a connect still under way is not wanted either
            self.link.close()
        for job in [*self.writes, *self.checks]:
            job.on_answer(None)  # never sent: the output's supervision hears of it
        self.writes.clear()
        self.checks.clear()

    def submit(self, job: BusJob, *, check: bool = False) -> None:
        """Queue an output's write or read-back (first of all), or a periodic check (after
        the fire-button lane); from any thread."""
        (self.checks if check else self.writes).append(job)
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def is_open(self) -> bool:
        return self.port is not None

    # --- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        _fine_timer_slack()
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the bus must outlive any one bad transaction
                log.exception("bus %s: unexpected error; continuing", self.name)
                self._stop.wait(0.1)

    def _step(self) -> None:
        now = time.monotonic()
        if self.port is None and now >= self._reopen_at:
            self._open()
        silent = self.bus_free_at - now
        if silent > 0 and self.port is not None and not self.writes:
            # the line's t3.5 of silence is waited out before the next request is chosen, so
            # that an output's write queued meanwhile goes next, not after that poll
            self._wake.wait(silent)
            self._wake.clear()
            now = time.monotonic()
        if self.writes:
            self._job(self.writes.popleft())
            return
        block = self._next_due(now)
        if self.checks and (block is None or block.priority != 0):
            self._job(self.checks.popleft())
            return
        if block is None:
            self._wake.wait(max(0.0, min(self._earliest(), self._reopen_at if self.port is None
                                         else float("inf")) - time.monotonic()))
            self._wake.clear()
            return
        state = self.slaves[block.slave]
        block.next_due = max(block.next_due + block.interval, now)
        if self.port is None or (state.quarantined and now < state.probe_at):
            self.on_fail(block, time.time())  # known bad: report at cadence, spare the bus
            return
        self._poll(block, state)

    def _next_due(self, now: float) -> PollBlock | None:
        """The priority lane first; bulk polls by earliest due.

        Fairness: when every lane block has just run back to back while register polls were
        waiting (a DI interval shorter than the lane's own bus time), one register poll goes
        next, so the lane can delay bulk polls but never starve them.
        """
        lane = self._earliest_due(self.lane, now)
        bulk = self._earliest_due(self.bulk, now)
        if lane is not None and (bulk is None or self._lane_streak < len(self.lane)):
            self._lane_streak = self._lane_streak + 1 if bulk is not None else 0
            return lane
        self._lane_streak = 0
        return bulk

    @staticmethod
    def _earliest_due(blocks: list[PollBlock], now: float) -> PollBlock | None:
        best = None
        for b in blocks:
            if b.next_due <= now and (best is None or b.next_due < best.next_due):
                best = b
        return best

    def _earliest(self) -> float:
        return min((b.next_due for b in self.blocks), default=time.monotonic() + 1.0)

    # --- one poll, with retries -------------------------------------------------------------
    def _poll(self, block: PollBlock, state: SlaveState) -> None:
        attempts = 1 if state.quarantined else 1 + self.cfg.retries
        for _ in range(attempts):
            if self.port is None or self._stop.is_set():
                break
            pdu = self._transact(block, state)
            if pdu is not None:
                self._recovered(state)
                if getattr(pdu, "function_code", 0) & 0x80:
                    # alive, but the register map is wrong: no data, and no quarantine
                    state.exceptions += 1
                    if block.failures == 0 or block.polls > 0:
                        log.warning("bus %s: slave %d refuses %s%d+%d with exception code %s; "
                                    "check the sensor addresses", self.name, block.slave,
                                    block.table, block.start, block.count,
                                    getattr(pdu, "exception_code", "?"))
                    block.polls = 0
                    block.failures += 1
                    self.on_fail(block, time.time())
                    return
                state.polls += 1
                block.polls += 1
                self.on_values(block, block.values(pdu), time.time())
                return
        block.failures += 1
        self.on_fail(block, time.time())
        if self.port is not None:  # a lost port or connection is no fault of the slave's
            self._failed(state)

    def _job(self, job: BusJob) -> None:
        """An output's request, with the retries of a poll (a quarantined slave is tried too:
        a sounder matters more than the bus time)."""
        state = self.slaves.get(job.slave) or self.slaves.setdefault(job.slave,
                                                                    SlaveState(job.slave))
        pdu = None
        for _ in range(1 + self.cfg.retries):
            if self.port is None or self._stop.is_set():
                break
            pdu = self._exchange(job.request, job.response_len, state)
            if pdu is not None:
                self._recovered(state)
                break
        job.on_answer(pdu)

    def _transact(self, block: PollBlock, state: SlaveState) -> Any:
        pdu = self._exchange(block.request, block.response_len, state)
        if pdu is None:
            return None
        fc = getattr(pdu, "function_code", 0)
        values = getattr(pdu, "bits" if block.is_bits else "registers", None) or []
        if not fc & 0x80 and (fc != block.request[1] or len(values) < block.count):
            # a well-formed answer to another request (other function code, too few values):
            # block.values() raised IndexError on it (found by tests/test_fuzz.py)
            state.bad_frames += 1
            return None
        return pdu

    def _exchange(self, request: bytes, response_len: int, state: SlaveState) -> Any:
        """One request on the wire and its answer's PDU (None: none, or not a valid frame)."""
        link = self.port
        assert link is not None
        wait = self.bus_free_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # t3.5: the line must be silent between frames
        t0 = time.monotonic()
        try:
            pdu, timed_out = link.exchange(request, response_len, state.slave)
        except OSError as exc:  # serial.SerialException and ConnectionError are OSErrors
            self._port_failed(exc)
            return None
        end = link.answered_at  # the answer's last byte: the line's silence counts from there
        if self.port_lost_at is not None:
            self._back()
        self.transactions += 1
        self.busy_s += end - t0
        self.bus_free_at = end + link.gap_s
        if timed_out:
            state.timeouts += 1
            return None
        if pdu is None:
            state.bad_frames += 1
            return None
        fc = getattr(pdu, "function_code", 0)
        if fc & 0x7F != request[1]:
            state.bad_frames += 1  # an answer to another request
            return None
        return pdu

    # --- slave health ---------------------------------------------------------------------
    def _failed(self, state: SlaveState) -> None:
        state.failures_in_row += 1
        now = time.monotonic()
        if state.quarantined:
            state.backoff = min(state.backoff * 2, self.cfg.backoff_max_s)
            state.probe_at = now + state.backoff
        elif state.failures_in_row >= self.cfg.quarantine_after:
            state.quarantined = True
            state.backoff = self.cfg.reprobe_s
            state.probe_at = now + state.backoff
            log.warning("bus %s: slave %d does not answer (%d polls in a row); quarantined, "
                        "re-probing from every %.0f s up to every %.0f s", self.name,
                        state.slave, state.failures_in_row, self.cfg.reprobe_s,
                        self.cfg.backoff_max_s)

    def _recovered(self, state: SlaveState) -> None:
        if state.quarantined:
            log.warning("bus %s: slave %d answers again; back in the schedule", self.name,
                        state.slave)
            now = time.monotonic()
            for b in self.blocks:
                if b.slave == state.slave:
                    b.next_due = min(b.next_due, now)
        state.quarantined = False
        state.failures_in_row = 0

    # --- the port -------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.link.open()
        except LinkPending:
            self._reopen_at = time.monotonic() + _PENDING_POLL_S
            return
        except OSError as exc:
            self.link.close()
            self._note_port_down(exc)
            return
        if self._stop.is_set():  # stopped while connecting (a slow 4G link): not ours now
            self.link.close()
            return
        self.port = self.link
        self.bus_free_at = time.monotonic() + self.link.gap_s
        if self.port_lost_at is None:
            baud = getattr(self.cfg, "baudrate", None)  # a Modbus TCP device has none
            log.info("bus %s: %s, %d slave(s), %d poll block(s)", self.name,
                     f"open at {baud} baud" if baud else "connected", len(self.slaves),
                     len(self.blocks))
            self._back()

    def _back(self) -> None:
        """The port carries requests (again): logged once, the backoff starts over; after a
        loss, at its first request (a device that accepts and closes at once is not back)."""
        if self.port_lost_at is not None:
            log.warning("bus %s: port is back after %.1f s", self.name,
                        time.monotonic() - self.port_lost_at)
        self.port_lost_at = None
        self._reopen_backoff = 0.5
        for listener in self.state_listeners:
            listener(True)

    def _port_failed(self, exc: Exception) -> None:
        self._close()
        self._note_port_down(exc)

    def _note_port_down(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.port_lost_at is not None:
            self.failed_reopens += 1
        else:
            self.port_lost_at = now
            self.failed_reopens = 0
            log.warning("bus %s: port unavailable (%s); reopening with backoff up to %.0f s",
                        self.name, exc, self.link.reopen_max_s)
            for listener in self.state_listeners:
                listener(False)
        self._reopen_at = now + self._reopen_backoff
        self._reopen_backoff = min(self._reopen_backoff * 2, self.link.reopen_max_s)

    def _close(self) -> None:
        if self.port is not None:
            with contextlib.suppress(OSError):
                self.port.close()
            self.port = None

    def health(self) -> dict[str, Any]:
        return {
            "port": self.name, "open": self.port is not None,
            "transactions": self.transactions, "failed_reopens": self.failed_reopens,
            "slaves": {s.slave: {"polls": s.polls, "timeouts": s.timeouts,
                                 "bad_frames": s.bad_frames, "exceptions": s.exceptions,
                                 "quarantined": s.quarantined}
                       for s in self.slaves.values()},
        }


def _fine_timer_slack() -> None:
    """Ask Linux for 1 µs timer slack on this thread (default 50 µs): the t3.5 sleeps between
    frames are 1.75 ms at high baud rates, and oversleeping them is lost bus time."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(29, 1000)  # PR_SET_TIMERSLACK, ns
