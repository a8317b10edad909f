"""The center database's schema versions: SQL files shipped in ``center/migrations/``.

``NNNN_name.sql`` is version NNNN for every dialect; ``NNNN_name.sqlite.sql`` and
``NNNN_name.postgresql.sql`` where the dialects must differ.  Versions run 1, 2, ... without a
gap; each is applied in a transaction of its own and recorded in ``schema_version``, so a
failed upgrade leaves the database at the last version that completed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from parkwatch.center.storetypes import SchemaTooNew, StoreError

DIALECTS = ("sqlite", "postgresql")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(sqlite|postgresql))?\.sql$")

#: created before anything else, the same in every dialect
VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                 "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL);")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """This release's schema versions for ``dialect``, in order."""
    if dialect not in DIALECTS:
        raise ValueError(dialect)
    found: dict[int, tuple[str, str, bool]] = {}
    folder = resources.files("parkwatch.center").joinpath("migrations")
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m is None or m.group(3) not in (None, dialect):
            continue
        version, specific = int(m.group(1)), m.group(3) is not None
        if version in found and found[version][2] == specific:
            raise StoreError(f"two files for schema version {version}: {entry.name}")
        if version not in found or specific:
            found[version] = (m.group(2), entry.read_text(encoding="utf-8"), specific)
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"schema versions must run 1, 2, ... without a gap: {versions}")
    return tuple(Migration(v, found[v][0], found[v][1]) for v in versions)


def latest(dialect: str) -> int:
    return len(migrations(dialect))


def check_not_newer(current: int, dialect: str) -> None:
    known = latest(dialect)
    if current > known:
        raise SchemaTooNew(
            f"数据库的结构版本是 {current}，本程序只认识到 {known}：它由更新版本的指挥中心升级过，"
            f"请升级本程序后再连接 (the database's schema version {current} is newer than "
            f"this center's {known}: a newer release upgraded it; upgrade this center, it will "
            f"not write to a schema it does not know)")


def statements(sql: str) -> list[str]:
    """A script's statements, one by one (SQLite runs one statement per call), split where
    SQLite says a statement is complete, so a ';' in a string or comment does not split."""
    import sqlite3

    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip()
                               for ln in buf.splitlines()):
        raise StoreError(f"an unfinished statement at the end of a migration: {buf[:200]}")
    return out
