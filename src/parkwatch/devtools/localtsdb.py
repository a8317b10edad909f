"""A private time-series server that speaks the InfluxDB v2 write API, on a free loopback port.

VictoriaMetrics from Debian's packages (InfluxDB 2.x is packaged neither in Debian nor on
PyPI): it accepts `POST /api/v2/write` line protocol and stores each numeric field as the
series `{measurement}_{field}` with the tags as labels (string fields are not kept).  Started
with a 1 ms deduplication interval, so a point written twice is stored once, as InfluxDB
overwrites a point with the same series and timestamp.  Used by the tests and the telemetry
benchmark; the process dies with its parent.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from typing import Any

from parkwatch.devtools.localbroker import LocalServer

INSTALL_HINT = "apt-get install -y victoria-metrics"


class TsdbUnavailable(RuntimeError):
    pass


def find_victoria() -> str | None:
    for candidate in (shutil.which("victoria-metrics"), "/usr/bin/victoria-metrics"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class LocalVictoria(LocalServer):
    NAME = "victoria"
    STOP_GRACE_S = 10.0  # it flushes its data on SIGTERM

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> LocalVictoria:
        binary = find_victoria()
        if binary is None:
            raise TsdbUnavailable(f"VictoriaMetrics is not installed; install it with: "
                                  f"sudo {INSTALL_HINT}")
        self._spawn([binary, f"-httpListenAddr={self.host}:{self.port}",
                     f"-storageDataPath={self.workdir / 'data'}", "-retentionPeriod=100y",
                     "-dedup.minScrapeInterval=1ms", "-search.latencyOffset=0s",
                     "-loggerLevel=ERROR", "-memory.allowedPercent=10"], timeout, TsdbUnavailable)
        return self

    def __enter__(self) -> LocalVictoria:
        return self.start()

    # --- reading back -----------------------------------------------------------------------

    def _get(self, path: str, params: list[tuple[str, str]] | None = None) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=30) as resp:
            return bytes(resp.read())

    def flush(self) -> None:
        """Make what was written searchable now (it is otherwise within a second or two)."""
        self._get("/internal/force_flush")

    def export(self, match: str = '{__name__=~".+"}') -> list[dict[str, Any]]:
        """Every stored series matching a selector: `{"metric": labels, "values", "timestamps"}`
        with the samples in time order."""
        self.flush()
        body = self._get("/api/v1/export", [("match[]", match), ("start", "0")])
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def settle(self, timeout: float = 20.0) -> int:
        """Wait until everything written so far is searchable.  VictoriaMetrics makes fresh
        rows searchable within a second or so, even after a forced flush: a marker point is
        written, waited for, and the count of samples must then hold still for a second."""
        mark = time.time_ns() // 1_000_000
        req = urllib.request.Request(f"{self.url}/api/v2/write?bucket=settle&precision=ms",
                                     data=f"parkwatch_settle v=1 {mark}\n".encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        deadline = time.monotonic() + timeout
        while mark not in next(iter(self.export('{__name__="parkwatch_settle_v"}')),
                               {"timestamps": []})["timestamps"]:
            if time.monotonic() > deadline:
                raise TimeoutError("VictoriaMetrics did not make a written point searchable")
            time.sleep(0.1)
        last = -1
        while True:
            seen = self.samples('{__name__!~"parkwatch_settle_.*"}')
            if seen == last or time.monotonic() > deadline:
                return seen
            last = seen
            time.sleep(1.0)

    def samples(self, match: str = '{__name__=~".+"}') -> int:
        return sum(len(s["values"]) for s in self.export(match))

    def wait_samples(self, match: str, count: int, timeout: float = 30.0) -> int:
        """Wait until at least `count` samples match; the number seen."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = self.samples(match)
            if seen >= count:
                return seen
            time.sleep(0.2)
        return seen
