"""At-least-once allows a repeat after a fault, never in normal operation: a fault-free flood of
50,000 alarm changes, committed in batches of every size by the real alarm service and carried
by the real uplink courier (express publishes and its own reads of the outbox, interleaved),
reaches the command center once each, in `seq` order per alarm.

A real Mosquitto, a real store on disk and the example park's routing."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import Subscriber, example_config, wait_until
from parkwatch.alarms.channels.uplink import UplinkSender
from parkwatch.alarms.commit import Committer
from parkwatch.alarms.delivery import Courier
from parkwatch.alarms.dispatch import Dispatcher
from parkwatch.alarms.service import AlarmService
from parkwatch.alarms.store import AlarmStore
from parkwatch.alarms.uplink import Topics
from parkwatch.config.delivery import UPLINK, Backoff
from parkwatch.daemon.main import SWITCH_INTERVAL_S
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.mqttlink.link import MqttLink
from parkwatch.park import ParkModel
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions

CHANGES = 50_000
N, W = int(Severity.NORMAL), int(Severity.WARNING)


@pytest.mark.timeout(900)  # about a minute here; a slow or busy machine may take several
def test_a_fault_free_flood_of_50000_changes_arrives_once_each_in_order(
        broker: LocalMosquitto, tmp_path: Path) -> None:
    cfg = example_config(broker, tmp_path)
    park = ParkModel(cfg)
    engine = RuleEngine(park, start=0.0)
    store = AlarmStore(tmp_path / "alarms.db")
    link = MqttLink("uplink", cfg.brokers[cfg.uplink.broker], "gw-uplink")
    link.start()
    assert link.connected.wait(5)
    topics = Topics(cfg)
    center = Subscriber(broker, topics.events)
    dispatcher = Dispatcher()
    committer = Committer(store, dispatcher)  # its own thread, as in the daemon
    dispatcher.couriers = {UPLINK: Courier(UPLINK, UplinkSender(link, topics),
                                           tmp_path / "alarms.db", Backoff(initial_s=0.2),
                                           ready=link.connected, marks=committer.mark)}
    service = AlarmService(cfg, park, engine, store, committer=committer)
    committer.start()
    dispatcher.start()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as the daemon runs
    try:
        # every water-level and load-cell sensor raises and clears in turn: 2 changes a cycle
        sensors = np.array([i for i, s in enumerate(park.sensors)
                            if s.config.kind in ("water_level", "load_cell")])
        rule = RULE_NAMES.index("high_threshold")
        rng = np.random.default_rng(20)
        up = np.zeros(len(sensors), bool)
        made = 0
        while made < CHANGES:
            # batches of 1 to 64 changes; each sensor at most once per batch
            n = min(int(rng.integers(1, 65)), len(sensors), CHANGES - made)
            pick = rng.choice(len(sensors), n, replace=False)
            old = np.where(up[pick], W, N)
            new = np.where(up[pick], N, W)
            up[pick] = ~up[pick]
            made += service.apply(Transitions.build(
                sensors[pick], rule, old, new, np.full(n, 1.0), np.full(n, 30.0),
                np.full(n, 1.0)))
        # a definite signal, however long a loaded machine takes to write 50,000 changes
        assert committer.flush(600) and service.committed == made == CHANGES
        courier = dispatcher.couriers[UPLINK]
        wait_until(lambda: len(center.messages) >= CHANGES, 600, "every change at the center")
        wait_until(lambda: courier.delivered >= CHANGES, 300, "every change confirmed")
        # a last change: anything published before it arrives before it (one target's order)
        service.apply(Transitions.build(sensors[:1], rule, np.array([W if up[0] else N]),
                                        np.array([N if up[0] else W]), np.ones(1),
                                        np.full(1, 30.0), np.ones(1)))
        wait_until(lambda: len(center.messages) > CHANGES, 120, "the last change")
    finally:
        sys.setswitchinterval(switch)
        committer.stop(60.0)
        dispatcher.stop(10.0)
        committer.close()
        center.close()
        link.stop()
        store.close()
    keys = [(e["alarm_id"], e["seq"]) for e in (json.loads(p) for _t, p, _r in center.messages)]
    repeats = [k for k, n in Counter(keys).items() if n > 1]
    assert not repeats, f"{len(repeats)} change(s) delivered twice, e.g. {repeats[:3]}"
    assert len(keys) == CHANGES + 1
    last: dict[str, int] = {}
    for alarm_id, seq in keys:
        assert seq > last.get(alarm_id, 0), f"{alarm_id} seq {seq} after {last[alarm_id]}"
        last[alarm_id] = seq
    assert courier.failures == 0
