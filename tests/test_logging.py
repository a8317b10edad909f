"""Log lines are journald-friendly under systemd and readable on a terminal."""

from __future__ import annotations

import logging

import pytest

from parkwatch.logsetup import setup_logging


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_under_systemd_lines_carry_priority_and_no_timestamp(monkeypatch, capsys):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging("INFO")
    logging.getLogger("parkwatch.mqttlink").warning("lost connection\nsecond line")
    logging.getLogger("parkwatch").info("started")
    logging.getLogger("parkwatch").debug("hidden at INFO")
    err = capsys.readouterr().err.splitlines()
    assert err == ["<4>parkwatch.mqttlink: lost connection", "  second line",
                   "<6>parkwatch: started"]


def test_on_a_terminal_lines_carry_time_and_level(monkeypatch, capsys):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging("INFO")
    logging.getLogger("parkwatch").error("cannot create state directory")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("ERROR   parkwatch: cannot create state directory")
    assert line[2] == ":" and line[5] == ":"  # HH:MM:SS.mmm first
