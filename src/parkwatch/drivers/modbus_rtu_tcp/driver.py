"""The ``modbus_rtu_tcp`` driver: the Modbus RTU driver whole (bus scheduler, poll blocks,
outputs), its requests carried over TCP to a serial server or DTU by the link its config
builds (:meth:`~.config.ModbusRtuTcpDriverConfig.link`)."""

from __future__ import annotations

from parkwatch.drivers.base import Driver
from parkwatch.drivers.modbus_rtu.driver import ModbusRtuDriver


class ModbusRtuTcpDriver(ModbusRtuDriver):
    """A Modbus RTU bus behind a serial server: nothing of its own but the link."""


_: type[Driver] = ModbusRtuTcpDriver  # mypy checks it has every member of the Driver protocol
