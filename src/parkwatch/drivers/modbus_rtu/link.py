"""How the bus scheduler reaches its slaves: a :class:`Link` (a byte stream plus a framing).

The scheduler (:mod:`.bus`) decides what goes on the wire and when; a link only carries one
request and brings back its answer.  Requests are always built as RTU frames (address, PDU,
CRC: :mod:`.blocks`, :mod:`.outputs`); a link sends them as its framing wants:

* :class:`RtuLink` sends them as they are over any byte stream: the gateway's own serial port
  (:class:`SerialStream`), or a TCP connection to a serial server or 4G DTU
  (:class:`parkwatch.drivers.tcpstream.TcpStream`: driver kind ``modbus_rtu_tcp``);
* ``MbapLink`` (:mod:`parkwatch.drivers.modbus_tcp.link`) re-frames them for Modbus TCP.
"""

from __future__ import annotations

import contextlib
import termios
import time
from typing import Any, Protocol

import serial

from parkwatch.drivers.modbus_rtu.blocks import parse_response


class ByteStream(Protocol):
    """A serial port or a TCP connection: `read(n)` gives at most n bytes within its timeout;
    every call raises OSError when the stream is lost."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def read(self, n: int) -> bytes: ...

    def discard(self) -> None: ...


class Link(Protocol):
    #: what logs and health call it: the port path, or host:port
    name: str
    #: silence to keep between frames (t3.5 on an RTU line, 0 for Modbus TCP)
    gap_s: float
    #: the longest wait between attempts to reopen it
    reopen_max_s: float
    #: when the last exchange's reading ended (its answer's last byte, or the wait given up):
    #: the silence between frames counts from there, not from after the answer is decoded
    answered_at: float

    def open(self) -> None:
        """Open or connect (OSError when it cannot)."""

    def close(self) -> None: ...

    def exchange(self, request: bytes, response_len: int, slave: int) -> tuple[Any, bool]:
        """Send an RTU request frame, and return (its answer's PDU, False), or (None, True)
        when no complete answer came in time, or (None, False) for an invalid one.  OSError:
        the link is lost."""


class SerialStream:
    """The gateway's own serial port (an RS-485 adapter)."""

    def __init__(self, line: Any, timeout_s: float) -> None:
        self.line = line
        self.timeout_s = timeout_s
        self.port: serial.Serial | None = None

    def open(self) -> None:
        c = self.line
        try:
            self.port = serial.Serial(c.port, c.baudrate, bytesize=c.bytesize, parity=c.parity,
                                      stopbits=c.stopbits, timeout=self.timeout_s,
                                      write_timeout=self.timeout_s, exclusive=True)
        except (ValueError, termios.error) as exc:
            # termios.error: the device went away between open and configuring it
            raise OSError(str(exc)) from exc
        with contextlib.suppress(AttributeError, OSError, ValueError, NotImplementedError):
            # USB adapters (FTDI) buffer answers for 16 ms by default, which would cap a
            # 115200-baud bus far below its line limit; ptys and plain UARTs refuse, harmlessly
            self.port.set_low_latency_mode(True)

    def close(self) -> None:
        if self.port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self.port.close()
            self.port = None

    def _port(self) -> serial.Serial:
        if self.port is None:
            raise serial.SerialException("port not open")
        return self.port

    def write(self, data: bytes) -> None:
        self._port().write(data)

    def read(self, n: int) -> bytes:
        return bytes(self._port().read(n))

    def discard(self) -> None:
        port = self._port()
        if port.in_waiting:
            port.reset_input_buffer()


class RtuLink:
    """RTU frames over a byte stream: the request as built, the answer read as the slave's
    address, function code and byte count first, then the rest (5 bytes for an exception)."""

    def __init__(self, stream: ByteStream, name: str, gap_s: float,
                 reopen_max_s: float) -> None:
        self.stream = stream
        self.name = name
        self.gap_s = gap_s
        self.reopen_max_s = reopen_max_s
        self.answered_at = 0.0

    def open(self) -> None:
        self.stream.open()

    def close(self) -> None:
        self.stream.close()

    def exchange(self, request: bytes, response_len: int, slave: int) -> tuple[Any, bool]:
        s = self.stream
        s.discard()  # a late answer to an earlier request
        s.write(request)
        head = s.read(3)
        data = head
        if len(head) == 3:
            data += s.read(2 if head[1] & 0x80 else response_len - 3)
        self.answered_at = time.monotonic()
        if len(data) < 5 or (len(head) == 3 and not head[1] & 0x80
                             and len(data) < response_len):
            return None, True
        return parse_response(data, slave), False
