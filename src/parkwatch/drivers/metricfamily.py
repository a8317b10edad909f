"""How a driver type declares a metric family of its own (kept apart from :mod:`.base` so that
the registry, which the config loader imports, stays free of numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricFamily:
    """A metric family of one driver type, on ``/metrics`` beside those every driver has:
    declared in the driver's folder (``metrics.py``) and listed in its registry entry, from
    which the daemon's catalogue (:mod:`parkwatch.daemon.metricnames`) gathers it."""

    name: str  #: as exposed: ``parkwatch_...``, a counter's ending in ``_total``
    type: Literal["counter", "gauge"]
    labels: tuple[str, ...]  #: the first is ``driver``: the driver's id
    help: str


#: one sample of a driver's own family: (family name, label values in order, value)
MetricSample = tuple[str, tuple[str, ...], float]
