"""The metrics read only their narrow view of the daemon (`MetricsView`), and drivers bring
their own figures through the `Driver` hooks: a stand-in view of plain objects, with no daemon
behind it, gives the same families, samples and health verdict a running daemon does."""

from __future__ import annotations

import ast
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO
from parkwatch.alarms.store import AlarmStore
from parkwatch.daemon.metrics import DaemonMetrics
from parkwatch.drivers.base import BrokerLink
from parkwatch.drivers.metricfamily import MetricSample
from parkwatch.drivers.modbus_rtu import metrics as modbus_metrics
from parkwatch.drivers.modbus_rtu.bus import SlaveState


class FakeDriver:
    """A driver as the metrics see it: the members of the Driver protocol they read."""

    def __init__(self, id: str, kind: str, connected: bool, *,
                 samples: Iterable[MetricSample] = (), warnings: list[str] | None = None,
                 link: BrokerLink | None = None) -> None:
        self.id, self.accepted = id, 3
        self.rejections = SimpleNamespace(total=Counter({"malformed_json": 2}))
        self._health = {"type": kind, "connected": connected}
        self._samples, self._warnings, self._link = list(samples), warnings or [], link

    def health(self) -> dict[str, Any]:
        return self._health

    def metric_samples(self) -> list[MetricSample]:
        return self._samples

    def health_warnings(self) -> list[str]:
        return self._warnings

    def broker_link(self) -> BrokerLink | None:
        return self._link


def connected(up: bool) -> threading.Event:
    event = threading.Event()
    if up:
        event.set()
    return event


def view(tmp_path: Path, drivers: list[FakeDriver]) -> SimpleNamespace:
    store = tmp_path / "alarms.db"
    AlarmStore(store).close()
    counts = SimpleNamespace(total=Counter())
    courier = SimpleNamespace(delivered=4, failures=0, expired=0, failing=False,
                              ready=connected(True))
    return SimpleNamespace(
        cfg=SimpleNamespace(park=SimpleNamespace(id="p"), gateway=SimpleNamespace(id="gw"),
                            uplink=SimpleNamespace(broker="center")),
        started_at=1.0, config_loaded_at=1.0, reloads={"applied": 0, "failed": 0},
        last_reload=None, engine=SimpleNamespace(stats={"evaluated": 9}),
        pipeline=SimpleNamespace(running=True, errors=0, busy_since=None, stuck=False,
                                 clockwatch=None),
        inbox=SimpleNamespace(queue=SimpleNamespace(qsize=lambda: 0)),
        keeper=SimpleNamespace(saves=1, errors=0),
        alarms=SimpleNamespace(tally=Counter(), committed=0, store_errors=0, unsaved=0,
                               refused=counts),
        committer=SimpleNamespace(groups=0, waiting=0), api=None, store_path=store,
        couriers={"uplink": courier}, drivers=drivers,
        outputs=SimpleNamespace(outputs=[], wanted=[], fault=[], seen=[], writes=0),
        uplink=SimpleNamespace(link=SimpleNamespace(connected=connected(True))),
        telemetry=SimpleNamespace(stats=lambda: {"server": "none"}))


def scrape(metrics: DaemonMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, _, body = metrics.metrics_response()
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for s in family.samples}


def test_driver_figures_come_through_the_hooks(tmp_path: Path) -> None:
    slaves = {3: SlaveState(3, polls=7, timeouts=1), 5: SlaveState(5, polls=2, timeouts=2,
                                                                   quarantined=True)}
    bus = FakeDriver("bus", "modbus_rtu", True,
                     samples=modbus_metrics.samples("bus", slaves),
                     warnings=modbus_metrics.quarantine_warnings(slaves))
    lora = FakeDriver("lora", "mqtt", False, link=BrokerLink("local", False))
    metrics = DaemonMetrics(view(tmp_path, [bus, lora]))  # a stand-in for the daemon
    samples = scrape(metrics)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert value("parkwatch_modbus_polls_total", driver="bus", slave="3") == 7
    assert value("parkwatch_modbus_timeouts_total", driver="bus", slave="5") == 2
    assert value("parkwatch_modbus_quarantined", driver="bus", slave="5") == 1
    assert value("parkwatch_modbus_quarantined", driver="bus", slave="3") == 0
    assert value("parkwatch_broker_connected", broker="local", role="driver:lora") == 0
    assert value("parkwatch_broker_connected", broker="center", role="uplink") == 1
    assert value("parkwatch_driver_connected", driver="lora", type="mqtt") == 0
    assert value("parkwatch_readings_rejected_total", driver="bus", reason="malformed_json") == 2
    assert not [k for k in samples if k[0].startswith("parkwatch_modbus")
                and ("driver", "lora") in k[1]]  # an MQTT driver has no Modbus series

    health = metrics.health()
    assert health["status"] == "unhealthy"
    assert health["reasons"] == ["driver 'lora' not connected (broker 'local')"]
    assert health["warnings"] == ["driver 'bus': modbus slave 5 quarantined (not answering)"]
    assert health["drivers"] == {"bus": True, "lora": False}


def test_the_metrics_never_import_the_daemon() -> None:
    """No import of daemon.app, not even for type checking: the circle app <-> metrics is
    gone, and the metrics know the daemon only as its view."""
    for module in ("metrics.py", "metricsview.py", "metricnames.py"):
        tree = ast.parse((REPO / "src" / "parkwatch" / "daemon" / module).read_text("utf-8"))
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        assert "parkwatch.daemon.app" not in imported, module
