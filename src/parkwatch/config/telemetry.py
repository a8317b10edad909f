"""Where park trends go: the InfluxDB sink, its on-disk spool and how often it writes.

Telemetry never stands in the way of an alarm: it has its own thread, its own spool and its
own bound on disk, and a server that is away only makes the spool grow.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from parkwatch.config.base import Strict
from parkwatch.config.delivery import Backoff, Secret

MiB = 1024 * 1024


class InfluxConfig(Secret):
    """An InfluxDB v2 write endpoint: InfluxDB 2.x and 3.x, 1.8+ through its v2 compatibility
    API, or anything else that speaks it (VictoriaMetrics).

    The token is the secret (secret_file or secret_env).  For InfluxDB 1.8 the token is
    `user:password` (or empty without auth), the org `-` and the bucket `database/retention`.
    """

    url: str = Field(description="base URL, e.g. http://127.0.0.1:8086; a path prefix may "
                     "follow, a query string or a user and password may not")
    org: str = Field("-", min_length=1, description="organisation (1.8: '-')")
    bucket: str = Field(min_length=1, description="bucket (1.8: 'database/retention_policy')")
    timeout_s: float = Field(10.0, gt=0, le=300, description="a write that takes longer failed")
    verify_tls: bool = Field(True, description="check the server's certificate (https)")
    ca_file: str | None = Field(None, description="CA bundle for https; the system's if omitted")
    gzip: bool = Field(False, description="gzip request bodies (saves uplink bandwidth)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, e.g. "
                             f"http://127.0.0.1:8086; got {url!r}")
        if parts.username is not None or parts.password is not None:
            # not echoed: the URL holds a secret
            raise ValueError("must not carry a user or password; put the token in secret_file "
                             "or secret_env (InfluxDB 1.8: 'user:password' as the token)")
        if parts.query or parts.fragment or url.endswith(("?", "#")):
            # the write request's own query (org, bucket, precision) would silently replace it
            raise ValueError(f"must not carry a query string or fragment: org and bucket are "
                             f"keys of their own, and parkwatch adds the write API's query "
                             f"itself; got {url!r}")
        return url.rstrip("/")


class SpoolConfig(Strict):
    """The on-disk store-and-forward spool in `{state_dir}/spool`.

    Batches the server did not take (or all of them, when no server is configured) are
    appended here and replayed in order.  When the spool would grow past `max_bytes`, whole
    segments are dropped, the oldest telemetry first and alarm events last, and counted.
    """

    max_bytes: int = Field(256 * MiB, ge=64 * 1024, description="bound on the spool's size")
    segment_bytes: int = Field(4 * MiB, ge=4096, description="size at which a segment file is "
                               "closed and a new one begun; the unit of dropping")
    fsync: Literal["always", "interval", "never"] = Field(
        "interval", description="when appended batches are forced to disk: after each one, "
        "at most every fsync_interval_s, or when the OS decides.  A crash of the process loses "
        "nothing already appended in any mode; this only matters for power loss")
    fsync_interval_s: float = Field(1.0, gt=0, le=3600, description="for fsync: interval")

    @model_validator(mode="after")
    def _segments_fit(self) -> SpoolConfig:
        if self.segment_bytes * 4 > self.max_bytes:
            raise ValueError(f"segment_bytes ({self.segment_bytes}) must be at most a quarter "
                             f"of max_bytes ({self.max_bytes}): segments are the unit of "
                             "dropping")
        return self


class TelemetryConfig(Strict):
    """Readings, floor loads, limits, alarm events and gateway statistics for Grafana."""

    influxdb: InfluxConfig | None = Field(
        None, description="the server; omit to keep recent history in the spool only (it is "
        "uploaded once a server is configured)")
    readings: bool = Field(True, description="write every reading (off: aggregates, limits, "
                           "alarm events and gateway statistics only)")
    batch_points: int = Field(5000, ge=1, le=1_000_000, description="write as soon as this "
                              "many points are waiting")
    flush_interval_s: float = Field(1.0, gt=0, le=600, description="and at least this often; "
                                    "at most this much telemetry is lost in a crash")
    aggregates_interval_s: float = Field(30.0, gt=0, le=86_400, description="how often floor "
                                         "loads, sensor limits and gateway statistics are written")
    retry: Backoff = Field(default_factory=lambda: Backoff(initial_s=1.0, max_s=60.0),
                           description="waits between attempts while the server fails")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, description="on-disk spool")
