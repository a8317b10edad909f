"""Weighing-indicator driver: one thread owns one serial port and reads one indicator.

The indicator streams frames on its own (continuous mode); the thread reads whatever arrived,
feeds the format's parser and puts ready-made readings into the inbox (receipt time as the
reading's time: these frames carry none).  The driver owns the port's whole life:

* the port cannot be opened or fails (cable pulled, USB adapter removed): the port is closed,
  the sensor gets a COMM_FAIL reading (then at most one a second while it lasts), and opening
  is retried with exponential backoff from 0.5 s up to ``reopen_max_s``.  The loss is logged
  once and the recovery (port open again) once — never per retry, so a dead port cannot flood
  the journal.  The backoff starts afresh only after a valid frame: a port that opens and
  fails at once keeps backing off;
* the port is open but no valid frame arrived for ``silence_s`` (indicator off, wrong baud
  rate, wrong format): COMM_FAIL readings at most once a second, "indicator silent" logged
  once and "talking again" once;
* bad frames are counted per reason in ``rejections`` (rate-limited logging).
"""

from __future__ import annotations

import contextlib
import logging
import termios
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from parkwatch.config.model import ParkConfig
from parkwatch.drivers.base import BrokerLink, DirectReadings, Driver
from parkwatch.drivers.metricfamily import MetricSample
from parkwatch.drivers.serial_indicator.config import SerialIndicatorDriverConfig
from parkwatch.drivers.serial_indicator.formats import FORMATS, Frame, Rejection
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.rejections import Rejections, excerpt

log = logging.getLogger("parkwatch.drivers.serial_indicator")

#: mass units the driver converts between: how many kg one of each is
_KG_PER = {"g": 0.001, "kg": 1.0, "t": 1000.0}
READ_TIMEOUT_S = 0.1  # how long one read may block: bounds the reaction to stop()
BACKOFF_START_S = 0.5
COMM_FAIL_EVERY_S = 1.0


def unit_factor(sent: str | None, wanted: str) -> float | None:
    """Factor turning a value in ``sent`` into ``wanted``; None when not trivially known.

    ``None`` as ``sent`` means the frame carries no unit: it is what the indicator is set to,
    which the config says is the sensor's unit.
    """
    if sent is None or sent == wanted:
        return 1.0
    a, b = sent.lower(), wanted.lower()
    if a == b:
        return 1.0
    if a in _KG_PER and b in _KG_PER:
        return _KG_PER[a] / _KG_PER[b]
    return None


class IndicatorDriver:
    def __init__(self, cfg: SerialIndicatorDriverConfig, park: ParkModel, inbox: Any,
                 park_cfg: ParkConfig) -> None:
        self.cfg = cfg
        self.id = cfg.id
        info = next(i for i in park.sensors if i.config.driver == cfg.id)  # config: exactly 1
        self.sensor = info.index
        self.sensor_id = info.id
        self.scale = info.config.scale
        self.offset = info.config.offset
        self.unit = info.config.display_unit
        self.format = FORMATS[cfg.format]
        self.readings = DirectReadings(inbox, self, lambda i: park.sensors[i].id)
        self.rejections = Rejections(log, f"driver {cfg.id}")
        self.open = False  # the port is open
        self.lost_since: float | None = None  # monotonic time the port went away
        self.silent = False  # open, but no valid frame for silence_s
        self.last_frame: float | None = None  # monotonic time of the last valid frame
        self.reopens = 0
        self._opened_at = 0.0
        self._session_frames = 0
        #: called with True when readings flow again, False when they stop (gateway status)
        self.state_listeners: list[Callable[[bool], None]] = []
        self._last_comm_fail = -1e9
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def accepted(self) -> int:
        """Readings the pipeline took (counted where they are decoded)."""
        return self.readings.accepted

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"indicator-{self.id}",
                                        daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Its reader loop runs (the watchdog asks)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("driver %s: reader thread did not stop within %.1f s", self.id,
                          timeout)
            self._thread = None
        self.rejections.flush()

    def decode(self, items: list[Any]) -> ReadingBatch:
        return self.readings.decode(items)

    def health(self) -> dict[str, Any]:
        age = None if self.last_frame is None else round(time.monotonic() - self.last_frame, 3)
        return {"type": "serial_indicator", "port": self.cfg.port, "format": self.cfg.format,
                "open": self.open, "connected": self.open and not self.silent,
                "accepted": self.accepted, "rejected": dict(self.rejections.total),
                "last_frame_age_s": age, "reopens": self.reopens}

    def metric_samples(self) -> tuple[MetricSample, ...]:
        """No families of its own: its figures are those every driver has."""
        return ()

    def health_warnings(self) -> list[str]:
        return []

    def broker_link(self) -> BrokerLink | None:
        return None

    # --- reader thread --------------------------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stop.is_set():
            self._session_frames = 0
            try:
                self._session()
            except (serial.SerialException, OSError, ValueError, termios.error) as exc:
                self._lost(exc)  # termios.error: the device went away while being set up
            except Exception as exc:  # a bug must cost a reconnect, not the driver
                log.exception("driver %s: unexpected error reading %s", self.id, self.cfg.port)
                self._lost(exc)
            if self._stop.is_set():
                break
            if self._session_frames:
                backoff = BACKOFF_START_S  # it worked for a while: a new loss starts afresh
            self._wait(backoff)
            backoff = min(backoff * 2, self.cfg.reopen_max_s)

    def _session(self) -> None:
        """Open the port and read until stop() or an error (raised to the caller)."""
        c = self.cfg
        port = serial.Serial(c.port, c.baudrate, bytesize=c.bytesize, parity=c.parity,
                             stopbits=c.stopbits, timeout=READ_TIMEOUT_S, exclusive=True)
        parser = self.format.parser()
        try:
            port.reset_input_buffer()  # bytes from before we listened have no usable time
            self._opened()
            while not self._stop.is_set():
                data = port.read(1)
                if data:
                    waiting = port.in_waiting
                    if waiting:
                        data += port.read(waiting)
                    now = time.time()
                    try:
                        frames = parser.feed(data)
                    except Exception as exc:  # a parser bug must cost these bytes only
                        log.exception("driver %s: unexpected error parsing %s", self.id,
                                      excerpt(data))
                        self.rejections.reject("internal_error", f"{type(exc).__name__}")
                        parser = self.format.parser()
                        continue
                    self._handle(frames, now)
                self._check_silence()
        finally:
            self.open = False
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()  # may fail when the device is gone already
            if not self._stop.is_set():  # a frame we stopped listening to was not cut
                self._handle(parser.flush(), time.time())

    def _handle(self, frames: list[Frame], now: float) -> None:
        """Readings to the inbox, rejections to the counters."""
        for f in frames:
            if isinstance(f, Rejection):
                more = f" ({f.size} bytes)" if f.size > len(f.data) else ""
                self.rejections.reject(f.reason, f"{excerpt(f.data)}{more}")
                continue
            self._alive()
            factor = unit_factor(f.unit, self.unit)
            if factor is None:
                self.rejections.reject("unit_mismatch", f"indicator sends {f.unit!r}, sensor "
                                       f"{self.sensor_id} expects {self.unit!r}: "
                                       f"{excerpt(f.raw)}")
                continue
            self.readings.put(self.sensor, f.value * factor * self.scale + self.offset, now,
                              f.quality)

    # --- link state: each change logged once ------------------------------------------
    def _opened(self) -> None:
        self.open = True
        self.silent = False
        self._opened_at = time.monotonic()
        if self.lost_since is not None:
            self.reopens += 1
            log.info("driver %s: port %s recovered after %.1f s", self.id, self.cfg.port,
                     time.monotonic() - self.lost_since)
            self.lost_since = None
        else:
            log.info("driver %s: reading %s indicator on %s at %d baud", self.id,
                     self.cfg.format, self.cfg.port, self.cfg.baudrate)
        self._tell(True)

    def _lost(self, exc: BaseException) -> None:
        self.open = False
        self.silent = False
        if self.lost_since is None:
            self.lost_since = time.monotonic()
            log.warning("driver %s: port %s lost (%s); sensor %s is comm_fail, reopening "
                        "with backoff up to %.0f s", self.id, self.cfg.port, exc,
                        self.sensor_id, self.cfg.reopen_max_s)
            self._tell(False)
        self._comm_fail()

    def _alive(self) -> None:
        self.last_frame = time.monotonic()
        self._session_frames += 1
        if self.silent:
            self.silent = False
            log.info("driver %s: indicator on %s talking again", self.id, self.cfg.port)
            self._tell(True)

    def _check_silence(self) -> None:
        since = max(self.last_frame or 0.0, self._opened_at)
        quiet = time.monotonic() - since
        if quiet < self.cfg.silence_s:
            return
        if not self.silent:
            self.silent = True
            log.warning("driver %s: indicator silent on %s: no valid frame for %.1f s; "
                        "sensor %s is comm_fail", self.id, self.cfg.port, quiet,
                        self.sensor_id)
            self._tell(False)
        self._comm_fail()

    def _tell(self, up: bool) -> None:
        for listener in self.state_listeners:
            try:
                listener(up)
            except Exception:  # a listener's bug must not stop the reading
                log.exception("driver %s: state listener failed", self.id)

    def _comm_fail(self) -> None:
        """A COMM_FAIL reading for the sensor, at most one a second."""
        now = time.monotonic()
        if now - self._last_comm_fail >= COMM_FAIL_EVERY_S:
            self._last_comm_fail = now
            self.readings.comm_fail([self.sensor], time.time())

    def _wait(self, seconds: float) -> None:
        """Sleep until the next attempt (or stop), still saying COMM_FAIL once a second."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, COMM_FAIL_EVERY_S))
            if not self._stop.is_set():
                self._comm_fail()


_: type[Driver] = IndicatorDriver  # mypy checks it has every member of the Driver protocol
