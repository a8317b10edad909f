"""The daemon's self-metrics (``GET /metrics``, Prometheus text format) and its health
(``GET /healthz``), both on the local HTTP API port and both without a token.

Nothing is counted twice: the daemon's parts already count what they do (drivers, rule engine,
alarm service, couriers, state keeper, telemetry sink), and a custom collector reads those
counters at scrape time.  Only what no part measures is measured here, in three histograms:
how long the rule engine takes per batch and per clock tick, how long the commit stage takes
per transaction, and how long an alarm change takes from its routing to the target's
confirmation.

Both endpoints run on the HTTP server's threads, never on the pipeline thread: they must answer
while the pipeline is hung, which is when they matter most.  They only read (copies of dicts and
counters, atomic under the GIL) and tolerate a count that moves while it is read.  The outbox is
read through a short-lived read-only store connection of the scraping thread.

Each daemon has its own :class:`CollectorRegistry` (tests run several daemons in one process),
never prometheus-client's global default registry.  Beside the daemon's own families it carries
prometheus-client's standard ones for any Python process (:data:`STANDARD`): memory, CPU and
open files from ``/proc``, the garbage collector, and the interpreter's version.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from parkwatch import __version__
from parkwatch.alarms.service import OPEN_STATES
from parkwatch.alarms.views import StoreReader
from parkwatch.config.delivery import UPLINK
from parkwatch.daemon.threadcpu import cpu_by_thread_name
from parkwatch.timefmt import rfc3339_ms

if TYPE_CHECKING:
    from parkwatch.daemon.app import Daemon

log = logging.getLogger("parkwatch.metrics")

#: the text exposition format; the API server adds ``; charset=utf-8``
CONTENT_TYPE = "text/plain; version=0.0.4"
JSON = "application/json"

#: what an alarm is about (see :func:`parkwatch.alarms.routing.hazard`) and the states of an
#: open alarm (see :meth:`parkwatch.alarms.service.AlarmService.counts`): every pair is exposed,
#: zero or not, so that dashboards always have the series
HAZARDS = ("fire", "overload", "water", "fault")
#: the readings that reached the rule engine, each counted under exactly one outcome
RULE_OUTCOMES = ("evaluated", "out_of_order", "unusable", "liveness")

#: a batch or a clock tick that has been running longer than this makes the daemon unhealthy:
#: a fire alarm must reach the command center within 10 s (GB 26875.1-2011)
STUCK_AFTER_S = 10.0

#: rule evaluation: microseconds for a lone button press, milliseconds for a flood
RULE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0)
#: change → confirmed delivery: milliseconds when the target is up; 3 s and 10 s are the
#: regulatory relay and notification limits; minutes to hours while a target is away
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 10.0,
                   30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)

#: the commit stage: a batch's wait for it and a transaction's write and fsync, both well
#: under a millisecond on an idle gateway; seconds mean a failing disk or a backlog
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 1.0, 10.0)

# (name as exposed, type, labels, help). Counters end in _total, as they are exposed.
_SPEC: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("parkwatch_info", "gauge", ("version", "park", "gateway"),
     "Always 1; the labels say which parkwatch runs for which park on which gateway."),
    ("parkwatch_start_time_seconds", "gauge", (),
     "When the daemon started, in seconds since the Unix epoch."),
    ("parkwatch_thread_cpu_seconds_total", "counter", ("thread",),
     "CPU time (user and system) of each of the daemon's threads, by thread name: what each "
     "stage costs (Linux only)."),
    ("parkwatch_config_last_reload_successful", "gauge", (),
     "0 when the last reload of the config (SIGHUP) failed and the daemon still runs on the "
     "config before it; 1 otherwise (also before any reload)."),
    ("parkwatch_config_reloads_total", "counter", ("outcome",),
     "Reloads of the config file (SIGHUP), by outcome: applied or failed."),
    ("parkwatch_config_loaded_time_seconds", "gauge", (),
     "When the config the daemon runs on was loaded (start or last applied reload), in seconds "
     "since the Unix epoch."),
    ("parkwatch_readings_accepted_total", "counter", ("driver",),
     "Readings a driver decoded and handed to the rule engine."),
    ("parkwatch_readings_rejected_total", "counter", ("driver", "reason"),
     "Device input a driver rejected (malformed, unknown sensor, out of range...), by reason."),
    ("parkwatch_rule_evaluation_seconds", "histogram", ("what",),
     "Time the rule engine took for one batch of readings (what=batch) or one clock tick "
     "(what=tick)."),
    ("parkwatch_rule_readings_total", "counter", ("outcome",),
     "Readings that reached the rule engine, by outcome: evaluated against the rules, dropped "
     "as out_of_order, unusable (bad quality or not a number), or liveness only (heartbeats, "
     "test presses)."),
    ("parkwatch_pipeline_errors_total", "counter", (),
     "Batches or clock ticks the alarm pipeline failed on (logged with a traceback)."),
    ("parkwatch_pipeline_queue_length", "gauge", (),
     "Inputs waiting in the pipeline's queue for the next batch."),
    ("parkwatch_open_alarms", "gauge", ("kind", "state"),
     "Open alarms by hazard (fire, overload, water, fault) and state."),
    ("parkwatch_alarm_changes_total", "counter", (),
     "Alarm changes (raised, cleared, acknowledged, ...) committed to the alarm store."),
    ("parkwatch_alarm_store_errors_total", "counter", (),
     "Failed commits to the alarm store (the changes are held and retried)."),
    ("parkwatch_alarm_commits_total", "counter", (),
     "Transactions that committed alarm changes (each a group of one or more batches)."),
    ("parkwatch_alarm_commit_seconds", "histogram", ("phase",),
     "The commit stage, per transaction of alarm changes: how long the oldest batch in it "
     "waited for the stage (phase=queued), and how long the write and fsync took "
     "(phase=written)."),
    ("parkwatch_alarm_commit_queue_length", "gauge", (),
     "Batches of alarm changes handed to the commit stage and not yet committed."),
    ("parkwatch_refused_commands_total", "counter", ("reason",),
     "Operator commands and API requests refused, by reason."),
    ("parkwatch_outbox_pending", "gauge", ("target",),
     "Alarm changes waiting in the durable outbox for delivery to a target."),
    ("parkwatch_outbox_oldest_pending_seconds", "gauge", ("target",),
     "Age of the oldest alarm change waiting for a target (0 when none waits)."),
    ("parkwatch_deliveries_total", "counter", ("target",),
     "Alarm changes a target confirmed (PUBACK, 2xx answer, log line)."),
    ("parkwatch_delivery_failures_total", "counter", ("target",),
     "Delivery attempts that failed and will be retried after a backoff."),
    ("parkwatch_deliveries_expired_total", "counter", ("target",),
     "Alarm changes given up on because they could not be delivered before they expired."),
    ("parkwatch_delivery_latency_seconds", "histogram", ("target",),
     "Time from an alarm change (its routing, just before the commit stage) to the target's "
     "confirmation."),
    ("parkwatch_target_up", "gauge", ("target",),
     "1 when a delivery target takes deliveries, 0 while it fails or its broker is "
     "disconnected."),
    ("parkwatch_spool_bytes", "gauge", ("lane",),
     "Bytes in the telemetry disk spool, by lane (events, telemetry)."),
    ("parkwatch_spool_points", "gauge", ("lane",),
     "Points in the telemetry disk spool waiting for the time-series server."),
    ("parkwatch_spool_oldest_age_seconds", "gauge", ("lane",),
     "Age of the oldest spooled point (no sample when the spool is empty)."),
    ("parkwatch_spool_dropped_points_total", "counter", ("lane",),
     "Spooled points dropped because the spool reached its size limit."),
    ("parkwatch_telemetry_points_total", "counter", ("outcome",),
     "Telemetry points by outcome: written, spooled, replayed, rejected, overflow (dropped "
     "from memory when the telemetry thread could not keep up)."),
    ("parkwatch_telemetry_write_errors_total", "counter", (),
     "Failed writes to the time-series server."),
    ("parkwatch_telemetry_server_up", "gauge", (),
     "1 when the time-series server takes writes, 0 when it does not (no sample when none "
     "is configured)."),
    ("parkwatch_modbus_polls_total", "counter", ("driver", "slave"),
     "Modbus RTU requests sent to a slave."),
    ("parkwatch_modbus_timeouts_total", "counter", ("driver", "slave"),
     "Modbus RTU requests a slave did not answer in time."),
    ("parkwatch_modbus_quarantined", "gauge", ("driver", "slave"),
     "1 while a Modbus slave is quarantined (polled only now and then) after timeouts."),
    ("parkwatch_driver_connected", "gauge", ("driver", "type"),
     "1 when a driver has its port open and its device talking, or its broker connected and "
     "its subscription acknowledged."),
    ("parkwatch_broker_connected", "gauge", ("broker", "role"),
     "1 when an MQTT link is connected to its broker; role is uplink or driver:<driver id>."),
    ("parkwatch_state_saves_total", "counter", (),
     "Rule-state checkpoints written to the state directory."),
    ("parkwatch_state_errors_total", "counter", (),
     "Rule-state checkpoints that failed."),
)

#: every metric family exactly as it appears in the exposition, and its help text
METRICS: dict[str, str] = {name: text for name, _kind, _labels, text in _SPEC}
_KIND = {name: (kind, labels) for name, kind, labels, _text in _SPEC}

#: prometheus-client's standard families for a Python process, as exposed (Linux: the process_*
#: ones read ``/proc/self``); a maintainer compares the resident memory with the 80 MB budget
STANDARD = (
    "process_virtual_memory_bytes", "process_resident_memory_bytes",
    "process_start_time_seconds", "process_cpu_seconds_total", "process_open_fds",
    "process_max_fds", "python_gc_objects_collected_total",
    "python_gc_objects_uncollectable_total", "python_gc_collections_total", "python_info",
)

Family = CounterMetricFamily | GaugeMetricFamily


def _family(name: str) -> Family:
    kind, labels = _KIND[name]
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(name, METRICS[name], labels=list(labels))


def _histogram(name: str, buckets: tuple[float, ...]) -> Histogram:
    """A histogram in no registry: the daemon's collector exposes it without `_created`."""
    return Histogram(name, METRICS[name], list(_KIND[name][1]), buckets=buckets,
                     registry=None)


class DaemonMetrics:
    """One daemon's metrics: its registry, its three histograms, and the collector that reads
    every other figure from the daemon's parts at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon  # read only at scrape time: it may still be under construction
        self.rule_seconds = _histogram("parkwatch_rule_evaluation_seconds", RULE_BUCKETS)
        self.delivery_seconds = _histogram("parkwatch_delivery_latency_seconds",
                                           LATENCY_BUCKETS)
        self.commit_seconds = _histogram("parkwatch_alarm_commit_seconds", COMMIT_BUCKETS)
        self._hists = (self.rule_seconds, self.delivery_seconds, self.commit_seconds)
        self._rule_child = {what: self.rule_seconds.labels(what) for what in ("batch", "tick")}
        self._commit_child = {phase: self.commit_seconds.labels(phase)
                              for phase in ("queued", "written")}
        self._telemetry_failed = False
        self.registry = CollectorRegistry()
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    # --- observers, called by the pipeline and the couriers --------------------------------

    def observe_rules(self, what: str, seconds: float) -> None:
        """The pipeline's rule evaluation of one batch (what="batch") or tick ("tick")."""
        self._rule_child[what].observe(seconds)

    def observe_commit(self, phase: str, seconds: float) -> None:
        """The commit stage's wait for a transaction (phase="queued") or its write ("written")."""
        self._commit_child[phase].observe(seconds)

    def delivery_observer(self, target: str) -> Callable[[float], None]:
        """What a target's courier calls with each delivered row's change → confirmation time
        (the series exists, at zero, before the first delivery)."""
        child = self.delivery_seconds.labels(target)
        return lambda seconds: child.observe(max(0.0, seconds))

    # --- the collector ---------------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """The families, without samples (the registry learns the names without a scrape)."""
        for name in METRICS:
            if _KIND[name][0] == "histogram":
                continue
            yield _family(name)
        for h in self._hists:
            yield from h.describe()

    def collect(self) -> Iterator[Metric]:
        fams = {name: _family(name) for name in METRICS if _KIND[name][0] != "histogram"}
        self._collect_daemon(fams)
        self._collect_alarms(fams)
        self._collect_delivery(fams)
        self._collect_drivers(fams)
        self._collect_telemetry(fams)
        hists = {next(iter(h.describe())).name: h for h in self._hists}  # one family each
        for name in METRICS:
            if name in fams:
                yield fams[name]
                continue
            for fam in hists[name].collect():
                fam.samples = [s for s in fam.samples if not s.name.endswith("_created")]
                yield fam

    def _collect_daemon(self, fams: dict[str, Family]) -> None:
        d = self.daemon
        fams["parkwatch_info"].add_metric([__version__, d.cfg.park.id, d.cfg.gateway.id], 1)
        fams["parkwatch_start_time_seconds"].add_metric([], d.started_at)
        last = d.last_reload
        fams["parkwatch_config_last_reload_successful"].add_metric(
            [], 0 if last is not None and not last["ok"] else 1)
        for outcome, n in sorted(d.reloads.items()):
            fams["parkwatch_config_reloads_total"].add_metric([outcome], n)
        fams["parkwatch_config_loaded_time_seconds"].add_metric([], d.config_loaded_at)
        for thread, seconds in sorted(cpu_by_thread_name().items()):
            fams["parkwatch_thread_cpu_seconds_total"].add_metric([thread], seconds)
        stats = dict(d.engine.stats)
        for outcome in RULE_OUTCOMES:
            fams["parkwatch_rule_readings_total"].add_metric([outcome], stats.get(outcome, 0))
        fams["parkwatch_pipeline_errors_total"].add_metric([], d.pipeline.errors)
        fams["parkwatch_pipeline_queue_length"].add_metric([], d.inbox.queue.qsize())
        fams["parkwatch_state_saves_total"].add_metric([], d.keeper.saves)
        fams["parkwatch_state_errors_total"].add_metric([], d.keeper.errors)

    def _collect_alarms(self, fams: dict[str, Family]) -> None:
        d = self.daemon
        counts: Counter[tuple[str, str]] = Counter(
            {(kind, state): 0 for kind in HAZARDS for state in OPEN_STATES})
        counts.update(dict(d.alarms.tally))  # kept with every change: no walk of the alarms
        for (kind, state), n in sorted(counts.items()):
            fams["parkwatch_open_alarms"].add_metric([kind, state], n)
        fams["parkwatch_alarm_changes_total"].add_metric([], d.alarms.committed)
        fams["parkwatch_alarm_store_errors_total"].add_metric([], d.alarms.store_errors)
        fams["parkwatch_alarm_commits_total"].add_metric([], d.committer.groups)
        fams["parkwatch_alarm_commit_queue_length"].add_metric([], d.committer.waiting)
        refused: Counter[str] = Counter(dict(d.alarms.refused.total))
        api = getattr(d, "api", None)
        if api is not None:
            refused.update(dict(api.refused.total))
        for reason, n in sorted(refused.items()):
            fams["parkwatch_refused_commands_total"].add_metric([reason], n)

    def _collect_delivery(self, fams: dict[str, Family]) -> None:
        d = self.daemon
        reader = StoreReader(d.store_path)  # this thread's own connection, closed at once
        try:
            outbox = reader.outbox_stats(time.time())
        finally:
            reader.close()
        for name, courier in dict(d.couriers).items():
            row = outbox.get(name, {})
            fams["parkwatch_outbox_pending"].add_metric([name], row.get("pending", 0))
            fams["parkwatch_outbox_oldest_pending_seconds"].add_metric(
                [name], row.get("oldest_pending_s", 0.0))
            fams["parkwatch_deliveries_total"].add_metric([name], courier.delivered)
            fams["parkwatch_delivery_failures_total"].add_metric([name], courier.failures)
            fams["parkwatch_deliveries_expired_total"].add_metric([name], courier.expired)
            fams["parkwatch_target_up"].add_metric([name], int(target_up(courier)))

    def _collect_drivers(self, fams: dict[str, Family]) -> None:
        d = self.daemon
        for driver in d.drivers:
            health = driver.health()
            fams["parkwatch_readings_accepted_total"].add_metric([driver.id], driver.accepted)
            for reason, n in sorted(dict(driver.rejections.total).items()):
                fams["parkwatch_readings_rejected_total"].add_metric([driver.id, reason], n)
            fams["parkwatch_driver_connected"].add_metric(
                [driver.id, str(health.get("type", ""))], int(bool(health.get("connected"))))
            for slave, s in sorted(dict(health.get("slaves", {})).items()):
                labels = [driver.id, str(slave)]
                fams["parkwatch_modbus_polls_total"].add_metric(labels, s["polls"])
                fams["parkwatch_modbus_timeouts_total"].add_metric(labels, s["timeouts"])
                fams["parkwatch_modbus_quarantined"].add_metric(labels, int(s["quarantined"]))
        for broker, role, up in broker_links(d):
            fams["parkwatch_broker_connected"].add_metric([broker, role], int(up))

    def _collect_telemetry(self, fams: dict[str, Family]) -> None:
        stats = self.telemetry_stats()
        if stats is None:
            return
        for lane, spool in sorted(dict(stats.get("spool", {})).items()):
            fams["parkwatch_spool_bytes"].add_metric([lane], spool["bytes"])
            fams["parkwatch_spool_points"].add_metric([lane], spool["points"])
            if spool.get("oldest_age_s") is not None:
                fams["parkwatch_spool_oldest_age_seconds"].add_metric([lane],
                                                                      spool["oldest_age_s"])
            fams["parkwatch_spool_dropped_points_total"].add_metric(
                [lane], spool.get("dropped_points", 0))
        for outcome, n in sorted(dict(stats.get("points", {})).items()):
            fams["parkwatch_telemetry_points_total"].add_metric([outcome], n)
        fams["parkwatch_telemetry_write_errors_total"].add_metric(
            [], stats.get("write_errors", 0))
        server = stats.get("server", "none")
        if server in ("up", "down"):
            fams["parkwatch_telemetry_server_up"].add_metric([], int(server == "up"))

    def telemetry_stats(self) -> dict[str, Any] | None:
        """The telemetry sink's figures; None when there is no sink or it cannot say (the
        first failure is logged, so a broken sink costs its figures, never the scrape)."""
        telemetry = getattr(self.daemon, "telemetry", None)
        if telemetry is None:
            return None
        try:
            stats: dict[str, Any] = telemetry.stats()
        except Exception:
            if not self._telemetry_failed:
                log.exception("metrics: the telemetry sink's stats failed; its figures are "
                              "left out until it answers")
                self._telemetry_failed = True
            return None
        self._telemetry_failed = False
        return stats

    # --- the endpoints ---------------------------------------------------------------------

    def metrics_response(self) -> tuple[int, str, bytes]:
        """``GET /metrics``: (status, content type, body) in the Prometheus text format."""
        try:
            return 200, CONTENT_TYPE, generate_latest(self.registry)
        except Exception as exc:  # a bug here must not cost the HTTP thread
            log.exception("metrics: scrape failed")
            return 500, CONTENT_TYPE, f"# scrape failed: {exc!r}\n".encode()

    def health(self) -> dict[str, Any]:
        """The health verdict: unhealthy (reasons) when an input, the uplink or the alarm path
        is broken; warnings for what degrades the daemon but loses no alarm."""
        d = self.daemon
        reasons: list[str] = []
        warnings: list[str] = []
        drivers: dict[str, bool] = {}
        for driver in d.drivers:
            health = driver.health()
            drivers[driver.id] = bool(health.get("connected"))
            if not drivers[driver.id]:
                link = getattr(driver, "link", None)
                where = f" (broker '{driver.cfg.broker}')" if link is not None else ""
                reasons.append(f"driver '{driver.id}' not connected{where}")
            for slave, s in sorted(dict(health.get("slaves", {})).items()):
                if s.get("quarantined"):
                    warnings.append(f"driver '{driver.id}': modbus slave {slave} quarantined "
                                    "(not answering)")
        uplink_up = d.uplink.link.connected.is_set()
        if not uplink_up:
            reasons.append(f"uplink broker '{d.cfg.uplink.broker}' disconnected")
        for name, courier in dict(d.couriers).items():
            if courier.failing and name == UPLINK:
                reasons.append("uplink deliveries failing (retrying with backoff)")
            elif courier.failing:
                warnings.append(f"delivery target '{name}' failing (retrying with backoff)")
        unsaved = d.alarms.unsaved  # held by a failing store commit
        if unsaved:
            reasons.append(f"alarm store failing: {unsaved} alarm change(s) not yet saved, "
                           "sent from memory")
        pipeline = self.pipeline_health()
        if not pipeline["running"]:
            reasons.append("alarm pipeline not running")
        elif pipeline["busy_s"] is not None and pipeline["busy_s"] > STUCK_AFTER_S:
            reasons.append(f"alarm pipeline stuck: one batch or tick running for "
                           f"{pipeline['busy_s']:.0f} s")
        if getattr(d.pipeline, "_stuck", False):
            warnings.append("rules still due after a clock tick: time-driven rules are "
                            "ticked at most once a second")
        stats = self.telemetry_stats()
        if stats is not None and stats.get("server") == "down":
            warnings.append("telemetry server down: points are spooled to disk")
        return {
            "status": "unhealthy" if reasons else "ok",
            "reasons": reasons,
            "warnings": warnings,
            "checked_at": rfc3339_ms(time.time()),
            "drivers": drivers,
            "uplink": {"broker": d.cfg.uplink.broker, "connected": uplink_up},
            "pipeline": pipeline,
        }

    def pipeline_health(self) -> dict[str, Any]:
        """Whether the pipeline thread runs and how long its current batch or tick has run
        (None while it waits for input: an idle pipeline is healthy)."""
        p = self.daemon.pipeline
        since = p.busy_since
        return {"running": p.running,
                "busy_s": None if since is None else round(time.monotonic() - since, 3),
                "queue": self.daemon.inbox.queue.qsize()}

    def healthz_response(self) -> tuple[int, str, bytes]:
        """``GET /healthz``: 200 with status ok, or 503 with the reasons, as JSON."""
        try:
            body = self.health()
        except Exception as exc:
            log.exception("healthz: the health check failed")
            body = {"status": "unhealthy", "reasons": [f"health check failed: {exc!r}"],
                    "warnings": []}
        status = 200 if body["status"] == "ok" else 503
        return status, JSON, json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8")


def target_up(courier: Any) -> bool:
    """A target takes deliveries: it is not failing, and its broker (if any) is connected."""
    return not courier.failing and (courier.ready is None or courier.ready.is_set())


def broker_links(daemon: Daemon) -> list[tuple[str, str, bool]]:
    """(broker name, role, connected) of every MQTT link: the uplink and each MQTT driver."""
    out = [(daemon.cfg.uplink.broker, "uplink", daemon.uplink.link.connected.is_set())]
    for driver in daemon.drivers:
        link = getattr(driver, "link", None)
        if link is not None:
            out.append((driver.cfg.broker, f"driver:{driver.id}", link.connected.is_set()))
    return out
