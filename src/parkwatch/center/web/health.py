"""/healthz and /metrics of the center (no login: for monitoring, as the daemon's).

/healthz is 200 with ``"status": "ok"`` or 503 with the reasons (broker disconnected,
database unavailable, ingest stopped).  /metrics is the Prometheus text format: events
stored, duplicates ignored, refusals by reason, the lag behind the broker, database and
broker up, the console's open live streams, receiver restarts and failed logins; hazard
tickets open and overdue, and escalations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from parkwatch.center.ingest import Ingest
from parkwatch.center.store import CenterStore, StoreError


class CenterCollector(Collector):
    """Reads the ingest's figures when scraped (nothing is counted twice)."""

    def __init__(self, ingest: Ingest, store: CenterStore, streams: Callable[[], int],
                 failed_logins: Callable[[], int] = lambda: 0,
                 escalated: Callable[[], int] = lambda: 0) -> None:
        self.ingest = ingest
        self.store = store
        self.streams = streams
        self.failed_logins = failed_logins
        self.escalated = escalated

    def collect(self) -> Iterator[Metric]:
        f = self.ingest.figures
        stored = CounterMetricFamily("parkwatch_center_events_stored",
                                     "alarm events newly stored (by park)", labels=["park"])
        for park, n in sorted(f.by_park.items()):
            stored.add_metric([park], n)
        yield stored
        yield CounterMetricFamily("parkwatch_center_events_duplicate",
                                  "events already stored: ignored", value=f.duplicates)
        rejected = CounterMetricFamily("parkwatch_center_rejected",
                                       "publications refused, by reason", labels=["reason"])
        for reason, n in sorted(self.ingest.rejections.total.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield GaugeMetricFamily("parkwatch_center_lag_seconds", "from the newest event's "
                                "change at its gateway to its commit here, last batch",
                                value=f.lag_s)
        yield GaugeMetricFamily("parkwatch_center_database_up", "1 when the database answers",
                                value=1.0 if f.database_up and self.store.ping() else 0.0)
        yield GaugeMetricFamily("parkwatch_center_broker_connected",
                                "1 when connected to the central broker (the ingest's and "
                                "the commands' connections)",
                                value=1.0 if self.ingest.connected.is_set()
                                and self.ingest.commands.connected.is_set() else 0.0)
        yield GaugeMetricFamily("parkwatch_center_console_streams",
                                "browsers following the live board", value=self.streams())
        yield CounterMetricFamily("parkwatch_center_receiver_restarts",
                                  "receiver processes started again after one ended",
                                  value=self.ingest.restarts)
        yield CounterMetricFamily("parkwatch_center_login_failures",
                                  "console logins refused: a wrong name or password",
                                  value=self.failed_logins())
        yield from self._tickets()

    def _tickets(self) -> Iterator[Metric]:
        open_ = GaugeMetricFamily("parkwatch_center_tickets_open", "hazard tickets not closed, "
                                  "by park and state", labels=["park", "state"])
        late = GaugeMetricFamily("parkwatch_center_tickets_overdue", "hazard tickets past "
                                 "their deadline and not closed, by park", labels=["park"])
        overdue: dict[str, int] = {}
        try:
            counts = self.store.ticket_counts(time.time())
        except StoreError:
            counts = []  # the database away: parkwatch_center_database_up says so
        for park, state, n, n_late in counts:
            open_.add_metric([park, state], n)
            overdue[park] = overdue.get(park, 0) + n_late
        for park, n in sorted(overdue.items()):
            late.add_metric([park], n)
        yield open_
        yield late
        yield CounterMetricFamily("parkwatch_center_tickets_escalated", "overdue tickets "
                                  "escalated a level by this instance", value=self.escalated())


def metrics_registry(collector: CenterCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def metrics_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def healthz(health: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /healthz from the service's health."""
    return (200 if health["status"] == "ok" else 503), health
