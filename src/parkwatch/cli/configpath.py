"""Where the commands look for the park config when none is given, and what they say when it
is not there (`check-config`, the local API commands, `watch`).

The commands read :data:`DEFAULT_CONFIG` from this module when they run, not when they are
imported, so a test can point them all at another path by setting it here.
"""

from __future__ import annotations

DEFAULT_CONFIG = "/etc/parkwatch/park.yaml"
#: the one problem a config that is not there has (parkwatch.config.yamlsource)
_NOT_FOUND = "file not found"


def missing_config_hint(path: str, exc: Exception, explicit: bool,
                        more: str = "") -> str | None:
    """What to do when the park config is not there: the line that replaces "N problem(s)"
    (None when the config was found and has problems of its own)."""
    problems = getattr(exc, "problems", [])
    if len(problems) != 1 or problems[0].message != _NOT_FOUND:
        return None
    if explicit:
        return f"{path}: no such file; check the path"
    return (f"no park config at the default {path}: give one with --config FILE{more}")
