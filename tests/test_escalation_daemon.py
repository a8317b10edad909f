"""Escalation on the running daemon: the escalation timer fires the step on time, and a daemon
restarted half-way up the ladder fires the next step on time, once (the store re-arms it)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import EXAMPLE, Device, Subscriber, wait_until
from parkwatch.daemon.app import Daemon
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.firmware_sim.devices import bench_overrides
from parkwatch.schema import load_config

STEP_S = 2.5
REMIND_S = 4.0


def ladder_config(broker: LocalMosquitto, tmp_path: Path) -> Any:
    """The example park with a quick fire ladder (its serial buses stay unplugged here)."""
    ov = bench_overrides(load_config(EXAMPLE), broker.port, tmp_path)
    ov[("alarms", "escalation")] = [{"kinds": ["fire"], "min_severity": "critical",
                                     "steps": [{"after_s": STEP_S, "notify": ["district"]}],
                                     "reminder_every_s": REMIND_S}]
    return load_config(EXAMPLE, ov)


def started(cfg: Any) -> Daemon:
    d = Daemon(cfg)
    d.start()
    assert d.uplink.link.connected.wait(5)
    drivers = [drv for drv in d.drivers if hasattr(drv, "link")]
    wait_until(lambda: all(drv.subscribed.is_set() for drv in drivers))
    return d


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name and e["rule"] == "button_latch"]


def test_restart_mid_ladder_fires_next_step_on_time_once(broker: LocalMosquitto,
                                                         tmp_path: Path) -> None:
    cfg = ladder_config(broker, tmp_path)
    sub = Subscriber(broker)
    device = Device(broker)
    first = started(cfg)
    second = None
    try:
        device.send("A-3F-FB1", {"event": "press"})
        raised = of(sub.wait_events(lambda ev: bool(of(ev, "raised"))), "raised")[0]
        time.sleep(STEP_S / 2)
        first.stop()
        second = started(cfg)
        events = sub.wait_events(lambda ev: bool(of(ev, "escalated")), timeout=STEP_S + 5)
        escalated = of(events, "escalated")
        assert len(escalated) == 1
        late = ts(escalated[0]["changed_at"]) - ts(raised["raised_at"])
        assert STEP_S - 0.05 <= late <= STEP_S + 1.5, f"step fired {late:.2f} s after the raise"
        assert escalated[0]["alarm_id"] == raised["alarm_id"]
        assert escalated[0]["escalation_level"] == 1
        # the district is told now, and the step is not repeated before the reminder
        detail = second.reader.alarm(raised["alarm_id"])
        assert detail is not None
        assert {"district"} <= {d["subscriber"] for d in detail["deliveries"]
                                if d["seq"] == escalated[0]["seq"]}
        events = sub.wait_events(lambda ev: bool(of(ev, "reminder")), timeout=REMIND_S + 3)
        assert len(of(events, "escalated")) == 1
        reminder = of(events, "reminder")[0]
        assert REMIND_S - 0.05 <= ts(reminder["changed_at"]) - ts(raised["raised_at"]) \
            <= REMIND_S + 1.5
        # an acknowledgement stops the ladder: nothing is left scheduled, in memory or on disk
        assert second.acknowledge(raised["alarm_id"], "王工")
        wait_until(lambda: second.alarms.next_due() is None, what="the ladder stopped")
        wait_until(lambda: (second.reader.alarm(raised["alarm_id"]) or {}).get("details", {})
                   .get("next_escalation_at", 0) is None, what="no step left on disk")
        assert len(of(sub.events(), "reminder")) == 1
    finally:
        if second is not None:
            second.stop()
        else:
            first.stop()
        device.close()
        sub.close()
