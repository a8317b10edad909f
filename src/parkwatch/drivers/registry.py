"""Every driver type parkwatch knows: one line each (then those of extension packages, see
:mod:`parkwatch.extensions`).  What a line holds: :class:`parkwatch.drivers.kind.DriverKind`."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from parkwatch.drivers.kind import DriverKind
from parkwatch.drivers.modbus_rtu import metrics as modbus_metrics
from parkwatch.drivers.modbus_rtu.config import (
    ModbusRtuDriverConfig,
    check_modbus_driver,
    check_modbus_output,
)
from parkwatch.drivers.modbus_rtu_tcp.config import (
    ModbusRtuTcpDriverConfig,
    check_rtu_tcp_driver,
)
from parkwatch.drivers.modbus_tcp.config import ModbusTcpDriverConfig, check_modbus_tcp_driver
from parkwatch.drivers.mqtt.config import MqttDriverConfig, check_mqtt_driver, check_mqtt_output
from parkwatch.drivers.serial_indicator.config import (
    SerialIndicatorDriverConfig,
    check_indicator_driver,
)
from parkwatch.extensions import merged

DRIVER_KINDS: dict[str, DriverKind] = merged("DRIVER_KINDS", {
    "mqtt": DriverKind(MqttDriverConfig, "parkwatch.drivers.mqtt.process:mqtt_driver",
                       check_mqtt_driver, check_output=check_mqtt_output,
                       outputs_path="parkwatch.drivers.mqtt.outputs:MqttOutputs"),
    "modbus_rtu": DriverKind(ModbusRtuDriverConfig,
                             "parkwatch.drivers.modbus_rtu.driver:ModbusRtuDriver",
                             check_modbus_driver, modbus_metrics.FAMILIES,
                             check_output=check_modbus_output,
                             outputs_path="parkwatch.drivers.modbus_rtu.outputs:ModbusOutputs"),
    # the two below are the modbus_rtu driver over a link of their own (their config's link()):
    # its outputs, and its metric families (declared once, on its line)
    "modbus_rtu_tcp": DriverKind(ModbusRtuTcpDriverConfig,
                                 "parkwatch.drivers.modbus_rtu_tcp.driver:ModbusRtuTcpDriver",
                                 check_rtu_tcp_driver, check_output=check_modbus_output,
                                 outputs_path="parkwatch.drivers.modbus_rtu.outputs:ModbusOutputs"),
    "modbus_tcp": DriverKind(ModbusTcpDriverConfig,
                             "parkwatch.drivers.modbus_tcp.driver:ModbusTcpDriver",
                             check_modbus_tcp_driver, check_output=check_modbus_output,
                             outputs_path="parkwatch.drivers.modbus_rtu.outputs:ModbusOutputs"),
    "serial_indicator": DriverKind(SerialIndicatorDriverConfig,
                                   "parkwatch.drivers.serial_indicator.driver:IndicatorDriver",
                                   check_indicator_driver),
})

_models = tuple(k.config_model for k in DRIVER_KINDS.values())
#: The `drivers:` list item: a union discriminated by `type` once there is more than one kind.
DriverConfig: Any = (
    _models[0] if len(_models) == 1
    else Annotated[Union[_models], Field(discriminator="type")]  # noqa: UP007
)


def cross_check_drivers(cfg: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Run each configured driver's own cross-checks (topics, addresses, ...)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    for i, d in enumerate(cfg.drivers):
        check = DRIVER_KINDS[d.type].cross_check
        if check is not None:
            out += check(cfg, i)
    return out
