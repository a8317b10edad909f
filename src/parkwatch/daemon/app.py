"""The running daemon: builds every part from a validated config and starts/stops them."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from parkwatch import __version__
from parkwatch.alarms.event import EventBuilder
from parkwatch.alarms.lifecycle import AlarmBook
from parkwatch.alarms.uplink import UplinkPublisher
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.checkpoint import StateKeeper
from parkwatch.daemon.pipeline import Inbox, Pipeline
from parkwatch.drivers.registry import DRIVER_KINDS
from parkwatch.park import ParkModel
from parkwatch.recording import Recorder
from parkwatch.rules.engine import RuleEngine
from parkwatch.timefmt import rfc3339_ms

log = logging.getLogger("parkwatch")


class Daemon:
    def __init__(self, cfg: ParkConfig, state_dir: Path | None = None,
                 record: Path | None = None) -> None:
        self.cfg = cfg
        self.state_dir = state_dir or cfg.gateway.state_dir
        self.started_at = time.time()
        self.park = ParkModel(cfg)
        self.engine = RuleEngine(self.park, start=self.started_at)
        self.book = AlarmBook(time.time)
        self.keeper = StateKeeper(self.engine, self.book, self.state_dir)
        self.recorder = Recorder(record, self.park) if record is not None else None
        self.inbox = Inbox()
        self.uplink = UplinkPublisher(cfg, EventBuilder(self.park))
        self.drivers = [DRIVER_KINDS[d.type].driver_class()(d, self.park, self.inbox, cfg)
                        for d in cfg.drivers]
        # the gateway status is refreshed whenever a broker link or a port comes or goes
        for part in [self.uplink.link, *(getattr(d, "link", d) for d in self.drivers)]:
            part.state_listeners.append(lambda _up: self.inbox.call(self._publish_status))
        self.pipeline = Pipeline(self.inbox, self.engine, self.book, self.uplink,
                                 keeper=self.keeper, recorder=self.recorder)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.scheduler.add_job(lambda: self.inbox.call(self._tick), "interval",
                               seconds=cfg.gateway.status_interval_s, id="status",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(lambda: self.inbox.call(self.keeper.checkpoint), "interval",
                               seconds=cfg.gateway.checkpoint_interval_s, id="checkpoint",
                               max_instances=1, coalesce=True)

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        reconciled = self.keeper.restore()
        self.uplink.start()
        if reconciled:
            self.uplink.publish_changes(reconciled)
        for alarm_id in self.keeper.orphans:
            self.uplink.forget(alarm_id)
        self.pipeline.start()
        for driver in self.drivers:
            driver.start()
        self.scheduler.start()
        log.info("parkwatch %s started: park %s, gateway %s, %d sensor(s), %d driver(s)",
                 __version__, self.cfg.park.id, self.cfg.gateway.id, len(self.park),
                 len(self.drivers))

    def stop(self, timeout: float = 1.5) -> None:
        """Stop inputs first, let the pipeline drain, then say offline and disconnect."""
        deadline = time.monotonic() + timeout
        self.scheduler.shutdown(wait=False)
        for driver in self.drivers:
            driver.stop()
        self.pipeline.stop(max(0.1, deadline - time.monotonic() - 0.5))
        self.keeper.close()
        if self.recorder is not None:
            self.recorder.close()
        self.uplink.stop(max(0.1, deadline - time.monotonic()))
        log.info("parkwatch stopped")

    def acknowledge(self, alarm_id: str, by: str, note: str | None = None,
                    timeout: float = 5.0) -> bool:
        """Acknowledge an open alarm from any thread; False when no such open alarm."""
        done = threading.Event()
        result: list[bool] = []

        def ack() -> None:
            try:
                self.uplink.publish_changes(self.book.acknowledge(alarm_id, by, note))
                self.keeper.book_changed()
                result.append(True)
            except KeyError:
                result.append(False)
            finally:
                done.set()

        self.inbox.call(ack)
        if not done.wait(timeout):
            raise TimeoutError("pipeline did not answer")
        return result[0]

    def _tick(self) -> None:
        for driver in self.drivers:
            driver.rejections.flush()
        self._publish_status()

    def _publish_status(self) -> None:
        self.uplink.publish_status(self.status())

    def counts(self) -> dict[str, Any]:
        accepted = sum(d.accepted for d in self.drivers)
        rejected = sum(d.rejections.count for d in self.drivers)
        return {"accepted": accepted, "rejected": rejected, **self.engine.stats,
                "alarm_changes": self.uplink.published, "pipeline_errors": self.pipeline.errors,
                "state_saves": self.keeper.saves, "state_errors": self.keeper.errors}

    def status(self) -> dict[str, Any]:
        """The retained gateway status: who we are, and whether drivers and alarms are well."""
        return {
            "state": "online",
            "gateway": self.cfg.gateway.id,
            "park": self.cfg.park.id,
            "version": __version__,
            "started_at": rfc3339_ms(self.started_at),
            "updated_at": rfc3339_ms(time.time()),
            "sensors": len(self.park),
            "open_alarms": len(self.book.open),
            "active_alarms": len(self.book.active_by_key),
            "readings": self.counts(),
            "drivers": {d.id: d.health() for d in self.drivers},
        }
