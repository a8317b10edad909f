"""The InfluxDB v2 write client against a real HTTP server on loopback.

VictoriaMetrics (tests/test_telemetry.py) takes every write and checks no token; this server
answers what InfluxDB answers when things go wrong (a bad line, a wrong token, overload, a
dropped keep-alive connection, a slow disk), so each outcome the spool relies on is shown.
"""

from __future__ import annotations

import gzip
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_until
from parkwatch.config.telemetry import InfluxConfig
from parkwatch.telemetry.writer import InfluxWriter, Outcome, Result

TOKEN_ENV = "PARKWATCH_TEST_WRITER_TOKEN"
LINES = b"load_cell,sensor=A-2F-LC1 value=812.5 1700000000000\n"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class Script:
    """What the server answers next: (status, JSON message or None), and how it behaves."""

    answers: list[tuple[int, str | None]] = field(default_factory=list)
    delay_s: float = 0.0
    close_after_answer: bool = False  # and say so (Connection: close)
    drop_after_answer: bool = False  # and say nothing, as an idle timeout or a proxy does
    requests: list[Request] = field(default_factory=list)
    #: connections the server has closed (shut down and closed its socket)
    closed: int = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as InfluxDB

    def do_POST(self) -> None:
        script: Script = self.server.script  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        script.requests.append(Request(self.path, dict(self.headers.items()), body,
                                       self.client_address[1]))
        time.sleep(script.delay_s)
        status, message = script.answers.pop(0) if script.answers else (204, None)
        out = b"" if message is None else json.dumps(
            {"code": "invalid", "message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(out)))
        if out:
            self.send_header("Content-Type", "application/json")
        if script.close_after_answer:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)
        if script.close_after_answer or script.drop_after_answer:
            self.close_connection = True

    def log_message(self, *_args: Any) -> None:
        pass


class _HTTPServer(ThreadingHTTPServer):
    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.script.closed += 1  # type: ignore[attr-defined]


class Server:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.script = Script()
        self.httpd = _HTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.script = self.script  # type: ignore[attr-defined]
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       name="test-influx", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def writer(url: str, **more: Any) -> InfluxWriter:
    return InfluxWriter(InfluxConfig.model_validate(
        {"url": url, "org": "acme park", "bucket": "park/autogen", "secret_env": TOKEN_ENV,
         "timeout_s": 2.0, **more}))


def write_once(url: str, **more: Any) -> Result:
    w = writer(url, **more)
    try:
        return w.write(LINES)
    finally:
        w.close()


def test_a_write_is_one_post_with_token_org_bucket_and_precision(server, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    w = writer(f"http://127.0.0.1:{server.port}/influx/")
    try:
        assert w.write(LINES).outcome is Outcome.OK
        assert w.write(LINES + LINES).outcome is Outcome.OK
    finally:
        w.close()
    first, second = server.script.requests
    assert first.path == "/influx/api/v2/write?org=acme+park&bucket=park%2Fautogen&precision=ms"
    assert first.headers["Authorization"] == "Token s3cret-token"
    assert first.headers["Content-Type"].startswith("text/plain")
    assert "Content-Encoding" not in first.headers
    assert (first.body, second.body) == (LINES, LINES + LINES)
    assert first.client_port == second.client_port  # one kept-alive connection


def test_gzip_sends_the_lines_compressed(server, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t")
    w = writer(f"http://127.0.0.1:{server.port}", gzip=True)
    try:
        assert w.write(LINES * 100).outcome is Outcome.OK
    finally:
        w.close()
    (req,) = server.script.requests
    assert req.headers["Content-Encoding"] == "gzip"
    assert len(req.body) < len(LINES) * 10
    assert gzip.decompress(req.body) == LINES * 100


def test_a_batch_in_pieces_is_sent_whole_with_its_length(server, monkeypatch):
    """The sink hands over a batch as the pieces it was formatted in (never joined: 0.75 MB
    less held at each write); the server gets one body of the declared length (not chunked),
    plain or gzipped."""
    monkeypatch.setenv(TOKEN_ENV, "t")
    pieces = [LINES * k for k in (3, 1, 250, 7)] + [b"", "楼层,sensor=东1 value=1 1\n".encode()]
    for gz in (False, True):
        w = writer(f"http://127.0.0.1:{server.port}", gzip=gz)
        try:
            assert w.write(pieces).outcome is Outcome.OK
        finally:
            w.close()
    plain, packed = server.script.requests
    assert plain.body == b"".join(pieces)
    assert plain.headers["Content-Length"] == str(len(b"".join(pieces)))
    assert "Transfer-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.body) == b"".join(pieces)


def test_no_token_sends_no_authorization_header(server, monkeypatch):
    """InfluxDB 1.8 without authentication: the token is empty."""
    monkeypatch.setenv(TOKEN_ENV, "")
    w = writer(f"http://127.0.0.1:{server.port}")
    try:
        assert w.write(LINES).outcome is Outcome.OK
    finally:
        w.close()
    assert "Authorization" not in server.script.requests[0].headers


@pytest.mark.parametrize(("status", "outcome"), [
    (400, Outcome.REFUSED), (413, Outcome.REFUSED), (422, Outcome.REFUSED),
    (401, Outcome.RETRY), (403, Outcome.RETRY), (404, Outcome.RETRY), (429, Outcome.RETRY),
    (500, Outcome.RETRY), (503, Outcome.RETRY)])
def test_what_an_error_answer_means_for_the_spool(server, monkeypatch, status, outcome):
    """A batch the server calls bad is dropped (counted by the sink); anything an engineer or
    time can fix (a token, a bucket, overload) keeps the batch for a retry."""
    monkeypatch.setenv(TOKEN_ENV, "t")
    server.script.answers.append((status, f"the server says {status}"))
    w = writer(f"http://127.0.0.1:{server.port}")
    try:
        result = w.write(LINES)
        assert result.outcome is outcome
        assert result.error.startswith(f"HTTP {status} ")
        assert result.error.endswith(f": the server says {status}")
        assert w.write(LINES).outcome is Outcome.OK  # the connection is still good
    finally:
        w.close()


def test_a_connection_the_server_closed_is_replaced_without_losing_the_write(server,
                                                                             monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t")
    server.script.close_after_answer = True
    w = writer(f"http://127.0.0.1:{server.port}")
    try:
        for _ in range(3):
            assert w.write(LINES).outcome is Outcome.OK
    finally:
        w.close()
    assert len(server.script.requests) == 3
    assert len({r.client_port for r in server.script.requests}) == 3


def test_an_idle_connection_dropped_by_the_server_is_retried_once_on_a_new_one(server,
                                                                             monkeypatch):
    """A proxy or the server drops a kept-alive connection without saying so; the next write
    finds it dead before any answer and goes out again on a fresh connection."""
    monkeypatch.setenv(TOKEN_ENV, "t")
    server.script.drop_after_answer = True
    w = writer(f"http://127.0.0.1:{server.port}")
    try:
        for k in range(3):
            assert w.write(LINES).outcome is Outcome.OK
            wait_until(lambda k=k: server.script.closed >= k + 1, what="the server's close")
    finally:
        w.close()
    assert [r.body for r in server.script.requests] == [LINES] * 3
    assert len({r.client_port for r in server.script.requests}) == 3


def test_a_server_that_is_away_is_a_retry_naming_the_cause(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t")
    probe = Server()
    port = probe.port
    probe.close()
    result = write_once(f"http://127.0.0.1:{port}")
    assert result.outcome is Outcome.RETRY
    assert "Connection refused" in result.error


def test_a_write_slower_than_timeout_s_is_a_retry(server, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t")
    server.script.delay_s = 1.5
    w = writer(f"http://127.0.0.1:{server.port}", timeout_s=0.3)
    try:
        t0 = time.monotonic()
        result = w.write(LINES)
        took = time.monotonic() - t0
        server.script.delay_s = 0.0
        # the slow answer is over (the server has closed that connection); the next write gets
        # a connection of its own
        wait_until(lambda: server.script.closed >= 1, 5, "the slow answer over")
        assert w.write(LINES).outcome is Outcome.OK
    finally:
        w.close()
    assert (result.outcome, result.error) == (Outcome.RETRY, "timed out")
    assert took < 1.2


# --- https ------------------------------------------------------------------------------------


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    d = tmp_path_factory.mktemp("influx-pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(d, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=parkwatch test influx ca")
    openssl(d, "req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    return d


@pytest.fixture
def tls_server(pki: Path) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    s = Server(tls=context)
    yield s
    s.close()


def test_https_with_the_parks_ca_file(tls_server, pki, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t")
    w = writer(f"https://127.0.0.1:{tls_server.port}", ca_file=str(pki / "ca.crt"))
    try:
        assert w.write(LINES).outcome is Outcome.OK
    finally:
        w.close()
    assert tls_server.script.requests[0].body == LINES


def test_https_refuses_a_certificate_the_system_cas_did_not_sign(tls_server, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t")
    result = write_once(f"https://127.0.0.1:{tls_server.port}")
    assert result.outcome is Outcome.RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert tls_server.script.requests == []  # the token never left the gateway


def test_https_without_verification_when_the_engineer_turns_it_off(tls_server, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t")
    w = writer(f"https://127.0.0.1:{tls_server.port}", verify_tls=False)
    try:
        assert w.write(LINES).outcome is Outcome.OK
    finally:
        w.close()
