"""Park config validation: every broken config is refused with the exact `file:line: path: msg`.

Each file in tests/configs/broken/ holds one field-engineer mistake and, at the top,

    # expect: <a full line that check-config prints for it>
    # xfail: <reason>          (optional: a known defect of the config code, see the reason)

The printed file name is the path given on the command line, so every path here is relative to
the repository root and the tests run from there.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from parkwatch.cli import main as cli_main
from parkwatch.config import ConfigError
from parkwatch.config.brokers import BrokerConfig
from parkwatch.config.compact import compact_context
from parkwatch.config.model import ThresholdSettings
from parkwatch.schema import ParkConfig, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
BROKEN_DIR = REPO_ROOT / "tests" / "configs" / "broken"
EXAMPLE = "examples/park.yaml"
UNSET_ENV = "PARKWATCH_TEST_SURELY_UNSET"  # named by password_env_unset.yaml
SUBPROCESS_TIMEOUT_S = 60


@dataclass(frozen=True)
class BrokenCase:
    path: str  # relative to the repository root, as check-config prints it
    expects: tuple[str, ...]
    xfail: str | None


def _read_case(file: Path) -> BrokenCase:
    expects: list[str] = []
    xfail = None
    for line in file.read_text(encoding="utf-8").splitlines():
        if line.startswith("# expect:"):
            expects.append(line.removeprefix("# expect:").strip())
        elif line.startswith("# xfail:"):
            xfail = line.removeprefix("# xfail:").strip()
    return BrokenCase(file.relative_to(REPO_ROOT).as_posix(), tuple(expects), xfail)


BROKEN_CASES = [_read_case(f) for f in sorted(BROKEN_DIR.glob("*.yaml"))]


def _params(cases: list[BrokenCase]) -> list[object]:
    return [
        pytest.param(
            case,
            id=Path(case.path).stem,
            marks=[pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else [],
        )
        for case in cases
    ]


def _case(stem: str) -> BrokenCase:
    return next(c for c in BROKEN_CASES if Path(c.path).stem == stem)


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != UNSET_ENV}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _parkwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parkwatch", *args],
        cwd=REPO_ROOT,
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def _missing(expects: tuple[str, ...], printed: list[str]) -> list[str]:
    return [e for e in expects if e not in printed]


@pytest.fixture
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv(UNSET_ENV, raising=False)
    return REPO_ROOT


# --- the broken-config corpus --------------------------------------------------------------


def test_there_are_enough_broken_configs() -> None:
    assert len(BROKEN_CASES) >= 15, [c.path for c in BROKEN_CASES]


@pytest.mark.parametrize("case", BROKEN_CASES, ids=lambda c: Path(c.path).stem)
def test_broken_config_declares_its_expectations(case: BrokenCase) -> None:
    assert case.expects, f"{case.path} has no '# expect:' line"
    for expect in case.expects:
        assert expect.startswith(f"{case.path}:"), f"{case.path}: expect names another file"


@pytest.mark.parametrize("case", _params(BROKEN_CASES))
def test_broken_config_is_reported(case: BrokenCase, at_repo_root: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(case.path)
    printed = [str(p) for p in excinfo.value.problems]
    assert not _missing(case.expects, printed), "\n".join(["printed:", *printed])


@pytest.mark.parametrize("case", _params(BROKEN_CASES))
def test_daemon_refuses_to_start_on_broken_config(case: BrokenCase, tmp_path: Path) -> None:
    """`parkwatch run` loads the config first: exit 2 and the same lines as check-config."""
    result = _parkwatch("run", "--config", case.path, "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2, result.stderr
    assert not _missing(case.expects, result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize(
    "case",
    _params([_case("negative_area"), _case("unknown_top_level_key"),
             _case("invalid_yaml_syntax"), _case("password_env_unset")]),
)
def test_check_config_command_exits_2(case: BrokenCase) -> None:
    result = _parkwatch("check-config", case.path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert not _missing(case.expects, lines), result.stderr
    assert lines[-1].startswith(f"{case.path}: ") and lines[-1].endswith("; not valid")
    assert result.stdout == ""


# --- the shipped example ---------------------------------------------------------------------


def test_example_passes_check_config() -> None:
    result = _parkwatch("check-config", EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{EXAMPLE}: valid")


def test_example_loads(at_repo_root: Path) -> None:
    cfg = load_config(EXAMPLE)
    assert len(cfg.buildings) == 2
    assert len(cfg.tenants) >= 4
    assert {s.kind for s in cfg.sensors} == {"load_cell", "fire_button", "water_level"}


# --- focused unit tests ----------------------------------------------------------------------

MINIMAL_PARK = textwrap.dedent("""\
    park: {id: testpark, name: Test Park}
    gateway: {id: test-gw1}
    brokers:
      local: {host: 127.0.0.1, port: 1883}
    uplink: {broker: local}
    landlord: {id: landlord, name: Landlord Co}
    buildings:
      - id: A
        floors:
          - {id: 1F, rated_load_kn_m2: 10.0, area_m2: 1000}
          - {id: 2F, rated_load_kn_m2: 4.0, area_m2: 1000}
    tenants:
      - {id: acme, name: Acme Hardware, occupies: [{building: A, floor: 1F}]}
    drivers:
      - {id: lora, type: mqtt, broker: local}
    rules:
      load_cell: {high_warning: 8000, high_critical: 10000, deadband: 200}
      water_level: {high_warning: 30, high_critical: 50, deadband: 3}
    sensors:
      - {id: FB1, kind: fire_button, building: A, floor: 1F, driver: lora}
      - {id: LC1, kind: load_cell, building: A, floor: 2F, driver: lora}
      - {id: LC2, kind: load_cell, building: A, floor: 2F, driver: lora,
         thresholds: {high_warning: 6500, high_critical: null}}
      - {id: WL1, kind: water_level, building: A, floor: 1F, driver: lora,
         thresholds: {deadband: 1}}
    """)


def _write(tmp_path: Path, text: str, name: str = "park.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_park_is_valid(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL_PARK))
    assert [s.id for s in cfg.sensors] == ["FB1", "LC1", "LC2", "WL1"]


def test_threshold_override_merges_with_kind_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL_PARK))
    by_id = {s.id: s for s in cfg.sensors}

    assert cfg.thresholds_for(by_id["FB1"]) is None  # buttons latch; no limits
    # no override: the defaults
    assert cfg.thresholds_for(by_id["LC1"]) == cfg.rules.load_cell.merged(None)
    assert cfg.thresholds_for(by_id["LC1"]).high_warning == cfg.rules.load_cell.high_warning

    lc2 = cfg.thresholds_for(by_id["LC2"])
    assert lc2 is not None
    assert lc2.high_warning == 6500  # overridden
    assert lc2.high_critical is None  # explicit null disables the default 10000
    assert lc2.deadband == 200  # not mentioned: kept from rules.load_cell

    wl1 = cfg.thresholds_for(by_id["WL1"])
    assert wl1 == ThresholdSettings(high_warning=30, high_critical=50, deadband=1)


def test_threshold_merge_keeps_only_explicitly_set_keys() -> None:
    defaults = ThresholdSettings(high_warning=8000, high_critical=10000, low_warning=10)
    assert defaults.merged(None) == defaults
    assert defaults.merged(ThresholdSettings()) == defaults  # nothing set explicitly
    merged = defaults.merged(ThresholdSettings(low_warning=None, deadband=5))
    assert merged == ThresholdSettings(high_warning=8000, high_critical=10000, deadband=5)



def test_sensors_given_the_same_keys_share_one_record_of_them(tmp_path: Path) -> None:
    """Memory: a large park's sensors share pydantic's set of given keys, and overrides
    still merge by what each sensor gave (copies with changes get a set of their own)."""
    cfg = load_config(_write(tmp_path, MINIMAL_PARK))
    by_id = {s.id: s for s in cfg.sensors}
    assert by_id["LC1"].model_fields_set is by_id["FB1"].model_fields_set
    assert by_id["LC2"].model_fields_set == by_id["LC1"].model_fields_set | {"thresholds"}
    changed = by_id["LC1"].model_copy(update={"name": "东区 1"})
    assert "name" in changed.model_fields_set
    assert "name" not in by_id["FB1"].model_fields_set
    assert cfg.thresholds_for(by_id["LC2"]).high_critical is None
    assert cfg.thresholds_for(by_id["LC1"]).high_critical == 10000


def _large_park(tmp_path: Path, n: int) -> tuple[Path, dict]:
    data = yaml.safe_load(MINIMAL_PARK)
    data["sensors"] += [
        {"id": f"LC-{k}", "kind": "load_cell", "building": "A", "floor": "2F", "driver": "lora",
         **({"thresholds": {"high_warning": 5000 + k}} if k % 7 == 0 else {}),
         **({"name": f"东区 {k}"} if k % 3 == 0 else {})}
        for k in range(n)]
    return _write(tmp_path, yaml.safe_dump(data, allow_unicode=True)), data


def test_the_loaded_config_is_an_equal_compact_copy_of_the_validated_one(tmp_path: Path) -> None:
    path, data = _large_park(tmp_path, 300)
    cfg = load_config(path)
    plain = ParkConfig.model_validate(data)  # pydantic's own models, not rebuilt
    assert cfg == plain
    assert cfg.model_dump() == plain.model_dump()
    for mine, theirs in zip(cfg.sensors, plain.sensors, strict=True):
        assert type(mine) is type(theirs)
        assert mine == theirs and hash(mine) == hash(theirs)
        assert mine.model_fields_set == theirs.model_fields_set
        assert cfg.thresholds_for(mine) == plain.thresholds_for(theirs)
    s = cfg.sensors[-3]  # LC-297, which has a name
    with pytest.raises(ValidationError, match="frozen"):
        s.name = "changed"  # still frozen
    assert s.model_copy(update={"name": "x"}).name == "x"
    assert s.name == "东区 297"


@pytest.mark.skipif(sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11),
                    reason="the compact layout is CPython 3.11's (other versions lay out "
                    "objects otherwise)")
def test_a_large_park_keeps_its_sensors_in_under_half_the_memory(tmp_path: Path) -> None:
    """Memory: 10,000 sensors are held for the daemon's whole life (see config/compact.py)."""
    _, data = _large_park(tmp_path, 2000)

    def held(make: Callable[[], object]) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            kept = make()
            gc.collect()
            size = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        del kept
        return size / len(data["sensors"])

    as_validated = held(lambda: ParkConfig.model_validate(data).sensors)
    as_loaded = held(lambda: ParkConfig.model_validate(data, context=compact_context()).sensors)
    assert as_loaded < as_validated / 2, (as_loaded, as_validated)  # 272 against 1,454 bytes

def test_password_from_file(tmp_path: Path) -> None:
    secret = _write(tmp_path, "s3cret  \nsecond line is ignored\n", "mqtt.pass")
    broker = BrokerConfig(host="broker", username="gw1", password_file=secret)
    assert broker.password() == "s3cret"
    assert broker.secret_problems() == []


def test_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = BrokerConfig(host="broker", username="gw1", password_env="PARKWATCH_TEST_MQTT_PW")
    monkeypatch.setenv("PARKWATCH_TEST_MQTT_PW", "hunter2")
    assert broker.password() == "hunter2"
    assert broker.secret_problems() == []
    monkeypatch.delenv("PARKWATCH_TEST_MQTT_PW")
    with pytest.raises(KeyError):
        broker.password()
    assert broker.secret_problems() == [
        ("password_env", "environment variable PARKWATCH_TEST_MQTT_PW is not set")
    ]


def test_no_password_configured() -> None:
    assert BrokerConfig(host="broker").password() is None


def test_secrets_resolve_through_load_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = _write(tmp_path, "from-file\n", "mqtt.pass")
    text = MINIMAL_PARK.replace(
        "  local: {host: 127.0.0.1, port: 1883}\n",
        f"  local: {{host: 127.0.0.1, port: 1883, username: gw1, password_file: '{secret}'}}\n"
        "  cc: {host: cc.example, port: 8883, username: gw1, password_env: PARKWATCH_TEST_CC_PW}\n",
    )
    config = _write(tmp_path, text)

    monkeypatch.setenv("PARKWATCH_TEST_CC_PW", "from-env")
    cfg = load_config(config)
    assert cfg.brokers["local"].password() == "from-file"
    assert cfg.brokers["cc"].password() == "from-env"

    monkeypatch.delenv("PARKWATCH_TEST_CC_PW")
    secret.unlink()
    with pytest.raises(ConfigError) as excinfo:
        load_config(config)
    printed = [str(p) for p in excinfo.value.problems]
    assert printed == [
        f"{config}:4: brokers.local.password_file: cannot read {secret}: "
        "No such file or directory",
        f"{config}:5: brokers.cc.password_env: environment variable PARKWATCH_TEST_CC_PW "
        "is not set",
    ]


# Several mistakes whose natural report order (pydantic field order, cross-check order) is not
# the order of the lines: `alarms` / `gateway` / `brokers` are validated or checked late.
UNORDERED_FIELD_ERRORS = textwrap.dedent("""\
    alarms: {langauge: en}
    park: {id: testpark, name: Test Park}
    brokers:
      local: {host: 127.0.0.1, port: 0}
    uplink: {broker: local}
    landlord: {id: landlord, name: Landlord Co}
    buildings:
      - id: A
        floors:
          - {id: 1F, rated_load_kn_m2: 10.0, area_m2: -5}
    drivers:
      - {id: lora, type: mqtt, broker: local}
    sensors:
      - {id: FB1, kind: fire_alarm, building: A, driver: lora}
    gateway: {id: test-gw1, status_interval_s: 0}
    """)
UNORDERED_CROSS_ERRORS = textwrap.dedent(f"""\
    brokers:
      local: {{host: 127.0.0.1, username: gw1, password_env: {UNSET_ENV}}}
    park: {{id: testpark, name: Test Park}}
    gateway: {{id: test-gw1}}
    landlord: {{id: landlord, name: Landlord Co}}
    sensors:
      - {{id: FB1, kind: fire_button, building: B, driver: lora}}
      - {{id: FB2, kind: fire_button, building: A, driver: lora, tenant: nobody}}
    buildings:
      - id: A
        floors:
          - {{id: 1F, rated_load_kn_m2: 10.0, area_m2: 100}}
    drivers:
      - {{id: lora, type: mqtt, broker: local}}
    uplink: {{broker: command_center}}
    """)


@pytest.mark.parametrize(
    ("text", "first_path"),
    [(UNORDERED_FIELD_ERRORS, "alarms.langauge"), (UNORDERED_CROSS_ERRORS, "brokers.local")],
    ids=["field-errors", "cross-check-errors"],
)
def test_problems_are_ordered_by_line(
    text: str,
    first_path: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(UNSET_ENV, raising=False)
    config = _write(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(config)
    problems = excinfo.value.problems
    lines = [p.line for p in problems]
    assert len(problems) >= 4, problems
    assert lines == sorted(lines), [str(p) for p in problems]
    assert problems[0].path.startswith(first_path)

    # check-config prints them in that order, followed by the summary line
    assert cli_main(["check-config", str(config)]) == 2
    printed = capsys.readouterr().err.splitlines()
    assert printed[:-1] == [str(p) for p in problems]
    assert printed[-1] == f"{config}: {len(problems)} problem(s); not valid"


def test_a_password_in_the_influxdb_url_is_refused_without_repeating_it(at_repo_root: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(_case("telemetry_url_with_password").path)
    printed = "\n".join(str(p) for p in excinfo.value.problems)
    assert "telemetry.influxdb.url" in printed and "hunter2" not in printed


def test_every_kind_of_mistake_is_reported_in_one_run() -> None:
    """An unknown key, a type, a range, a cross-reference and a duplicate in one file: all five
    at once (the cross-references used to wait until the rest was fixed), and nothing else: a
    tenant on the floor whose area is wrong is not reported as on a missing floor."""
    case = _case("every_kind_of_mistake")
    result = _parkwatch("check-config", case.path)
    printed = [x for x in result.stderr.splitlines() if not x.endswith("not valid")]
    assert result.returncode == 2
    assert printed == list(case.expects)


def test_the_repository_and_the_package_have_one_example_park() -> None:
    """examples/park.yaml (what the docs point a field engineer at) is the park the package
    ships for the demo (a link to it, so the two cannot drift apart)."""
    from importlib import resources

    packaged = Path(str(resources.files("parkwatch.examples").joinpath("park.yaml")))
    shown = REPO_ROOT / "examples" / "park.yaml"
    assert shown.resolve() == packaged.resolve()
