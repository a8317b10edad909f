"""A command center with its console on a free port, its users, and a small HTTP client that
keeps cookies like a browser (shared by the console's HTTP and browser tests)."""

from __future__ import annotations

import http.client
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from conftest import wait_until
from parkwatch.center.config import load_center_config
from parkwatch.center.service import CenterService
from parkwatch.center.users import add_user
from parkwatch.devtools.localbroker import LocalMosquitto
from test_center_ingest import center_yaml

PASSWORDS = {"王工": "operator-pass-1", "viewer": "viewer-pass-1"}


@pytest.fixture
def console(broker: LocalMosquitto, tmp_path: Path) -> Iterator[CenterService]:
    """A center on SQLite with its console on a free port; users 王工 (operator) and viewer."""
    cfg = load_center_config(center_yaml(tmp_path / "center.yaml", broker,
                                         f"sqlite:///{tmp_path / 'center.db'}", "web"))
    service = CenterService(cfg)
    assert add_user(service.store, "王工", "operator", PASSWORDS["王工"]) is None
    assert add_user(service.store, "viewer", "viewer", PASSWORDS["viewer"]) is None
    service.start()
    wait_until(service.ingest.subscribed.is_set, 10, "the center subscribed")
    assert service.web is not None
    wait_until(lambda: service.web is not None and service.web.started, 10, "console serving")
    yield service
    service.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def console_any(request: pytest.FixtureRequest, broker: LocalMosquitto,
                tmp_path: Path) -> Iterator[CenterService]:
    """The same console on SQLite and on PostgreSQL (the server of the test run, a fresh
    database), for pages whose store queries are new; the same users."""
    database = f"sqlite:///{tmp_path / 'center.db'}"
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        if server.proc is None:
            server.start()
        database = server.create_database()
    cfg = load_center_config(center_yaml(tmp_path / "center.yaml", broker, database, "web"))
    service = CenterService(cfg)
    for name, role in (("王工", "operator"), ("viewer", "viewer")):
        assert add_user(service.store, name, role, PASSWORDS[name]) is None
    service.start()
    wait_until(service.ingest.subscribed.is_set, 10, "the center subscribed")
    wait_until(lambda: service.web is not None and service.web.started, 10, "console serving")
    yield service
    service.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str
    raw: bytes = b""

    def csrf(self) -> str:
        m = re.search(r'name="csrf" value="([^"]+)"', self.body)
        assert m, self.body
        return m.group(1)


class Client:
    """HTTP/1.1 to the console on loopback, with a cookie jar (one browser's session)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        #: sent with every request (e.g. the X-Forwarded-For a reverse proxy would add)
        self.headers: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None,
                files: list[tuple[str, str, bytes]] | None = None) -> Reply:
        """``files``: (field, file name, bytes) sent with ``form`` as multipart/form-data."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        hdrs = {**self.headers, **(headers or {})}
        body = None
        if files is not None:
            body, hdrs["Content-Type"] = multipart(form or {}, files)
        elif form is not None:
            body = urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            data = raw.decode("utf-8", "replace")
            for value in resp.headers.get_all("Set-Cookie") or []:
                jar: SimpleCookie = SimpleCookie()
                jar.load(value)
                for k, morsel in jar.items():
                    self.cookies[k] = morsel.value
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, raw)
        finally:
            conn.close()

    def send(self, path: str, form: dict[str, str],
             files: list[tuple[str, str, bytes]]) -> Reply:
        """A multipart/form-data POST, as a form with a file input sends it."""
        return self.request("POST", path, form, files=files)

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str], **kw: dict[str, str]) -> Reply:
        return self.request("POST", path, form, **kw)

    def login(self, user: str, password: str | None = None) -> Reply:
        token = self.get("/login").csrf()
        return self.post("/login", {"csrf": token, "user": user,
                                    "password": password or PASSWORDS[user]})


def multipart(form: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) and its Content-Type."""
    boundary = f"----parkwatch{secrets.token_hex(12)}"
    out = bytearray()
    for name, value in form.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    for name, filename, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
