"""The running daemon: builds every part from a validated config and starts/stops them."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from parkwatch import __version__
from parkwatch.alarms.courierproc import CourierProcess
from parkwatch.alarms.courierworker import UPLINK_BACKOFF
from parkwatch.alarms.delivery import Courier
from parkwatch.alarms.dispatch import AnyCourier
from parkwatch.alarms.senders import LogSender, MqttSender, Sender, UplinkSender, WebhookSender
from parkwatch.alarms.service import Outcome
from parkwatch.alarms.store import AlarmStore
from parkwatch.alarms.uplink import UplinkPublisher
from parkwatch.alarms.views import StoreReader
from parkwatch.config import ConfigError, load_config
from parkwatch.config.delivery import UPLINK, Backoff, LogTarget, MqttTarget
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.alarmpath import AlarmPath, Taps
from parkwatch.daemon.checkpoint import StateKeeper
from parkwatch.daemon.httpapi import ApiServer, state_token
from parkwatch.daemon.memory import settle_heap
from parkwatch.daemon.metrics import DaemonMetrics
from parkwatch.daemon.reload import ReloadPlan, ReloadRefused, plan_reload
from parkwatch.daemon.timers import Timers
from parkwatch.drivers.registry import DRIVER_KINDS
from parkwatch.park import ParkModel
from parkwatch.recording import Recorder
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.snapshot import (
    apply_snapshot,
    restore_state,
    snapshot_arrays,
    snapshot_meta,
)
from parkwatch.telemetry.aggregates import Aggregates
from parkwatch.telemetry.sink import TelemetrySink
from parkwatch.timefmt import rfc3339_ms

log = logging.getLogger("parkwatch")

STORE_FILE = "alarms.db"
#: alarm changes this recent still count as a storm in progress (telemetry waits for it)
STORM_GAP_S = 0.25


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
        self.store_path = self.state_dir / STORE_FILE
        self.store_lost = False  # the store was unreadable and moved aside (see start)
        self.store = self._open_store()
        # the rule state is restored before the daemon's other tables are built: the
        # snapshot's ids and fingerprints (20,000 strings with 10,000 sensors) are gone by then,
        # and those tables take their memory instead of leaving it as holes (3.5 MB at ready)
        self._latched = self._forget_rule_state() if self.store_lost else []
        self._fresh = self.keeper.restore(self.store.cleared_since)
        self.telemetry = TelemetrySink(cfg, self.park, self.state_dir)
        self.aggregates = Aggregates(self.park)
        self.reader = StoreReader(self.store_path)
        self.uplink = UplinkPublisher(cfg, on_ack=lambda p: self.inbox.call(
            lambda: self._mqtt_ack(p)))
        self.metrics = DaemonMetrics(self)  # reads the parts at scrape time; /metrics
        self.path = AlarmPath.build(  # every stage of the alarm path, in order
            cfg, self.park, self.engine, self.store, self._arm_escalation,
            Taps(events=self.telemetry.events, readings=self.telemetry.readings,
                 rules=self.metrics.observe_rules, commits=self.metrics.observe_commit),
            keeper=self.keeper, recorder=self.recorder)
        self.inbox, self.dispatcher, self.committer, self.alarms, self.pipeline = (
            self.path.inbox, self.path.dispatcher, self.path.committer, self.path.alarms,
            self.path.pipeline)
        self.telemetry.alarms_busy = self._alarms_busy  # alarms first, telemetry after
        self.dispatcher.couriers = self._couriers()
        self.keeper.committer = self.committer
        self.timers = Timers()
        self.uplink.link.state_listeners.append(self._link_changed)
        self.drivers = [self._driver(cfg, self.park, d.id) for d in cfg.drivers]
        #: the config file's reloads (SIGHUP): counts, and how the last one went
        self.reloads = {"applied": 0, "failed": 0}
        self.config_loaded_at = self.started_at
        self.last_reload: dict[str, Any] | None = None
        self._reload_lock = threading.Lock()
        self.api = self._api()
        self.timers.every("status", cfg.gateway.status_interval_s,
                          lambda: self.inbox.call(self._tick))
        self.timers.every("checkpoint", cfg.gateway.checkpoint_interval_s,
                          lambda: self.inbox.call(self.keeper.checkpoint))
        self.timers.every("aggregates", cfg.telemetry.aggregates_interval_s,
                          lambda: self.inbox.call(self._aggregate))
        self.timers.every("purge", 3600, lambda: self.inbox.call(self._purge))

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
            self.store_lost = True
            return AlarmStore(self.store_path)

    def _alarms_busy(self) -> bool:
        """Alarm changes are being routed, committed or carried, or came moments ago (the
        stages hand over to each other: a storm has short gaps in each)."""
        alarms = self.alarms
        return (alarms.routing or time.monotonic() - alarms.changed_at < STORM_GAP_S
                or self.committer.busy or self.dispatcher.carrying())

    def _link_changed(self, _up: bool) -> None:
        """The gateway status is refreshed whenever a broker link or a port comes or goes."""
        self.inbox.call(self._publish_status)

    def _driver(self, cfg: ParkConfig, park: ParkModel, driver_id: str) -> Any:
        dcfg = next(d for d in cfg.drivers if d.id == driver_id)
        driver = DRIVER_KINDS[dcfg.type].driver_class()(dcfg, park, self.inbox, cfg)
        driver.state_listeners.append(self._link_changed)
        return driver

    def _forget_rule_state(self) -> list[int]:
        """The alarm store was lost: rule state that says "already alarming" would keep those
        alarms from ever being raised again.  The rule state is set aside too, so every
        condition is raised afresh by its next reading; the fire buttons it had latched (a
        press is sent once) are returned, to be raised again at once."""
        path = self.keeper.rules_path
        if not path.exists():
            return []
        try:
            old = RuleEngine(self.park, start=self.started_at)
            restore_state(old, path)
            latched = np.flatnonzero(old.kinds["button_latch"].latched).tolist()
        except Exception as exc:  # unreadable too: the keeper moves it aside and starts afresh
            log.error("rule state %s unreadable as well (%s)", path, exc)
            return []
        aside = path.with_name(f"{path.name}.store-lost-{int(time.time())}")
        path.replace(aside)
        log.error("alarm store lost: rule state moved to %s so that every alarm condition is "
                  "raised again; %d latched fire button(s) raised again now", aside.name,
                  len(latched))
        return latched

    def _raise_again(self, buttons: list[int]) -> None:
        """Fire alarms of buttons latched before the alarm store was lost: latched and raised
        anew (the press itself is not sent again)."""
        self.alarms.apply(self.engine.relatch(buttons, time.time()))
        self.committer.flush()
        self.keeper.changed()

    def _couriers(self) -> dict[str, AnyCourier]:
        """One courier per target: the command-center contract, then each configured one."""
        link = self.uplink.link
        out: dict[str, AnyCourier] = {}
        if self.cfg.uplink.process:
            out[UPLINK] = CourierProcess(self.cfg, self.store_path, self.committer.mark,
                                         self.metrics.delivery_observer(UPLINK))
        else:
            out[UPLINK] = Courier(UPLINK, UplinkSender(link, self.uplink.topics),
                                  self.store_path, UPLINK_BACKOFF, ready=link.connected,
                                  on_delivered=self.metrics.delivery_observer(UPLINK),
                                  marks=self.committer.mark)
        for name in self.cfg.alarms.targets:
            out[name] = self._courier(self.cfg, name)
        return out

    def _courier(self, cfg: ParkConfig, name: str) -> Courier:
        link, target = self.uplink.link, cfg.alarms.targets[name]
        sender: Sender
        if isinstance(target, LogTarget):
            sender, backoff, ready = LogSender(name), Backoff(), None
        elif isinstance(target, MqttTarget):
            sender, backoff, ready = MqttSender(link, target), target.retry, link.connected
        else:
            sender, backoff, ready = WebhookSender(name, target), target.retry, None
        return Courier(name, sender, self.store_path, backoff, ready=ready,
                       on_delivered=self.metrics.delivery_observer(name),
                       marks=self.committer.mark)

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
        latched, fresh = self._latched, self._fresh
        self.keeper.start()
        self.committer.start()
        self.alarms.restore(fresh)
        if latched:
            self._raise_again(latched)
        self.uplink.start()
        for alarm_id in self.alarms.orphans:
            self.uplink.forget(alarm_id)
        self.dispatcher.start()
        self.telemetry.start()
        self.pipeline.start()
        for driver in self.drivers:
            driver.start()
        self.timers.start()
        if self.api is not None:
            self.api.start()
        log.info("parkwatch %s started: park %s, gateway %s, %d sensor(s), %d driver(s), "
                 "%d open alarm(s)", __version__, self.cfg.park.id, self.cfg.gateway.id,
                 len(self.park), len(self.drivers), len(self.alarms.book.open))

    def stop(self, timeout: float = 1.5) -> None:
        """Stop inputs first, let the pipeline drain, then say offline and disconnect."""
        deadline = time.monotonic() + timeout
        self.timers.stop(0.2)
        if self.api is not None:
            self.api.stop()
        for driver in self.drivers:
            driver.stop()
        self.pipeline.stop(max(0.1, deadline - time.monotonic() - 0.5))
        self.committer.stop(max(0.1, deadline - time.monotonic() - 0.5))
        self.keeper.close()
        self.telemetry.stop(max(0.2, deadline - time.monotonic() - 0.5))
        if self.recorder is not None:
            self.recorder.close()
        self.dispatcher.stop(max(0.1, deadline - time.monotonic() - 0.3))
        self.committer.close()  # the couriers' last delivery marks
        self.uplink.stop(max(0.1, deadline - time.monotonic()))
        self.reader.close()
        self.store.close()
        log.info("parkwatch stopped")

    @property
    def couriers(self) -> dict[str, AnyCourier]:
        """The dispatcher's couriers by target name."""
        return self.dispatcher.couriers

    @couriers.setter
    def couriers(self, couriers: dict[str, AnyCourier]) -> None:
        self.dispatcher.couriers = couriers

    def workers(self) -> dict[str, bool]:
        """Whether each long-running loop the alarm path needs is alive, by what it does (the
        systemd watchdog is fed only while all are)."""
        out = {"alarm pipeline": self.pipeline.running, "alarm committer": self.committer.alive,
               "timers": self.timers.running,
               "rule state writer": self.keeper.alive, "telemetry": self.telemetry.alive,
               "uplink broker link": self.uplink.link.alive}
        out.update({f"courier {name}": c.alive for name, c in dict(self.couriers).items()})
        out.update({f"driver {d.id}": d.alive for d in self.drivers})
        return out

    # --- reload (SIGHUP) -------------------------------------------------------------------

    def reload_config(self, path: str | Path, timeout: float = 10.0) -> bool:
        """Read, validate and apply the config file again; on any problem the daemon goes on
        with the config it has, the problem is logged, and the reload counts as failed."""
        started = time.monotonic()
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload: %s", problem)
            return self._reloaded(False, f"{len(exc.problems)} problem(s) in {path}: "
                                  f"{exc.problems[0]}")
        try:
            plan = self.reload(cfg, timeout)
        except ReloadRefused as exc:
            return self._reloaded(False, f"{exc}: these take effect only at a restart "
                                  "(systemctl restart parkwatch)")
        except TimeoutError:
            return self._reloaded(False, f"the alarm pipeline did not pause within {timeout:.0f}"
                                  " s (is it stuck?)")
        except Exception as exc:  # e.g. a driver that cannot be built: nothing was changed
            log.exception("reload: unexpected error")
            return self._reloaded(False, f"unexpected error: {exc!r}")
        log.info("reload: %s applied in %.0f ms: %d sensor(s), %d driver(s); %s", path,
                 (time.monotonic() - started) * 1000, len(self.park), len(self.drivers),
                 plan.summary())
        return self._reloaded(True, None)

    def _reloaded(self, ok: bool, error: str | None) -> bool:
        self.reloads["applied" if ok else "failed"] += 1
        now = time.time()
        self.last_reload = {"ok": ok, "at": rfc3339_ms(now), "error": error}
        if ok:
            self.config_loaded_at = now
            settle_heap()  # the new park's tables are as long-lived as the old ones were
        else:
            log.error("reload failed, still running on the previous config: %s", error)
        self.inbox.call(self._publish_status)
        return ok

    def reload(self, cfg: ParkConfig, timeout: float = 10.0) -> ReloadPlan:
        """Apply a new, validated config without a restart.  Open alarms and the rule state of
        every sensor whose config is unchanged carry over; sensors whose config changed start
        afresh (as at a restart).  Raises (ReloadRefused, TimeoutError, ...) with nothing
        changed, or returns what moved."""
        with self._reload_lock:
            park = ParkModel(cfg)
            plan = plan_reload(self.cfg, self.park, cfg, park)
            # everything that can fail is built before the running daemon is touched
            fresh_drivers = {i: self._driver(cfg, park, i)
                             for i in plan.replace_drivers + plan.add_drivers}
            old_drivers = {d.id: d for d in self.drivers}
            drivers = [old_drivers[d.id] if d.id in plan.keep_drivers else fresh_drivers[d.id]
                       for d in cfg.drivers]
            retired = [old_drivers[i] for i in plan.replace_drivers + plan.remove_drivers]
            old_couriers = dict(self.couriers)
            fresh_couriers = {n: self._courier(cfg, n)
                              for n in plan.replace_targets + plan.add_targets}
            # a replaced target's old courier delivers until the swap is done
            couriers = {n: old_couriers[n] if n in old_couriers else fresh_couriers[n]
                        for n in [UPLINK, *cfg.alarms.targets]}
            engine, alarms = self.path.for_config(cfg, park)
            remap = np.array([park.index.get(s.id, -1) for s in self.park.sensors], np.int64)

            def swap() -> None:  # on the pipeline thread, between two batches
                old = self.alarms
                old.retry_unsaved()
                self.committer.flush()
                if old.unsaved:
                    raise ReloadRefused([f"the alarm store is failing ({old.unsaved} alarm "
                                         "change(s) not yet saved)"])
                restored = apply_snapshot(engine, snapshot_meta(self.engine),
                                          snapshot_arrays(self.engine), clock_floor=None)
                kept = set(restored.kept_ids)
                alarms.adopt(old)
                engine.stats.update(self.engine.stats)
                alarms.restore({i for i, ident in enumerate(park.idents()) if ident not in kept})
                for alarm_id in alarms.orphans:
                    self.uplink.forget(alarm_id)
                if restored.reset:
                    log.warning("reload: config changed for %s: their rule state starts afresh",
                                ", ".join(restored.reset))
                self.cfg, self.park, self.engine, self.alarms = cfg, park, engine, alarms
                self.pipeline.engine, self.pipeline.alarms = engine, alarms
                self.pipeline.retired = {d: remap for d in retired}
                self.keeper.rebind(engine)
                self.aggregates = Aggregates(park)
                self.telemetry.repark(park)
                if self.recorder is not None:
                    self.recorder.repark(park)
                self.drivers, self.couriers = drivers, couriers

            self.inbox.barrier(swap).wait(timeout)
            # the drivers a reload replaced hand over: their last readings, still queued,
            # are renumbered by the pipeline; a serial port is free before its new reader opens
            for driver_id in plan.replace_drivers + plan.remove_drivers:
                old_drivers[driver_id].stop()
            for driver_id in plan.replace_drivers + plan.add_drivers:
                fresh_drivers[driver_id].start()
            for name in plan.add_targets:  # what was routed to it waits in the outbox
                fresh_couriers[name].start()
            for name in plan.replace_targets:  # never two couriers on one target
                old, new = old_couriers[name], fresh_couriers[name]
                old.stop()
                new.delivered, new.failures, new.expired = (old.delivered, old.failures,
                                                            old.expired)
                new.start()
                self.couriers = {**self.couriers, name: new}
                new.wake()
            for name in plan.remove_targets:
                old_couriers[name].stop()
                log.warning("reload: delivery target %s removed; alarm messages still waiting "
                            "for it stay in the outbox", name)
            return plan

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
        outcome: Outcome = self.call(lambda: fn(alarm_id, by, note, via))
        return outcome

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
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            # RecursionError: JSON nested too deeply ("[[[[..."), which escaped before (found by
            # tests/test_fuzz.py)
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

    def _arm_escalation(self, due: float | None) -> None:
        """(Re)arm the one timer that runs the escalations due next (None: none is due)."""
        self.timers.at("escalation", due, lambda: self.inbox.call(self.alarms.escalate_due))

    def _purge(self) -> None:
        """Closed alarms past retention, removed on the store's writer thread."""
        before = time.time() - self.cfg.alarms.outbox_retention_s

        def purge() -> None:
            dropped = self.store.purge(before)
            if dropped:
                log.info("alarm store: %d closed alarm(s) past retention removed", dropped)

        self.committer.chore(purge)

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
            "config": {"loaded_at": rfc3339_ms(self.config_loaded_at),
                       "reloads": dict(self.reloads), "last_reload": self.last_reload},
        }

