"""The running daemon: builds every part from a validated config and starts/stops them."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from parkwatch import __version__
from parkwatch.alarms.delivery import (
    Courier,
    LogSender,
    MqttSender,
    Sender,
    UplinkSender,
    WebhookSender,
)
from parkwatch.alarms.service import AlarmService, Outcome
from parkwatch.alarms.store import AlarmStore, Record, StoreReader
from parkwatch.alarms.uplink import UplinkPublisher
from parkwatch.config.delivery import UPLINK, Backoff, LogTarget, MqttTarget
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.checkpoint import StateKeeper
from parkwatch.daemon.httpapi import ApiServer, state_token
from parkwatch.daemon.metrics import DaemonMetrics
from parkwatch.daemon.pipeline import Inbox, Pipeline
from parkwatch.drivers.registry import DRIVER_KINDS
from parkwatch.park import ParkModel
from parkwatch.recording import Recorder
from parkwatch.rules.engine import RuleEngine
from parkwatch.telemetry.aggregates import Aggregates
from parkwatch.telemetry.sink import TelemetrySink
from parkwatch.timefmt import rfc3339_ms

log = logging.getLogger("parkwatch")

STORE_FILE = "alarms.db"


class Daemon:
    def __init__(self, cfg: ParkConfig, state_dir: Path | None = None,
                 record: Path | None = None) -> None:
        self.cfg = cfg
        self.state_dir = state_dir or cfg.gateway.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.park = ParkModel(cfg)
        self.engine = RuleEngine(self.park, start=self.started_at)
        self.keeper = StateKeeper(self.engine, self.state_dir)
        self.recorder = Recorder(record, self.park) if record is not None else None
        self.inbox = Inbox()
        self.telemetry = TelemetrySink(cfg, self.park, self.state_dir)
        self.aggregates = Aggregates(self.park)
        self.store_path = self.state_dir / STORE_FILE
        self.store = self._open_store()
        self.reader = StoreReader(self.store_path)
        self.uplink = UplinkPublisher(cfg, on_ack=lambda p: self.inbox.call(
            lambda: self._mqtt_ack(p)))
        self.metrics = DaemonMetrics(self)  # reads the parts at scrape time; /metrics
        self.couriers = self._couriers()
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.alarms = AlarmService(cfg, self.park, self.engine, self.store,
                                   on_committed=self._committed, on_due=self._arm_escalation)
        self.drivers = [DRIVER_KINDS[d.type].driver_class()(d, self.park, self.inbox, cfg)
                        for d in cfg.drivers]
        # the gateway status is refreshed whenever a broker link or a port comes or goes
        for part in [self.uplink.link, *(getattr(d, "link", d) for d in self.drivers)]:
            part.state_listeners.append(lambda _up: self.inbox.call(self._publish_status))
        self.pipeline = Pipeline(self.inbox, self.engine, self.alarms, keeper=self.keeper,
                                 recorder=self.recorder, on_batch=self.telemetry.readings,
                                 on_evaluated=self.metrics.observe_rules)
        self.api = self._api()
        self.scheduler.add_job(lambda: self.inbox.call(self._tick), "interval",
                               seconds=cfg.gateway.status_interval_s, id="status",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(lambda: self.inbox.call(self.keeper.checkpoint), "interval",
                               seconds=cfg.gateway.checkpoint_interval_s, id="checkpoint",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(lambda: self.inbox.call(self._aggregate), "interval",
                               seconds=cfg.telemetry.aggregates_interval_s, id="aggregates",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(lambda: self.inbox.call(self._purge), "interval", seconds=3600,
                               id="purge", max_instances=1, coalesce=True)

    def _open_store(self) -> AlarmStore:
        try:
            return AlarmStore(self.store_path)
        except (sqlite3.DatabaseError, ValueError) as exc:
            aside = self.store_path.with_name(f"{STORE_FILE}.damaged-{int(time.time())}")
            self.store_path.replace(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.store_path}{suffix}").unlink(missing_ok=True)
            log.error("alarm store %s unreadable (%s); moved to %s, starting with no open "
                      "alarms", self.store_path, exc, aside.name)
            return AlarmStore(self.store_path)

    def _couriers(self) -> dict[str, Courier]:
        """One courier per target: the command-center contract, then each configured one."""
        link = self.uplink.link
        out = {UPLINK: Courier(UPLINK, UplinkSender(link, self.uplink.topics), self.store_path,
                               Backoff(initial_s=1.0, max_s=30.0), ready=link.connected,
                               on_delivered=self.metrics.delivery_observer(UPLINK))}
        for name, target in self.cfg.alarms.targets.items():
            sender: Sender
            if isinstance(target, LogTarget):
                sender, backoff, ready = LogSender(name), Backoff(), None
            elif isinstance(target, MqttTarget):
                sender, backoff, ready = MqttSender(link, target), target.retry, link.connected
            else:
                sender, backoff, ready = WebhookSender(name, target), target.retry, None
            out[name] = Courier(name, sender, self.store_path, backoff, ready=ready,
                                on_delivered=self.metrics.delivery_observer(name))
        return out

    def _api(self) -> ApiServer | None:
        api = self.cfg.api
        if api is None:
            return None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        token = api.secret() or state_token(self.state_dir, create=True)
        return ApiServer(api.listen, api.port, token, StoreReader(self.store_path),
                         self.command, lambda: self.call(self.status),
                         views={"/api/silences": self.silences},
                         extra={"/metrics": self.metrics.metrics_response,
                                "/healthz": self.metrics.healthz_response})

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fresh = self.keeper.restore()
        self.alarms.restore(fresh)
        self.uplink.start()
        for alarm_id in self.alarms.orphans:
            self.uplink.forget(alarm_id)
        for courier in self.couriers.values():
            courier.start()
        self.telemetry.start()
        self.pipeline.start()
        for driver in self.drivers:
            driver.start()
        self.scheduler.start()
        if self.api is not None:
            self.api.start()
        log.info("parkwatch %s started: park %s, gateway %s, %d sensor(s), %d driver(s), "
                 "%d open alarm(s)", __version__, self.cfg.park.id, self.cfg.gateway.id,
                 len(self.park), len(self.drivers), len(self.alarms.book.open))

    def stop(self, timeout: float = 1.5) -> None:
        """Stop inputs first, let the pipeline drain, then say offline and disconnect."""
        deadline = time.monotonic() + timeout
        self.scheduler.shutdown(wait=False)
        if self.api is not None:
            self.api.stop()
        for driver in self.drivers:
            driver.stop()
        self.pipeline.stop(max(0.1, deadline - time.monotonic() - 0.5))
        self.keeper.close()
        self.telemetry.stop(max(0.2, deadline - time.monotonic() - 0.5))
        if self.recorder is not None:
            self.recorder.close()
        for courier in self.couriers.values():  # what is undelivered waits in the outbox
            courier.stop(max(0.1, deadline - time.monotonic() - 0.3))
        self.uplink.stop(max(0.1, deadline - time.monotonic()))
        self.reader.close()
        self.store.close()
        log.info("parkwatch stopped")

    # --- calls onto the pipeline thread ---------------------------------------------------

    def call(self, fn: Any, timeout: float = 5.0) -> Any:
        """Run `fn` on the pipeline thread (the owner of alarms and counters); its result."""
        done = threading.Event()
        result: list[Any] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                result.append(fn())
            except BaseException as exc:
                error.append(exc)
            finally:
                done.set()

        self.inbox.call(run)
        if not done.wait(timeout):
            raise TimeoutError("pipeline did not answer")
        if error:
            raise error[0]
        return result[0]

    def command(self, command: str, alarm_id: str, by: str, note: str | None,
                via: str) -> Outcome:
        """An operator's ack or reset, from any thread."""
        fn = self.alarms.acknowledge if command == "ack" else self.alarms.reset
        return self.call(lambda: fn(alarm_id, by, note, via))  # type: ignore[no-any-return]

    def acknowledge(self, alarm_id: str, by: str, note: str | None = None) -> bool:
        """Acknowledge an open alarm from any thread; False when it was not acknowledged."""
        return self.command("ack", alarm_id, by, note, "local") is Outcome.DONE

    def _mqtt_ack(self, payload: bytes) -> None:
        """`{"alarm_id": ..., "by": ..., "note": ...}` on the ack command topic."""
        try:
            msg = json.loads(payload)
            alarm_id, by, note = msg["alarm_id"], msg["by"], msg.get("note")
            if not (isinstance(alarm_id, str) and isinstance(by, str)
                    and (note is None or isinstance(note, str))):
                raise TypeError("alarm_id and by must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            self.alarms.refused.reject("bad_command", f"ack command on "
                                       f"{self.uplink.topics.ack}: {exc!r}: {payload[:200]!r}")
            return
        self.alarms.acknowledge(alarm_id, by.strip(), note, via="mqtt")

    def silences(self) -> dict[str, Any]:
        """The configured silences and drills, and whether each is in force now."""
        now = datetime.now(UTC)
        a = self.cfg.alarms
        return {kind: [{**x.model_dump(mode="json"), "active": x.start <= now < x.end}
                       for x in items] for kind, items in (("silences", a.silences),
                                                          ("drills", a.drills))}

    # --- timers ---------------------------------------------------------------------------

    def _committed(self, records: list[Record]) -> None:
        """Alarm changes are on disk: wake the couriers, then tell telemetry."""
        self._wake_couriers()
        self.telemetry.events([r.payload for r in records])

    def _aggregate(self) -> None:
        """Floor loads, sensor limits and the gateway's counters, for Grafana."""
        now = time.time()
        counts = self.counts()
        outbox = self.reader.outbox_stats(now)
        spool = self.telemetry.spool
        counts.update(readings_accepted=counts["accepted"], readings_rejected=counts["rejected"],
                      open_alarms=len(self.alarms.book.open),
                      active_alarms=len(self.alarms.book.active_by_key),
                      outbox_pending=sum(t.get("pending", 0) for t in outbox.values()),
                      spool_bytes=spool.bytes,
                      spool_dropped_points=sum(x.dropped_points for x in spool.lanes.values()))
        for text, n in (self.aggregates.floors(self.engine.kinds.get("floor_load"), now),
                        self.aggregates.sensor_limits(now),
                        self.aggregates.gateway(counts, now)):
            self.telemetry.points_text(text, n)

    def _wake_couriers(self) -> None:
        for courier in self.couriers.values():
            courier.wake()

    def _arm_escalation(self, due: float | None) -> None:
        """(Re)arm the one apscheduler job that runs the escalations due next."""
        if due is None:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job("escalation")
            return
        self.scheduler.add_job(lambda: self.inbox.call(self.alarms.escalate_due), "date",
                               run_date=datetime.fromtimestamp(due, UTC), id="escalation",
                               replace_existing=True, misfire_grace_time=None)

    def _purge(self) -> None:
        dropped = self.store.purge(time.time() - self.cfg.alarms.outbox_retention_s)
        if dropped:
            log.info("alarm store: %d closed alarm(s) past retention removed", dropped)

    def _tick(self) -> None:
        for driver in self.drivers:
            driver.rejections.flush()
        self.alarms.refused.flush()
        self.alarms.retry_unsaved()
        if self.api is not None:
            self.api.refused.flush()
        self._publish_status()

    def _publish_status(self) -> None:
        self.uplink.publish_status(self.status())

    def counts(self) -> dict[str, Any]:
        accepted = sum(d.accepted for d in self.drivers)
        rejected = sum(d.rejections.count for d in self.drivers)
        return {"accepted": accepted, "rejected": rejected, **self.engine.stats,
                "alarm_changes": self.alarms.committed, "pipeline_errors": self.pipeline.errors,
                "state_saves": self.keeper.saves, "state_errors": self.keeper.errors,
                "store_errors": self.alarms.store_errors}

    def status(self) -> dict[str, Any]:
        """The retained gateway status (the heartbeat): who we are, whether drivers and
        deliveries are well, and how many alarms are open in which state."""
        now = time.time()
        outbox = self.reader.outbox_stats(now)
        refused = self.alarms.refused.count + (self.api.refused.count if self.api else 0)
        return {
            "state": "online",
            "gateway": self.cfg.gateway.id,
            "park": self.cfg.park.id,
            "version": __version__,
            "started_at": rfc3339_ms(self.started_at),
            "updated_at": rfc3339_ms(now),
            "sensors": len(self.park),
            "open_alarms": len(self.alarms.book.open),
            "active_alarms": len(self.alarms.book.active_by_key),
            "alarms": self.alarms.counts(),
            "readings": self.counts(),
            "drivers": {d.id: d.health() for d in self.drivers},
            "targets": {name: {**c.health(), **outbox.get(name, {"pending": 0})}
                        for name, c in self.couriers.items()},
            "refused_commands": refused,
        }
