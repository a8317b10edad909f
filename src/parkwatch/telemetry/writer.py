"""One write of line protocol to an InfluxDB v2 write endpoint, and what its failure means.

influxdb-client's synchronous write API does the HTTP (auth header, gzip, TLS); this module
decides what an answer means for the spool, as Alertmanager's notifiers do: a failure is
either worth retrying (the server is away, overloaded, or refuses our credentials until an
engineer fixes them) or final (the server says the data itself is bad; retrying cannot help).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from parkwatch.config.telemetry import InfluxConfig

# influxdb-client (with urllib3 and reactivex) is imported by InfluxWriter, not here: it costs
# about 80 ms and 11 MB at start, and a gateway without `telemetry.influxdb` never needs it

log = logging.getLogger("parkwatch.telemetry")

#: answers that say the batch itself is wrong: drop it (counted), do not retry forever
FINAL_STATUS = frozenset({400, 413, 422})


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"  # keep the batch (spool it) and try again later
    REFUSED = "refused"  # the server will never take this batch


@dataclass
class Result:
    outcome: Outcome
    error: str = ""


class InfluxWriter:
    def __init__(self, cfg: InfluxConfig) -> None:
        import urllib3
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.rest import ApiException

        self._errors = (ApiException, urllib3.exceptions.HTTPError)
        self._precision = WritePrecision.MS
        self.cfg = cfg
        self.client = InfluxDBClient(
            url=cfg.url, token=cfg.secret() or "", org=cfg.org,
            timeout=int(cfg.timeout_s * 1000), enable_gzip=cfg.gzip,
            verify_ssl=cfg.verify_tls, ssl_ca_cert=cfg.ca_file)
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    @property
    def where(self) -> str:
        return f"{self.cfg.url} bucket {self.cfg.bucket}"

    def write(self, payload: bytes) -> Result:
        api_exception, http_error = self._errors
        try:
            self.api.write(bucket=self.cfg.bucket, org=self.cfg.org, record=payload,
                           write_precision=self._precision)
        except api_exception as exc:
            status = int(exc.status or 0)
            text = f"HTTP {status} {exc.reason or ''}: {(exc.body or '')!s:.300}".strip()
            return Result(Outcome.REFUSED if status in FINAL_STATUS else Outcome.RETRY, text)
        except (http_error, OSError) as exc:
            return Result(Outcome.RETRY, _reason(exc))
        return Result(Outcome.OK)

    def close(self) -> None:
        self.client.close()


def _reason(exc: BaseException) -> str:
    """The root cause of a connection failure, without urllib3's pool wrapping."""
    inner = getattr(exc, "reason", None)
    while isinstance(inner, BaseException) and getattr(inner, "reason", None) is not None:
        inner = inner.reason  # type: ignore[union-attr]
    return str(inner or exc)[:300]
