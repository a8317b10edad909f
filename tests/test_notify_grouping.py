"""Issue 23, done-when 5 (grouping): 20 sensors behind one cut RS-485 cable give one grouped
notification per target, while the command center still gets one event per alarm change; a
fire pressed during `group_wait_s` reaches the groups at once.

The example park's daemon, in-process, with building B's RS-485 bus carrying 20 sensors on the
simulated Modbus slaves, and two robot targets (DingTalk, WeCom; tests/chat_robots.py checks
their signature and key) grouping by [rule, driver].  The cable is pulled in the simulator.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from chat_robots import DingTalkRobot, WeComRobot
from conftest import EXAMPLE, Device, Subscriber, example_config, wait_until
from parkwatch.firmware_sim.devices import SimulatedPark

SECRET = "SEC" + "0123456789abcdef" * 4
GROUP_WAIT_S = 8.0
EXTRA = [f"B-1F-LC{n:02d}" for n in range(16)]  # beside the bus's own 4 sensors


def comm_faults(sub: Subscriber) -> list[dict[str, Any]]:
    return [e for e in sub.events() if e["rule"] == "comm_fault" and e["event"] == "raised"]


def test_a_cut_cable_is_one_message_per_target_and_a_fire_meanwhile_goes_at_once(
        broker: Any, tmp_path: Path, device: Device) -> None:
    from parkwatch.daemon.app import Daemon

    secret = tmp_path / "ding.secret"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    sensors = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["sensors"]
    sensors += [{"id": s, "kind": "load_cell", "building": "B", "floor": "1F",
                 "driver": "rs485-b", "address": f"2/hr{20 + 2 * n}:int32"}
                for n, s in enumerate(EXTRA)]
    with DingTalkRobot(SECRET) as ding, WeComRobot("", token="k") as wc:
        grouping = {"group_by": ["rule", "driver"], "group_wait_s": GROUP_WAIT_S}
        cfg = example_config(broker, tmp_path, {
            ("sensors",): sensors,
            ("drivers", 1, "comm_fault_after_s"): 1.0,
            ("alarms", "targets", "ding"): {"type": "dingtalk", "url": ding.url,
                                            "secret_file": str(secret), **grouping},
            ("alarms", "targets", "wc"): {"type": "wecom", "url": wc.url, **grouping},
            # facilities hear of the comm faults, the landlord of fires, on both robots (the
            # floors' floor_data alarms the cut causes too are left out: another group)
            ("alarms", "subscribers", 0, "target"): "ding",
            ("alarms", "subscribers", 2, "target"): "ding",
            ("alarms", "subscribers", 2, "filter"): {"rules": ["comm_fault"]},
            ("alarms", "subscribers", 1): {"id": "wc-all", "party": "any", "target": "wc",
                                           "filter": {"rules": ["comm_fault", "button_latch"]}},
        })
        bus = [s.id for s in cfg.sensors if s.driver == "rs485-b"]
        assert len(bus) == 20
        sim = SimulatedPark(cfg, mqtt=False)
        sim.start()
        sub = Subscriber(broker)
        d = Daemon(cfg)
        d.start()
        try:
            assert d.uplink.link.connected.wait(5)
            for drv in d.drivers:
                if hasattr(drv, "subscribed"):
                    assert drv.subscribed.wait(5)
            rs485 = next(drv for drv in d.drivers if drv.id == "rs485-b")
            wait_until(lambda: rs485.health()["accepted"] > 0, 10, "the bus answering")
            sim.cut("rs485-b")
            # the command center: one event per alarm change, all 20
            wait_until(lambda: {e["sensor_id"] for e in comm_faults(sub)} == set(bus), 15,
                       "20 comm faults on the uplink")
            assert ding.accepted == [] and wc.accepted == []  # held for the group
            device.send("A-3F-FB1", {"event": "press"})
            (fire,) = ding.wait_for(lambda got: len(got) >= 1, GROUP_WAIT_S)
            (wc_fire,) = wc.wait_for(lambda got: len(got) >= 1, GROUP_WAIT_S)
            # the fire went while the cable's group was still held
            for msg in (fire, wc_fire):
                assert msg["text"]["content"].startswith("【火警】A栋 三层")
                assert "处置：请立即按疏散预案组织人员撤离" in msg["text"]["content"]
            held = time.monotonic()
            ding_all = ding.wait_for(lambda got: len(got) >= 2, GROUP_WAIT_S + 10)
            wc_all = wc.wait_for(lambda got: len(got) >= 2, GROUP_WAIT_S + 10)
            ids = {e["alarm_id"] for e in comm_faults(sub)}
            assert len(comm_faults(sub)) == 20  # one contract event each, not grouped
        finally:
            d.stop()
            sim.stop()
            sub.close()
    print(json.dumps({"group_after_fire_s": round(time.monotonic() - held, 2)}))
    for got, key in ((ding_all, "content"), (wc_all, "content")):
        assert len(got) == 2, [m["text"][key][:40] for m in got]
        group = got[1]["text"][key]
        assert group.startswith("【告警汇总】共 20 条")
        assert all(f"编号：{a}" in group for a in ids)
    assert ding.refused == [] and wc.refused == []

