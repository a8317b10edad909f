"""Every registered notification channel is wired and documented: a channel in the registry that
the `alarms.targets` union, the targets table and the "Adding a notification channel" section
of docs/alarms.md, or the config reference does not know is a test failure here.
"""

from __future__ import annotations

import re
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from conftest import REPO
from parkwatch.alarms.channels.registry import CHANNELS
from parkwatch.schema import ParkConfig

DOCS = REPO / "docs"
CHANNEL_NAMES = sorted(CHANNELS)


def _models(tp: Any) -> set[type[BaseModel]]:
    """The models an annotation names (through dicts, Annotated and unions)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {tp}
    return {m for arg in typing.get_args(tp) for m in _models(arg)}


def _section(text: str, start: str) -> str:
    """The part of a Markdown file from the heading `start` to the next heading of its level
    or above."""
    level = len(start.split(" ", 1)[0])
    rest = text.partition(start + "\n")[2]
    assert rest, f"no heading {start!r}"
    return re.split(rf"\n#{{1,{level}}} ", rest, maxsplit=1)[0]


def test_the_registry_names_each_channel_by_its_type() -> None:
    for name, channel in CHANNELS.items():
        assert channel.type == name, f"registry key {name!r} for a channel of type "\
            f"{channel.type!r}"


def test_the_targets_union_is_the_registered_channels() -> None:
    alarms = ParkConfig.model_fields["alarms"].annotation
    assert isinstance(alarms, type) and issubclass(alarms, BaseModel)
    union = _models(alarms.model_fields["targets"].annotation)
    assert union == {c.target for c in CHANNELS.values()}, (
        "AlarmsConfig.targets must take the registry's union "
        "(parkwatch.alarms.channels.registry.TargetConfig, wired in parkwatch.schema)")


@pytest.mark.parametrize("name", CHANNEL_NAMES)
def test_every_channel_is_in_the_docs_on_targets(name: str) -> None:
    alarms = (DOCS / "alarms.md").read_text(encoding="utf-8")
    table = _section(alarms, "## Targets and delivery")
    assert f"\n| `{name}` |" in table, f"docs/alarms.md's table of targets lacks `{name}`"
    adding = _section(alarms, "### Adding a notification channel")
    assert f"`{name}`" in adding, f"docs/alarms.md's 'Adding a notification channel' lacks " \
        f"`{name}`"


@pytest.mark.parametrize("name", CHANNEL_NAMES)
def test_every_channel_has_its_keys_in_the_config_reference(name: str) -> None:
    reference = (DOCS / "config.md").read_text(encoding="utf-8")
    sections = [s for s in reference.split("\n## ") if s.startswith("`alarms.targets.{name}`\n")]
    mine = [s for s in sections if f"\n| `type` | '{name}' |" in s]
    assert len(mine) == 1, f"docs/config.md has no section for targets of type '{name}'"
    for key in CHANNELS[name].target.model_fields:
        assert f"\n| `{key}` |" in mine[0], f"docs/config.md lacks `{key}` of type '{name}'"
