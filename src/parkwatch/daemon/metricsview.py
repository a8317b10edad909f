"""What ``/metrics`` and ``/healthz`` read of the running daemon, and nothing more: a read-only
view the metrics are given instead of the daemon itself (the daemon satisfies it as it is).

Each member is a read-only property, read at scrape time on the HTTP server's threads: the
parts a reload replaces (drivers, couriers, the alarm service, the rule engine) are always
the current ones.  The metrics never change what they read, and never import the daemon.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from parkwatch.config.model import ParkConfig
from parkwatch.drivers.base import Driver


class Refusals(Protocol):
    """Refused commands or requests by reason (:class:`parkwatch.rejections.Rejections`)."""

    @property
    def total(self) -> Mapping[str, int]: ...


class AlarmFigures(Protocol):
    """The alarm service's counts (:class:`parkwatch.alarms.service.AlarmService`)."""

    @property
    def tally(self) -> Mapping[tuple[str, str], int]:
        """Open alarms by (hazard, state), kept with every change."""
        ...

    @property
    def committed(self) -> int: ...

    @property
    def store_errors(self) -> int: ...

    @property
    def unsaved(self) -> int: ...

    @property
    def refused(self) -> Refusals: ...


class CommitFigures(Protocol):
    """The commit stage's counts (:class:`parkwatch.alarms.commit.Committer`)."""

    @property
    def groups(self) -> int: ...

    @property
    def waiting(self) -> int: ...


class CourierFigures(Protocol):
    """One delivery target's courier (in the daemon's process or a worker's)."""

    @property
    def delivered(self) -> int: ...

    @property
    def failures(self) -> int: ...

    @property
    def expired(self) -> int: ...

    @property
    def failing(self) -> bool: ...

    @property
    def ready(self) -> threading.Event | None:
        """Set while its broker is connected; None for a target with no broker."""
        ...


class PipelineFigures(Protocol):
    """The alarm pipeline (:class:`parkwatch.daemon.pipeline.Pipeline`)."""

    @property
    def running(self) -> bool: ...

    @property
    def errors(self) -> int: ...

    @property
    def busy_since(self) -> float | None:
        """When the batch or tick in hand began (monotonic); None while it waits."""
        ...

    @property
    def stuck(self) -> bool:
        """Rules were still due after a clock tick (ticked at most once a second since)."""
        ...

    @property
    def clockwatch(self) -> ClockFigures | None:
        """The watch over the wall clock (None: not watched)."""
        ...


class ClockFigures(Protocol):
    """The wall clock (:class:`parkwatch.daemon.clockwatch.ClockWatch`)."""

    @property
    def steps(self) -> int: ...

    @property
    def last_step(self) -> tuple[float, float] | None: ...

    def synchronized(self, max_age_s: float = ...) -> bool | None: ...

    def unsynchronized_s(self) -> float: ...

    def health(self) -> dict[str, Any]: ...


class Queue(Protocol):
    def qsize(self) -> int: ...


class InboxFigures(Protocol):
    @property
    def queue(self) -> Queue: ...


class RuleFigures(Protocol):
    @property
    def stats(self) -> Mapping[str, int]:
        """Readings that reached the rule engine, by outcome."""
        ...


class KeeperFigures(Protocol):
    @property
    def saves(self) -> int: ...

    @property
    def errors(self) -> int: ...


class TelemetryFigures(Protocol):
    def stats(self) -> dict[str, Any]:
        """The telemetry sink's figures (spool, points, write errors, server up or down)."""
        ...


class Link(Protocol):
    @property
    def connected(self) -> threading.Event: ...


class UplinkFigures(Protocol):
    @property
    def link(self) -> Link:
        """The command-center broker link."""
        ...


class ApiFigures(Protocol):
    @property
    def refused(self) -> Refusals: ...


class OutputFigures(Protocol):
    """The outputs' states and writes (:class:`parkwatch.outputs.bank.OutputBank`)."""

    outputs: Sequence[Any]  #: parkwatch.park.OutputInfo, in the config's order
    wanted: Sequence[bool | None]
    fault: Sequence[bool]
    seen: Sequence[str]
    writes: int


class MetricsView(Protocol):
    """Everything the daemon's metrics and health read (see :mod:`.metrics`)."""

    @property
    def cfg(self) -> ParkConfig:
        """The config in force: park and gateway ids, the uplink's broker name."""
        ...

    @property
    def started_at(self) -> float: ...

    @property
    def config_loaded_at(self) -> float: ...

    @property
    def reloads(self) -> Mapping[str, int]:
        """Reloads of the config by outcome (applied, failed)."""
        ...

    @property
    def last_reload(self) -> Mapping[str, Any] | None:
        """How the last reload went (``ok``); None before any."""
        ...

    @property
    def engine(self) -> RuleFigures: ...

    @property
    def pipeline(self) -> PipelineFigures: ...

    @property
    def inbox(self) -> InboxFigures: ...

    @property
    def keeper(self) -> KeeperFigures: ...

    @property
    def alarms(self) -> AlarmFigures: ...

    @property
    def committer(self) -> CommitFigures: ...

    @property
    def api(self) -> ApiFigures | None:
        """The local HTTP API, whose refused requests count too; None when not configured."""
        ...

    @property
    def store_path(self) -> Path:
        """The alarm store, whose outbox is read through a connection of the scraping
        thread's own."""
        ...

    @property
    def couriers(self) -> Mapping[str, CourierFigures]:
        """Each delivery target's courier by target name."""
        ...

    @property
    def drivers(self) -> Sequence[Driver]: ...

    @property
    def outputs(self) -> OutputFigures: ...

    @property
    def uplink(self) -> UplinkFigures: ...

    @property
    def telemetry(self) -> TelemetryFigures: ...
