"""The ``modbus_tcp`` driver: the Modbus RTU driver's scheduler, poll blocks and outputs over
a Modbus TCP connection (:class:`~.link.MbapLink`, built by its config's ``link()``)."""

from __future__ import annotations

from parkwatch.drivers.base import Driver
from parkwatch.drivers.modbus_rtu.driver import ModbusRtuDriver


class ModbusTcpDriver(ModbusRtuDriver):
    """Modbus TCP devices on one connection: nothing of its own but the link."""


_: type[Driver] = ModbusTcpDriver  # mypy checks it has every member of the Driver protocol
