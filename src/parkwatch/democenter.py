"""The demo's command center: ``parkwatch center`` on SQLite in the demo's temporary directory,
on the demo's private broker, logged in as the shipped ACL's ``center`` role, with a console
user so that a newcomer can watch the alarms arrive on the board, and two more to walk a
hazard ticket with (a grid inspector, a tenant's safety officer).

The console user is ``district-duty``, an operator of the example park (alarms.operators):
an acknowledgement sent from the console is one the gateway obeys.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml

from parkwatch.center.config import load_center_config
from parkwatch.center.service import CenterService
from parkwatch.center.users import add_user
from parkwatch.firmware_sim.devices import CENTER_LOGIN

#: the console user: the example park's district duty officer (its alarms.operators)
CONSOLE_USER = "district-duty"
#: users to try the hazard tickets with (the same password): the park's grid inspector and
#: the safety officer of its tenant huaxin (examples/park.yaml)
TICKET_USERS = (("xinqiao-grid", "inspector", {"park": "xinqiao"}),
                ("huaxin-safety", "tenant", {"park": "xinqiao", "tenant": "huaxin"}))


class DemoCenter:
    """A started center; :attr:`url`, :attr:`user` and :attr:`password` say how to log in."""

    def __init__(self, workdir: Path, broker_port: int, mqtt_password: str) -> None:
        secret = _private_file(workdir / "center-mqtt.pass", mqtt_password)
        config = workdir / "center.yaml"
        config.write_text(yaml.safe_dump({
            "instance": "demo", "database": f"sqlite:///{workdir.resolve() / 'center.db'}",
            "broker": {"host": "127.0.0.1", "port": broker_port, "username": CENTER_LOGIN,
                       "password_file": str(secret), "client_id_prefix": "parkwatch-demo-center"},
            "http": {"port": 0, "state_file": str(workdir / "center-http.secret")},
        }, allow_unicode=True), encoding="utf-8")
        self.service = CenterService(load_center_config(config))
        self.user = CONSOLE_USER
        self.password = secrets.token_urlsafe(12)
        for name, role, scope in (("district-duty", "operator", {}), *TICKET_USERS):
            problem = add_user(self.service.store, name, role, self.password,
                               park=scope.get("park"), tenant=scope.get("tenant"))
            if problem is not None:
                self.service.store.close()
                raise RuntimeError(problem)

    def start(self, timeout: float = 10.0) -> None:
        """Serve the console and subscribe; wait (at most ``timeout``) until subscribed, so
        that the center stores the demo's first event."""
        self.service.start()
        self.service.ingest.subscribed.wait(timeout)

    @property
    def url(self) -> str:
        assert self.service.web is not None
        return self.service.web.url

    def stop(self) -> None:
        self.service.stop()


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return path
