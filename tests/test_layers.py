"""The package's import graph: no circle, and each layer imports only what it may
(`python -m parkwatch.devtools.importgraph` prints the same findings)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO
from parkwatch.devtools import importgraph


def test_the_package_has_no_import_circle_and_no_upward_import() -> None:
    assert importgraph.problems() == []


def test_the_check_runs_as_a_module_and_says_what_it_checked() -> None:
    out = subprocess.run([sys.executable, "-m", "parkwatch.devtools.importgraph"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 problem(s)" in out.stdout


def test_config_imports_nothing_of_the_rule_kinds_drivers_or_alarms() -> None:
    graph = importgraph.graph()
    config = {m: deps for m, deps in graph.items() if m.startswith("parkwatch.config")}
    assert config, "the config package was not found"
    for module, deps in config.items():
        assert all(d.startswith("parkwatch.config") or d == "parkwatch" for d in deps), \
            (module, deps)


def test_the_check_finds_a_circle_and_an_upward_import() -> None:
    graph = {"parkwatch.config.model": {"parkwatch.drivers.registry"},
             "parkwatch.drivers.registry": {"parkwatch.config.model"}}
    assert importgraph.cycles(graph) == [["parkwatch.config.model",
                                          "parkwatch.drivers.registry"]]
    assert importgraph.layer_violations(graph) == [
        "parkwatch.config.model imports parkwatch.drivers.registry: parkwatch.config may "
        "import only parkwatch.config, parkwatch"]


def test_an_import_inside_a_function_counts(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "parkwatch"
    (pkg / "config").mkdir(parents=True)
    (pkg / "rules").mkdir()
    for init in (pkg / "__init__.py", pkg / "config" / "__init__.py",
                 pkg / "rules" / "__init__.py", pkg / "rules" / "kind.py"):
        init.write_text("")
    (pkg / "config" / "check.py").write_text(
        "def late():\n    from parkwatch.rules import kind\n    return kind\n")
    monkeypatch.setattr(importgraph, "ROOT", pkg)
    assert importgraph.graph()["parkwatch.config.check"] == {"parkwatch.rules.kind"}
