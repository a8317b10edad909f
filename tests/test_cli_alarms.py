"""`parkwatch alarms`, `parkwatch ack` and `parkwatch reset` against a running daemon, as an
operator on the gateway would use them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLE, REPO, wait_until
from parkwatch.cli import main


def write_config(path: Path, api_port: int | None, state_dir: Path, **edits: Any) -> Path:
    """examples/park.yaml with the API on `api_port` (None: no `api:` section) and state in
    `state_dir`; `edits` replace whole top-level sections."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["gateway"]["state_dir"] = str(state_dir)
    if api_port is None:
        del data["api"]
    else:
        data["api"]["port"] = api_port
    data.update(edits)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def cfg(daemon: Any, tmp_path: Path) -> Path:
    """A config the CLI reads to find the running test daemon (its port and its state dir)."""
    return write_config(tmp_path / "cli.yaml", daemon.api.port, daemon.state_dir)


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def raise_alarm(subscriber: Any, device: Any, sensor: str, payload: dict[str, Any]) -> str:
    device.send(sensor, payload)
    events = subscriber.wait_events(
        lambda ev: any(e["sensor_id"] == sensor and e["event"] == "raised" for e in ev))
    return next(e["alarm_id"] for e in events if e["sensor_id"] == sensor)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_alarms_lists_open_alarms_most_severe_then_oldest_first(daemon, subscriber, device, cfg,
                                                                 capsys):
    load = raise_alarm(subscriber, device, "A-2F-LC1", {"value": 8_500})  # warning, oldest
    fire = raise_alarm(subscriber, device, "A-3F-FB1", {"event": "press"})  # critical
    water = raise_alarm(subscriber, device, "A-1F-WL1", {"value": 31})  # warning, newest
    code, out, err = run(capsys, "alarms", "--config", str(cfg))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SEVERITY", "AGE", "PLACE"]
    assert len(lines) == 5
    fire_line, load_line, water_line = lines[1:4]
    assert fire in fire_line and load in load_line and water in water_line
    for text in ("critical", "A/3F", "button_latch", "A-3F-FB1", "active, unacked"):
        assert text in fire_line
    for text in ("warning", "A/2F/east", "A-2F-LC1", "active, unacked"):
        assert text in load_line
    assert "drill" not in fire_line and "drill" not in load_line
    assert lines[-1] == "3 open alarm(s) (1 critical, 2 warning), 3 unacknowledged"

    code, out, _ = run(capsys, "alarms", "--config", str(cfg), "--json")
    assert code == 0
    assert {a["alarm_id"]: a["severity"] for a in json.loads(out)["alarms"]} == {
        fire: "critical", load: "warning", water: "warning"}


def test_ack_by_a_stranger_is_refused_then_an_operator_acks(daemon, subscriber, device, cfg,
                                                            capsys):
    fire = raise_alarm(subscriber, device, "A-3F-FB1", {"event": "press"})
    code, out, err = run(capsys, "ack", fire, "--by", "bob", "--config", str(cfg))
    assert code == 1 and out == ""
    assert "refused: 'bob' is not a configured operator (alarms.operators)" in err
    assert "active, unacked" in run(capsys, "alarms", "-c", str(cfg))[1]

    code, out, err = run(capsys, "ack", fire, "--by", "王工", "--note", "已到现场",
                         "--config", str(cfg))
    assert (code, err) == (0, "")
    assert out.startswith(f"acknowledged {fire} (critical button_latch alarm of A-3F-FB1)")
    events = subscriber.wait_events(
        lambda ev: any(e["event"] == "acknowledged" for e in ev))
    assert [e["acked_by"] for e in events if e["event"] == "acknowledged"] == ["王工"]
    assert "active, acked by 王工" in run(capsys, "alarms", "-c", str(cfg))[1]

    code, out, _ = run(capsys, "ack", fire, "--by", "张三", "--config", str(cfg))
    assert code == 0 and "already acknowledged by 王工" in out


def test_reset_clears_a_fire_alarm_and_closes_it_once_acknowledged(daemon, subscriber, device,
                                                                   cfg, capsys):
    fire = raise_alarm(subscriber, device, "A-3F-FB1", {"event": "press"})
    code, out, err = run(capsys, "reset", fire, "--by", "张三", "-c", str(cfg))
    assert (code, err) == (0, "")
    assert "cleared; it stays open until it is acknowledged" in out
    assert "cleared, unacked" in run(capsys, "alarms", "-c", str(cfg))[1]

    code, out, _ = run(capsys, "ack", fire, "--by", "王工", "-c", str(cfg))
    assert code == 0 and "it had cleared, so it is closed" in out
    assert run(capsys, "alarms", "-c", str(cfg))[1] == "no open alarms\n"
    code, out, _ = run(capsys, "alarms", "--all", "-c", str(cfg))
    assert code == 0 and fire in out and "closed" in out and "0 open alarm(s); 1 closed" in out
    # acknowledging or resetting again: nothing to do, and no failure for a script
    assert run(capsys, "ack", fire, "--by", "王工", "-c", str(cfg))[:2] == (
        0, f"{fire} is closed already (acknowledged by 王工): nothing to do\n")
    assert run(capsys, "reset", fire, "--by", "王工", "-c", str(cfg))[0] == 0


def test_refusals_exit_1_with_plain_messages(daemon, subscriber, device, cfg, capsys, tmp_path):
    load = raise_alarm(subscriber, device, "A-2F-LC1", {"value": 10_250})
    code, _, err = run(capsys, "reset", load, "--by", "王工", "-c", str(cfg))
    assert code == 1 and "only fire alarms are reset" in err and "A-2F-LC1" in err

    code, _, err = run(capsys, "ack", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--by", "王工", "-c", str(cfg))
    assert code == 1 and "there is no alarm 01ARZ3NDEKTSV4RRFFQ69G5FAV" in err
    code, _, err = run(capsys, "ack", "../status", "--by", "王工", "-c", str(cfg))
    assert code == 1 and "there is no alarm ../status" in err

    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-daemons-token\n", encoding="utf-8")
    for argv in (["alarms"], ["ack", load, "--by", "王工"]):
        code, out, err = run(capsys, *argv, "-c", str(cfg), "--token-file", str(wrong))
        assert code == 1 and out == ""
        assert "refused: the daemon did not accept the API token" in err
    assert "active, unacked" in run(capsys, "alarms", "-c", str(cfg))[1]


def test_unreachable_daemon_exits_1_with_a_clear_message(tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    (state / "api.token").write_text("a-token-of-a-daemon-that-is-gone\n", encoding="utf-8")
    port = free_port()
    cfg = write_config(tmp_path / "park.yaml", port, state)
    for argv in (["alarms"], ["ack", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--by", "王工"]):
        code, out, err = run(capsys, *argv, "--config", str(cfg))
        assert code == 1 and out == ""
        assert err == (f"parkwatch {argv[0]}: cannot reach the parkwatch API at "
                       f"http://127.0.0.1:{port}: connection refused — is the daemon running?\n")


def test_no_token_file_exits_1_and_says_where_it_looked(tmp_path, capsys):
    cfg = write_config(tmp_path / "park.yaml", free_port(), tmp_path / "never-started")
    code, _, err = run(capsys, "alarms", "-c", str(cfg))
    assert code == 1
    assert f"no API token at {tmp_path / 'never-started' / 'api.token'}" in err
    # --state-dir is where it looks instead
    code, _, err = run(capsys, "alarms", "-c", str(cfg), "--state-dir", str(tmp_path / "x"))
    assert code == 1 and f"no API token at {tmp_path / 'x' / 'api.token'}" in err


def test_config_errors_exit_2_like_check_config(tmp_path, capsys):
    off = write_config(tmp_path / "off.yaml", None, tmp_path / "state")
    code, out, err = run(capsys, "alarms", "-c", str(off))
    assert code == 2 and out == ""
    assert "the local API is off: add `api:` to the config" in err

    bad = write_config(tmp_path / "bad.yaml", 8086, tmp_path / "state",
                       park={"id": "xinqiao", "name": "x", "colour": "red"})
    code, _, check_err = run(capsys, "check-config", str(bad))
    assert code == 2 and "colour" in check_err
    for argv in (["alarms"], ["ack", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--by", "王工"],
                 ["reset", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--by", "王工"]):
        assert run(capsys, *argv, "--config", str(bad)) == (2, "", check_err)

    missing = tmp_path / "missing.yaml"
    code, _, err = run(capsys, "alarms", "-c", str(missing))
    assert code == 2 and f"{missing}: file not found" in err


def test_installed_command_lists_alarms(daemon, subscriber, device, cfg):
    fire = raise_alarm(subscriber, device, "B-1F-FB1", {"event": "press"})
    proc = subprocess.run([sys.executable, "-m", "parkwatch", "alarms", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert fire in proc.stdout and "B/1F" in proc.stdout and "critical" in proc.stdout


def test_url_and_token_file_need_no_config(daemon, subscriber, device, capsys):
    fire = raise_alarm(subscriber, device, "A-4F-FB1", {"event": "press"})
    overrides = ["--url", f"http://127.0.0.1:{daemon.api.port}/",
                 "--token-file", str(daemon.state_dir / "api.token"),
                 "--config", "/nonexistent/park.yaml"]
    code, out, err = run(capsys, "alarms", *overrides)
    assert (code, err) == (0, "") and fire in out
    code, out, err = run(capsys, "ack", fire, "--by", "district-duty", *overrides)
    assert (code, err) == (0, "") and out.startswith(f"acknowledged {fire}")



# --- parkwatch status ---------------------------------------------------------------------


def healthy(daemon: Any) -> None:
    """A fresh daemon is healthy once its serial and Modbus drivers have opened their ports."""
    wait_until(lambda: daemon.metrics.health()["status"] == "ok", what="a healthy daemon")


def test_status_summarises_a_healthy_daemon_and_exits_0(daemon, subscriber, device, cfg,
                                                        capsys):
    raise_alarm(subscriber, device, "A-3F-FB1", {"event": "press"})
    healthy(daemon)
    code, out, err = run(capsys, "status", "--config", str(cfg))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"parkwatch daemon at http://127.0.0.1:{daemon.api.port}: ok"
    assert lines[1].startswith("gateway xinqiao-gw1, park xinqiao, parkwatch ")
    assert lines[1].endswith(f", {len(daemon.park)} sensors")
    by_head = {line.split(":")[0]: line for line in lines[2:]}
    for driver in ("lora connected (mqtt", "rs485-b connected (modbus_rtu",
                   "scale-a3 connected (serial_indicator"):
        assert driver in by_head["drivers"]
    assert by_head["uplink"] == "uplink: broker 'local' connected"
    assert by_head["alarms"] == ("alarms: 1 open (1 active unacknowledged, 0 active "
                                 "acknowledged, 0 cleared unacknowledged)")
    assert "uplink " in by_head["deliveries"] and " pending" in by_head["deliveries"]
    assert by_head["pipeline"].startswith("pipeline: ")
    assert by_head["readings"].endswith("; 0 refused commands")

    code, out, _ = run(capsys, "status", "-c", str(cfg), "--json")
    body = json.loads(out)
    assert code == 0 and body["health"]["status"] == "ok"
    assert body["status"]["open_alarms"] == 1 and body["status"]["gateway"] == "xinqiao-gw1"


def test_status_of_an_unhealthy_daemon_exits_1_with_the_reasons(daemon, broker, cfg, capsys):
    healthy(daemon)
    broker.stop()
    try:
        wait_until(lambda: daemon.metrics.health()["status"] != "ok", what="the broker gone")
        code, out, _ = run(capsys, "status", "-c", str(cfg))
        assert code == 1
        lines = out.splitlines()
        assert lines[0] == f"parkwatch daemon at http://127.0.0.1:{daemon.api.port}: UNHEALTHY"
        assert "  reason: uplink broker 'local' disconnected" in lines
        assert "uplink: broker 'local' DISCONNECTED" in lines
        assert "lora NOT CONNECTED" in out
    finally:
        broker.start()  # the same port: the links reconnect by themselves
    wait_until(lambda: daemon.metrics.health()["status"] == "ok", timeout=10.0)


def test_status_needs_no_token_for_the_health_check(daemon, tmp_path, capsys):
    healthy(daemon)
    cfg = write_config(tmp_path / "no-token.yaml", daemon.api.port, tmp_path / "elsewhere")
    code, out, err = run(capsys, "status", "-c", str(cfg))
    assert code == 0
    assert out.splitlines()[0].endswith(": ok") and "uplink: broker 'local' connected" in out
    assert "alarms:" not in out
    assert err == ("parkwatch status: details (alarms, deliveries) unavailable: no API token at "
                   f"{tmp_path / 'elsewhere' / 'api.token'}: the daemon creates it on its first "
                   "start; has it run with this state directory (gateway.state_dir or "
                   "--state-dir)?\n")


def test_status_unreachable_exits_1_and_unusable_config_exits_2(tmp_path, capsys):
    port = free_port()
    cfg = write_config(tmp_path / "park.yaml", port, tmp_path / "never-started")
    code, out, err = run(capsys, "status", "-c", str(cfg))
    assert (code, out) == (1, "")
    assert err == (f"parkwatch status: cannot reach the parkwatch API at http://127.0.0.1:{port}:"
                   " connection refused — is the daemon running?\n")
    off = write_config(tmp_path / "off.yaml", None, tmp_path / "state")
    code, out, err = run(capsys, "status", "-c", str(off))
    assert (code, out) == (2, "") and "the local API is off" in err


def test_check_config_takes_the_file_as_the_other_commands_do(tmp_path, capsys):
    bad = write_config(tmp_path / "bad.yaml", 8086, tmp_path / "state",
                       park={"id": "xinqiao", "name": "x", "colour": "red"})
    code, _, err = run(capsys, "check-config", str(bad))
    assert code == 2 and "colour" in err
    assert run(capsys, "check-config", "--config", str(bad)) == (2, "", err)
    assert run(capsys, "check-config", "-c", str(bad)) == (2, "", err)
    code, _, err = run(capsys, "check-config", str(bad), "--config", str(tmp_path / "b.yaml"))
    assert code == 2 and "two configs given" in err


def test_a_missing_default_config_says_what_to_give(tmp_path, capsys, monkeypatch):
    """Without --config the commands read the default path; when nothing is there they say
    how to point them at a config (watch: or at a broker), not just "file not found"."""
    import parkwatch.cli.configpath
    import parkwatch.console.settings

    default = str(tmp_path / "etc" / "park.yaml")
    monkeypatch.setattr(parkwatch.cli.configpath, "DEFAULT_CONFIG", default)
    monkeypatch.setattr(parkwatch.console.settings, "DEFAULT_CONFIG", default)
    for argv in (["check-config"], ["alarms"], ["status"]):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert f"no park config at the default {default}: give one with --config FILE" in err
    code, _, err = run(capsys, "watch")
    assert code == 2 and "--config FILE, or the command center's broker with --host HOST" in err
    # a path given explicitly is the engineer's own: check it
    code, _, err = run(capsys, "alarms", "--config", str(tmp_path / "typo.yaml"))
    assert code == 2 and f"{tmp_path / 'typo.yaml'}: no such file; check the path" in err
