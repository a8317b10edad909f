"""A cache of large parsed config files, so a 10,000-sensor park starts in about a second.

Parsing YAML in Python costs about a second per megabyte even with libyaml, and a park of
10,000 sensors is a megabyte; that was most of the daemon's start-up.  The parsed data and its
line map are a pure function of the file's text, so they are kept as JSON (not pickle: the
cache must never run code) under the file's SHA-256 and reused while the text is unchanged.
Validation still runs on every load: only the parse is skipped.

Where: ``$CACHE_DIRECTORY`` (systemd's ``CacheDirectory=parkwatch``), else
``$XDG_CACHE_HOME/parkwatch`` or ``~/.cache/parkwatch``.  One file per config path, replaced
when the file changes; small files (under :data:`MIN_BYTES`) are never cached, and any problem
with the cache (unwritable, damaged, data JSON cannot hold such as dates) means a normal parse.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parkwatch import __version__

log = logging.getLogger("parkwatch.config")

#: files smaller than this parse in milliseconds: not worth a cache entry
MIN_BYTES = 256 * 1024
FORMAT = 1

Lines = dict[tuple[str | int, ...], int]


def cache_dir() -> Path | None:
    env = os.environ.get("CACHE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    base = os.environ.get("XDG_CACHE_HOME") or (
        str(Path.home() / ".cache") if os.environ.get("HOME") else None)
    return Path(base) / "parkwatch" if base else None


def _entry(path: Path, text: str) -> tuple[Path, str] | None:
    where = cache_dir()
    if where is None or len(text) < MIN_BYTES:
        return None
    name = hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:20]
    key = hashlib.sha256(f"{FORMAT}\0{__version__}\0{text}".encode()).hexdigest()
    return where / f"config-{name}.json", key


def cacheable(path: Path, text: str) -> bool:
    """Whether a parse of this file would be kept (large enough, somewhere to keep it)."""
    return _entry(path, text) is not None


def load(path: Path, text: str) -> tuple[Any, Callable[[], Lines | None]] | None:
    """The cached parse of this exact text: the data, and a function that reads its line map
    (only needed for an error message, so it is read only then), or None."""
    entry = _entry(path, text)
    if entry is None:
        return None
    file, key = entry
    try:
        with file.open("rb") as f:
            cached = json.load(f)
        if cached.get("key") != key:
            return None
        return cached["data"], lambda: _lines(file.with_suffix(".lines.json"), key)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.debug("config cache %s unusable (%s); parsing the file", file, exc)
        return None


def _lines(file: Path, key: str) -> Lines | None:
    try:
        with file.open("rb") as f:
            cached = json.load(f)
        if cached.get("key") != key:
            return None
        return {tuple(loc): line for loc, line in cached["lines"]}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def store(path: Path, text: str, data: Any, lines: Lines) -> bool:
    """Remember a parse, when JSON holds the data exactly (no dates, no integer keys...);
    True once it is kept."""
    entry = _entry(path, text)
    if entry is None:
        return False
    file, key = entry
    try:
        dumped = json.dumps(data, ensure_ascii=False, allow_nan=False)
        if json.loads(dumped) != data:
            return False
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # the line map first: an entry whose data is there always has its lines
        _write(file.with_suffix(".lines.json"), json.dumps(
            {"key": key, "lines": [[list(loc), n] for loc, n in lines.items()]},
            ensure_ascii=False))
        _write(file, f'{{"key": "{key}", "data": {dumped}}}')
    except (OSError, ValueError, TypeError) as exc:
        log.debug("config cache %s not written (%s)", file, exc)
        return False
    return True


def _write(file: Path, body: str) -> None:
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, file)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
