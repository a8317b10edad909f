"""The receive side of the simulated RS-485 line: the master's bytes, time-stamped as they
arrived, joined into request frames by the line's timing, and the bus's counters.

A pty hands over whatever the master wrote at once, so the line's timing is reconstructed
from the arrival times: a fragment occupies the line for ``len(bytes) × char_time`` from its
first byte, and ends when pymodbus's RTU framer finds a complete frame in it or, failing that,
after t3.5 of silence (line noise, dropped).  A frame whose first byte came sooner than t3.5
after the previous frame on the line (either direction) is a t3.5 violation; bytes that came
while a response was on the line make the frame a collision.  :class:`SimBus` owns the thread
and the pty, answers the frames and tells the receiver when its responses end.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.framer import FramerRTU

log = logging.getLogger("parkwatch.firmware_sim.modbus")


@dataclass
class BusStats:
    """What the bus saw.  ``requests`` counts every frame with a valid CRC, whoever it is for."""

    requests: int = 0
    answered: int = 0  # responses sent (normal or exception)
    exceptions: int = 0  # of which exception responses
    broadcasts: int = 0  # address 0: never answered
    ignored: int = 0  # addressed to an unknown or dead slave
    crc_errors: int = 0  # complete frames whose CRC was wrong
    discarded: int = 0  # fragments ended by t3.5 of silence before they made a frame
    collisions: int = 0  # sent while a response was on the line: garbled, not answered
    t35_violations: int = 0  # a frame started sooner than t3.5 after the previous one ended
    per_slave: dict[int, int] = field(default_factory=dict)  # requests by slave address
    answered_per_slave: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """A complete request frame with a valid CRC, as it was on the line."""

    dev_id: int  # the slave address it is for (0: broadcast)
    pdu: bytes
    end: float  # when its last character had left the line (monotonic clock)
    collided: bool  # part of it was sent while a response was on the line


class RequestReceiver:
    """Joins the master's bytes into request frames; the bus thread alone calls it.

    ``stats`` and ``stats_lock`` are the bus's: the receiver counts t3.5 violations, discarded
    fragments, CRC errors and the requests (by slave, broadcasts, collisions) under the lock.
    ``line_free_at`` is when the last frame on the line ended; the bus sets it when a response
    of its own ends (or is cut off).
    """

    def __init__(self, path: Path, t35: float, char_time: float, framer: FramerRTU,
                 stats: BusStats, stats_lock: threading.Lock) -> None:
        self.path = path  # for the log
        self.t35 = t35
        self.char_time = char_time
        self.line_free_at = -math.inf  # end of the last frame on the line (either direction)
        self._framer = framer
        self._stats = stats
        self._stats_lock = stats_lock
        self._rx = bytearray()
        self._rx_first = 0.0
        self._rx_end = 0.0  # when the fragment's last character has left the line, at least
        self._rx_collided = False

    @property
    def pending(self) -> bool:
        """Bytes have arrived that have not made a frame yet."""
        return bool(self._rx)

    @property
    def silence_ends_at(self) -> float:
        """When t3.5 of silence after the pending bytes ends them (meaningful while pending)."""
        return self._rx_end + self.t35

    def clear(self) -> None:
        """Forget the pending bytes (the cable was cut)."""
        self._rx.clear()

    def receive(self, t: float, data: bytes, during_tx: bool) -> None:
        """Bytes the master sent, read at ``t``; ``during_tx``: while a response was going out."""
        if self._rx and t >= self._rx_end + self.t35:
            self.end_fragment()  # the silence ended the previous fragment
        if not self._rx:
            self._rx_first = t
            self._rx_collided = during_tx
            if during_tx or t < self.line_free_at + self.t35:
                with self._stats_lock:
                    self._stats.t35_violations += 1
                log.debug("simulated bus %s: frame started %.2f ms after the line was free "
                          "(t3.5 = %.2f ms)", self.path, (t - self.line_free_at) * 1e3,
                          self.t35 * 1e3)
        elif during_tx:
            self._rx_collided = True
        self._rx += data
        self._rx_end = max(t, self._rx_first + len(self._rx) * self.char_time)

    def end_fragment(self) -> None:
        """t3.5 of silence after bytes that never made a frame: line noise, dropped."""
        self.line_free_at = max(self.line_free_at, self._rx_end)
        self._rx.clear()
        with self._stats_lock:
            self._stats.discarded += 1

    def take_frame(self) -> Request | None:
        """The request the pending bytes make, counted; None while incomplete or when the
        complete frame's CRC was wrong (counted as a CRC error)."""
        if not self._rx:
            return None
        used, dev_id, _tid, pdu_bytes = self._framer.decode(bytes(self._rx))
        if not used:
            return None  # incomplete: wait for more bytes or for t3.5 of silence
        req_end, collided = self._rx_end, self._rx_collided
        self._rx.clear()
        self.line_free_at = max(self.line_free_at, req_end)
        if not pdu_bytes:
            with self._stats_lock:
                self._stats.crc_errors += 1
            return None
        with self._stats_lock:
            st = self._stats
            st.requests += 1
            st.per_slave[dev_id] = st.per_slave.get(dev_id, 0) + 1
            if collided:
                st.collisions += 1
            elif dev_id == 0:
                st.broadcasts += 1
        return Request(dev_id, pdu_bytes, req_end, collided)
