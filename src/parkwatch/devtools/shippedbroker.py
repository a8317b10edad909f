"""The gateway's Mosquitto as parkwatch ships it, on a free loopback port: logins required and
the shipped ACL (``examples/mosquitto/parkwatch.conf`` and ``parkwatch.acl``, packaged as
``parkwatch/examples/mosquitto/``).

The demo runs it, so that a new user sees the locked-down setup work, and the tests run it, so
that they prove the shipped files rather than a private copy.  Only what cannot be the same on
a bench is rewritten: the listener's port, the password file (made here from plain logins with
``mosquitto_passwd -U``), the ACL's path (the packaged file itself) and persistence.  Each
rewrite must find its line exactly once: a shipped file that changed shape fails loudly instead
of leaving a test to check something else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from parkwatch.devtools.localbroker import INSTALL_HINT, BrokerUnavailable, LocalMosquitto


def shipped_file(name: str) -> Path:
    """A file of the shipped Mosquitto setup: ``parkwatch.conf`` or ``parkwatch.acl``."""
    return Path(str(resources.files("parkwatch.examples").joinpath("mosquitto").joinpath(name)))


def find_mosquitto_passwd() -> str:
    for candidate in (shutil.which("mosquitto_passwd"), "/usr/bin/mosquitto_passwd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerUnavailable("mosquitto_passwd is not installed (Debian's mosquitto package "
                            f"has it); install it with: sudo {INSTALL_HINT}")


def write_password_file(path: Path, logins: Mapping[str, str]) -> None:
    """A Mosquitto password file for `logins` (user name -> password), hashed by
    ``mosquitto_passwd`` as a field engineer's would be; readable by its owner only."""
    for user, password in logins.items():
        if not user or any(c in user for c in ":\n") or any(c in password for c in "\n"):
            raise ValueError(f"cannot put login {user!r} into a Mosquitto password file")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(f"{user}:{password}\n" for user, password in logins.items())
    subprocess.run([find_mosquitto_passwd(), "-U", str(path)], check=True,
                   capture_output=True, timeout=30)


class ShippedMosquitto(LocalMosquitto):
    """The shipped gateway broker for `logins` (user name -> password).  ``log_all`` logs every
    packet, e.g. the broker's "Denied PUBLISH" lines for a test to read in :attr:`log_file`;
    ``extra_conf`` is appended (a bridge stanza, say), as for :class:`LocalMosquitto`."""

    def __init__(self, logins: Mapping[str, str], port: int | None = None,
                 workdir: Path | None = None, persistence: bool = False,
                 log_all: bool = False, extra_conf: str = "") -> None:
        super().__init__(port, extra_conf=extra_conf, workdir=workdir, persistence=persistence)
        self.logins = dict(logins)
        self.log_all = log_all

    @property
    def password_file(self) -> Path:
        return self.workdir / f"mosquitto-{self.port}.passwd"

    def conf_text(self) -> str:
        text = shipped_file("parkwatch.conf").read_text(encoding="utf-8")
        persistence = self._persistence_conf().rstrip("\n")
        for pattern, line in (
                (r"^listener 1883 127\.0\.0\.1$", f"listener {self.port} {self.host}"),
                (r"^password_file .*$", f"password_file {self.password_file}"),
                (r"^acl_file .*$", f"acl_file {shipped_file('parkwatch.acl')}"),
                (r"^persistence true$", persistence)):
            # the line as it is: a path's backslash is no group reference
            text, n = re.subn(pattern, line.replace("\\", r"\\"), text, flags=re.M)
            if n != 1:
                raise ValueError(f"{shipped_file('parkwatch.conf')}: expected one line "
                                 f"matching {pattern}, found {n}")
        # as root, Mosquitto would switch to the `mosquitto` user, which cannot read the
        # password file in a private temporary directory
        user = "user root\n" if os.geteuid() == 0 and "user root" not in persistence else ""
        logs = "log_type all\n" if self.log_all else (
            "log_type error\nlog_type warning\nlog_type notice\n")
        return f"{text}\n{user}log_dest stderr\n{logs}{self.extra_conf}"

    def start(self, timeout: float = 10.0) -> ShippedMosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_password_file(self.password_file, self.logins)
        super().start(timeout)
        return self

    def __enter__(self) -> ShippedMosquitto:
        return self.start()
