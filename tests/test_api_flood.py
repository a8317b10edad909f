"""The local HTTP API cannot be tied up (issue 22): a flood of idle and half-sent connections
adds no thread and keeps no memory the next flood does not reuse, an operator still gets an
answer at once, and every misbehaving client is refused, timed out or dropped with a logged
reason, never a traceback.

The daemon runs as a real process (its threads, RSS and stderr are read from outside); a hung
pipeline is tried on the in-process daemon, and the bounds themselves (eviction, timeouts,
431, stop) on the server alone.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, lora_park, wait_until, write_yaml
from parkwatch.daemon.httpserver import HttpServer, Limits, Request, Response, json_response
from parkwatch.rejections import Rejections

FLOOD = 1_000
PARTIAL_HEAD = b"GET /api/alarms HTTP/1.1\r\nHost: parkwatch\r\nAuthoriz"


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    """This process opens a thousand sockets: its soft open-file limit raised to the hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < FLOOD + 200:
        pytest.skip(f"open-file limit {soft}: too low for {FLOOD} connections")


# --- the daemon as a process ------------------------------------------------------------------


class DaemonProcess:
    """`parkwatch run` on the test broker, its stderr collected line by line."""

    def __init__(self, tmp_path: Path, broker_port: int, api: dict[str, Any]) -> None:
        data = lora_park(tmp_path, broker_port)
        data["api"].update(api)
        cfg = write_yaml(data, tmp_path / "park.yaml")
        self.proc = subprocess.Popen([sys.executable, "-m", "parkwatch", "run", "--config",
                                      str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(lambda: any("HTTP API on" in x for x in self.lines), 20, "the HTTP API")
        found = re.search(r"HTTP API on http://[^:]+:(\d+)/",
                          next(x for x in self.lines if "HTTP API on" in x))
        assert found is not None
        self.port = int(found.group(1))
        self.token = (tmp_path / "state" / "api.token").read_text(encoding="utf-8").strip()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def proc_status(self, key: str) -> int:
        """A figure of /proc/<pid>/status (Threads, or VmRSS in kB)."""
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    def descriptors(self) -> int:
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))

    def get(self, path: str, token: str | None = None) -> tuple[int, Any, float]:
        """(status, JSON body, seconds taken) of one request on a fresh connection."""
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token or self.token}"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read()), time.monotonic() - t0
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def start_daemon(broker: Any, tmp_path: Path) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def start(**api: Any) -> DaemonProcess:
        d = DaemonProcess(tmp_path, broker.port, api)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def reads_eof(sock: socket.socket, within: float) -> bool:
    """Whether the server closed `sock` within `within` seconds (what it sent is skipped)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def answer(sock: socket.socket) -> tuple[int, bytes]:
    """(status, whole response) of what the server sends until it closes `sock`."""
    data = b""
    sock.settimeout(10)
    while chunk := sock.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def flood(d: DaemonProcess, fds: int) -> float:
    """FLOOD connections, every other one with part of a request head, held while an
    authorised request is made (its seconds returned), then closed."""
    held = Limits().max_connections
    sockets: list[socket.socket] = []
    try:
        for i in range(FLOOD):
            s = connect(d.port)
            if i % 2:
                s.sendall(PARTIAL_HEAD)
            sockets.append(s)
        # the daemon holds max_connections of them: it closed the oldest to make room
        assert all(reads_eof(s, 5) for s in sockets[:FLOOD - held])
        wait_until(lambda: abs(d.descriptors() - (fds + held)) <= 3, 10,
                   "the daemon to hold the newest max_connections")
        status, body, took = d.get("/api/alarms")
        assert status == 200 and "alarms" in body
        return took
    finally:
        for s in sockets:
            s.close()
        wait_until(lambda: d.descriptors() <= fds + 3, 10, "the daemon to close the flood")


def test_a_flood_of_idle_and_half_sent_connections_ties_up_nothing(start_daemon):
    d = start_daemon()  # the limits as shipped
    for _ in range(3):  # warmed up: whatever a request starts once is started
        assert d.get("/api/alarms")[0] == 200
    threads, rss, fds = d.proc_status("Threads"), d.proc_status("VmRSS"), d.descriptors()

    most = [threads]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            most.append(d.proc_status("Threads"))
            sampling.wait(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        took = flood(d, fds)
    finally:
        sampling.set()
        sampler.join()
    assert took < 1.0, f"an authorised request took {took:.2f} s behind the flood"
    assert max(most) <= threads, f"threads {threads} before the flood, up to {max(most)} in it"

    # the memory the connections took is the daemon's again, and the next flood reuses it
    after = d.proc_status("VmRSS")
    assert after - rss < 5 * 1024, f"RSS {rss} kB before the flood, {after} kB after it"
    flood(d, fds)
    again = d.proc_status("VmRSS")
    assert again - after < 2 * 1024, f"RSS {after} kB after a flood, {again} kB after another"
    assert "rejected (evicted)" in d.stderr
    assert "Traceback" not in d.stderr, d.stderr[-3000:]


def test_clients_that_misbehave_are_refused_or_dropped_with_a_reason_never_a_traceback(
        start_daemon):
    d = start_daemon(idle_timeout_s=1, body_timeout_s=1)
    alarms = f"GET /api/alarms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {d.token}\r\n"

    # an oversized body is refused from its Content-Length, before any of it is read
    s = connect(d.port)
    s.sendall(f"POST /api/alarms/X1/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {d.token}"
              f"\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n".encode())
    status, raw = answer(s)
    s.close()
    assert status == 413 and b"Connection: close" in raw

    # a client that goes away mid-response: asks for many answers, then resets the connection
    s = connect(d.port)
    s.sendall((alarms + "\r\n").encode() * 50)
    s.recv(1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()

    # one that sends part of a body and leaves
    s = connect(d.port)
    s.sendall(f"POST /api/alarms/X1/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {d.token}"
              "\r\nContent-Length: 100\r\n\r\n{\"by\": ".encode())
    s.close()

    # one that stops in the middle of a body is closed after body_timeout_s
    s = connect(d.port)
    s.sendall(f"POST /api/alarms/X1/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {d.token}"
              "\r\nContent-Length: 100\r\n\r\n{\"by\": ".encode())
    assert reads_eof(s, 10), "a stalled body was not timed out"
    s.close()

    # a kept-alive connection is closed once idle for idle_timeout_s
    s = connect(d.port)
    s.sendall((alarms + "\r\n").encode())
    t0 = time.monotonic()
    assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert reads_eof(s, 10), "an idle kept-alive connection was not closed"
    assert time.monotonic() - t0 >= 0.9
    s.close()

    # a garbled request is 400
    s = connect(d.port)
    s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    assert answer(s)[0] == 400
    s.close()

    # the daemon still answers, and logged every kind of client error once, with its reason
    assert d.get("/api/alarms")[0] == 200
    wait_until(lambda: all(f"rejected ({reason})" in d.stderr for reason in (
        "too_large", "disconnected", "body_timeout", "malformed")), 5, "the reasons logged")
    wait_until(lambda: re.search(r"rejected \((ECONNRESET|EPIPE)\)", d.stderr) is not None, 5,
               "the reset mid-response logged")
    assert "Traceback" not in d.stderr, d.stderr[-3000:]


def test_requests_waiting_on_a_hung_pipeline_leave_a_worker_for_healthz(daemon):
    """/api/status waits for the pipeline thread; however many ask while it hangs, /healthz
    and the store's reads still get a worker (the old server had a thread per connection)."""
    token = (daemon.state_dir / "api.token").read_text(encoding="utf-8").strip()
    port = daemon.api.port

    def get(path: str) -> tuple[int, float]:
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            return resp.status, time.monotonic() - t0
        finally:
            conn.close()

    release = threading.Event()
    daemon.inbox.call(lambda: release.wait(10))  # the pipeline thread hangs in a batch
    waiting = Limits().workers - 1
    answers: list[int] = []
    askers = [threading.Thread(target=lambda: answers.append(get("/api/status")[0]))
              for _ in range(waiting)]
    try:
        for t in askers:
            t.start()
        wait_until(lambda: daemon.api.pipeline_waiting == waiting, 5, "the requests to wait")
        status, took = get("/api/status")  # one more: told at once that the pipeline is busy
        assert status == 503 and took < 1.0
        for path in ("/healthz", "/metrics", "/api/alarms"):
            status, took = get(path)
            assert status in (200, 503) and took < 1.0, (path, status, took)
    finally:
        release.set()
        for t in askers:
            t.join()
    assert len(answers) == waiting


# --- the server alone ---------------------------------------------------------------------------


class Echo:
    """An app whose requests are authorised when they carry `Authorization: yes`."""

    def admit(self, head: Request) -> Response | bool:
        return head.headers.get("authorization") == "yes"

    def handle(self, request: Request) -> Response:
        return json_response(200, {"path": request.path, "body": request.body.decode()})


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[HttpServer] = []

    def start(**limits: Any) -> HttpServer:
        server = HttpServer("127.0.0.1", 0, Echo(), Limits(**limits),
                            Rejections(logging.getLogger("parkwatch.api"), "HTTP API request"))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def test_at_max_connections_the_oldest_unauthorised_connection_makes_room(serve):
    server = serve(max_connections=4, workers=1)
    operator = connect(server.port)
    operator.sendall(b"GET /mine HTTP/1.1\r\nHost: x\r\nAuthorization: yes\r\n\r\n")
    assert operator.recv(65536).startswith(b"HTTP/1.1 200 ")
    idle = [connect(server.port) for _ in range(3)]
    newcomer = connect(server.port)  # the fifth: the oldest idle one is closed for it
    assert reads_eof(idle[0], 5)
    newcomer.sendall(b"GET /new HTTP/1.1\r\nHost: x\r\n\r\n")
    assert newcomer.recv(65536).startswith(b"HTTP/1.1 200 ")
    # the operator's connection, authorised, is never the one closed
    more = [connect(server.port) for _ in range(3)]
    assert reads_eof(idle[1], 5) and reads_eof(idle[2], 5)
    operator.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
    assert operator.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert server.dropped.total["evicted"] >= 3
    for s in [operator, newcomer, *idle, *more]:
        s.close()


def test_timeouts_oversized_heads_and_malformed_lines(serve, caplog):
    caplog.set_level(logging.DEBUG, "parkwatch.api")
    server = serve(header_timeout_s=0.3, body_timeout_s=0.3, idle_timeout_s=0.3, max_head=1024)
    silent = connect(server.port)
    half = connect(server.port)
    half.sendall(PARTIAL_HEAD)
    assert reads_eof(silent, 5) and reads_eof(half, 5)
    assert server.dropped.total["header_timeout"] == 2

    s = connect(server.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * 2000 + b"\r\n\r\n")
    assert answer(s)[0] == 431
    s.close()
    assert server.refused.total["head_too_large"] == 1

    # a malformed line is 400, logged without the bytes it held
    s = connect(server.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization Bearer s3cret-token\r\n\r\n")
    status, raw = answer(s)
    s.close()
    assert status == 400 and b"s3cret" not in raw and "s3cret" not in caplog.text
    assert server.refused.total["malformed"] == 1
    assert not [r for r in caplog.records if r.exc_info], "a client error logged a traceback"
    for s in (silent, half):
        s.close()


def test_stop_closes_every_connection_and_joins_its_threads(serve):
    server = serve(workers=2)
    names = {t.name for t in threading.enumerate()}
    assert {"parkwatch-api", "parkwatch-api-worker_0", "parkwatch-api-worker_1"} <= names
    held = [connect(server.port) for _ in range(5)]
    server.stop()
    assert all(reads_eof(s, 5) for s in held)
    for s in held:
        s.close()
    # the no_leaked_threads fixture checks that the loop and the workers have ended
