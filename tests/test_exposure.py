"""`check-config` and the daemon warn, by name, about a broker on which anyone could command the
gateway: acknowledgements taken on an uplink broker parkwatch reaches with no login, fire-button
uplinks on such a broker. Warnings, not problems: exit code 0, the daemon runs."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from conftest import EXAMPLE, REPO, Subscriber, lora_park, wait_until, write_yaml
from parkwatch.alarms.uplink import Topics
from parkwatch.config.exposure import ack_topic, exposure_warnings
from parkwatch.schema import load_config

PY = [sys.executable, "-m", "parkwatch"]
ACK = "parkwatch/v1/xinqiao/commands/ack"


def check(path: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PY, "check-config", str(path)], capture_output=True, text=True,
                          cwd=REPO, timeout=60, encoding="utf-8")


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return data


def with_login(data: dict[str, Any], tmp_path: Path, broker: str = "local") -> dict[str, Any]:
    secret = tmp_path / f"{broker}.pass"
    secret.write_text("s3cret\n", encoding="utf-8")
    data["brokers"][broker].update(username="parkwatch", password_file=str(secret))
    return data


def warning_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [x for x in result.stderr.splitlines() if "WARNING" in x]


def test_the_example_park_as_shipped_is_warned_about_by_name() -> None:
    """The example's local broker has no login: check-config says so twice, naming the broker
    with its line, the ack topic and the fire buttons, and where to read what to do."""
    result = check("examples/park.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("examples/park.yaml: valid")
    assert result.stdout.rstrip().endswith("; 2 WARNING(s)")
    ack, fire = warning_lines(result)
    line = next(i for i, x in enumerate(EXAMPLE.read_text(encoding="utf-8").splitlines(), 1)
                if x.strip() == "local:")
    for warning in (ack, fire):
        assert warning.startswith(f"examples/park.yaml:{line}: brokers.local: WARNING: anyone "
                                  "who can connect to this broker can ")
        assert "no username and no client certificate" in warning
        assert warning.endswith("see docs/securing.md")
    assert "acknowledge alarms" in ack and ACK in ack and "alarms.operators lists 3" in ack
    assert "clear a fire alarm" in fire and "devices/{sensor_id}/up" in fire
    assert "A-1F-FB1, A-2F-FB1, A-2F-FB2, A-3F-FB1, A-4F-FB1 and 4 more" in fire
    assert "B-1F-FB2" not in fire  # a wired button on the RS-485 bus: no broker in the way


def test_a_broker_with_a_login_is_not_warned_about(tmp_path: Path) -> None:
    path = write_yaml(with_login(example(), tmp_path), tmp_path / "park.yaml")
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "WARNING" not in result.stdout


def test_a_client_certificate_is_a_login_too(tmp_path: Path) -> None:
    data = example()
    for name in ("ca.pem", "gw.crt", "gw.key"):
        (tmp_path / name).write_text("-----\n", encoding="utf-8")
    data["brokers"]["local"]["tls"] = {"ca_file": str(tmp_path / "ca.pem"),
                                       "cert_file": str(tmp_path / "gw.crt"),
                                       "key_file": str(tmp_path / "gw.key")}
    assert exposure_warnings(load_config(write_yaml(data, tmp_path / "park.yaml"))) == []
    del data["brokers"]["local"]["tls"]["cert_file"], data["brokers"]["local"]["tls"]["key_file"]
    # TLS alone proves nothing of who the client is
    assert len(exposure_warnings(load_config(write_yaml(data, tmp_path / "park.yaml")))) == 2


def test_without_operators_no_ack_is_obeyed_so_only_the_fire_buttons_are_warned_about(
        tmp_path: Path) -> None:
    data = example()
    data["alarms"]["operators"] = []
    result = check(write_yaml(data, tmp_path / "park.yaml"))
    assert result.returncode == 0, result.stderr
    (only,) = warning_lines(result)
    assert "clear a fire alarm" in only


def test_with_signed_commands_required_an_anonymous_client_cannot_acknowledge(
        tmp_path: Path) -> None:
    """Only an operator's key can acknowledge then: the ack warning goes, the fire buttons'
    stays (a device's reset is not a signed command)."""
    data = example()
    key = "Iu1AxMfTBERjIlEhyX5AXQhUSMvLSjcdwkHM0YLHA40="
    data["alarms"]["operators"] = [{"id": "王工", "public_key": key}]
    data["alarms"]["require_signed_commands"] = True
    result = check(write_yaml(data, tmp_path / "park.yaml"))
    assert result.returncode == 0, result.stderr
    (only,) = warning_lines(result)
    assert "clear a fire alarm" in only


def test_each_warning_names_its_own_broker(tmp_path: Path) -> None:
    """Acks on a command-center uplink with a login, devices on the anonymous local broker:
    only the fire buttons are warned about; the other way round, only the acks."""
    data = example()
    data["brokers"]["command_center"] = {"host": "cc.example", "port": 8883}
    data["uplink"]["broker"] = "command_center"
    with_login(data, tmp_path, "command_center")
    cfg = load_config(write_yaml(data, tmp_path / "park.yaml"))
    assert [(loc, msg.split(":")[0]) for loc, msg in exposure_warnings(cfg)] == [
        (("brokers", "local"), "anyone who can connect to this broker can clear a fire alarm")]

    data = with_login(example(), tmp_path)
    data["brokers"]["command_center"] = {"host": "cc.example", "port": 8883}
    data["uplink"]["broker"] = "command_center"
    cfg = load_config(write_yaml(data, tmp_path / "park.yaml"))
    ((loc, msg),) = exposure_warnings(cfg)
    assert loc == ("brokers", "command_center") and "acknowledge alarms" in msg


def test_the_ack_topic_named_is_the_one_the_gateway_subscribes_to(tmp_path: Path) -> None:
    data = example()
    data["uplink"]["topic_prefix"] = "acme/parkwatch"
    cfg = load_config(write_yaml(data, tmp_path / "park.yaml"))
    assert ack_topic(cfg) == Topics(cfg).ack == "acme/parkwatch/xinqiao/commands/ack"
    assert Topics(cfg).ack in exposure_warnings(cfg)[0][1]


def test_the_daemon_logs_the_same_warnings_once_at_start(broker, tmp_path: Path) -> None:
    sub = Subscriber(broker)
    cfg = write_yaml(lora_park(tmp_path, broker.port), tmp_path / "park.yaml")
    proc = subprocess.Popen([*PY, "run", "--config", str(cfg)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=REPO, encoding="utf-8")
    try:
        # online: past the start, where the warnings are logged
        wait_until(lambda: any(t.endswith("/gateway") and b'"online"' in p
                               for t, p, _ in list(sub.messages)), 20, "the daemon online")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
    logged = [x for x in err.splitlines() if "anyone who can connect to this broker" in x]
    assert len(logged) == 2, err
    assert all("WARNING" in x and "brokers.local: anyone" in x for x in logged), logged
    assert ACK in logged[0] and "clear a fire alarm" in logged[1]
