"""The import graph of the parkwatch package, checked against its layers.

Every ``import`` and ``from ... import`` in the package counts, wherever it stands: at the top,
inside a function (an import hidden there to dodge a loop is still a dependency) or under
``TYPE_CHECKING``.  Two rules:

* no import circle between modules (a package's ``__init__`` counts as a module);
* each layer imports only what its rule allows (:data:`LAYERS`): ``parkwatch.config`` knows the
  park and nothing of the rule kinds, drivers and alarms that are built on it.

``python -m parkwatch.devtools.importgraph`` prints every violation and exits 1 when there is
one; the test suite runs the same check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "parkwatch"
ROOT = Path(__file__).resolve().parent.parent

#: package -> the parkwatch packages and modules it may import besides its own modules
#: (``parkwatch`` itself is the package's root: its version and nothing else)
LAYERS: dict[str, tuple[str, ...]] = {
    "parkwatch.config": ("parkwatch",),
    "parkwatch.extensions": (),
    "parkwatch.devtools": ("parkwatch.devtools",),
    # the signed-command format is part of the contract: the command center and the console
    # use it without the gateway
    "parkwatch.commandsig": (),
    # the command center is a sibling of the daemon that depends on the contract only: the
    # config models (its own config: the strict base, broker settings, the YAML loader), the
    # MQTT link, logging and counting refusals, the signed command format (the ack it
    # publishes), systemd's notifications, the contract's id helper (ULIDs, for its own
    # records too) and the notification channels' vendor rules (signatures, answers: the
    # escalations of overdue hazard tickets go to the same chat robots); nothing of the
    # gateway's rules, alarm lifecycle, drivers or daemon
    "parkwatch.center": ("parkwatch", "parkwatch.config", "parkwatch.mqttlink",
                         "parkwatch.rejections", "parkwatch.logsetup", "parkwatch.commandsig",
                         "parkwatch.sdnotify", "parkwatch.alarms.ids",
                         "parkwatch.alarms.channels", "parkwatch.alarms.senders"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str]) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` depends on that module (and, as every import of a
            # submodule does, on the package's __init__ running first: not counted)
            subs = [f"{base}.{a.name}" for a in node.names]
            yield from (s for s in subs if s in modules)
            if not all(s in modules for s in subs):
                yield base


def graph() -> dict[str, set[str]]:
    """module -> the parkwatch modules it imports (a name imported from a module counts as that
    module unless it is a module itself)."""
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps = {d for d in _imports(path, name, set(paths)) if d in paths and d != name}
        out[name] = deps
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    out = []
    for module, deps in sorted(g.items()):
        for layer, allowed in LAYERS.items():
            if module != layer and not module.startswith(layer + "."):
                continue
            for dep in sorted(deps):
                inside = dep == layer or dep.startswith(layer + ".")
                ok = inside or any(dep == a or (a != PACKAGE and dep.startswith(a + "."))
                                   for a in allowed)
                if not ok:
                    out.append(f"{module} imports {dep}: {layer} may import only "
                               f"{', '.join((layer, *allowed))}")
    return out


def problems() -> list[str]:
    g = graph()
    out = [f"import circle: {' -> '.join(c)}" for c in cycles(g)]
    return out + layer_violations(g)


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    print(f"{len(graph())} modules: {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
