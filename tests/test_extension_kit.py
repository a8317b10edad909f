"""A rule kind and a driver parkwatch does not ship, each added by one module (one folder) and
one registry line in an extension package (tests/extension_kit), run end to end: the park
config knows their keys, check-config reports their mistakes with file and line, and a daemon
started with PARKWATCH_EXTENSIONS reads the driver's datagrams and raises the kind's alarms in
the contract, with the kind's own Chinese message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import REPO, Subscriber, lora_park, wait_until, write_yaml

TESTS = Path(__file__).resolve().parent
PY = [sys.executable, "-m", "parkwatch"]


def kit_env(on: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    if on:
        env["PARKWATCH_EXTENSIONS"] = "extension_kit.registry"
    else:
        env.pop("PARKWATCH_EXTENSIONS", None)
    return env


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def kit_park(tmp_path: Path, broker_port: int, udp_port: int, **step: Any) -> dict[str, Any]:
    """The example park's LoRa part plus one load cell on a udp_json driver, and rules.step."""
    data = lora_park(tmp_path, broker_port)
    data["gateway"]["status_interval_s"] = 1
    cell = next(s for s in data["sensors"] if s["kind"] == "load_cell")
    data["drivers"].append({"id": "udp", "type": "udp_json", "port": udp_port})
    data["sensors"].append({"id": "udp-cell", "name": "UDP 称重", "kind": "load_cell",
                            "building": cell["building"], "floor": cell["floor"],
                            "driver": "udp"})
    data.setdefault("rules", {})["step"] = {"max_step": 1000, **step}
    return data


def check_config(path: Path, on: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PY, "check-config", "--config", str(path)], capture_output=True,
                          text=True, env=kit_env(on), cwd=REPO, timeout=60)


def test_check_config_knows_the_kits_settings_and_driver_only_when_it_is_loaded(tmp_path):
    path = write_yaml(kit_park(tmp_path, 1883, 9999), tmp_path / "park.yaml")
    ok = check_config(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    without = check_config(path, on=False)
    assert without.returncode == 2
    assert "unknown type 'udp_json'" in without.stdout + without.stderr
    assert "rules.step: unknown key 'step'" in without.stdout + without.stderr


def test_check_config_reports_the_kits_mistakes_with_file_and_line(tmp_path):
    data = kit_park(tmp_path, 1883, 9999, max_step=-5)
    data["drivers"][-1]["port"] = "udp"
    path = write_yaml(data, tmp_path / "park.yaml")
    out = check_config(path)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    lines = path.read_text(encoding="utf-8").splitlines()
    step_line = next(i for i, line in enumerate(lines, 1) if "max_step: -5" in line)
    assert f"{path}:{step_line}: rules.step.max_step: must be greater than 0" in text, text
    assert ".port: must be a valid integer" in text, text


def test_a_daemon_with_the_kit_reads_its_driver_and_raises_its_rules_alarms(broker, tmp_path):
    udp_port = free_udp_port()
    path = write_yaml(kit_park(tmp_path, broker.port, udp_port), tmp_path / "park.yaml")
    sub = Subscriber(broker)
    proc = subprocess.Popen([*PY, "run", "--config", str(path)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=REPO, env=kit_env())
    try:
        def udp_up() -> bool:
            for topic, payload, _ in list(sub.messages):
                if topic.endswith("/gateway") and payload:
                    drivers = json.loads(payload)["drivers"]
                    if drivers.get("udp", {}).get("type") == "udp_json":
                        return True
            return False

        wait_until(udp_up, 20, "the udp_json driver in the gateway status")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for value in (100, 2100):
                s.sendto(json.dumps({"sensor": "udp-cell", "value": value}).encode(),
                         ("127.0.0.1", udp_port))
            events = sub.wait_events(lambda evs: any(
                e["rule"] == "step" and e["event"] == "raised" for e in evs), 20)
            raised = next(e for e in events if e["rule"] == "step")
            assert raised["sensor_id"] == "udp-cell"
            assert raised["value"] == 2000 and raised["threshold"] == 1000
            assert raised["unit"] == "kg" and raised["severity"] == "warning"
            assert raised["message"].startswith("【数值突变】"), raised["message"]
            assert "2000 kg" in raised["message"] and "1000 kg" in raised["message"]
            s.sendto(json.dumps({"sensor": "udp-cell", "value": 2150}).encode(),
                     ("127.0.0.1", udp_port))
            s.sendto(b"not json", ("127.0.0.1", udp_port))
        events = sub.wait_events(lambda evs: any(
            e["rule"] == "step" and e["event"] == "cleared" for e in evs), 20)
        cleared = next(e for e in events if e["rule"] == "step" and e["event"] == "cleared")
        assert cleared["message"].startswith("【突变恢复】"), cleared["message"]

        def rejected() -> bool:  # the datagram that was not JSON: counted in the status
            for topic, payload, _ in list(sub.messages):
                if topic.endswith("/gateway") and payload:
                    udp = json.loads(payload)["drivers"].get("udp", {})
                    if udp.get("rejected") == {"bad_datagram": 1}:
                        return True
            return False

        wait_until(rejected, 20, "the rejected datagram in the gateway status")
    finally:
        proc.terminate()
        proc.wait(10)
        sub.close()


def test_an_extension_that_cannot_be_loaded_is_a_clear_error_not_a_traceback(tmp_path):
    path = write_yaml(kit_park(tmp_path, 1883, 9999), tmp_path / "park.yaml")
    env = {**kit_env(), "PARKWATCH_EXTENSIONS": "extension_kit.registry,no_such_kit.registry"}
    out = subprocess.run([*PY, "check-config", "--config", str(path)], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == ("parkwatch: PARKWATCH_EXTENSIONS: cannot import extension "
                                  "registry 'no_such_kit.registry': No module named "
                                  "'no_such_kit'"), out.stderr
    twice = {**kit_env(), "PARKWATCH_EXTENSIONS": "extension_kit.registry,extension_kit.registry"}
    out = subprocess.run([*PY, "check-config", "--config", str(path)], capture_output=True,
                         text=True, env=twice, cwd=REPO, timeout=60)
    assert out.returncode == 2 and "already registered" in out.stderr
    assert "Traceback" not in out.stderr, out.stderr
