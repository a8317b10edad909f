"""The silenced alarms, kept in the state directory so a restart does not sound again what an
operator silenced (a new fire still sounds: it was not silenced)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("parkwatch.outputs")

FILE = "outputs.silenced"


def load(state_dir: Path) -> dict[str, dict[str, Any]]:
    """alarm id -> who silenced it, when and why; empty when there is no file or it is bad."""
    path = state_dir / FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("silenced alarms %s unreadable (%s): every open alarm sounds again", path,
                  exc)
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data,
                                                                               dict) else {}


def save(state_dir: Path, silenced: dict[str, dict[str, Any]]) -> None:
    """Written whole and renamed into place, synced: never half a file."""
    path = state_dir / FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(silenced, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
