"""Config model of ``modbus_tcp``: devices that speak Modbus TCP themselves (a PLC, a
gateway module, a transmitter with an Ethernet port), one connection per host and port.

A sensor's `address` names the unit identifier where a Modbus RTU address names the slave
(``'1/hr100:float32'``); a device behind a Modbus TCP-to-RTU gateway is reached by its RTU
address as the unit identifier.  Requests go one at a time, as on a serial bus: many devices
answer only one at a time, and the same scheduler (fire-button lane first, per-unit timeout and
quarantine) then serves them all.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from parkwatch.drivers.modbus_rtu.config import ModbusMaster, check_modbus_addresses
from parkwatch.drivers.tcpstream import TcpEndpoint, check_one_owner


class ModbusTcpDriverConfig(ModbusMaster, TcpEndpoint):
    """A Modbus TCP client of one device (or of one Modbus TCP gateway and the units behind
    it)."""

    type: Literal["modbus_tcp"]
    port: int = Field(502, ge=1, le=65_535, description="its TCP port (Modbus TCP: 502)")
    timeout_s: float = Field(1.0, gt=0, le=30, description="how long a unit has to answer, "
                             "network round trip included (over 4G: 2-5 s)")
    comm_fault_after_s: float = Field(60.0, gt=0, le=86_400, description="a communication-"
                                      "fault alarm is raised when a sensor has had no good "
                                      "reading for this long")

    def link(self) -> Any:
        from parkwatch.drivers.modbus_tcp.link import MbapLink
        from parkwatch.drivers.tcpstream import TcpStream

        stream = TcpStream(self.host, self.port, self.timeout_s, self.connect_timeout_s)
        return MbapLink(stream, f"tcp {self.endpoint}", self.reconnect_max_s)


def check_modbus_tcp_driver(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    """Every sensor has a valid, unshared address; one driver per connection."""
    return check_modbus_addresses(park, index) + check_one_owner(park, index)
