"""`parkwatch run`: load the config (fatal when invalid), run until SIGTERM/SIGINT; SIGHUP
reloads the config (see :mod:`parkwatch.daemon.supervisor` for the loop under systemd)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from parkwatch.config import ConfigError
from parkwatch.daemon.memory import fixed_mmap_threshold, one_malloc_arena, settle_heap
from parkwatch.daemon.supervisor import Supervisor
from parkwatch.logsetup import setup_logging
from parkwatch.schema import load_config
from parkwatch.sdnotify import Notifier, watchdog_timeout
from parkwatch.statedir import private_dir

log = logging.getLogger("parkwatch")

EXIT_CONFIG = 2


#: see run_daemon
SWITCH_INTERVAL_S = 0.0005


def run_daemon(config: str, state_dir: str | None = None, log_level: str = "INFO",
               record: str | None = None) -> int:
    setup_logging(log_level)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        log.error("refusing to start: %d problem(s) in %s", len(exc.problems), config)
        return EXIT_CONFIG

    from parkwatch.config.exposure import exposure_warnings
    from parkwatch.config.loader import format_path
    from parkwatch.daemon.app import Daemon

    for loc, warning in exposure_warnings(cfg):  # the same as check-config's, once
        log.warning("%s: %s", format_path(loc), warning)

    # a thread woken by an alarm (the pipeline, a courier, a network loop) waits for the GIL
    # at most this long while another thread is busy (Python's default is 5 ms: a latency
    # floor under load)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    one_malloc_arena()  # before the first thread: see parkwatch.daemon.memory
    fixed_mmap_threshold()
    state = Path(state_dir) if state_dir else cfg.gateway.state_dir
    try:
        private_dir(state)
    except OSError as exc:
        log.error("cannot create state directory %s: %s (gateway.state_dir or --state-dir)",
                  state, exc.strerror)
        return 1
    try:
        daemon = Daemon(cfg, state, record=Path(record) if record else None)
    except OSError as exc:
        if exc.filename is None and cfg.api is not None:  # the only socket bound at build
            log.error("cannot listen on %s:%d (api.listen, api.port): %s", cfg.api.listen,
                      cfg.api.port, exc.strerror)
        else:
            log.error("cannot open %s: %s", exc.filename, exc.strerror)
        return 1

    notifier = Notifier.from_environment()
    supervisor = Supervisor(daemon, notifier, config, watchdog_timeout())

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            supervisor.request_reload()
            return
        log.info("received %s, stopping", signal.Signals(signum).name)
        supervisor.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    daemon.start()
    settle_heap()  # see parkwatch.daemon.memory
    try:
        supervisor.run()
    finally:
        daemon.stop()
        notifier.close()
    return 0
