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

What they read of the daemon is a narrow read-only view
(:class:`parkwatch.daemon.metricsview.MetricsView`), never the daemon itself.  Drivers bring
their own figures through the hooks of :class:`parkwatch.drivers.base.Driver`: a driver type's
own families (Modbus RTU's per-slave counters) through ``metric_samples()``, its health
warnings through ``health_warnings()``, and an MQTT driver's broker link through
``broker_link()``; nothing here knows one driver type from another.

Each daemon has its own :class:`CollectorRegistry` (tests run several daemons in one process),
never prometheus-client's global default registry.  Beside the daemon's own families it carries
prometheus-client's standard ones for any Python process
(:data:`parkwatch.daemon.metricnames.STANDARD`): memory, CPU and
open files from ``/proc``, the garbage collector, and the interpreter's version.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

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
from parkwatch.alarms.timestamps import rfc3339_ms
from parkwatch.alarms.views import StoreReader
from parkwatch.config.delivery import UPLINK
from parkwatch.daemon.clockwatch import UNSYNC_WARN_S
from parkwatch.daemon.metricnames import (
    _KIND,
    COMMIT_BUCKETS,
    HAZARDS,
    LATENCY_BUCKETS,
    METRICS,
    RULE_BUCKETS,
    RULE_OUTCOMES,
)
from parkwatch.daemon.metricsview import CourierFigures, MetricsView
from parkwatch.daemon.threadcpu import cpu_by_thread_name

log = logging.getLogger("parkwatch.metrics")

#: the text exposition format; the API server adds ``; charset=utf-8``
CONTENT_TYPE = "text/plain; version=0.0.4"
JSON = "application/json"

#: a batch or a clock tick that has been running longer than this makes the daemon unhealthy:
#: a fire alarm must reach the command center within 10 s (GB 26875.1-2011)
STUCK_AFTER_S = 10.0
#: how long /healthz warns of a step of the system clock
CLOCK_STEP_WARN_S = 3600.0

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

    def __init__(self, view: MetricsView) -> None:
        self.view = view  # read only at scrape time: the daemon may still be under construction
        self.rule_seconds = _histogram("parkwatch_rule_evaluation_seconds", RULE_BUCKETS)
        self.delivery_seconds = _histogram("parkwatch_delivery_latency_seconds",
                                           LATENCY_BUCKETS)
        self.commit_seconds = _histogram("parkwatch_alarm_commit_seconds", COMMIT_BUCKETS)
        self._hists = (self.rule_seconds, self.delivery_seconds, self.commit_seconds)
        self._rule_child = {what: self.rule_seconds.labels(what) for what in ("batch", "tick")}
        self._commit_child = {phase: self.commit_seconds.labels(phase)
                              for phase in ("queued", "written")}
        self._telemetry_failed = False
        #: the outbox figures' reader: one connection kept for every scrape (one opened and
        #: closed per scrape left a descriptor open for each scrape that overlapped another)
        self._reader: StoreReader | None = None
        self._reader_lock = threading.Lock()
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
        self._collect_outputs(fams)
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
        d = self.view
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
        clock = d.pipeline.clockwatch
        if clock is not None:
            synced = clock.synchronized()
            if synced is not None:
                fams["parkwatch_clock_synchronized"].add_metric([], 1 if synced else 0)
            fams["parkwatch_clock_steps_total"].add_metric([], clock.steps)

    def _collect_alarms(self, fams: dict[str, Family]) -> None:
        d = self.view
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
        api = d.api
        if api is not None:
            refused.update(dict(api.refused.total))
        for reason, n in sorted(refused.items()):
            fams["parkwatch_refused_commands_total"].add_metric([reason], n)

    def _collect_delivery(self, fams: dict[str, Family]) -> None:
        d = self.view
        with self._reader_lock:
            if self._reader is None:
                self._reader = StoreReader(d.store_path, size=1)
            reader = self._reader
        outbox = reader.outbox_stats(time.time())
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
        d = self.view
        for driver in list(d.drivers):
            health = driver.health()
            fams["parkwatch_readings_accepted_total"].add_metric([driver.id], driver.accepted)
            for reason, n in sorted(dict(driver.rejections.total).items()):
                fams["parkwatch_readings_rejected_total"].add_metric([driver.id, reason], n)
            fams["parkwatch_driver_connected"].add_metric(
                [driver.id, str(health.get("type", ""))], int(bool(health.get("connected"))))
            for name, labels, value in driver.metric_samples():  # its type's own families
                fams[name].add_metric(list(labels), value)
        for broker, role, up in broker_links(d):
            fams["parkwatch_broker_connected"].add_metric([broker, role], int(up))

    def _collect_outputs(self, fams: dict[str, Family]) -> None:
        bank = self.view.outputs
        for o, wanted, fault in zip(bank.outputs, list(bank.wanted), list(bank.fault),
                                    strict=True):
            fams["parkwatch_output_on"].add_metric([o.config.id, o.config.kind], int(bool(wanted)))
            fams["parkwatch_output_fault"].add_metric([o.config.id], int(fault))
        fams["parkwatch_output_writes_total"].add_metric([], bank.writes)

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
        """The telemetry sink's figures; None when it cannot say (the first failure is
        logged, so a broken sink costs its figures, never the scrape)."""
        try:
            stats = self.view.telemetry.stats()
        except Exception:
            if not self._telemetry_failed:
                log.exception("metrics: the telemetry sink's stats failed; its figures are "
                              "left out until it answers")
                self._telemetry_failed = True
            return None
        self._telemetry_failed = False
        return stats

    def close(self) -> None:
        """Close the outbox figures' connection (the daemon stops)."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()

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
        d = self.view
        reasons: list[str] = []
        warnings: list[str] = []
        drivers: dict[str, bool] = {}
        for driver in list(d.drivers):
            health = driver.health()
            drivers[driver.id] = bool(health.get("connected"))
            if not drivers[driver.id]:
                link = driver.broker_link()
                where = f" (broker '{link.broker}')" if link is not None else ""
                reasons.append(f"driver '{driver.id}' not connected{where}")
            warnings += [f"driver '{driver.id}': {w}" for w in driver.health_warnings()]
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
        bank = d.outputs
        warnings += [f"output '{o.config.id}' in fault: does not follow its command "
                     f"({bank.seen[k] or 'no answer'})"
                     for k, o in enumerate(bank.outputs) if bank.fault[k]]
        if d.pipeline.stuck:
            warnings.append("rules still due after a clock tick: time-driven rules are "
                            "ticked at most once a second")
        clock = d.pipeline.clockwatch
        if clock is not None:
            if clock.synchronized() is False and clock.unsynchronized_s() >= UNSYNC_WARN_S:
                warnings.append(f"system clock not synchronised for "
                                f"{clock.unsynchronized_s() / 60:.0f} min (adjtimex): check "
                                "chrony or systemd-timesyncd")
            step = clock.last_step
            if step is not None and time.time() - step[1] < CLOCK_STEP_WARN_S:
                warnings.append(f"system clock stepped {step[0]:+.1f} s at "
                                f"{rfc3339_ms(step[1])}")
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
            "clock": None if clock is None else clock.health(),
        }

    def pipeline_health(self) -> dict[str, Any]:
        """Whether the pipeline thread runs and how long its current batch or tick has run
        (None while it waits for input: an idle pipeline is healthy)."""
        p = self.view.pipeline
        since = p.busy_since
        return {"running": p.running,
                "busy_s": None if since is None else round(time.monotonic() - since, 3),
                "queue": self.view.inbox.queue.qsize()}

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


def target_up(courier: CourierFigures) -> bool:
    """A target takes deliveries: it is not failing, and its broker (if any) is connected."""
    return not courier.failing and (courier.ready is None or courier.ready.is_set())


def broker_links(view: MetricsView) -> list[tuple[str, str, bool]]:
    """(broker name, role, connected) of every MQTT link: the uplink and each driver that has
    one (:meth:`parkwatch.drivers.base.Driver.broker_link`)."""
    out = [(view.cfg.uplink.broker, "uplink", view.uplink.link.connected.is_set())]
    for driver in list(view.drivers):
        link = driver.broker_link()
        if link is not None:
            out.append((link.broker, f"driver:{driver.id}", link.connected))
    return out
