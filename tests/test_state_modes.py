"""The state directory is the daemon's user's alone: the folder and its folders 0700, every file
in it 0600 (the alarm store and its -wal and -shm, the rule state, the telemetry spool, the API
token), whatever the umask the daemon starts under; an earlier install's looser modes are
tightened at start, logged once."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from churn import churning
from conftest import wait_until
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.statedir import tighten


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def modes(state: Path) -> dict[str, int]:
    """Mode of the state folder and of everything in it, by path relative to it."""
    out = {".": stat.S_IMODE(state.stat().st_mode)}
    for path in state.rglob("*"):
        out[str(path.relative_to(state))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def test_everything_the_daemon_writes_is_its_users_alone(
        umask: int, broker: LocalMosquitto, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with churning(broker, tmp_path) as churn:
        churn.fire_cycle()
        churn.publish("A-2F-LC1", b'{"value": 1200}')  # a reading for the telemetry spool
        spool = churn.daemon.telemetry.spool
        wait_until(lambda: spool.stats()["telemetry"]["records"] > 0, 10,
                   "a telemetry record in the spool")
        during = modes(state)
    after = modes(state)  # the rule state is written at the stop too
    for name in ("alarms.db", "alarms.db-wal", "alarms.db-shm", "api.token"):
        assert name in during, during
    assert any(n.endswith(".seg") for n in during), during
    assert "rules.npz" in after, after
    for found in (during, after):
        dirs = {n: m for n, m in found.items() if n == "." or (state / n).is_dir()}
        files = {n: m for n, m in found.items() if n not in dirs}
        assert set(dirs.values()) == {0o700}, dirs
        assert set(files.values()) == {0o600}, files


def test_an_earlier_installs_looser_modes_are_tightened_at_start_and_logged_once(
        broker: LocalMosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    with churning(broker, tmp_path) as churn:
        churn.fire_cycle()
    for path in [state, *state.rglob("*")]:  # as an install outside systemd left them
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    caplog.set_level(logging.WARNING, logger="parkwatch")
    with churning(broker, tmp_path) as churn:
        churn.fire_cycle()
    tightened = [r for r in caplog.records if "made private" in r.getMessage()]
    assert len(tightened) == 1, [r.getMessage() for r in tightened]
    found = modes(state)
    assert all(m == (0o700 if (state / n).is_dir() else 0o600) for n, m in found.items()), found


def test_tightening_leaves_private_modes_alone_and_says_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    (state / "spool").mkdir(parents=True, mode=0o700)
    os.chmod(state, 0o700)
    (state / "alarms.db").write_bytes(b"")
    os.chmod(state / "alarms.db", 0o400)  # stricter than 0600: kept
    os.symlink("/etc/hostname", state / "link")  # a link is not followed
    caplog.set_level(logging.WARNING, logger="parkwatch")
    assert tighten(state) == 0
    assert stat.S_IMODE((state / "alarms.db").stat().st_mode) == 0o400
    assert not caplog.records
