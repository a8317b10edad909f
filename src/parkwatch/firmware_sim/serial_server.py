"""A simulated serial server (or 4G DTU in transparent mode): TCP in front of a simulated
RS-485 bus (:class:`~parkwatch.firmware_sim.modbus_bus.SimBus`, with its true line timing).

Like the real device, it passes bytes between its one TCP client and its serial port
unchanged: the gateway sends RTU frames over TCP and the slaves answer at the bus's pace.
The server opens the bus's pty as a real one opens its UART; a second client is served only
after the first has gone (a serial port has one master).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty

from parkwatch.firmware_sim.modbus_bus import SimBus
from parkwatch.firmware_sim.tcp_listener import TcpListener


class SimSerialServer(TcpListener):
    def __init__(self, bus: SimBus, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port, "serial server")
        self.bus = bus
        self._one_master = threading.Lock()

    def serve(self, conn: socket.socket) -> None:
        with self._one_master:
            fd = os.open(self.bus.path, os.O_RDWR | os.O_NOCTTY)
            try:
                tty.setraw(fd)
                self._bridge(conn, fd)
            finally:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _bridge(self, conn: socket.socket, fd: int) -> None:
        sock = conn.fileno()
        while True:
            ready, _, _ = select.select([sock, fd], [], [], 0.5)
            if sock in ready:
                data = conn.recv(4096)
                if not data:
                    return  # the gateway hung up
                os.write(fd, data)
            if fd in ready:
                conn.sendall(os.read(fd, 4096))
            if conn.fileno() < 0:
                return  # cut()
