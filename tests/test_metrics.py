"""The daemon's self-metrics on /metrics and its health on /healthz, against a running daemon:
what a maintainer's Prometheus scrapes, and what a supervisor's health probe sees when the
command-center broker goes away and comes back, or the alarm pipeline hangs."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from typing import Any
from urllib.error import HTTPError

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO, wait_until
from parkwatch import __version__
from parkwatch.daemon import metrics as metrics_module
from parkwatch.daemon.metricnames import HAZARDS, METRICS, STANDARD
from parkwatch.daemon.metrics import OPEN_STATES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(daemon: Any, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of an untokened GET on the daemon's API port."""
    url = f"http://127.0.0.1:{daemon.api.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read()


def scrape(daemon: Any) -> Samples:
    """Every sample of /metrics, parsed by prometheus-client's own text parser."""
    status, ctype, body = get(daemon, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def health(daemon: Any) -> tuple[int, dict[str, Any]]:
    status, ctype, body = get(daemon, "/healthz")
    assert ctype.startswith("application/json")
    return status, json.loads(body)


def test_metrics_count_readings_rejections_alarms_and_deliveries(daemon, subscriber, device):
    before = scrape(daemon)
    accepted = value(before, "parkwatch_readings_accepted_total", driver="lora")
    assert accepted == 0  # the MQTT devices are silent until the test speaks for them

    device.send("A-2F-LC2", {"value": 1_000})
    device.send("A-2F-LC2", b"{not json")
    device.send("A-3F-FB1", {"event": "press"})
    subscriber.wait_events(lambda ev: any(e["sensor_id"] == "A-3F-FB1" for e in ev))

    def uplink_done(s: Samples) -> bool:
        return (value(s, "parkwatch_deliveries_total", target="uplink") >= 1
                and value(s, "parkwatch_outbox_pending", target="uplink") == 0)

    wait_until(lambda: uplink_done(scrape(daemon)), what="the raise delivered to the uplink")
    after = scrape(daemon)

    assert value(after, "parkwatch_readings_accepted_total", driver="lora") == 2
    assert value(after, "parkwatch_readings_rejected_total", driver="lora",
                 reason="malformed_json") == 1
    assert value(after, "parkwatch_open_alarms", kind="fire", state="active_unacknowledged") == 1
    for kind in HAZARDS:  # every series exists, so a dashboard never shows "no data"
        for state in OPEN_STATES:
            assert ("parkwatch_open_alarms",
                    frozenset({"kind": kind, "state": state}.items())) in after
    assert value(after, "parkwatch_alarm_changes_total") >= 1
    # the raise was committed in a transaction of its own or with others
    assert 1 <= value(after, "parkwatch_alarm_commits_total") <= value(
        after, "parkwatch_alarm_changes_total")
    assert ("parkwatch_alarm_commit_queue_length", frozenset()) in after
    assert value(after, "parkwatch_rule_readings_total", outcome="evaluated") >= 2

    assert value(after, "parkwatch_deliveries_total", target="uplink") >= 1
    assert value(after, "parkwatch_delivery_failures_total", target="uplink") == 0
    assert value(after, "parkwatch_outbox_oldest_pending_seconds", target="uplink") == 0
    assert value(after, "parkwatch_target_up", target="uplink") == 1
    latency = value(after, "parkwatch_delivery_latency_seconds_count", target="uplink")
    assert latency == value(after, "parkwatch_deliveries_total", target="uplink")
    assert value(after, "parkwatch_delivery_latency_seconds_bucket", target="uplink",
                 le="10.0") == latency  # the fire alarm reached the command center in time
    assert value(after, "parkwatch_rule_evaluation_seconds_count", what="batch") > value(
        before, "parkwatch_rule_evaluation_seconds_count", what="batch")

    assert value(after, "parkwatch_info", version=__version__, park="xinqiao",
                 gateway="xinqiao-gw1") == 1
    assert value(after, "parkwatch_broker_connected", broker="local", role="uplink") == 1
    assert value(after, "parkwatch_broker_connected", broker="local", role="driver:lora") == 1
    for driver in daemon.drivers:
        assert value(after, "parkwatch_driver_connected", driver=driver.id,
                     type=driver.health()["type"]) == 1

    def polls() -> list[float]:
        return [v for (name, labels), v in scrape(daemon).items()
                if name == "parkwatch_modbus_polls_total" and ("driver", "rs485-b") in labels]

    assert len(polls()) == 4  # one series per slave (the relay module's too), from the start
    wait_until(lambda: sum(polls()) > 0, what="the simulated Modbus slaves to be polled")


def test_every_exposed_family_is_in_METRICS_and_vice_versa(daemon):
    _, _, body = get(daemon, "/metrics")
    text = body.decode("utf-8")
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.MULTILINE))
    assert set(helps) == set(METRICS) | set(STANDARD)
    exposed = {name: h for name, h in helps.items() if name not in STANDARD}
    assert exposed == METRICS  # the help text Grafana's authors read is the one exposed
    assert set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE)) == set(helps)
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {n.removesuffix("_total") for n in helps} == names


def test_the_process_own_figures_are_exposed_for_this_daemon(daemon):
    """Memory, CPU and open files of the daemon's process, and the garbage collector's work:
    what a maintainer compares with the gateway's memory budget."""
    samples = scrape(daemon)
    value = {name: v for (name, labels), v in samples.items() if not labels}
    with open("/proc/self/status", encoding="ascii") as f:  # the tests run the daemon in-process
        rss = int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) * 1024
    assert 0.5 * rss < value["process_resident_memory_bytes"] < 2 * rss
    assert value["process_open_fds"] > 3 and value["process_cpu_seconds_total"] > 0
    assert any(name == "python_gc_collections_total" and ("generation", "0") in labels
               for name, labels in samples)
    assert any(name == "python_info" for name, _ in samples)


def test_every_metric_is_documented():
    doc = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = [name for name in (*METRICS, *STANDARD) if f"`{name}`" not in doc]
    assert not missing, f"docs/metrics.md does not describe {missing}"


def test_healthz_turns_503_while_the_uplink_broker_is_down(daemon, broker):
    # a fresh daemon turns healthy once its serial and Modbus drivers have opened their ports
    wait_until(lambda: health(daemon)[0] == 200, what="/healthz to report a started daemon ok")
    status, body = health(daemon)
    assert status == 200 and body["status"] == "ok" and body["reasons"] == []
    assert body["uplink"] == {"broker": "local", "connected": True}
    # idle, or in the middle of one of the simulated devices' batches: healthy either way
    assert body["pipeline"]["running"] and (body["pipeline"]["busy_s"] or 0.0) < 1.0

    broker.stop()
    wait_until(lambda: health(daemon)[0] == 503, what="/healthz to notice the broker is gone")
    status, body = health(daemon)
    assert status == 503 and body["status"] == "unhealthy"
    assert "uplink broker 'local' disconnected" in body["reasons"]
    assert "driver 'lora' not connected (broker 'local')" in body["reasons"]
    samples = scrape(daemon)  # the metrics say the same
    assert value(samples, "parkwatch_broker_connected", broker="local", role="uplink") == 0
    assert value(samples, "parkwatch_target_up", target="uplink") == 0

    broker.start()  # the same port: the links reconnect by themselves
    wait_until(lambda: health(daemon)[0] == 200, timeout=10.0,
               what="/healthz to recover with the broker")
    status, body = health(daemon)
    assert body["status"] == "ok" and body["reasons"] == []


def test_a_hung_pipeline_is_unhealthy_and_metrics_still_answer(daemon, monkeypatch):
    monkeypatch.setattr(metrics_module, "STUCK_AFTER_S", 0.2)
    # healthy first: a fresh daemon is unhealthy until its serial drivers have opened their
    # ports, and that 503 is not the one this test waits for
    wait_until(lambda: health(daemon)[0] == 200, timeout=30, what="a healthy daemon")
    release = threading.Event()
    daemon.inbox.call(lambda: release.wait(10))  # the pipeline thread hangs in a batch

    def stuck() -> bool:
        status, body = health(daemon)
        return status == 503 and any(r.startswith("alarm pipeline stuck")
                                     for r in body["reasons"])

    try:
        wait_until(stuck, what="/healthz to call the pipeline stuck")
        status, body = health(daemon)
        assert status == 503 and body["status"] == "unhealthy"
        assert [r for r in body["reasons"] if r.startswith("alarm pipeline stuck")]
        assert body["pipeline"]["busy_s"] > 0.2
        assert scrape(daemon)  # /metrics never waits for the pipeline thread
    finally:
        release.set()
    wait_until(lambda: health(daemon)[0] == 200, what="/healthz to recover")


@pytest.mark.parametrize("path", ["/metrics", "/healthz"])
def test_the_endpoints_need_no_token(daemon, path):
    status, _, _ = get(daemon, path)
    assert status in (200, 503)
    assert daemon.api.refused.count == 0


def test_thread_cpu_names_the_stages_and_grows_with_their_work(daemon, device):
    """Which stage uses the core: each of the daemon's threads by name, and the pipeline's
    CPU time grows while readings arrive."""
    def pipeline_cpu() -> float:
        return value(scrape(daemon), "parkwatch_thread_cpu_seconds_total",
                     thread="parkwatch-pipeline")

    threads = {dict(labels)["thread"] for name, labels in scrape(daemon)
               if name == "parkwatch_thread_cpu_seconds_total"}
    assert {"MainThread", "parkwatch-pipeline", "parkwatch-committer",
            "parkwatch-courier-uplink"} <= threads
    before = pipeline_cpu()

    def busy() -> bool:
        for k in range(200):
            device.send("A-2F-LC2", {"value": 100 + k % 7})
        return pipeline_cpu() > before

    wait_until(busy, timeout=60,
               what="the pipeline thread's CPU time to grow while a device sends readings")
