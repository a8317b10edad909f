"""Config model of ``modbus_rtu_tcp``: a Modbus RTU bus behind a serial server or 4G DTU.

The server (in "TCP server" / transparent mode) passes the RTU frames between one TCP
connection and its RS-485 port unchanged, so the gateway is still the bus master: the bus
behind it is half duplex, and the Modbus RTU driver's scheduler runs it with the same rules
(one request at a time, the fire-button lane, per-slave timeout, quarantine).  Only the
transport differs (:class:`~parkwatch.drivers.tcpstream.TcpStream`), and the timeouts, which
must cover the network's round trip as well as the slave's answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from parkwatch.drivers.modbus_rtu.config import ModbusMaster, check_modbus_addresses
from parkwatch.drivers.serialport import LineSettings
from parkwatch.drivers.tcpstream import TcpEndpoint, check_one_owner


class ModbusRtuTcpDriverConfig(ModbusMaster, TcpEndpoint, LineSettings):
    """A Modbus RTU master on an RS-485 bus behind a serial server or DTU, over TCP.
    `baudrate`, `bytesize`, `parity` and `stopbits` are those of the bus behind the server
    (set the same on the server): they give the silence kept between frames."""

    type: Literal["modbus_rtu_tcp"]
    timeout_s: float = Field(1.0, gt=0, le=30, description="how long a slave has to answer, "
                             "network round trip included (4G DTUs: 2-5 s)")
    comm_fault_after_s: float = Field(60.0, gt=0, le=86_400, description="a communication-"
                                      "fault alarm is raised when a sensor has had no good "
                                      "reading for this long")

    def link(self) -> Any:
        from parkwatch.drivers.modbus_rtu.link import RtuLink
        from parkwatch.drivers.tcpstream import TcpStream

        stream = TcpStream(self.host, self.port, self.timeout_s, self.connect_timeout_s)
        return RtuLink(stream, f"tcp {self.endpoint}", self.t35, self.reconnect_max_s)


def check_rtu_tcp_driver(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    """Every sensor has a valid, unshared address; one driver per serial server port."""
    return check_modbus_addresses(park, index) + check_one_owner(park, index)
