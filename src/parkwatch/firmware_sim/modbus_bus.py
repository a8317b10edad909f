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
a broadcast (address 0).

Typical use::

    bus = SimBus(tmp / "rs485", 9600, slaves=[SimSlave(3)]).start()
    bus.slaves[3].set("3/hr100:float32:cdab", 12.5)
    ...  # the daemon polls tmp / "rs485"
    bus.stop()

:func:`build_bus_from_config` builds the bus of one ``modbus_rtu`` driver of a park config,
one slave per device its sensors reference, so ``parkwatch sim`` emulates that park's wiring.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsResponse,
    ReadDiscreteInputsResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from parkwatch.drivers.modbus_rtu import registers
from parkwatch.drivers.modbus_rtu.address import ModbusAddress, parse_address
from parkwatch.drivers.serialport import t35
from parkwatch.firmware_sim.pty_port import LineClock, PtyPort

if TYPE_CHECKING:  # importing serialport first would close an import cycle via config
    from parkwatch.drivers.serialport import SerialLine

log = logging.getLogger("parkwatch.firmware_sim.modbus")

#: function code -> register/bit table it reads
FUNCTION_TABLES = {0x01: "co", 0x02: "di", 0x03: "hr", 0x04: "ir"}
ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03

_INT_RANGES = {"int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
               "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1)}
_RESPONSES: dict[int, type[ModbusPDU]] = {
    0x01: ReadCoilsResponse, 0x02: ReadDiscreteInputsResponse,
    0x03: ReadHoldingRegistersResponse, 0x04: ReadInputRegistersResponse}
_IDLE_S = 0.02  # how often an idle bus looks at stop/cut requests
DI_MODULE_CHANNELS = 8  # a digital-input module has its contacts in groups of 8


def _as_address(address: str | ModbusAddress) -> ModbusAddress:
    return address if isinstance(address, ModbusAddress) else parse_address(address)


class SimSlave:
    """One device on the bus: its register/bit map, liveness, answer delay and faults.

    Only registers and bits that exist in the device's map can be read; a read that touches
    anything outside it gets exception 2 (illegal data address), as a real transmitter answers
    a master configured with the wrong register.  :meth:`set` maps what it writes, and
    :meth:`map` declares further registers (zeros) so block reads across gaps succeed.

    ``alive = False`` makes the device silent (powered off, wire broken).  ``latency_s`` is
    extra processing time before it answers.  ``bad_crc_once`` / ``garbage_once`` spoil the
    next answer only (a corrupted CRC; line noise of the same length instead of the frame).
    Setters may be called from any thread while the bus runs; a 32-bit value changes atomically.
    """

    def __init__(self, address: int, *, name: str | None = None, alive: bool = True,
                 latency_s: float = 0.0) -> None:
        if not 1 <= address <= 247:
            raise ValueError(f"slave address {address} is outside 1..247")
        self.address = address
        self.name = name
        self.alive = alive
        self.latency_s = latency_s
        self.bad_crc_once = False
        self.garbage_once = False
        self.requests = 0  # requests addressed to this slave (alive or not)
        self.answered = 0  # normal and exception responses sent
        self._lock = threading.Lock()
        self._tables: dict[str, dict[int, int]] = {"hr": {}, "ir": {}, "di": {}, "co": {}}

    def __repr__(self) -> str:
        return f"SimSlave({self.address}, alive={self.alive}, latency_s={self.latency_s})"

    # --- the map --------------------------------------------------------------------------
    def map(self, table: str, start: int, count: int) -> None:
        """Declare ``count`` registers (or bits) from ``start`` as existing; new ones read 0."""
        store = self._table(table)
        if start < 0 or start + count > 65536:
            raise ValueError(f"{table}{start}+{count} is outside 0..65535")
        with self._lock:
            for r in range(start, start + count):
                store.setdefault(r, 0)

    def set(self, address: str | ModbusAddress, value: float | bool) -> None:
        """Place a raw device value at a parkwatch address, e.g. ``set("3/hr100:float32", 1.5)``.

        The value is what the device holds (before the sensor's scale/offset); integer types
        are rounded and must fit.  A bit address (di/co) sets the contact.
        """
        a = self._own(address)
        if a.is_bit:
            self.set_bit(a, bool(value))
            return
        if a.dtype in _INT_RANGES:
            lo, hi = _INT_RANGES[a.dtype]
            value = round(value)
            if not lo <= value <= hi:
                raise ValueError(f"{value} does not fit a {a.dtype} register at {a.table}"
                                 f"{a.register} of slave {a.slave}")
        words = registers.encode(float(value), a.dtype, a.order)
        self.set_registers(a.table, a.register, words)

    def set_bit(self, address: str | ModbusAddress, on: bool) -> None:
        """Close (True) or open (False) a contact, e.g. ``set_bit("5/di2", True)``."""
        a = self._own(address)
        if not a.is_bit:
            raise ValueError(f"{a.table}{a.register} is a register, not a bit; use set()")
        with self._lock:
            self._tables[a.table][a.register] = int(bool(on))

    def set_registers(self, table: str, start: int, words: Iterable[int]) -> None:
        """Write raw 16-bit words from ``start`` (mapping them), all at once."""
        store = self._table(table)
        values = [int(w) for w in words]
        if any(not 0 <= w <= 0xFFFF for w in values) or start + len(values) > 65536:
            raise ValueError("registers are 16-bit words within 0..65535")
        with self._lock:
            for i, w in enumerate(values):
                store[start + i] = w

    def get(self, address: str | ModbusAddress) -> float:
        """The raw value at an address as a master would decode it (tests, narration)."""
        a = self._own(address)
        data = self.read(a.table, a.register, a.width)
        if data is None:
            raise KeyError(f"{a.table}{a.register} is not in slave {a.slave}'s map")
        if a.is_bit:
            return float(data[0])
        return float(registers.decode(data, np.array([0]), a.dtype, a.order)[0])

    def read(self, table: str, start: int, count: int) -> list[int] | None:
        """``count`` words (or 0/1 bits) from ``start``, or None if any is outside the map."""
        store = self._table(table)
        with self._lock:
            try:
                return [store[r] for r in range(start, start + count)]
            except KeyError:
                return None

    # --- answering ------------------------------------------------------------------------
    def respond(self, request: ModbusPDU) -> ModbusPDU:
        """The response PDU to a decoded request: data, or an exception response."""
        fc = request.function_code
        table = FUNCTION_TABLES.get(fc)
        if table is None:
            return ExceptionResponse(fc, ILLEGAL_FUNCTION, device_id=self.address)
        data = self.read(table, request.address, request.count)
        if data is None:
            return ExceptionResponse(fc, ILLEGAL_DATA_ADDRESS, device_id=self.address)
        if table in ("di", "co"):
            return _RESPONSES[fc](dev_id=self.address, bits=[bool(b) for b in data])
        return _RESPONSES[fc](dev_id=self.address, registers=data)

    # --- helpers --------------------------------------------------------------------------
    def _table(self, table: str) -> dict[int, int]:
        if table not in self._tables:
            raise ValueError(f"unknown table '{table}' (known: hr, ir, di, co)")
        return self._tables[table]

    def _own(self, address: str | ModbusAddress) -> ModbusAddress:
        a = _as_address(address)
        if a.slave != self.address:
            raise ValueError(f"address {a.slave}/{a.table}{a.register} belongs to slave "
                             f"{a.slave}, not {self.address}")
        return a


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
class SimSensor:
    """A configured sensor as the simulator sees it: where it lives and how it is scaled."""

    id: str
    kind: str
    address: ModbusAddress
    scale: float = 1.0
    offset: float = 0.0


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
        self._rx = bytearray()
        self._rx_first = 0.0
        self._rx_end = 0.0  # when the fragment's last character has left the line, at least
        self._rx_collided = False
        self._line_free_at = -math.inf  # end of the last frame on the line (either direction)

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
        slave.set(s.address, _raw(s, float(value)))

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
                if self._rx:
                    wait = min(wait, max(0.0, self._rx_end + self.t35 - time.monotonic()))
                data = self._port.read(wait)
                if data:
                    self._inbox.append((time.monotonic(), data, False))
                self._process_inbox()
                if self._rx and time.monotonic() >= self._rx_end + self.t35:
                    self._end_fragment()
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
            self._receive(t, data, during_tx)
            self._try_frame()

    def _receive(self, t: float, data: bytes, during_tx: bool) -> None:
        if self._rx and t >= self._rx_end + self.t35:
            self._end_fragment()  # the silence ended the previous fragment
        if not self._rx:
            self._rx_first = t
            self._rx_collided = during_tx
            if during_tx or t < self._line_free_at + self.t35:
                with self._stats_lock:
                    self._stats.t35_violations += 1
                log.debug("simulated bus %s: frame started %.2f ms after the line was free "
                          "(t3.5 = %.2f ms)", self.path, (t - self._line_free_at) * 1e3,
                          self.t35 * 1e3)
        elif during_tx:
            self._rx_collided = True
        self._rx += data
        self._rx_end = max(t, self._rx_first + len(self._rx) * self.char_time)

    def _end_fragment(self) -> None:
        """t3.5 of silence after bytes that never made a frame: line noise, dropped."""
        self._line_free_at = max(self._line_free_at, self._rx_end)
        self._rx.clear()
        with self._stats_lock:
            self._stats.discarded += 1

    def _try_frame(self) -> None:
        if not self._rx:
            return
        used, dev_id, _tid, pdu_bytes = self._framer.decode(bytes(self._rx))
        if not used:
            return  # incomplete: wait for more bytes or for t3.5 of silence
        req_end, collided = self._rx_end, self._rx_collided
        self._rx.clear()
        self._line_free_at = max(self._line_free_at, req_end)
        if not pdu_bytes:
            with self._stats_lock:
                self._stats.crc_errors += 1
            return
        with self._stats_lock:
            st = self._stats
            st.requests += 1
            st.per_slave[dev_id] = st.per_slave.get(dev_id, 0) + 1
            if collided:
                st.collisions += 1
            elif dev_id == 0:
                st.broadcasts += 1
        slave = self.slaves.get(dev_id)
        if slave is not None:
            slave.requests += 1
        if collided or dev_id == 0:
            return
        if slave is None or not slave.alive:
            with self._stats_lock:
                self._stats.ignored += 1
            return
        response = self._answer(slave, pdu_bytes)
        frame = self._framer.buildFrame(response)
        if slave.bad_crc_once:
            slave.bad_crc_once = False
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        elif slave.garbage_once:
            slave.garbage_once = False
            frame = b"\xff" * len(frame)  # an idle line read as data: no valid frame in it
        start = req_end + self.turnaround_s + slave.latency_s
        is_exception = bool(response.function_code & 0x80)

        def count() -> None:
            slave.answered += 1
            with self._stats_lock:
                st = self._stats
                st.answered += 1
                st.answered_per_slave[dev_id] = st.answered_per_slave.get(dev_id, 0) + 1
                st.exceptions += int(is_exception)

        self._transmit(frame, start, count)

    def _answer(self, slave: SimSlave, pdu_bytes: bytes) -> ModbusPDU:
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
            self._line_free_at = time.monotonic()
            return False
        self._line_free_at = end
        return True


# --- from a park config ---------------------------------------------------------------------

def _raw(s: SimSensor, value: float) -> float:
    """The device value showing ``value`` after the sensor's scale/offset, saturated."""
    raw = (value - s.offset) / s.scale
    if s.address.dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[s.address.dtype]
        raw = float(min(max(round(raw), lo), hi))
    return raw


def build_bus_from_config(driver_cfg: Any, park_cfg: Any, path: str | Path | None = None,
                          **kwargs: Any) -> SimBus:
    """The simulated bus of one ``modbus_rtu`` driver: a slave for every device it polls.

    Each slave's map covers, per table, the span from its lowest to its highest sensor
    register (so the driver may read across small gaps in one request, as real transmitters
    allow); a digital-input module exposes its contacts in whole groups of 8 channels.  Sensors
    start at a plausible baseline below their warning limits (fire buttons released).  Slaves
    listed under the driver's ``slaves`` without sensors are present with an empty map.
    The bus is not started; ``path`` overrides the driver's port.
    """
    from parkwatch.firmware_sim.scenarios import baseline

    bus = SimBus.from_line(driver_cfg, path=path, **kwargs)
    names = {s.slave: s.name for s in driver_cfg.slaves}
    sensors: list[SimSensor] = []
    for s in park_cfg.sensors:
        if s.driver != driver_cfg.id or not s.address:
            continue
        sensors.append(SimSensor(s.id, s.kind, parse_address(s.address), s.scale, s.offset))
    for n in sorted({x.address.slave for x in sensors} | set(names)):
        bus.add_slave(SimSlave(n, name=names.get(n)))
    spans: dict[tuple[int, str], tuple[int, int]] = {}
    for x in sensors:
        a = x.address
        key = (a.slave, a.table)
        lo, hi = spans.get(key, (a.register, a.register + a.width))
        spans[key] = (min(lo, a.register), max(hi, a.register + a.width))
    for (slave, table), (lo, hi) in spans.items():
        if table in ("di", "co"):
            lo = lo // DI_MODULE_CHANNELS * DI_MODULE_CHANNELS
            hi = -(-hi // DI_MODULE_CHANNELS) * DI_MODULE_CHANNELS
        bus.slaves[slave].map(table, lo, hi - lo)
    by_id = {s.id: s for s in park_cfg.sensors}
    for x in sensors:
        bus.sensors[x.id] = x
        if x.address.is_bit:
            bus.set_sensor(x.id, False)
        else:
            bus.set_sensor(x.id, baseline(park_cfg, by_id[x.id]))
    return bus
