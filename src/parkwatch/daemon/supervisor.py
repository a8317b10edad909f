"""The main thread's loop under systemd: signals, reload, the watchdog and the status line.

* SIGTERM/SIGINT stop the daemon (``STOPPING=1`` first); SIGHUP reloads the config file
  (``RELOADING=1``, then ``READY=1`` again, whatever the outcome: a failed reload leaves the
  daemon running on its previous config).
* ``READY=1`` follows the start once the brokers and ports are connected (or after
  ``ready_wait_s``: a broker that is down must not keep the gateway from running), so the
  first status line is a true one.
* ``WATCHDOG=1`` is sent only while the alarm path is alive: the pipeline made progress within
  half the watchdog timeout (it answered a probe queued behind the readings, or finished a
  batch), and every long-running loop (drivers, couriers, broker link, timers, writers)
  still runs.  A rule that hangs or a loop that dies silences the pings, and systemd restarts
  the daemon: at most 1.5 × ``WatchdogSec=`` after the hang.
* ``STATUS=`` carries a one-line summary, sent when it changes (``systemctl status`` shows it).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from parkwatch.sdnotify import Notifier

if TYPE_CHECKING:
    from parkwatch.daemon.app import Daemon

log = logging.getLogger("parkwatch.systemd")


class Supervisor:
    def __init__(self, daemon: Daemon, notifier: Notifier, config_path: str | Path | None,
                 watchdog_s: float | None, tick_s: float = 1.0,
                 ready_wait_s: float = 5.0) -> None:
        self.daemon = daemon
        self.notifier = notifier
        self.config_path = config_path
        self.watchdog_s = watchdog_s
        # ping well inside the timeout: systemd recommends half; a quarter leaves room for a
        # slow tick
        self.tick_s = min(tick_s, watchdog_s / 4) if watchdog_s else tick_s
        #: the pipeline may go this long without progress (one long batch) before the
        #: pings stop
        self.hang_after_s = watchdog_s / 2 if watchdog_s else float("inf")
        self.ready_wait_s = ready_wait_s
        self.pings = 0
        self._progress_at = time.monotonic()
        self._stop = False
        self._reload = False
        self._wake = threading.Event()
        self._probe: threading.Event | None = None
        self._last_loop = 0.0
        self._withheld: str | None = None  # why the pings stopped (logged once)
        self.checks = 0  # times the watchdog was fed or withheld (each loop with a watchdog)
        self._status = ""

    # --- from signal handlers (they only set flags) ---------------------------------------

    def request_stop(self) -> None:
        self._stop = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Until a stop is requested; the daemon is started, and stopped by the caller."""
        deadline = time.monotonic() + self.ready_wait_s
        while (not self._stop and time.monotonic() < deadline
               and self.daemon.metrics.health()["status"] != "ok"):
            self._wake.wait(0.05)
        self._status = self.summary()
        self.notifier.ready(self._status)
        if self.watchdog_s:
            log.info("systemd watchdog: %.1f s; pinging every %.2f s while the alarm path is "
                     "alive", self.watchdog_s, self.tick_s)
            self._probe_pipeline()
            self.notifier.watchdog()
        while True:
            self._wake.wait(self.tick_s)
            self._wake.clear()
            if self._stop:
                break
            if self._reload:
                self._reload = False
                self.reload()
            if self.watchdog_s:
                self.feed_watchdog()
            self.update_status()
        self.notifier.stopping()

    def reload(self) -> None:
        if self.config_path is None:
            log.warning("SIGHUP ignored: the daemon was not started from a config file")
            return
        log.info("received SIGHUP, reloading %s", self.config_path)
        self.notifier.reloading()
        self.daemon.reload_config(self.config_path)
        self._status = self.summary()
        self.notifier.notify("READY=1", f"STATUS={self._status}")

    # --- the watchdog ---------------------------------------------------------------------

    def liveness(self) -> str | None:
        """None while the alarm path is alive, else what is wrong (one line)."""
        pipeline = self.daemon.pipeline
        now = time.monotonic()
        answered = self._probe is None or self._probe.is_set()
        if answered or pipeline.last_loop != self._last_loop:
            self._progress_at = now
        self._last_loop = pipeline.last_loop
        if answered:
            self._probe_pipeline()
        dead = [name for name, alive in self.daemon.workers().items() if not alive]
        if dead:
            return f"not running: {', '.join(dead)}"
        if now - self._progress_at > self.hang_after_s:
            since = pipeline.busy_since
            busy = "" if since is None else f"; one batch running for {now - since:.1f} s"
            return f"the alarm pipeline made no progress for {now - self._progress_at:.1f} s" \
                f"{busy}"
        return None

    def _probe_pipeline(self) -> None:
        probe = threading.Event()
        self._probe = probe
        self.daemon.inbox.call(probe.set)

    def feed_watchdog(self) -> None:
        problem = self.liveness()
        self.checks += 1
        if problem is None:
            if self.notifier.watchdog():
                self.pings += 1
            if self._withheld is not None:
                log.warning("systemd watchdog: the alarm path is alive again; pinging resumed")
                self._withheld = None
            return
        if self._withheld is None:
            log.error("systemd watchdog: not pinging: %s; systemd restarts the daemon %.0f s "
                      "after the last ping", problem, self.watchdog_s or 0)
            self._withheld = problem

    # --- the status line --------------------------------------------------------------------

    def summary(self) -> str:
        """One line for ``systemctl status``: health, alarms, inputs and the uplink."""
        d = self.daemon
        try:
            health = d.metrics.health()
            # counted as they change (a walk of 100,000 open alarms took 9 ms a second)
            counts = d.alarms.counts()
        except Exception as exc:  # never let the status line take the loop down
            return f"status unavailable: {exc!r}"
        up = sum(health["drivers"].values())
        active = counts["active_unacknowledged"] + counts["active_acknowledged"]
        line = (f"{'ok' if health['status'] == 'ok' else 'UNHEALTHY'}; "
                f"{sum(counts.values())} open alarm(s), {active} active; "
                f"drivers {up}/{len(health['drivers'])} up; "
                f"uplink {'connected' if health['uplink']['connected'] else 'DISCONNECTED'}")
        if health["reasons"]:
            line += f"; {health['reasons'][0]}"
        if d.last_reload is not None and not d.last_reload["ok"]:
            line += "; last reload FAILED"
        return line

    def update_status(self) -> None:
        line = self.summary()
        if line != self._status:
            self._status = line
            self.notifier.status(line)
