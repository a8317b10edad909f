"""docs/drivers.md stays true to the driver extension point: every registered driver type,
every field of its registry entry (`DriverKind`) and every member of the `Driver` protocol is
explained there; each driver type lives in its own folder and has every member of the
protocol; and the metric families a driver type brings are well formed and in the catalogue."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import typing

import pytest
from typing_extensions import get_protocol_members

from conftest import REPO
from parkwatch.daemon.metricnames import _KIND, METRICS
from parkwatch.drivers.base import Driver
from parkwatch.drivers.registry import DRIVER_KINDS, DriverKind

DOC = (REPO / "docs" / "drivers.md").read_text(encoding="utf-8")
DRIVERS = REPO / "src" / "parkwatch" / "drivers"
MEMBERS = sorted(get_protocol_members(Driver))


def named(name: str) -> bool:
    """The page names it in code: `name`, `name()` or `name(args)`."""
    return re.search(rf"`{re.escape(name)}(\(|`)", DOC) is not None


def test_every_registered_driver_type_is_in_the_page() -> None:
    missing = [t for t in DRIVER_KINDS if not named(t)]
    assert not missing, f"docs/drivers.md does not name the driver type(s) {missing}"


def test_every_field_of_a_registry_entry_is_explained() -> None:
    fields = [f.name for f in dataclasses.fields(DriverKind)]
    missing = [f for f in fields if not re.search(rf"^- `{f}`", DOC, re.MULTILINE)]
    assert not missing, f"docs/drivers.md does not explain the DriverKind field(s) {missing}"


def test_every_member_of_the_driver_protocol_is_explained() -> None:
    assert {"decode", "health", "metric_samples", "broker_link"} <= set(MEMBERS)
    missing = [m for m in MEMBERS if not re.search(rf"^\| `{m}(\(|`)", DOC, re.MULTILINE)]
    assert not missing, f"docs/drivers.md's table of the Driver protocol lacks {missing}"


@pytest.mark.parametrize("kind", list(DRIVER_KINDS))
def test_a_driver_type_is_one_folder_with_every_member_of_the_protocol(kind: str) -> None:
    entry = DRIVER_KINDS[kind]
    assert (DRIVERS / kind / "__init__.py").is_file(), f"no folder drivers/{kind}/"
    module = entry.driver_path.partition(":")[0]
    assert module.startswith(f"parkwatch.drivers.{kind}."), entry.driver_path
    assert typing.get_args(entry.config_model.model_fields["type"].annotation) == (kind,)
    made = entry.driver_class()
    if inspect.isclass(made):
        # methods and properties are on the class; attributes (id, ...) are set by __init__,
        # which mypy checks through the module's `_: type[Driver] = ...` line
        lacking = [m for m in MEMBERS if m in vars(Driver) and not hasattr(made, m)]
        assert not lacking, f"{made.__name__} lacks {lacking}"
        source = inspect.getsource(importlib.import_module(module))
        assert f"type[Driver] = {made.__name__}" in source, "no check of it for mypy"
    else:  # a factory: its return type says what it makes
        assert typing.get_type_hints(made)["return"] is Driver


def test_the_families_a_driver_type_brings_are_well_formed_and_catalogued() -> None:
    declared = [(kind, f) for kind, entry in DRIVER_KINDS.items() for f in entry.metrics]
    names = [f.name for _, f in declared]
    assert len(set(names)) == len(names), "two driver types declare the same family"
    for kind, f in declared:
        assert re.fullmatch(r"parkwatch_[a-z0-9_]+", f.name), f.name
        assert f.name.endswith("_total") == (f.type == "counter"), f.name
        assert f.labels[:1] == ("driver",), f"{kind}: {f.name}'s first label is not driver"
        assert METRICS[f.name] == f.help and _KIND[f.name] == (f.type, f.labels)
    # no family of the daemon's own is shadowed by a driver's (the catalogue keeps one each)
    from parkwatch.daemon import metricnames
    assert not set(names) & {spec[0] for spec in metricnames._DAEMON}


@pytest.mark.parametrize("kind", list(DRIVER_KINDS))
def test_a_folder_metrics_module_is_the_one_its_registry_entry_carries(kind: str) -> None:
    if not (DRIVERS / kind / "metrics.py").is_file():
        assert DRIVER_KINDS[kind].metrics == ()
        return
    module = importlib.import_module(f"parkwatch.drivers.{kind}.metrics")
    assert DRIVER_KINDS[kind].metrics == module.FAMILIES
