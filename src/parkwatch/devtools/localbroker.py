"""A private Mosquitto on a free loopback port, for the demo, the simulator and the tests.

It is a real broker, configured the way parkwatch's shipped configs are: no cap on queued QoS 1
messages (Mosquitto's default of 1000 silently drops alarms to a slow subscriber).  The broker
process dies with its parent, so an interrupted demo or test leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "apt-get install -y mosquitto"


class BrokerUnavailable(RuntimeError):
    pass


def find_mosquitto() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_mosquitto(install: bool = True) -> str:
    """The mosquitto binary; installs Debian's package when missing and we are root."""
    found = find_mosquitto()
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "mosquitto"], check=False, env=env, stdout=subprocess.DEVNULL)
        found = find_mosquitto()
        if found:
            return found
    raise BrokerUnavailable(f"Mosquitto is not installed; install it with: sudo {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # a session of its own: a Ctrl-C in the terminal reaches the program that started it,
    # which stops it in order (a demo's broker died first and its clients logged it lost)
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class LocalServer:
    """A server process of our own on a free loopback port, its log and data in `workdir`
    (a temporary directory unless given); it can be stopped and started again on the same
    port and data, and dies with its parent."""

    NAME = "server"
    STOP_GRACE_S = 3.0

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"parkwatch-{self.NAME}-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.NAME}-{self.port}.log"

    def _spawn(self, argv: list[str], timeout: float, error: type[Exception]) -> None:
        """Start `argv`, logging to log_file; `error` when it does not listen in time."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise error(f"{self.NAME} did not listen on {self.port}: "
                        f"{self.log_file.read_text(errors='replace')[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalMosquitto(LocalServer):
    """``extra_conf`` is appended verbatim to the generated mosquitto.conf, so it may override
    the options above it (Mosquitto keeps the last value) and add e.g. a bridge stanza,
    ``password_file`` or ``acl_file``.  ``persistence=True`` keeps sessions, queued QoS 1
    messages and retained messages across :meth:`stop` / :meth:`start` in
    ``workdir/mosquitto-{port}.db/``; the broker then keeps running as the calling user (as
    root, Mosquitto would otherwise switch to the `mosquitto` user, which cannot write there).
    Ask for persistence this way: a ``persistence true`` line in ``extra_conf`` alone would
    point Mosquitto at its working directory instead."""

    NAME = "mosquitto"

    def __init__(self, port: int | None = None, extra_conf: str = "",
                 workdir: Path | None = None, persistence: bool = False) -> None:
        super().__init__(port, workdir)
        self.extra_conf = extra_conf
        self.persistence = persistence

    @property
    def db_dir(self) -> Path:
        return self.workdir / f"mosquitto-{self.port}.db"

    def _persistence_conf(self) -> str:
        if not self.persistence:
            return "persistence false\n"
        self.db_dir.mkdir(parents=True, exist_ok=True)
        user = "user root\n" if os.geteuid() == 0 else ""  # has no effect unless root
        return f"{user}persistence true\npersistence_location {self.db_dir}/\n"

    def conf_text(self) -> str:
        """The broker's mosquitto.conf (written to the work directory at each start)."""
        return (
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            + self._persistence_conf() +
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + self.extra_conf
        )

    def start(self, timeout: float = 10.0) -> LocalMosquitto:
        binary = ensure_mosquitto()
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf.write_text(self.conf_text())
        self._spawn([binary, "-c", str(conf)], timeout, BrokerUnavailable)
        return self

    def __enter__(self) -> LocalMosquitto:
        return self.start()
