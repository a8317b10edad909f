"""The state directory is the gateway's alone: folder 0700, every file in it 0600, whatever the
umask the daemon was started with.

It holds the alarm store (every alarm, who acknowledged it, every delivery), the rule state,
the telemetry spool and the API's bearer token.  systemd's ``StateDirectory=`` makes the folder
0700, but outside systemd (a shell, a container, an init script) it was 0755 and the store 0644
under the usual umask of 022: readable by every user of the gateway.  So the folders here are
made 0700 and every file is created 0600 (``open``'s mode is cut by the umask, never widened,
so 0600 stays at most 0600); SQLite creates the store's ``-wal`` and ``-shm`` files with the
store's own mode, so the store file is made first, 0600.  A state directory from an earlier
install has its looser modes tightened at start, logged once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("parkwatch")

DIR_MODE = 0o700
FILE_MODE = 0o600
#: the bits no one but the daemon's user may have
OTHERS = 0o077


def private_dir(path: Path) -> Path:
    """`path` made (with its parents) and 0700 (its parents keep the umask's modes)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """An ``opener`` for :func:`open` that creates the file 0600."""
    return os.open(path, flags, FILE_MODE)


def private_file(path: Path) -> Path:
    """`path` created empty and 0600 when it does not exist yet (before SQLite opens it)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    return path


def tighten(state_dir: Path) -> int:
    """Folders in `state_dir` (itself included) that others may use made 0700, files 0600;
    how many were changed (logged once, when any)."""
    changed = []
    for root, dirs, files in os.walk(state_dir):
        for name, mode in [(root, DIR_MODE), *((os.path.join(root, f), FILE_MODE) for f in files)]:
            try:
                st = os.lstat(name)
                if stat.S_ISLNK(st.st_mode) or not stat.S_IMODE(st.st_mode) & OTHERS:
                    continue
                os.chmod(name, mode)
            except OSError as exc:  # gone meanwhile, or not ours: the daemon goes on
                log.warning("state directory: cannot make %s private: %s", name, exc.strerror)
                continue
            changed.append(name)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    if changed:
        log.warning("state directory %s: %d folder(s) and file(s) others could read or write "
                    "made private to this user (folders 0700, files 0600), e.g. %s", state_dir,
                    len(changed), changed[0])
    return len(changed)
