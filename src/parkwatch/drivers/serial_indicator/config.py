"""Config model of the weighing-indicator driver: one indicator streaming on one port."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from parkwatch.config.base import Id
from parkwatch.drivers.serialport import SerialLine


class SerialIndicatorDriverConfig(SerialLine):
    """A weighing indicator in continuous-output mode; exactly one load cell per driver."""

    id: Id
    type: Literal["serial_indicator"]
    format: Literal["xk3190_a9", "and_line"] = Field(
        description="frame format: xk3190_a9 (Yaohua continuous mode tf=0, 12-byte frames) or "
        "and_line (A&D-style lines such as ST,GS,+00123.45kg)")
    comm_fault_after_s: float = Field(10.0, gt=0, le=86_400, description="no valid frame for "
                                      "this long: readings turn comm_fail, then a comm-fault "
                                      "alarm")
    silence_s: float = Field(2.0, gt=0, le=600, description="no valid frame for this long "
                             "counts as a lost indicator")

    def report_interval(self, sensor: Any) -> float | None:
        """An indicator streams continuously; silence_s is how long a gap may be."""
        return self.silence_s


def check_indicator_driver(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    drv: SerialIndicatorDriverConfig = park.drivers[index]
    out: list[tuple[tuple[str | int, ...], str]] = []
    mine = [(si, s) for si, s in enumerate(park.sensors) if s.driver == drv.id]
    if len(mine) != 1:
        out.append((("drivers", index, "id"), f"an indicator reads one load cell; "
                    f"{len(mine)} sensors name driver '{drv.id}'"))
    for si, s in mine:
        if s.kind != "load_cell":
            out.append((("sensors", si, "kind"), "a weighing indicator measures a load cell"))
    for j, other in enumerate(park.drivers):
        if j < index and getattr(other, "port", None) == drv.port:
            out.append((("drivers", index, "port"), f"port {drv.port} is already used by "
                        f"driver '{other.id}': one owner per serial port"))
    return out
