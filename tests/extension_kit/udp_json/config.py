"""The udp_json driver's `drivers[]` item."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from parkwatch.config.base import Id, Strict
from parkwatch.config.model import SensorConfig


class UdpJsonDriverConfig(Strict):
    """Devices send `{"sensor": "<sensor id>", "value": <number>}`, one datagram a reading."""

    id: Id
    type: Literal["udp_json"]
    listen: str = Field("127.0.0.1", description="address to receive datagrams on")
    port: int = Field(ge=1, le=65535, description="UDP port")

    def report_interval(self, sensor: SensorConfig) -> float | None:
        """Devices send when they like: only a sensor's own report_interval_s is expected."""
        return None
