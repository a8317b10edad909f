"""The extension kit's registry lines (see parkwatch.extensions): one per rule kind, one per
driver type."""

from extension_kit.step import StepRule
from extension_kit.udp_json.config import UdpJsonDriverConfig
from parkwatch.drivers.kind import DriverKind

RULE_KINDS = {"step": StepRule}
DRIVER_KINDS = {"udp_json": DriverKind(UdpJsonDriverConfig,
                                       "extension_kit.udp_json.driver:UdpJsonDriver")}
