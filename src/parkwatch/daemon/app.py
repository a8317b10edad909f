"""The running daemon, the composition root: builds every part from a validated config, wires
them together, and starts and stops them in order.

Each of the daemon's other jobs lives in a module named for it, which this one builds:

* :mod:`parkwatch.daemon.live`: the parts built from the config, which a reload replaces;
* :mod:`parkwatch.daemon.reloader`: a reload (SIGHUP) applied without a restart;
* :mod:`parkwatch.daemon.commands`: operators' commands, and calls onto the pipeline thread;
* :mod:`parkwatch.daemon.status`: the gateway status (the heartbeat), counts, silences and the
  timer jobs that publish them and the telemetry aggregates;
* :mod:`parkwatch.daemon.storelost`: starting again after the alarm store was lost;
* :mod:`parkwatch.alarms.couriers` builds the couriers, which the
  :class:`~parkwatch.alarms.dispatch.Dispatcher` holds.

The :class:`Daemon` keeps the names the rest of the package, the tests and the metrics read
(``cfg``, ``alarms``, ``drivers``, ``couriers``, ``status()``, ``reload()``, ...) and hands each
call to the part that does it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parkwatch import __version__
from parkwatch.alarms.couriers import all_couriers, target_courier
from parkwatch.alarms.delivery import Courier
from parkwatch.alarms.dispatch import AnyCourier
from parkwatch.alarms.mutes import MuteBook
from parkwatch.alarms.service import AlarmService, Outcome
from parkwatch.alarms.uplink import UplinkPublisher
from parkwatch.alarms.views import StoreReader
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.alarmpath import AlarmPath, Taps
from parkwatch.daemon.buttontests import ButtonTests
from parkwatch.daemon.checkpoint import StateKeeper
from parkwatch.daemon.clockwatch import ClockWatch
from parkwatch.daemon.cmdauth import CommandGate
from parkwatch.daemon.commands import Commands
from parkwatch.daemon.drillroutes import DrillReports
from parkwatch.daemon.httpapi import MAX_BODY, ApiServer, state_token
from parkwatch.daemon.httpserver import Limits
from parkwatch.daemon.inbox import Inbox
from parkwatch.daemon.live import LiveParts
from parkwatch.daemon.memory import TRIM_EVERY_S, trim_heap
from parkwatch.daemon.metrics import DaemonMetrics
from parkwatch.daemon.mutecmd import MuteCommands
from parkwatch.daemon.reload import ReloadPlan
from parkwatch.daemon.reloader import Reloader, ReloadHistory
from parkwatch.daemon.status import GatewayStatus
from parkwatch.daemon.storelost import forget_rule_state, open_store, raise_again
from parkwatch.daemon.timers import Timers
from parkwatch.drivers.registry import DRIVER_KINDS
from parkwatch.outputs.bank import OutputBank
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.recording import Recorder
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.output_fault import OutputFaultRule
from parkwatch.statedir import private_dir, tighten
from parkwatch.telemetry.aggregates import Aggregates
from parkwatch.telemetry.sink import TelemetrySink

log = logging.getLogger("parkwatch")

STORE_FILE = "alarms.db"
#: alarm changes this recent still count as a storm in progress (telemetry waits for it)
STORM_GAP_S = 0.25


class Daemon:
    """Every part of one gateway, built from its config; see the module's docstring."""

    def __init__(self, cfg: ParkConfig, state_dir: Path | None = None,
                 record: Path | None = None) -> None:
        self.state_dir = state_dir or cfg.gateway.state_dir
        tighten(private_dir(self.state_dir))  # 0700 and 0600 whatever the umask
        self.started_at = time.time()
        park = ParkModel(cfg)
        engine = RuleEngine(park, start=self.started_at)
        self.keeper = StateKeeper(engine, self.state_dir)
        self.recorder = Recorder(record, park) if record is not None else None
        self.store_path = self.state_dir / STORE_FILE
        # store_lost: the store was unreadable and moved aside (see start)
        self.store, self.store_lost = open_store(self.store_path)
        # the rule state is restored before the daemon's other tables are built: the
        # snapshot's ids and fingerprints (20,000 strings with 10,000 sensors) are gone by then,
        # and those tables take their memory instead of leaving it as holes (3.5 MB at ready)
        self._latched = (forget_rule_state(self.keeper, park, self.started_at)
                         if self.store_lost else [])
        self._fresh = self.keeper.restore(self.store.cleared_since)
        self.telemetry = TelemetrySink(cfg, park, self.state_dir)
        aggregates = Aggregates(park)
        self.reader = StoreReader(self.store_path)
        #: the wall clock watched: synchronised?, steps (/healthz, the status, metrics)
        self.clockwatch = ClockWatch()
        self.uplink = UplinkPublisher(
            cfg, on_ack=lambda p: self.inbox.call(lambda: self.commands.mqtt_ack(p)),
            on_mute=lambda c, p: self.inbox.call(lambda: self.mute_commands.handle(c, p)))
        #: the command center's mutes (docs/contract.md, "Mutes"), kept across restarts
        self.mutes = MuteBook(self.state_dir)
        #: wireless buttons' test presses, confirmed (GET /api/tests), never alarmed
        self.button_tests = ButtonTests(lambda: self.park)
        self.metrics = DaemonMetrics(self)  # reads the parts at scrape time; /metrics
        # the sounders, strobes and relays: switched by the linkage stage, written by drivers
        self.outputs = OutputBank(park, self._drivers, self._output_answer, self.state_dir)
        self.path = AlarmPath.build(  # every stage of the alarm path, in order
            cfg, park, engine, self.store, self._arm_escalation,
            Taps(events=self.telemetry.events, readings=self._readings,
                 rules=self.metrics.observe_rules, commits=self.metrics.observe_commit),
            keeper=self.keeper, recorder=self.recorder, outputs=self.outputs,
            clockwatch=self.clockwatch)
        self.inbox: Inbox = self.path.inbox
        self.dispatcher, self.committer, self.pipeline = (
            self.path.dispatcher, self.path.committer, self.path.pipeline)
        alarms = self.path.alarms
        self.telemetry.alarms_busy = self._alarms_busy  # alarms first, telemetry after
        self.dispatcher.use(all_couriers(cfg, self.uplink, self.store_path, self.committer.mark,
                                         self.metrics.delivery_observer))
        self.keeper.committer = self.committer
        self.timers = Timers()
        self.uplink.link.state_listeners.append(self._link_changed)
        drivers = [self._driver(cfg, park, d.id) for d in cfg.drivers]
        self.live = LiveParts(cfg, park, engine, alarms, drivers, aggregates)
        #: the config file's reloads (SIGHUP): counts, and how the last one went
        self.reload_history = ReloadHistory(loaded_at=self.started_at)
        gate = CommandGate(self.state_dir)
        self.commands: Commands = Commands(self.inbox, self.live, self.uplink.topics.ack, gate)
        alarms.router.mutes = self.mutes
        self.mute_commands: MuteCommands = MuteCommands(
            self.mutes, gate, lambda: (self.live.alarms, self.live.cfg),
            self.uplink.publish_reply, self.uplink.publish_mutes)
        self.uplink.mute_list = self.mutes.listing()
        self.api = self._api()
        self.gateway_status = GatewayStatus(
            self.live, started_at=self.started_at, dispatcher=self.dispatcher,
            pipeline=self.pipeline, keeper=self.keeper, reader=self.reader,
            telemetry=self.telemetry, uplink=self.uplink, api=self.api,
            reloads=self.reload_history)
        self.reloader = Reloader(
            self.live, self.reload_history, inbox=self.inbox, pipeline=self.pipeline,
            committer=self.committer, dispatcher=self.dispatcher, keeper=self.keeper,
            telemetry=self.telemetry, recorder=self.recorder, uplink=self.uplink,
            build_driver=self._driver, build_courier=self._courier,
            build_stages=self.path.for_config,
            publish_status=self.gateway_status.publish)
        self.timers.every("status", cfg.gateway.status_interval_s,
                          lambda: self.inbox.call(self.gateway_status.tick))
        self.timers.every("checkpoint", cfg.gateway.checkpoint_interval_s,
                          lambda: self.inbox.call(self.keeper.checkpoint))
        self.timers.every("aggregates", cfg.telemetry.aggregates_interval_s,
                          lambda: self.inbox.call(self.gateway_status.aggregate))
        self.timers.every("purge", 3600, lambda: self.inbox.call(self._purge))
        self.timers.every("trim", TRIM_EVERY_S, trim_heap)  # a burst's holes back to the system
        # every output read back periodically (supervision; a reload may add outputs)
        self.timers.every("outputs", cfg.linkage.check_interval_s, self.outputs.check_all)

    # --- builders, also used by a reload ----------------------------------------------------

    def _driver(self, cfg: ParkConfig, park: ParkModel, driver_id: str) -> Any:
        dcfg = next(d for d in cfg.drivers if d.id == driver_id)
        driver = DRIVER_KINDS[dcfg.type].driver_class()(dcfg, park, self.inbox, cfg)
        driver.state_listeners.append(self._link_changed)
        return driver

    def _courier(self, cfg: ParkConfig, name: str) -> Courier:
        return target_courier(cfg, name, self.uplink.link, self.store_path, self.committer.mark,
                              self.metrics.delivery_observer(name))

    def _api(self) -> ApiServer | None:
        api = self.live.cfg.api
        if api is None:
            return None
        private_dir(self.state_dir)
        token = api.secret() or state_token(self.state_dir, create=True)
        reader = StoreReader(self.store_path)
        return ApiServer(api.listen, api.port, token, reader,
                         self.commands.request, lambda: self.call(self.status),
                         views={"/api/silences": self.silences,
                                "/api/outputs": self.outputs_view,
                                "/api/tests": self.button_tests.view},
                         extra={"/metrics": self.metrics.metrics_response,
                                "/healthz": self.metrics.healthz_response},
                         routes=[DrillReports(lambda: self.live.cfg, reader)],
                         limits=Limits(api.max_connections, api.workers,
                                       header_timeout_s=api.header_timeout_s,
                                       body_timeout_s=api.body_timeout_s,
                                       idle_timeout_s=api.idle_timeout_s, max_body=MAX_BODY))

    # --- wiring between the parts -----------------------------------------------------------

    def _readings(self, batch: ReadingBatch) -> None:
        """Each evaluated batch, after the alarm path: test presses confirmed, then
        telemetry."""
        self.button_tests.observe(batch)
        self.telemetry.readings(batch)

    def _alarms_busy(self) -> bool:
        """Alarm changes are being routed, committed or carried, or came moments ago (the
        stages hand over to each other: a storm has short gaps in each)."""
        alarms = self.live.alarms
        return (alarms.routing or time.monotonic() - alarms.changed_at < STORM_GAP_S
                or self.committer.busy or self.dispatcher.carrying())

    def _output_answer(self, source: int, agrees: bool, at: float) -> None:
        """An output's supervision changed its mind: its output_fault alarm, raised or
        cleared on the pipeline thread."""
        def apply() -> None:
            faults = self.live.engine.kinds["output_fault"]
            assert isinstance(faults, OutputFaultRule)
            if source < self.live.park.size + len(self.live.park.outputs):
                self.pipeline.deliver(faults.report(source, agrees, at))
        self.inbox.call(apply)

    def _drivers(self) -> list[Any]:
        return self.live.drivers

    def outputs_view(self) -> dict[str, Any]:
        """The outputs and the silenced alarms (``GET /api/outputs``)."""
        linkage = self.live.alarms.linkage
        return linkage.view() if linkage is not None else {"outputs": [], "silenced": []}

    def _link_changed(self, _up: bool) -> None:
        """The gateway status is refreshed whenever a broker link or a port comes or goes."""
        self.inbox.call(lambda: self.gateway_status.publish())

    def _arm_escalation(self, due: float | None) -> None:
        """(Re)arm the one timer that runs the escalations due next (None: none is due)."""
        self.timers.at("escalation", due,
                       lambda: self.inbox.call(self.live.alarms.escalate_due))

    def _purge(self) -> None:
        """Closed alarms past retention, removed on the store's writer thread."""
        before = time.time() - self.live.cfg.alarms.outbox_retention_s

        def purge() -> None:
            dropped = self.store.purge(before)
            if dropped:
                log.info("alarm store: %d closed alarm(s) past retention removed", dropped)

        self.committer.chore(purge)

    # --- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        private_dir(self.state_dir)
        latched, fresh = self._latched, self._fresh
        self.keeper.start()
        self.committer.start()
        self.alarms.restore(fresh)
        if latched:
            raise_again(latched, self.engine, self.alarms, self.committer, self.keeper)
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
        self.outputs.closing = True  # queued writes fail as their bus stops: not a fault
        for driver in self.drivers:
            driver.stop()
        self.outputs.stop()
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
        self.metrics.close()
        self.store.close()
        log.info("parkwatch stopped")

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

    # --- the parts a reload replaces (see LiveParts), by their old names ------------------

    @property
    def cfg(self) -> ParkConfig:
        return self.live.cfg

    @property
    def park(self) -> ParkModel:
        return self.live.park

    @property
    def engine(self) -> RuleEngine:
        return self.live.engine

    @property
    def alarms(self) -> AlarmService:
        return self.live.alarms

    @property
    def drivers(self) -> list[Any]:
        return self.live.drivers

    @property
    def aggregates(self) -> Aggregates:
        return self.live.aggregates

    @property
    def couriers(self) -> dict[str, AnyCourier]:
        """The dispatcher's couriers by target name."""
        return self.dispatcher.couriers

    @couriers.setter
    def couriers(self, couriers: dict[str, AnyCourier]) -> None:
        self.dispatcher.use(couriers)

    # --- reload (SIGHUP): see parkwatch.daemon.reloader ---------------------------------------

    @property
    def reloads(self) -> dict[str, int]:
        """Reloads by outcome: {"applied": n, "failed": n}."""
        return self.reload_history.counts

    @property
    def last_reload(self) -> dict[str, Any] | None:
        """How the last reload went ({"ok", "at", "error"}); None before the first."""
        return self.reload_history.last

    @property
    def config_loaded_at(self) -> float:
        """When the config in force was loaded (the start, or the last applied reload)."""
        return self.reload_history.loaded_at

    def reload_config(self, path: str | Path, timeout: float = 10.0) -> bool:
        """See :meth:`parkwatch.daemon.reloader.Reloader.reload_config`."""
        return self.reloader.reload_config(path, timeout)

    def reload(self, cfg: ParkConfig, timeout: float = 10.0) -> ReloadPlan:
        """See :meth:`parkwatch.daemon.reloader.Reloader.reload`."""
        return self.reloader.reload(cfg, timeout)

    # --- commands and calls onto the pipeline thread: see parkwatch.daemon.commands -----------

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run `fn` on the pipeline thread (the owner of alarms and counters); its result."""
        return self.commands.call(fn, timeout)

    def command(self, command: str, alarm_id: str, by: str, note: str | None,
                via: str) -> Outcome:
        """An operator's ack or reset, from any thread."""
        return self.commands.command(command, alarm_id, by, note, via)

    def acknowledge(self, alarm_id: str, by: str, note: str | None = None) -> bool:
        """Acknowledge an open alarm from any thread; False when it was not acknowledged."""
        return self.commands.acknowledge(alarm_id, by, note)

    # --- the gateway's status: see parkwatch.daemon.status ----------------------------------

    def status(self) -> dict[str, Any]:
        """The retained gateway status (the heartbeat); on the pipeline thread, or via call."""
        return self.gateway_status.status()

    def counts(self) -> dict[str, Any]:
        """Readings accepted and rejected, and the rule and alarm counters."""
        return self.gateway_status.counts()

    def silences(self) -> dict[str, Any]:
        """The configured silences and drills, and the command center's mutes, with whether
        each is in force now."""
        return {**self.gateway_status.silences(),
                "mutes": self.call(lambda: self.mutes.in_force(time.time()))}
