"""Applying a reload (SIGHUP): the config file read again and swapped in without a restart.

:mod:`parkwatch.daemon.reload` decides what a new config changes (and refuses what needs a
restart); this module carries that plan out.  Everything that can fail is built first, with the
running daemon untouched: the new park, rule engine, alarm service, drivers and couriers.  The
swap itself runs on the pipeline thread between two batches (an inbox barrier): the rule state
of every sensor whose config is unchanged and the open alarms carry over, and the new parts take
the place of the old in :class:`~parkwatch.daemon.live.LiveParts`, the pipeline, the state
keeper, telemetry and the dispatcher.  Only then are replaced drivers and couriers stopped and
their successors started.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parkwatch.alarms.commit import Committer
from parkwatch.alarms.delivery import Courier
from parkwatch.alarms.dispatch import Dispatcher
from parkwatch.alarms.service import AlarmService
from parkwatch.alarms.timestamps import rfc3339_ms
from parkwatch.alarms.uplink import UplinkPublisher
from parkwatch.config import ConfigError
from parkwatch.config.delivery import UPLINK
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.checkpoint import StateKeeper
from parkwatch.daemon.inbox import Inbox
from parkwatch.daemon.live import LiveParts
from parkwatch.daemon.memory import settle_heap
from parkwatch.daemon.pipeline import Pipeline
from parkwatch.daemon.reload import ReloadPlan, ReloadRefused, plan_reload
from parkwatch.park import ParkModel
from parkwatch.recording import Recorder
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.snapshot import apply_snapshot, snapshot_arrays, snapshot_meta
from parkwatch.schema import load_config
from parkwatch.telemetry.aggregates import Aggregates
from parkwatch.telemetry.sink import TelemetrySink

log = logging.getLogger("parkwatch")

#: builds a driver: (config, park, driver id) → the driver, not started
BuildDriver = Callable[[ParkConfig, ParkModel, str], Any]
#: builds the courier of a configured target: (config, target name) → the courier, not started
BuildCourier = Callable[[ParkConfig, str], Courier]
#: builds the alarm service of a park: (config, park, rule engine) → the service
#: a reload's evaluate, lifecycle and route stages for a new config (AlarmPath.for_config)
BuildStages = Callable[[ParkConfig, ParkModel], tuple[RuleEngine, AlarmService]]


@dataclass
class ReloadHistory:
    """The config file's reloads: how many went which way, how the last one went, and when the
    config in force was loaded (shown in the status and the metrics)."""

    loaded_at: float
    counts: dict[str, int] = field(default_factory=lambda: {"applied": 0, "failed": 0})
    last: dict[str, Any] | None = None


class Reloader:
    """Reads, checks and applies a new config to the running daemon, or leaves it as it is."""

    def __init__(self, live: LiveParts, history: ReloadHistory, *, inbox: Inbox, pipeline: Pipeline,
                 committer: Committer, dispatcher: Dispatcher, keeper: StateKeeper,
                 telemetry: TelemetrySink, recorder: Recorder | None, uplink: UplinkPublisher,
                 build_driver: BuildDriver, build_courier: BuildCourier,
                 build_stages: BuildStages, publish_status: Callable[[], None]) -> None:
        self.live = live
        self.history = history
        self.inbox = inbox
        self.pipeline = pipeline
        self.committer = committer
        self.dispatcher = dispatcher
        self.keeper = keeper
        self.telemetry = telemetry
        self.recorder = recorder
        self.uplink = uplink
        self.build_driver = build_driver
        self.build_courier = build_courier
        self.build_stages = build_stages
        self.publish_status = publish_status  # on the pipeline thread, after each reload
        self._lock = threading.Lock()

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
                 (time.monotonic() - started) * 1000, len(self.live.park),
                 len(self.live.drivers), plan.summary())
        return self._reloaded(True, None)

    def _reloaded(self, ok: bool, error: str | None) -> bool:
        self.history.counts["applied" if ok else "failed"] += 1
        now = time.time()
        self.history.last = {"ok": ok, "at": rfc3339_ms(now), "error": error}
        if ok:
            self.history.loaded_at = now
            settle_heap()  # the new park's tables are as long-lived as the old ones were
        else:
            log.error("reload failed, still running on the previous config: %s", error)
        self.inbox.call(self.publish_status)
        return ok

    def reload(self, cfg: ParkConfig, timeout: float = 10.0) -> ReloadPlan:
        """Apply a new, validated config without a restart.  Open alarms and the rule state of
        every sensor whose config is unchanged carry over; sensors whose config changed start
        afresh (as at a restart).  Raises (ReloadRefused, TimeoutError, ...) with nothing
        changed, or returns what moved."""
        live = self.live
        with self._lock:
            park = ParkModel(cfg)
            plan = plan_reload(live.cfg, live.park, cfg, park)
            # everything that can fail is built before the running daemon is touched
            fresh_drivers = {i: self.build_driver(cfg, park, i)
                             for i in plan.replace_drivers + plan.add_drivers}
            old_drivers = {d.id: d for d in live.drivers}
            drivers = [old_drivers[d.id] if d.id in plan.keep_drivers else fresh_drivers[d.id]
                       for d in cfg.drivers]
            retired = [old_drivers[i] for i in plan.replace_drivers + plan.remove_drivers]
            old_couriers = dict(self.dispatcher.couriers)
            fresh_couriers = {n: self.build_courier(cfg, n)
                              for n in plan.replace_targets + plan.add_targets}
            # a replaced target's old courier delivers until the swap is done
            couriers = {n: old_couriers[n] if n in old_couriers else fresh_couriers[n]
                        for n in [UPLINK, *cfg.alarms.targets]}
            engine, alarms = self.build_stages(cfg, park)
            remap = np.array([park.index.get(s.id, -1) for s in live.park.sensors], np.int64)

            def swap() -> None:  # on the pipeline thread, between two batches
                old = live.alarms
                old.retry_unsaved()
                self.committer.flush()
                if old.unsaved:
                    raise ReloadRefused([f"the alarm store is failing ({old.unsaved} alarm "
                                         "change(s) not yet saved)"])
                restored = apply_snapshot(engine, snapshot_meta(live.engine),
                                          snapshot_arrays(live.engine), clock_floor=None)
                kept = set(restored.kept_ids)
                alarms.adopt(old)
                engine.stats.update(live.engine.stats)
                alarms.restore({i for i, ident in enumerate(park.rule_idents())
                                if ident not in kept})
                for alarm_id in alarms.orphans:
                    self.uplink.forget(alarm_id)
                if restored.reset:
                    log.warning("reload: config changed for %s: their rule state starts afresh",
                                ", ".join(restored.reset))
                live.cfg, live.park, live.engine, live.alarms = cfg, park, engine, alarms
                self.pipeline.engine, self.pipeline.alarms = engine, alarms
                self.pipeline.retired = {d: remap for d in retired}
                self.keeper.rebind(engine)
                live.aggregates = Aggregates(park)
                self.telemetry.repark(park)
                if self.recorder is not None:
                    self.recorder.repark(park)
                live.drivers = drivers
                self.dispatcher.use(couriers)

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
                self.dispatcher.hand_over(name, fresh_couriers[name])
            for name in plan.remove_targets:
                old_couriers[name].stop()
                log.warning("reload: delivery target %s removed; alarm messages still waiting "
                            "for it stay in the outbox", name)
            return plan
