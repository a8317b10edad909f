"""One command-center instance: its store (migrated on start), its ingest and its watch over
hazard tickets' deadlines, started and stopped in order, and what its health says."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from parkwatch import __version__
from parkwatch.center.config import CenterConfig
from parkwatch.center.ingest import Ingest
from parkwatch.center.notices import NoticeCourier
from parkwatch.center.overdue import OverdueWatch
from parkwatch.center.store import CenterStore, open_store

if TYPE_CHECKING:
    from parkwatch.center.web.server import WebServer

log = logging.getLogger("parkwatch.center")


class CenterService:
    def __init__(self, cfg: CenterConfig, store: CenterStore | None = None) -> None:
        self.cfg = cfg
        self.store = store if store is not None else open_store(cfg.database)
        self.schema_version = self.store.migrate()
        self.ingest = Ingest(cfg, self.store)
        self.overdue = OverdueWatch(cfg.tickets, self.store)
        self.notices = NoticeCourier(cfg.tickets.notify, self.store)
        self.overdue.listeners.append(self.notices.wake)
        self.web: WebServer | None = None
        if cfg.http.enabled:
            self.web = self._console()

    def _console(self) -> WebServer:
        """The web console (its own modules load only when it is enabled)."""
        from parkwatch.center.web.app import Console
        from parkwatch.center.web.live import Hub
        from parkwatch.center.web.server import WebServer
        from parkwatch.center.web.session import Signer, session_key

        hub = Hub()
        self.ingest.on_commit.append(hub.notify)
        signer = Signer(session_key(self.cfg.http), self.cfg.http.session_max_age_s,
                        self.cfg.http.language)
        console = Console(self.cfg, self.store, self.ingest, hub, signer, self.health,
                          lambda: self.overdue.escalated)
        return WebServer(console, self.cfg.http.listen, self.cfg.http.port,
                         self.cfg.http.trusted_proxies)

    def start(self) -> None:
        if self.web is not None:
            self.web.start()  # first: a port in use stops the start before anything runs
        self.ingest.start()
        self.notices.start()
        self.overdue.start()
        log.info("parkwatch center %s started: instance %s, database %s (schema %d), broker "
                 "%s:%d, events %s", __version__, self.cfg.instance, _safe(self.cfg.database),
                 self.schema_version, self.cfg.broker.host, self.cfg.broker.port,
                 self.ingest.topics["events"])

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        self.overdue.stop()
        self.notices.stop()
        self.ingest.stop()
        self.store.close()
        log.info("parkwatch center stopped")

    def health(self) -> dict[str, Any]:
        """ok, or unhealthy with the reasons (the broker or the database lost)."""
        reasons = []
        broker_up = self.ingest.connected.is_set() and self.ingest.commands.connected.is_set()
        database_up = self.ingest.figures.database_up and self.store.ping()
        if not broker_up:
            reasons.append("broker disconnected")
        if not database_up:
            reasons.append("database unavailable: events wait in the broker")
        if not self.ingest.alive:
            reasons.append("ingest not running")
        f = self.ingest.figures
        return {"status": "unhealthy" if reasons else "ok", "reasons": reasons,
                "database_up": database_up, "broker_connected": broker_up,
                "instance": self.cfg.instance, "schema_version": self.schema_version,
                "stored": f.stored, "duplicates": f.duplicates, "lag_s": round(f.lag_s, 3),
                "rejected": dict(self.ingest.rejections.total),
                "receiver_restarts": self.ingest.restarts}


def _safe(url: str) -> str:
    """A database URL as the log may show it: without a password."""
    head, sep, tail = url.partition("://")
    if "@" in tail:
        creds, _, rest = tail.rpartition("@")
        tail = f"{creds.partition(':')[0]}@{rest}"
    return head + sep + tail
