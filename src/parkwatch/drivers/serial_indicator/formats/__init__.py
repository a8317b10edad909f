"""Indicator frame formats, one module each; the driver config's `format` names one of these."""

from __future__ import annotations

from parkwatch.drivers.serial_indicator.formats.and_line import AndLine
from parkwatch.drivers.serial_indicator.formats.base import (
    Frame,
    FrameFormat,
    Parser,
    Reading,
    Rejection,
)
from parkwatch.drivers.serial_indicator.formats.xk3190 import Xk3190A9

FORMATS: dict[str, type[FrameFormat]] = {
    "xk3190_a9": Xk3190A9,
    "and_line": AndLine,
}

__all__ = ["FORMATS", "AndLine", "Frame", "FrameFormat", "Parser", "Reading", "Rejection",
           "Xk3190A9"]
