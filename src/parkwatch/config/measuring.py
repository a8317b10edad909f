"""Measuring ranges, and the magnitude beyond which no reading of a park means anything."""

from __future__ import annotations

from pydantic import Field, model_validator

from parkwatch.config.base import Strict

#: no reading of a park means anything beyond this magnitude, in any unit, after scale and
#: offset: 1e12 N is the weight of 100 million tonnes, a thousand times the heaviest building,
#: and 1e12 mm is a million kilometres of water.  Readings beyond it (and NaN, ±inf) are
#: rejected before the rules (parkwatch.plausible); a measuring range must lie within it.  It
#: also keeps every rule's arithmetic (sums of many cells, rises per minute) far from overflow.
PLAUSIBLE_LIMIT = 1e12


class RangeSettings(Strict):
    """A transmitter's measuring range, in the sensor's unit (its datasheet's, as installed).

    A reading outside it is not a measurement but a fault of the sensor: it raises a
    ``sensor_fault`` alarm and moves no process rule (limits, rate, flapping, floor load).  A
    sensor whose ``signal`` is ``4-20mA`` maps 4 mA to ``min`` and 20 mA to ``max``.
    """

    min: float = Field(ge=-PLAUSIBLE_LIMIT, le=PLAUSIBLE_LIMIT,
                       description="the lowest value the transmitter can measure")
    max: float = Field(ge=-PLAUSIBLE_LIMIT, le=PLAUSIBLE_LIMIT,
                       description="the highest value the transmitter can measure")

    @model_validator(mode="after")
    def _ordered(self) -> RangeSettings:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        return self
