"""One write of line protocol to an InfluxDB v2 write endpoint, and what its answer means.

The write API is a single request: ``POST {url}/api/v2/write?org=&bucket=&precision=ms`` with
the token in ``Authorization: Token …`` and the lines as the body, answered ``204``.  It is
spoken here over one kept-alive ``http.client`` connection (TLS from ``ssl``), not through
influxdb-client: that client brings urllib3, reactivex and dateutil, about 12 MB of a gateway's
80 MB budget, for one POST.

This module also decides what an answer means for the spool, as Alertmanager's notifiers do: a
failure is either worth retrying (the server is away, overloaded, or refuses our credentials
until an engineer fixes them) or final (the server says the data itself is bad; retrying
cannot help).
"""

from __future__ import annotations

import enum
import http.client
import json
import ssl
import zlib
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from parkwatch.config.telemetry import InfluxConfig

#: answers that say the batch itself is wrong: drop it (counted), do not retry forever
FINAL_STATUS = frozenset({400, 413, 422})

#: a kept-alive connection the server closed while idle fails the next request with one of
#: these before any answer; the write is then sent once more on a new connection (writing the
#: same points twice is harmless: a point is keyed by its series and timestamp)
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"  # keep the batch (spool it) and try again later
    REFUSED = "refused"  # the server will never take this batch


@dataclass
class Result:
    outcome: Outcome
    error: str = ""


class InfluxWriter:
    """Writes batches of line protocol (millisecond timestamps) to one bucket.

    Not thread-safe: the telemetry thread is its only user.
    """

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        url = urlsplit(cfg.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        query = urlencode({"org": cfg.org, "bucket": cfg.bucket, "precision": "ms"})
        self._target = f"{url.path.rstrip('/')}/api/v2/write?{query}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8",
                         "Accept": "application/json", "User-Agent": "parkwatch"}
        token = cfg.secret()
        if token:
            self._headers["Authorization"] = f"Token {token}"
        if cfg.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._tls = self._tls_context() if self._https else None
        self._conn: http.client.HTTPConnection | None = None

    @property
    def where(self) -> str:
        return f"{self.cfg.url} bucket {self.cfg.bucket}"

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cfg.ca_file)
        if not self.cfg.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self._host, self._port,
                                               timeout=self.cfg.timeout_s, context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.cfg.timeout_s)

    def write(self, payload: bytes | list[bytes]) -> Result:
        """POST one batch: bytes, or pieces sent one after another (never joined)."""
        pieces = [payload] if isinstance(payload, bytes) else payload
        body: bytes | list[bytes]
        if self.cfg.gzip:
            packer = zlib.compressobj(5, zlib.DEFLATED, 31)  # 31: the gzip format
            body = b"".join([*map(packer.compress, pieces), packer.flush()])
            headers = self._headers
        else:
            body = pieces
            headers = {**self._headers, "Content-Length": str(sum(map(len, pieces)))}
        kept = self._conn is not None
        while True:
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request("POST", self._target, body, headers)
                answer = self._conn.getresponse()
                text = answer.read()
            except STALE as exc:
                self.close()
                if kept:  # the server dropped the idle connection: once more, on a new one
                    kept = False
                    continue
                return Result(Outcome.RETRY, _reason(exc))
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                return Result(Outcome.RETRY, _reason(exc))
            if answer.will_close:
                self.close()
            break
        if 200 <= answer.status < 300:
            return Result(Outcome.OK)
        error = f"HTTP {answer.status} {answer.reason}: {_message(text)}".strip(" :")
        return Result(Outcome.REFUSED if answer.status in FINAL_STATUS else Outcome.RETRY, error)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _message(body: bytes) -> str:
    """The server's explanation: InfluxDB answers `{"code": …, "message": …}`."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:300]
    message = doc.get("message") if isinstance(doc, dict) else None
    if isinstance(message, str):
        return message[:300]
    return text[:300]


def _reason(exc: BaseException) -> str:
    """A connection failure in words: `timed out`, `[Errno 111] Connection refused`, …"""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return (str(exc) or type(exc).__name__)[:300]
