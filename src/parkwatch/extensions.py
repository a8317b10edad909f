"""Extension packages: rule kinds, drivers and notification channels that parkwatch does not ship.

An extension package is any importable package with a registry module holding up to three dicts,
named like parkwatch's own registries: ``RULE_KINDS`` (name -> rule kind class), ``DRIVER_KINDS``
(type -> :class:`parkwatch.drivers.kind.DriverKind`) and ``CHANNELS`` (type ->
:class:`parkwatch.alarms.channels.base.Channel`).  The environment variable
``PARKWATCH_EXTENSIONS`` names those registry modules, comma-separated; each of parkwatch's
registries appends their entries after its own (so the built-in rule codes never move).  The
daemon's own child processes inherit the variable, and with it the same registries.

See docs/rules.md ("Adding a rule kind") and docs/drivers.md.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

ENV = "PARKWATCH_EXTENSIONS"


class ExtensionError(Exception):
    """An extension package that cannot be loaded: the command line says so and exits 2 (as
    for a config that cannot be used), rather than a traceback."""


def modules() -> list[str]:
    """The registry modules named in ``PARKWATCH_EXTENSIONS``, in order."""
    return [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]


def merged(registry: str, builtin: dict[str, Any]) -> dict[str, Any]:
    """`builtin` followed by every extension's entries of `registry` (e.g. "RULE_KINDS"); an
    extension that names a built-in entry again, or an unimportable module, is an error that
    stops the start (an extension silently missing would be a sensor silently unwatched)."""
    out = dict(builtin)
    for name in modules():
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ExtensionError(f"{ENV}: cannot import extension registry {name!r}: "
                                 f"{exc}") from exc
        for key, value in dict(getattr(module, registry, {})).items():
            if key in out:
                raise ExtensionError(f"{ENV}: {name}.{registry} registers {key!r}, which "
                                     "is already registered")
            out[key] = value
    return out
