"""The daemon's metric families: each name, kind, labels and help text (the catalogue that
``GET /metrics``, docs/metrics.md and the Grafana dashboards are checked against), the label
values exposed whether or not they were seen, and the histograms' buckets.

The families of one driver type (Modbus RTU's per-slave counters) are declared in that
driver's folder and gathered here from the driver registry (:attr:`DriverKind.metrics
<parkwatch.drivers.registry.DriverKind.metrics>`)."""

from __future__ import annotations

from parkwatch.drivers.registry import DRIVER_KINDS

#: what an alarm is about (see :func:`parkwatch.alarms.routing.hazard`) and the states of an
#: open alarm (see :meth:`parkwatch.alarms.service.AlarmService.counts`): every pair is exposed,
#: zero or not, so that dashboards always have the series
HAZARDS = ("fire", "overload", "water", "fault")
#: the readings that reached the rule engine, each counted under exactly one outcome
RULE_OUTCOMES = ("evaluated", "out_of_order", "unusable", "liveness", "out_of_range")

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

Spec = tuple[str, str, tuple[str, ...], str]

# (name as exposed, type, labels, help). Counters end in _total, as they are exposed.
_DAEMON: tuple[Spec, ...] = (
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
     "as out_of_order, unusable (bad quality or not a number), liveness only (heartbeats, "
     "test presses), or out_of_range (outside the sensor's measuring range: sensor_fault)."),
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
    ("parkwatch_driver_connected", "gauge", ("driver", "type"),
     "1 when a driver has its port open and its device talking, or its broker connected and "
     "its subscription acknowledged."),
    ("parkwatch_broker_connected", "gauge", ("broker", "role"),
     "1 when an MQTT link is connected to its broker; role is uplink or driver:<driver id>."),
    ("parkwatch_output_on", "gauge", ("output", "kind"),
     "1 while the open alarms demand the output (sounder, strobe, pa, relay) on, 0 at rest."),
    ("parkwatch_output_fault", "gauge", ("output",),
     "1 while the output does not follow its command (its output_fault alarm is active)."),
    ("parkwatch_output_writes_total", "counter", (),
     "Writes to outputs (each read back), re-assertions and rewrites of faulty ones included."),
    ("parkwatch_state_saves_total", "counter", (),
     "Rule-state checkpoints written to the state directory."),
    ("parkwatch_state_errors_total", "counter", (),
     "Rule-state checkpoints that failed."),
    ("parkwatch_clock_synchronized", "gauge", (),
     "1 while the kernel says the system clock is synchronised (adjtimex), 0 while it is not; "
     "absent where it cannot be asked."),
    ("parkwatch_clock_steps_total", "counter", (),
     "Steps of the system clock (a jump forwards or backwards) seen since the start."),
)

#: each driver type's own families, in registry order (see docs/drivers.md)
_DRIVERS: tuple[Spec, ...] = tuple((f.name, f.type, f.labels, f.help)
                                   for kind in DRIVER_KINDS.values() for f in kind.metrics)
_SPEC = _DAEMON + _DRIVERS

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
