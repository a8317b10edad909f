"""4-20 mA transmitters behind an analogue input: the loop current as a measurement or a fault.

A sensor with ``signal: 4-20mA`` is read as a loop current: its register, times ``scale`` plus
``offset``, is the current in mA (a module reporting µA or 0.001 mA: ``scale: 0.001``), and
its ``range`` maps 4 mA to ``min`` and 20 mA to ``max``.

NAMUR NE43 ("Standardisation of the signal level for the failure information of digital
transmitters with analogue output signal") splits the loop current:

* 3.8 to 20.5 mA is measurement information: a transmitter whose process leaves its range
  drives the current a little past 4 or 20 mA and no further (saturation).  Such readings
  are taken as the range's end (``min`` below 4 mA, ``max`` above 20 mA): the process is at
  least there, and the sensor is working;
* at or below 3.6 mA, or at or above 21 mA, the transmitter signals a failure (its own
  diagnosis, or a broken wire at 0 mA, or a short circuit).

NE43 leaves the bands between, 3.6 to 3.8 and 20.5 to 21 mA, to tolerances: a working
transmitter never goes there (it saturates at 3.8 and 20.5), a failing one may land there
from 3.6 or 21 through the loop's and the input card's errors.  parkwatch takes them as
failures too: whatever is no measurement by NE43 must not move a process rule.

A failure is handed on as the linear value of the current (4 mA → ``min``, 20 mA → ``max``,
not clamped), which lies outside the range: the ``sensor_fault`` rule raises its alarm on it,
and the rule engine keeps it from the process rules.
"""

from __future__ import annotations

import numpy as np

#: NAMUR NE43: the loop current carrying measurement information, saturation included (mA)
MEASURING_MA = (3.8, 20.5)
#: NAMUR NE43: at or beyond these the transmitter signals a failure (mA)
FAILURE_MA = (3.6, 21.0)


def loop_values(ma: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Values in the sensors' unit of loop currents `ma` (mA), for ranges `lo`..`hi`:
    within NE43's measuring band clamped to the range, outside it beyond the range."""
    linear: np.ndarray = lo + (ma - 4.0) * ((hi - lo) / 16.0)
    measuring = (ma >= MEASURING_MA[0]) & (ma <= MEASURING_MA[1])  # False for NaN
    out: np.ndarray = np.where(measuring, np.clip(linear, lo, hi), linear)
    return out
