"""Docs that are generated from code stay in step with it."""

from __future__ import annotations

from conftest import REPO
from parkwatch.schema import reference as render


def test_config_reference_is_up_to_date():
    committed = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/config.md is out of date: run `.venv/bin/python -m parkwatch.schema "
        "> docs/config.md`")


def test_the_center_config_reference_is_up_to_date():
    from parkwatch.center.config import reference

    committed = (REPO / "docs" / "center-config.md").read_text(encoding="utf-8")
    assert committed == reference(), (
        "docs/center-config.md is out of date: run `.venv/bin/python -m parkwatch.center.config "
        "> docs/center-config.md`")


def test_every_config_key_of_the_example_is_documented():
    reference = render()
    for key in ("rated_load_kn_m2", "occupies", "value_field", "time_field", "deadband",
                "password_file", "status_interval_s", "topic_prefix"):
        assert f"`{key}`" in reference
