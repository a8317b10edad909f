"""A private PostgreSQL server on a free loopback port, for the command center's tests, demo and
benchmark.

Debian's server binaries (``/usr/lib/postgresql/<version>/bin``: ``initdb`` and ``postgres``,
the newest version installed; ``/usr/local/bin`` may hold symlinks to them, which are found
the same way) create a cluster in a temporary directory, which :meth:`LocalPostgres.close`
removes.  The server listens on 127.0.0.1 and on a unix socket in that directory only, trusts
every local connection (superuser ``postgres``), and dies with its parent.

PostgreSQL refuses to run as root.  Started by root, the cluster belongs to an unprivileged
user instead (``run_as``, default: Debian's ``postgres`` system user, else ``nobody``), and
the temporary directory is created in a place that user can reach.  ``postgres`` runs in the
foreground as our child (not through ``pg_ctl``, which detaches it), so :meth:`stop` is a fast
shutdown (SIGINT: clients are disconnected, everything committed is on disk) and a test run
that dies takes the server with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from parkwatch.devtools.localbroker import free_port, wait_for_port

INSTALL_HINT = "apt-get install -y postgresql"
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    pass


def find_server_bin() -> Path | None:
    """The directory holding Debian's ``initdb`` and ``postgres`` (the newest version), or of
    the ``initdb`` on PATH, or None."""
    def version(d: str) -> list[int]:
        return [int(p) if p.isdigit() else 0 for p in Path(d).parent.name.split(".")]

    candidates = [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version,
                                          reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:  # e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for d in candidates:
        if all(os.access(d / b, os.X_OK) for b in ("initdb", "postgres")):
            return d
    return None


def _server_user(run_as: str | None) -> pwd.struct_passwd | None:
    """The account the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    names = [run_as] if run_as else [SUPERUSER, "nobody"]
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable(
        f"PostgreSQL refuses to run as root and there is no user {' or '.join(names)} to run it "
        f"as; create one (e.g. `useradd --system postgres`) or pass run_as=")


def _die_with_parent() -> None:  # runs in the child after it switched user, before exec
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (cleared by a change of uid: set after)
    except OSError:
        pass


class LocalPostgres:
    """``with LocalPostgres() as pg: store = open_store(pg.create_database())``."""

    STOP_GRACE_S = 15.0

    def __init__(self, port: int | None = None, run_as: str | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user = _server_user(run_as)
        self.workdir = Path(tempfile.mkdtemp(prefix="parkwatch-postgres-",
                                             dir=self._reachable_tmp()))
        if self._user is not None:
            os.chown(self.workdir, self._user.pw_uid, self._user.pw_gid)
        self._databases = 0

    # --- paths ------------------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL of database ``dbname`` over TCP, as the superuser."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def _reachable_tmp(self) -> str | None:
        """The system temp dir, or /tmp if the server's user could not enter it (root's own
        TMPDIR, e.g. under /root)."""
        if self._user is None:
            return None
        base = Path(tempfile.gettempdir()).resolve()
        for d in (base, *base.parents):
            if not d.stat().st_mode & 0o001:
                return "/tmp"
        return str(base)

    def _as_user(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    # --- life -------------------------------------------------------------------------------

    def _bin(self) -> Path:
        found = find_server_bin()
        if found is None:
            raise PostgresUnavailable(f"PostgreSQL's server is not installed (no initdb and "
                                      f"postgres in /usr/lib/postgresql/*/bin); install it "
                                      f"with: sudo {INSTALL_HINT}")
        return found

    def _initdb(self, bindir: Path) -> None:
        out = subprocess.run(
            [str(bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            cwd=self.workdir, capture_output=True, text=True, timeout=120, check=False,
            **self._as_user())
        if out.returncode != 0:
            who = f" as user {self._user.pw_name}" if self._user else ""
            raise PostgresUnavailable(f"initdb{who} failed in {self.workdir}: "
                                      f"{(out.stdout + out.stderr)[-800:]}")

    def start(self, timeout: float = 30.0) -> LocalPostgres:
        bindir = self._bin()
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb(bindir)
        argv = [str(bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
                "-c", f"listen_addresses={self.host}",
                "-c", f"unix_socket_directories={self.workdir}",
                # a test server: what is committed survives a stop / restart of the server,
                # not a power loss of the test machine
                "-c", "fsync=off", "-c", "full_page_writes=off",
                "-c", "max_connections=100", "-c", "logging_collector=off"]
        with open(self.log_file, "ab") as log:
            if self._user is not None:
                os.chown(self.log_file, self._user.pw_uid, self._user.pw_gid)
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir, preexec_fn=_die_with_parent,
                                         **self._as_user())
        if not self._wait_ready(timeout):
            self.stop()
            raise PostgresUnavailable(f"PostgreSQL did not accept connections on port "
                                      f"{self.port}: {self._log_tail()}")
        return self

    def _wait_ready(self, timeout: float) -> bool:
        """Listening is not enough (it refuses clients while it starts up): wait until a
        connection answers a query."""
        import psycopg

        deadline = time.monotonic() + timeout
        if not wait_for_port(self.host, self.port, timeout):
            return False
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, the server ends cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(self.STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, timeout: float = 30.0) -> LocalPostgres:
        """Stop and start again on the same port and data."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove its cluster."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- databases --------------------------------------------------------------------------

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        import psycopg

        if name is None:
            self._databases += 1
            name = f"db{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn, \
                contextlib.suppress(psycopg.Error):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
