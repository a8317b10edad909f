"""A Modbus RTU bus of simulated slaves on a pseudo-terminal, with the line timing of its baud rate.

The daemon's Modbus driver opens the configured port path (a symlink to /dev/pts/N) and talks to
this bus exactly as it would to an RS-485 adapter with real transmitters on it.  Frames are
byte-exact (pymodbus builds and parses them; nothing here computes a CRC), and because a pty
delivers bytes instantly whatever the baud rate, the bus imposes the line's timing itself:

* a request occupies the line for ``len(request) × char_time`` from the arrival of its first
  byte (the master writes it to the pty at once; a real UART would take that long to send it);
* the addressed slave answers after a turnaround (one character by default, plus its own
  ``latency_s``), and the response is paced byte by byte with :class:`LineClock`;
* the line is half duplex: one transaction at a time.  Bytes the master sends while a response
  is on the line are a collision and get no answer, as on a real bus.

The bus counts what a bench test wants to assert about the master: ``t35_violations`` (a frame
whose first byte arrived sooner than t3.5 after the end of the previous frame on the line),
``collisions``, CRC errors, requests per slave.  Unknown and dead slaves never answer, nor does
a broadcast (address 0).  How the master's bytes become request frames (and these counters)
is :mod:`parkwatch.firmware_sim.modbus_receiver`'s business, what a slave answers
:class:`SimSlave`'s (:mod:`parkwatch.firmware_sim.modbus_slave`).

Typical use::

    bus = SimBus(tmp / "rs485", 9600, slaves=[SimSlave(3)]).start()
    bus.slaves[3].set("3/hr100:float32:cdab", 12.5)
    ...  # the daemon polls tmp / "rs485"
    bus.stop()

:func:`parkwatch.firmware_sim.modbus_wiring.build_bus_from_config` builds the bus of one
``modbus_rtu`` driver of a park config, so ``parkwatch sim`` emulates that park's wiring.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU

from parkwatch.drivers.serialport import t35
from parkwatch.firmware_sim.modbus_receiver import BusStats, RequestReceiver
from parkwatch.firmware_sim.modbus_slave import (
    FUNCTION_TABLES,
    ILLEGAL_DATA_VALUE,
    ILLEGAL_FUNCTION,
    SimSensor,
    SimSlave,
)
from parkwatch.firmware_sim.pty_port import LineClock, PtyPort

if TYPE_CHECKING:  # importing serialport first would close an import cycle via config
    from parkwatch.drivers.modbus_rtu.address import ModbusAddress
    from parkwatch.drivers.serialport import SerialLine

log = logging.getLogger("parkwatch.firmware_sim.modbus")

_IDLE_S = 0.02  # how often an idle bus looks at stop/cut requests


class _Abort(Exception):
    """A transmission stopped half-way (cable cut or bus stopping)."""


class _LinePort:
    """What LineClock writes to: the pty, watched for incoming bytes between paced writes.

    While a response is on the line the master must stay silent; anything it sends meanwhile is
    collected here (time-stamped, flagged as a collision) instead of waiting unseen in the pty.
    ``on_last`` runs just before the frame's last bytes go out, so counters are already up to
    date when the master holds the complete response.
    """

    def __init__(self, bus: SimBus, total: int, on_last: Callable[[], None]) -> None:
        self.bus = bus
        self.remaining = total
        self.on_last = on_last

    def write(self, data: bytes) -> None:
        bus = self.bus
        if bus._stop.is_set() or not bus._commands.empty():
            raise _Abort
        bus._drain(during_tx=True)
        self.remaining -= len(data)
        if self.remaining <= 0:
            self.on_last()
        bus._port.write(data)


class SimBus:
    """An RS-485 line with simulated slaves, served by one thread on a pty at ``path``.

    ``bits_per_char`` is start + data + parity + stop bits (10 for 8N1, 11 for 8E1); t3.5 is
    computed as :class:`SerialLine` does (3.5 characters, 1.75 ms above 19200 baud), so a master
    using the same line settings agrees with the bus about the silence.  ``turnaround_s`` is
    the slave's reaction time before a response starts (default: one character).
    """

    def __init__(self, path: str | Path, baudrate: int = 9600, bits_per_char: int = 10,
                 slaves: Iterable[SimSlave] = (), *, turnaround_s: float | None = None) -> None:
        if baudrate <= 0 or bits_per_char <= 0:
            raise ValueError("baudrate and bits_per_char must be positive")
        self.path = Path(path)
        self.baudrate = baudrate
        self.bits_per_char = bits_per_char
        self.char_time = bits_per_char / baudrate
        self.t35 = t35(baudrate)
        # a slave knows a request has ended only after t3.5 of silence, then it answers
        self.turnaround_s = self.t35 if turnaround_s is None else turnaround_s
        self.slaves: dict[int, SimSlave] = {}
        for s in slaves:
            self.add_slave(s)
        self.sensors: dict[str, SimSensor] = {}
        #: configured outputs on this bus: id -> (address, on_value)
        self.outputs: dict[str, tuple[ModbusAddress, int]] = {}
        self._port = PtyPort(self.path)
        self._clock = LineClock(baudrate, bits_per_char)
        self._framer = FramerRTU(DecodePDU(True))
        self._stats = BusStats()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        # receive state (bus thread only)
        self._inbox: list[tuple[float, bytes, bool]] = []
        self._rx = RequestReceiver(self.path, self.t35, self.char_time, self._framer,
                                   self._stats, self._stats_lock)

    @classmethod
    def from_line(cls, line: SerialLine, slaves: Iterable[SimSlave] = (),
                  path: str | Path | None = None, **kwargs: Any) -> SimBus:
        """A bus with the timing of a configured serial line, at its port (or ``path``)."""
        return cls(path if path is not None else line.port, line.baudrate, line.bits_per_char,
                   slaves, **kwargs)

    # --- configuration --------------------------------------------------------------------
    def add_slave(self, slave: SimSlave) -> SimSlave:
        if slave.address in self.slaves:
            raise ValueError(f"slave {slave.address} is already on this bus")
        self.slaves[slave.address] = slave
        return slave

    def set_sensor(self, sensor_id: str, value: float | bool) -> None:
        """Set a configured sensor to an engineering value (undoing its scale and offset).

        Fire-button contacts take True/False (or 1/0).  Raw integer values are rounded and
        clamped to their type, as a transmitter's output saturates.
        """
        s = self.sensors[sensor_id]
        slave = self.slaves[s.address.slave]
        if s.address.is_bit:
            slave.set_bit(s.address, bool(value))
            return
        slave.set(s.address, s.raw(float(value)))

    def set_loop_current(self, sensor_id: str, ma: float) -> None:
        """Drive a 4-20 mA transmitter's loop to ``ma`` mA: 0 is a broken wire, 3.5 or 21.5
        a transmitter signalling its own failure (NAMUR NE43)."""
        s = self.sensors[sensor_id]
        if s.loop is None:
            raise ValueError(f"sensor '{sensor_id}' is not a 4-20 mA transmitter")
        self.slaves[s.address.slave].set(s.address, s.raw_current(float(ma)))

    def output_on(self, output_id: str) -> bool:
        """Whether a configured output (a relay module's coil or register) is on now."""
        a, on_value = self.outputs[output_id]
        value = self.slaves[a.slave].read(a.table, a.register, 1)
        return bool(value and (value[0] if a.is_bit else value[0] == on_value))

    def stick_output(self, output_id: str, stuck: bool = True) -> None:
        """Make a configured output stick where it is (a welded relay), or free it."""
        a, _ = self.outputs[output_id]
        self.slaves[a.slave].stick(a, stuck)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> SimBus:
        """Create the pty at ``path`` and start answering."""
        if self._thread is not None:
            raise RuntimeError("this bus has already been started")
        self._port.open()
        self._thread = threading.Thread(target=self._run, name=f"simbus-{self.path.name}",
                                        daemon=True)
        self._thread.start()
        log.info("simulated Modbus bus at %s (%s) %d baud, slaves %s", self.path,
                 self._port.device, self.baudrate, sorted(self.slaves))
        return self

    def stop(self, timeout: float = 0.5) -> None:
        """Stop the thread (within ``timeout``), close the pty and remove the link."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("simulated bus %s: thread did not stop within %.1f s", self.path,
                            timeout)
        self._port.cut()

    def __enter__(self) -> SimBus:
        return self.start() if self._thread is None else self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def device(self) -> str | None:
        """The /dev/pts/N the link points at while the cable is in."""
        return self._port.device if self._port.is_open else None

    def cut(self) -> None:
        """Pull the cable: the pty closes (the master's I/O fails) and the path disappears."""
        self._command(self._do_cut)

    def restore(self) -> None:
        """Plug it back: a new pty at the same path; the master must reopen the port."""
        if self._stop.is_set():
            raise RuntimeError(f"simulated bus {self.path} has been stopped")
        self._command(self._do_restore)

    @property
    def stats(self) -> BusStats:
        """A consistent copy of the counters."""
        with self._stats_lock:
            return replace(self._stats, per_slave=dict(self._stats.per_slave),
                           answered_per_slave=dict(self._stats.answered_per_slave))

    @property
    def t35_violations(self) -> int:
        return self.stats.t35_violations

    # --- commands run on the bus thread (it alone touches the pty fd) -----------------------
    def _command(self, fn: Callable[[], None]) -> None:
        if not self.running:
            fn()
            return
        done = threading.Event()
        self._commands.put((fn, done))
        if not done.wait(2.0):
            raise TimeoutError(f"simulated bus {self.path} did not carry out the command")

    def _run_commands(self) -> None:
        while not self._commands.empty():
            fn, done = self._commands.get()
            try:
                fn()
            finally:
                done.set()

    def _do_cut(self) -> None:
        self._port.cut()
        self._inbox.clear()
        self._rx.clear()
        log.info("simulated bus %s: cable cut", self.path)

    def _do_restore(self) -> None:
        self._port.restore()
        log.info("simulated bus %s: cable restored (%s)", self.path, self._port.device)

    # --- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._run_commands()
                wait = _IDLE_S
                if self._rx.pending:
                    wait = min(wait, max(0.0, self._rx.silence_ends_at - time.monotonic()))
                data = self._port.read(wait)
                if data:
                    self._inbox.append((time.monotonic(), data, False))
                self._process_inbox()
                if self._rx.pending and time.monotonic() >= self._rx.silence_ends_at:
                    self._rx.end_fragment()
        except Exception:  # a simulator bug must be loud, not a silently dead bus
            log.exception("simulated bus %s stopped on an unexpected error", self.path)
        finally:
            self._run_commands()  # never leave a caller of cut()/restore() waiting

    def _drain(self, during_tx: bool) -> None:
        """Collect whatever the master has written, time-stamped, without waiting."""
        while data := self._port.read(0.0):
            self._inbox.append((time.monotonic(), data, during_tx))

    def _process_inbox(self) -> None:
        while self._inbox and not self._stop.is_set():
            t, data, during_tx = self._inbox.pop(0)
            self._rx.receive(t, data, during_tx)
            self._answer_frame()

    def _answer_frame(self) -> None:
        """Answer the request the received bytes make, if they make one for a live slave."""
        req = self._rx.take_frame()
        if req is None:
            return
        dev_id, collided = req.dev_id, req.collided
        slave = self.slaves.get(dev_id)
        if slave is not None:
            slave.requests += 1
        if collided or dev_id == 0:
            return
        if slave is None or not slave.alive:
            with self._stats_lock:
                self._stats.ignored += 1
            return
        response = self.answer(slave, req.pdu)
        frame = self._framer.buildFrame(response)
        if slave.bad_crc_once:
            slave.bad_crc_once = False
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        elif slave.garbage_once:
            slave.garbage_once = False
            frame = b"\xff" * len(frame)  # an idle line read as data: no valid frame in it
        start = req.end + self.turnaround_s + slave.latency_s
        is_exception = bool(response.function_code & 0x80)

        def count() -> None:
            slave.answered += 1
            with self._stats_lock:
                st = self._stats
                st.answered += 1
                st.answered_per_slave[dev_id] = st.answered_per_slave.get(dev_id, 0) + 1
                st.exceptions += int(is_exception)

        self._transmit(frame, start, count)

    def answer(self, slave: SimSlave, pdu_bytes: bytes) -> ModbusPDU:
        """What `slave` answers to a request PDU (function code and data): data, or an
        exception response (also for the Modbus TCP slaves, :mod:`.modbus_tcp_server`)."""
        request = self._framer.decoder.decode(pdu_bytes)
        if request is None:  # a known function with a body out of range (e.g. count 0)
            fc = pdu_bytes[0]
            code = ILLEGAL_DATA_VALUE if fc in FUNCTION_TABLES else ILLEGAL_FUNCTION
            return ExceptionResponse(fc, code, device_id=slave.address)
        return slave.respond(request)

    def _transmit(self, frame: bytes, start: float, on_last: Callable[[], None]) -> bool:
        """Send a response paced at the baud rate from ``start``; False if cut off."""
        line = _LinePort(self, len(frame), on_last)
        try:
            end = self._clock.send(line, frame, start=start)
        except _Abort:
            self._rx.line_free_at = time.monotonic()
            return False
        self._rx.line_free_at = end
        return True
