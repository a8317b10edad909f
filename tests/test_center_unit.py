"""The command center's systemd unit: systemd accepts it, it is as hardened as measured, it has
what a center needs, docs/center.md's hardening table matches it, and its command lines work
with the CLI (including `parkwatch center --check`, its ExecStartPre=).

The systemd-analyze tests need Debian's `systemd` package (./dev installs it); they are
skipped, saying so, only where systemd-analyze is missing.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO
from parkwatch.cli import build_parser
from test_systemd_unit import not_set, parse_unit

UNIT = REPO / "systemd" / "parkwatch-center.service"
CENTER_DOC = REPO / "docs" / "center.md"
EXAMPLE_CENTER = REPO / "examples" / "center.yaml"
INSTALLED_BIN = "/opt/parkwatch/.venv/bin/parkwatch"
CONFIG = "/etc/parkwatch/center.yaml"
LOCAL_BIN = Path(sysconfig.get_path("scripts")) / "parkwatch"

# What `systemd-analyze security --offline=true` gave for the unit (systemd 252, Debian 12):
# "Overall exposure level for parkwatch-center.service: 1.1 OK". A change may lower it, never
# raise it.
MAX_EXPOSURE = 1.1

# [Service] keys that say how the service runs rather than what it may do; every other key of
# [Service] is a hardening setting and must be explained in docs/center.md's table.
OPERATIONAL = {"Type", "NotifyAccess", "ExecStartPre", "ExecStart", "Restart", "RestartSec",
               "RestartPreventExitStatus", "TimeoutStartSec", "TimeoutStopSec", "WatchdogSec"}

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package `systemd`; ./dev installs it)")

UNIT_TEXT = UNIT.read_text(encoding="utf-8")
SETTINGS = parse_unit(UNIT_TEXT)


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in SETTINGS if s == section and k == key]


def value(key: str, section: str = "Service") -> str:
    found = values(key, section)
    assert len(found) == 1, f"[{section}] {key}= is set {len(found)} times, expected once"
    return found[0]


def argv(key: str) -> list[str]:
    """The unit's command line of ``key``; no prefix (-, +, !, @) changes how it runs."""
    words = shlex.split(value(key))
    assert words[0] == INSTALLED_BIN, f"{key}= runs {words[0]!r}"
    return words


def hardening_table() -> dict[str, tuple[str, str]]:
    """docs/center.md's hardening table (in "Running under systemd"): `Key=` -> (value, why)."""
    text = CENTER_DOC.read_text(encoding="utf-8")
    parts = text.split("\n## Running under systemd", 1)
    assert len(parts) == 2, "docs/center.md has no '## Running under systemd' section"
    section = parts[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`([A-Za-z]+)=`\s*\|(.*)\|(.*)\|\s*$", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)}= is in the table twice"
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    assert rows, "the hardening table has no rows of the form | `Key=` | value | why |"
    return rows


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    assert LOCAL_BIN.is_file(), f"{LOCAL_BIN} is missing: pip install the project into this venv"
    assert not re.search(r"\s", str(LOCAL_BIN)), f"{LOCAL_BIN} has whitespace; unit paths cannot"
    # verify checks that ExecStart= binaries exist: the venv's binary, every other byte the same
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT_TEXT.replace(INSTALLED_BIN, str(LOCAL_BIN)), encoding="utf-8")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    # unknown keys and bad values are only warnings (exit 0): any line about our unit fails
    ours = [line for line in output.splitlines()
            if "parkwatch" in line or str(tmp_path) in line]
    assert proc.returncode == 0 and not ours, output


@needs_systemd_analyze
def test_systemd_analyze_security_exposure_is_at_most_the_measured_level():
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                           str(UNIT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"Overall exposure level for parkwatch-center\.service: (\d+\.\d+) (\w+)",
                  proc.stdout)
    assert m, proc.stdout[-2000:]
    assert float(m.group(1)) <= MAX_EXPOSURE and m.group(2) in ("SAFE", "OK"), m.group(0)


@needs_systemd_analyze
def test_every_exposure_systemd_analyze_reports_is_explained_in_the_hardening_table():
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--json=short",
                           "--no-pager", str(UNIT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    flagged = [item["name"] for item in json.loads(proc.stdout)
               if item["exposure"] not in (None, "0.0") and float(item["exposure"]) > 0]
    assert flagged, "systemd-analyze reports no exposure at all: lower MAX_EXPOSURE"
    keys = {part.split("=")[0] for name in flagged for part in name.split("/")
            if part and "=" in part}
    assert sorted(keys - set(hardening_table())) == [], f"flagged but not explained: {flagged}"


def test_the_unit_has_the_settings_a_center_needs():
    assert value("Type") == "notify" and value("NotifyAccess") == "main"  # not the receiver
    assert 10 <= int(value("WatchdogSec").removesuffix("s")) <= 120
    assert value("Restart") == "on-failure"
    assert value("RestartPreventExitStatus") == "2"  # parkwatch.center.main.EXIT_CONFIG
    assert values("StartLimitIntervalSec", "Unit") and values("StartLimitBurst", "Unit")
    assert "network-online.target" in value("Wants", "Unit").split()
    assert "network-online.target" in value("After", "Unit").split()
    # the same identity scheme as the gateway daemon's unit
    assert value("DynamicUser") == "yes"
    assert value("User") == value("Group") == "parkwatch-center"
    state = value("StateDirectory")
    assert state == "parkwatch-center"
    assert value("ConfigurationDirectory") == "parkwatch"
    assert value("ProtectSystem") == "strict"
    assert value("NoNewPrivileges") == "yes"
    assert value("PrivateTmp") == "yes"
    assert value("CapabilityBoundingSet") == ""
    families = value("RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"], families
    # no serial ports: every device but the pseudo devices is hidden
    assert value("PrivateDevices") == "yes"
    assert values("DeviceAllow") == []


def test_the_example_config_keeps_database_and_session_key_in_the_state_directory():
    from parkwatch.center.config import load_center_config

    cfg = load_center_config(EXAMPLE_CENTER)
    state = Path("/var/lib") / value("StateDirectory")
    assert cfg.database == f"sqlite:///{state}/center.db"
    assert cfg.http.state_file.parent == state


def test_hardening_table_and_unit_agree_both_ways():
    table = hardening_table()
    hardening = {k for s, k, _ in SETTINGS if s == "Service" and k not in OPERATIONAL}
    assert sorted(hardening - set(table)) == [], "unit settings missing from the table"
    for key, (cell, why) in table.items():
        assert len(why.split()) >= 4, f"{key}=: give a reason, not {why!r}"
        if not_set(cell):
            assert key not in hardening, f"{key}= is in the unit but 'not set' in the table"
            continue
        assert key in hardening, f"{key}= is in the table but not in the unit"
        shown = cell.replace("`", "")
        for v in values(key):
            assert v in shown, f"{key}={v} is in the unit, the table says {cell!r}"
        if values(key) == [""]:
            assert "empty" in shown, f"{key}= is empty in the unit, the table says {cell!r}"


def test_exec_start_arguments_parse_with_the_real_cli():
    args = build_parser().parse_args(argv("ExecStart")[1:])
    assert args.command == "center"
    assert args.func.__name__ == "_center"
    assert args.config == CONFIG
    assert args.log_level == "INFO"
    assert args.check is False


def test_exec_start_pre_checks_the_config_that_exec_start_runs_and_it_exits_0(tmp_path):
    pre, start = argv("ExecStartPre"), argv("ExecStart")
    args = build_parser().parse_args(pre[1:])
    assert args.func.__name__ == "_center" and args.check is True
    assert args.config == build_parser().parse_args(start[1:]).config == CONFIG
    # the same command line on this machine: the repo's parkwatch and the example config
    local = [str(LOCAL_BIN), *[str(EXAMPLE_CENTER) if w == CONFIG else w for w in pre[1:]]]
    proc = subprocess.run(local, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout and "配置有效" in proc.stdout


def test_center_check_exits_2_with_file_line_and_key_path_without_connecting(tmp_path):
    bad = tmp_path / "center.yaml"
    db = tmp_path / "center.db"
    bad.write_text(f"instance: center-1\ndatabase: sqlite:///{db}\n"
                   "broker: {host: 127.0.0.1}\nhttp:\n  port: 70000\n", encoding="utf-8")
    proc = subprocess.run([str(LOCAL_BIN), "center", "--check", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{bad}:5: http.port" in proc.stderr, proc.stderr
    # a valid config is checked without opening its database (the broker is not running)
    bad.write_text(f"instance: center-1\ndatabase: sqlite:///{db}\n"
                   "broker: {host: 127.0.0.1, port: 1}\n"
                   f"http: {{state_file: {tmp_path}/http.secret}}\n", encoding="utf-8")
    proc = subprocess.run([str(LOCAL_BIN), "center", "--check", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not db.exists() and not (tmp_path / "http.secret").exists()
