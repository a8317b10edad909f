"""`parkwatch center`: run one command-center instance until SIGTERM or Ctrl-C.

Under systemd (``Type=notify``) it says READY=1 once its database is migrated, its console
listens and its ingest runs (a broker that is not there yet is the status line's to say, not
a failed start), keeps STATUS= current, and feeds the watchdog (``WatchdogSec=``) while its
ingest runs, so that a hung center is restarted.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from parkwatch.center.config import load_center_config
from parkwatch.center.store import StoreUnavailable
from parkwatch.config import ConfigError
from parkwatch.logsetup import setup_logging
from parkwatch.sdnotify import Notifier, watchdog_timeout

if TYPE_CHECKING:  # the service (and the database driver) load only when the center runs
    from parkwatch.center.service import CenterService

log = logging.getLogger("parkwatch.center")

EXIT_OK, EXIT_UNAVAILABLE, EXIT_CONFIG = 0, 1, 2
#: how often the status line is brought up to date without a watchdog
STATUS_S = 5.0


def run_center(config: str, log_level: str = "INFO", check: bool = False) -> int:
    """The exit code: 2 for a config that cannot be used, 1 when the database cannot be
    reached at start (systemd restarts it), 0 after a clean stop.  With ``check``, only
    validate the config (the systemd unit's ExecStartPre=) and return 0 or 2 without
    connecting to the database or the broker."""
    setup_logging(log_level)
    try:
        cfg = load_center_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    if check:
        print(f"{config}: 配置有效 / valid (instance {cfg.instance}, database "
              f"{cfg.database.split('://', 1)[0]})")
        return EXIT_OK
    from parkwatch.center.service import CenterService

    try:
        service = CenterService(cfg)
    except StoreUnavailable as exc:
        log.error("center: database unavailable at start (%s); not started", exc)
        return EXIT_UNAVAILABLE
    except (OSError, KeyError) as exc:  # the session key's file or variable
        log.error("center: the console's session key cannot be had (%s); not started", exc)
        return EXIT_UNAVAILABLE
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        service.start()
    except OSError as exc:
        log.error("center: the console cannot listen on %s:%d (%s); not started",
                  cfg.http.listen, cfg.http.port, exc)
        service.store.close()
        return EXIT_UNAVAILABLE
    notifier = Notifier.from_environment()
    watchdog = watchdog_timeout()
    try:
        _supervise(service, notifier, stop, STATUS_S if watchdog is None else watchdog / 3)
    finally:
        notifier.stopping()
        service.stop()
        notifier.close()
    return EXIT_OK


def _supervise(service: CenterService, notifier: Notifier, stop: threading.Event,
               every_s: float) -> None:
    """READY once, then every ``every_s``: the status line when it changes, and the watchdog
    while the ingest runs (a lost broker or database is reported, not restarted: the center
    waits for them and holds nothing it could lose)."""
    status = _status(service)
    notifier.ready(status)
    while not stop.wait(every_s):
        now = _status(service)
        if now != status:
            notifier.status(now)
            status = now
        if service.ingest.alive:
            notifier.watchdog()


def _status(service: CenterService) -> str:
    health = service.health()
    f = service.ingest.figures
    if health["status"] == "ok":
        return f"ok: {f.stored} events stored, {f.duplicates} duplicates"
    return "unhealthy: " + "; ".join(health["reasons"])
