"""On-site linkage end to end on the example park: a press sounds its building's sounders and
strobes (Modbus relay coils and a wireless MQTT sounder, checked on the simulated devices
themselves), silence, re-sound, reset to rest, and the supervision of a stuck output, all with
the uplink broker (the command center's) unreachable."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import example_config, http_json, wait_until
from parkwatch.daemon.httpapi import state_token
from parkwatch.devtools.localbroker import free_port
from parkwatch.firmware_sim.devices import SimulatedPark

A_SOUNDERS = ["A-SND-1F", "A-SND-3F", "A-SND-W1"]
A_ALL = [*A_SOUNDERS, "A-STB-1F", "A-PA"]
B_ALL = ["B-SND-1F", "B-STB-1F", "B-PUMP-B1"]


def _cfg(broker: Any, tmp_path: Path, extra: dict[tuple[Any, ...], Any]) -> Any:
    dead = free_port()  # the command center's broker: nothing listens there
    return example_config(broker, tmp_path, {
        ("brokers", "center"): {"host": "127.0.0.1", "port": dead, "reconnect_max_s": 1.0},
        ("uplink", "broker"): "center", **extra})


@pytest.fixture
def park(broker: Any, tmp_path: Path) -> Iterator[tuple[Any, SimulatedPark]]:
    """The example park's daemon, in-process, its devices simulated (RS-485 and MQTT), the
    uplink broker down."""
    from parkwatch.daemon.app import Daemon

    cfg = _cfg(broker, tmp_path, {("linkage", "check_interval_s"): 1.0})
    fleet = SimulatedPark(cfg, client_prefix="test-device")
    fleet.start()
    d = Daemon(cfg)
    d.start()
    try:
        for drv in d.drivers:
            if hasattr(drv, "subscribed"):
                assert drv.subscribed.wait(5)
        # at start every output is written to rest and read back
        wait_until(lambda: all(o["agrees"] for o in d.outputs_view()["outputs"]),
                   what="every output written and read back")
        assert not d.uplink.link.connected.is_set()
        yield d, fleet
    finally:
        d.stop()
        fleet.stop()


def _on(fleet: SimulatedPark, ids: list[str]) -> list[bool]:
    return [fleet.output_on(o) for o in ids]


def _api(d: Any, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    return http_json(d.api.port, method, path, data, token=state_token(d.state_dir))


def _open_fire(d: Any, sensor: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        _, got = _api(d, "GET", "/api/alarms")
        return next((a for a in got["alarms"] if a["sensor_id"] == sensor and a["active"]),
                    None)
    wait_until(lambda: found() is not None, what=f"fire alarm of {sensor}")
    alarm = found()
    assert alarm is not None
    return alarm


def test_a_press_sounds_its_building_silence_resound_and_reset(park: Any) -> None:
    d, fleet = park
    assert _on(fleet, A_ALL + B_ALL) == [False] * 8
    fleet.button("A-3F-FB1", "press")
    wait_until(lambda: all(_on(fleet, A_ALL)), what="building A's sounders and strobes on")
    first = _open_fire(d, "A-3F-FB1")
    # building B's outputs were written to rest and stay there: the bank wants them at rest
    # and has every answer back, so no write to them is pending
    wait_until(lambda: all(o["agrees"] for o in d.outputs_view()["outputs"]))
    view = {o["id"]: o for o in d.outputs_view()["outputs"]}
    assert [view[o]["wanted"] for o in B_ALL] == ["rest"] * 3
    assert _on(fleet, B_ALL) == [False] * 3

    # silence: the sounders and the broadcast stop, the strobe stays; the alarm is unchanged
    status, answer = _api(d, "POST", f"/api/alarms/{first['alarm_id']}/silence",
                          {"by": "王工", "note": "已到现场"})
    assert status == 200 and answer["result"] == "done", answer
    wait_until(lambda: not any(_on(fleet, [*A_SOUNDERS, "A-PA"])), what="sounders silenced")
    assert fleet.output_on("A-STB-1F")
    alarm = _open_fire(d, "A-3F-FB1")
    assert alarm["active"] and not alarm["acknowledged"]
    silenced = d.outputs_view()["silenced"]
    assert [(s["alarm_id"], s["by"]) for s in silenced] == [(first["alarm_id"], "王工")]

    # a second fire in the same building sounds again
    fleet.button("A-1F-FB1", "press")
    wait_until(lambda: all(_on(fleet, A_ALL)), what="re-sounded by a new fire")
    second = _open_fire(d, "A-1F-FB1")

    # reset one: the other still demands them; reset both: all to rest; ack closes them
    fleet.button("A-3F-FB1", "reset")
    wait_until(lambda: not _open_fire_or_none(d, "A-3F-FB1"), what="first fire reset")
    assert all(_on(fleet, A_ALL))
    fleet.button("A-1F-FB1", "reset")
    wait_until(lambda: not any(_on(fleet, A_ALL)), what="building A at rest")
    for alarm_id in (first["alarm_id"], second["alarm_id"]):
        status, _ = _api(d, "POST", f"/api/alarms/{alarm_id}/ack", {"by": "王工"})
        assert status == 200
    assert not any(_on(fleet, A_ALL + B_ALL))
    assert d.outputs_view()["silenced"] == []


def _open_fire_or_none(d: Any, sensor: str) -> bool:
    _, got = _api(d, "GET", "/api/alarms")
    return any(a["sensor_id"] == sensor and a["active"] for a in got["alarms"])


def test_silence_needs_an_operator_and_an_alarm_that_sounds(park: Any) -> None:
    d, fleet = park
    fleet.button("B-2F-FB1", "press")
    alarm = _open_fire(d, "B-2F-FB1")
    wait_until(lambda: all(_on(fleet, ["B-SND-1F", "B-STB-1F"])))
    status, answer = _api(d, "POST", f"/api/alarms/{alarm['alarm_id']}/silence",
                          {"by": "somebody"})
    assert status == 403 and answer["result"] == "not_operator"
    assert fleet.output_on("B-SND-1F")
    status, answer = _api(d, "POST", "/api/alarms/01NOSUCHALARM0000000000000/silence",
                          {"by": "王工"})
    assert status == 404
    assert d.alarms.refused.total["not_operator"] >= 1


def _fault(d: Any, output: str) -> dict[str, Any] | None:
    _, got = _api(d, "GET", "/api/alarms")
    return next((a for a in got["alarms"] if a["rule"] == "output_fault"
                 and output in a["message"] and a["active"]), None)


def test_a_stuck_coil_raises_output_fault_and_clears_when_freed(park: Any) -> None:
    d, fleet = park
    fleet.stick_output("A-SND-3F")
    fleet.button("A-2F-FB1", "press")
    wait_until(lambda: fleet.output_on("A-SND-1F"), what="the other sounders on")
    assert not fleet.output_on("A-SND-3F")  # welded open
    wait_until(lambda: _fault(d, "三层声报警器") is not None, what="output_fault raised")
    alarm = _fault(d, "三层声报警器")
    assert alarm is not None and alarm["building"] == "A" and alarm["floor"] == "3F"
    assert alarm["sensor_id"] is None and "输出故障" in alarm["message"]
    view = {o["id"]: o for o in d.outputs_view()["outputs"]}
    assert view["A-SND-3F"]["fault"] and view["A-SND-3F"]["seen"] == "off"
    # a maintainer sees it too: a /healthz warning and the metric
    _, health = http_json(d.api.port, "GET", "/healthz")  # 503 here: the uplink is down
    assert any("output 'A-SND-3F' in fault" in w for w in health["warnings"]), health
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{d.api.port}/metrics", timeout=5).read()
    assert b'parkwatch_output_fault{output="A-SND-3F"} 1.0' in metrics
    assert b'parkwatch_output_on{kind="sounder",output="A-SND-3F"} 1.0' in metrics
    # freed, the relay follows the next periodic check, which writes an output in fault again
    fleet.stick_output("A-SND-3F", False)
    wait_until(lambda: _fault(d, "三层声报警器") is None, what="output_fault cleared",
               timeout=10)
    assert fleet.output_on("A-SND-3F")
    wait_until(lambda: not {o["id"]: o for o in d.outputs_view()["outputs"]}["A-SND-3F"]
               ["fault"])


def test_a_dead_wireless_sounder_is_a_fault_too(park: Any) -> None:
    d, fleet = park
    fleet.stick_output("A-SND-W1")
    fleet.button("A-4F-FB1", "press")
    wait_until(lambda: _fault(d, "四层无线声光报警器") is not None, timeout=10,
               what="output_fault of the wireless sounder")
    assert fleet.output_on("A-SND-1F") and not fleet.output_on("A-SND-W1")


def test_the_stuck_sounder_scenario_raises_and_clears_output_fault(park: Any) -> None:
    """`parkwatch sim --scenario stuck_sounder`: a relay welded open during a fire, freed."""
    from parkwatch.firmware_sim import scenarios

    d, fleet = park
    plan = scenarios.build(d.cfg, "stuck_sounder")
    stuck = next(st.sensor for st in plan.steps if st.action == "stick")
    name = next(o.name or o.id for o in d.cfg.outputs if o.id == stuck)
    notes: list[str] = []
    scenarios.play(plan, fleet, speed=4.0, narrate=notes.append)
    assert any("relay stuck" in n for n in notes) and any("relay freed" in n for n in notes)
    # raised while stuck, cleared once freed: its latest event says so
    wait_until(lambda: any(not a["active"] for a in _faults_of(d, name)), timeout=10,
               what="the output fault cleared")
    (fault,) = _faults_of(d, name)
    assert fault["event"] == "cleared" and fault["rule"] == "output_fault"


def _faults_of(d: Any, name: str) -> list[dict[str, Any]]:
    _, got = _api(d, "GET", "/api/alarms?all=1")
    return [a for a in got["alarms"] if a["rule"] == "output_fault" and name in a["message"]]
