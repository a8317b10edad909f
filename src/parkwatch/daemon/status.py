"""What the gateway reports about itself: the retained status (the heartbeat), its counters, the
silences in force, and the timer jobs that send them out.

The status goes to the uplink (retained, DESIGN §3.1) every ``gateway.status_interval_s`` and
whenever a broker link, a port or the config changes; the local API serves the same document.
The counters also go to telemetry with the floor loads and sensor limits, for Grafana, every
``telemetry.aggregates_interval_s``.  Every job here runs on the pipeline thread (the owner of the
alarms and the rule counters): the timers queue it in the inbox.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from parkwatch import __version__
from parkwatch.alarms.dispatch import Dispatcher
from parkwatch.alarms.timestamps import rfc3339_ms
from parkwatch.alarms.uplink import UplinkPublisher
from parkwatch.alarms.views import StoreReader
from parkwatch.daemon.checkpoint import StateKeeper
from parkwatch.daemon.httpapi import ApiServer
from parkwatch.daemon.live import LiveParts
from parkwatch.daemon.pipeline import Pipeline
from parkwatch.daemon.reloader import ReloadHistory
from parkwatch.telemetry.sink import TelemetrySink


class GatewayStatus:
    """The gateway's status document and counters, read from the running parts."""

    def __init__(self, live: LiveParts, *, started_at: float, dispatcher: Dispatcher,
                 pipeline: Pipeline, keeper: StateKeeper, reader: StoreReader,
                 telemetry: TelemetrySink, uplink: UplinkPublisher, api: ApiServer | None,
                 reloads: ReloadHistory) -> None:
        self.live = live
        self.started_at = started_at
        self.dispatcher = dispatcher
        self.pipeline = pipeline
        self.keeper = keeper
        self.reader = reader
        self.telemetry = telemetry
        self.uplink = uplink
        self.api = api
        self.reloads = reloads

    def counts(self) -> dict[str, Any]:
        """Readings accepted and rejected, the rule engine's counters, and the alarm path's."""
        live = self.live
        accepted = sum(d.accepted for d in live.drivers)
        rejected = sum(d.rejections.count for d in live.drivers)
        return {"accepted": accepted, "rejected": rejected, **live.engine.stats,
                "alarm_changes": live.alarms.committed, "pipeline_errors": self.pipeline.errors,
                "state_saves": self.keeper.saves, "state_errors": self.keeper.errors,
                "store_errors": live.alarms.store_errors}

    def status(self) -> dict[str, Any]:
        """The retained gateway status (the heartbeat): who we are, whether drivers and
        deliveries are well, and how many alarms are open in which state."""
        live = self.live
        now = time.time()
        outbox = self.reader.outbox_stats(now)
        refused = live.alarms.refused.count + (self.api.refused.count if self.api else 0)
        reloads = self.reloads
        return {
            "state": "online",
            "gateway": live.cfg.gateway.id,
            "park": live.cfg.park.id,
            "version": __version__,
            "started_at": rfc3339_ms(self.started_at),
            "updated_at": rfc3339_ms(now),
            "sensors": len(live.park),
            "open_alarms": len(live.alarms.book.open),
            "active_alarms": len(live.alarms.book.active_by_key),
            "alarms": live.alarms.counts(),
            "readings": self.counts(),
            "drivers": {d.id: d.health() for d in live.drivers},
            "targets": {name: {**c.health(), **outbox.get(name, {"pending": 0})}
                        for name, c in self.dispatcher.couriers.items()},
            "refused_commands": refused,
            "clock": (self.pipeline.clockwatch.health()
                      if self.pipeline.clockwatch is not None else None),
            "config": {"loaded_at": rfc3339_ms(reloads.loaded_at),
                       "reloads": dict(reloads.counts), "last_reload": reloads.last},
        }

    def silences(self) -> dict[str, Any]:
        """The configured silences and drills, and whether each is in force now."""
        now = datetime.now(UTC)
        a = self.live.cfg.alarms
        return {kind: [{**x.model_dump(mode="json"), "active": x.start <= now < x.end}
                       for x in items] for kind, items in (("silences", a.silences),
                                                          ("drills", a.drills))}

    # --- timer jobs (on the pipeline thread) -----------------------------------------------

    def publish(self) -> None:
        """The status, retained on the uplink."""
        self.uplink.publish_status(self.status())

    def tick(self) -> None:
        """Every ``status_interval_s``: the rejection and refusal summaries are logged, alarm
        changes the store could not save are tried again, and the status is published."""
        live = self.live
        for driver in live.drivers:
            driver.rejections.flush()
        live.alarms.refused.flush()
        live.alarms.retry_unsaved()
        if self.api is not None:
            self.api.flush()
        self.publish()

    def aggregate(self) -> None:
        """Floor loads, sensor limits and the gateway's counters, for Grafana."""
        live = self.live
        now = time.time()
        counts = self.counts()
        outbox = self.reader.outbox_stats(now)
        spool = self.telemetry.spool
        counts.update(readings_accepted=counts["accepted"], readings_rejected=counts["rejected"],
                      open_alarms=len(live.alarms.book.open),
                      active_alarms=len(live.alarms.book.active_by_key),
                      outbox_pending=sum(t.get("pending", 0) for t in outbox.values()),
                      spool_bytes=spool.bytes,
                      spool_dropped_points=sum(x.dropped_points for x in spool.lanes.values()))
        aggregates = live.aggregates
        for text, n in (aggregates.floors(live.engine.kinds.get("floor_load"), now),
                        aggregates.sensor_limits(now),
                        aggregates.gateway(counts, now)):
            self.telemetry.points_text(text, n)
