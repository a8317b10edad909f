"""The periodic points: floor loads, sensor limits and the gateway's counters.

Read on the pipeline thread (the owner of the rule state) every `aggregates_interval_s`, turned
into line protocol there (a few hundred points at most), and handed to the sink.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parkwatch.park import ParkModel
from parkwatch.telemetry.lineproto import fields_text, line, prefix
from parkwatch.telemetry.schema import FLOOR_LOAD, GATEWAY, SENSOR_LIMITS

LIMITS = ("high_warning", "high_critical", "low_warning", "low_critical")


class Aggregates:
    def __init__(self, park: ParkModel) -> None:
        cfg = park.cfg
        self.park = park
        pid = cfg.park.id
        settings = cfg.rules.section("floor_load")
        self.warning_pct = settings.warning_ratio * 100.0
        self.critical_pct = settings.critical_ratio * 100.0
        self.group_prefix = [prefix(FLOOR_LOAD.name, {
            "park": pid, "building": g.building, "floor": g.floor, "zone": g.zone,
            "group": g.id}) for g in park.groups]
        self.capacity = np.array([g.capacity_kn for g in park.groups])
        # limits only change with the config: every sensor's line but its timestamp is written
        # once, all in one string whose line ends take the time at each write (a raw newline
        # cannot occur inside a line: line protocol escapes it); a string and a list entry a
        # sensor were 0.6 MB more with 10,000 sensors
        lines: list[str] = []
        for s in park.sensors:
            th = cfg.thresholds_for(s.config)
            if th is None:
                continue
            text = fields_text({k: float(v) for k in LIMITS if (v := getattr(th, k)) is not None})
            if text:
                lines.append(prefix(SENSOR_LIMITS.name, {
                    "park": pid, "building": s.config.building, "floor": s.config.floor,
                    "zone": s.config.zone, "tenant": ",".join(s.tenants), "sensor": s.id,
                    "kind": s.config.kind}) + text + "\n")
        self.limits = "".join(lines)
        self.limits_points = len(lines)
        self.gateway_prefix = prefix(GATEWAY.name, {"park": pid, "gateway": cfg.gateway.id})

    def floors(self, floor_kind: Any, now: float) -> tuple[str, int]:
        """The floor_load points of every floor and zone, from the floor-load rule's state."""
        if not self.group_prefix or floor_kind is None or not len(floor_kind.members):
            return "", 0
        ms = round(now * 1000)
        m = floor_kind.members
        heard = (~floor_kind.failed[m] & ~np.isnan(floor_kind.value[m])
                 & (floor_kind.good_ts[m] + floor_kind.stale_after > now))
        cells_heard = np.add.reduceat(heard.astype(np.int64), floor_kind.starts)
        cells = np.diff(np.append(floor_kind.starts, m.shape[0]))
        complete = (cells_heard == cells) & ~floor_kind.data_raised
        out = []
        for g, pre in enumerate(self.group_prefix):
            total = float(floor_kind.total[g])
            known = bool(complete[g]) and np.isfinite(total)
            out.append(line(pre, {
                "load_kn": total if known else None,
                "capacity_kn": float(self.capacity[g]),
                "load_pct": total / self.capacity[g] * 100.0 if known else None,
                "warning_pct": self.warning_pct, "critical_pct": self.critical_pct,
                "cells": int(cells[g]), "cells_heard": int(cells_heard[g])}, ms))
        return "".join(x for x in out if x), len(out)

    def sensor_limits(self, now: float) -> tuple[str, int]:
        return self.limits.replace("\n", f" {round(now * 1000)}\n"), self.limits_points

    def gateway(self, counters: dict[str, int], now: float) -> tuple[str, int]:
        fields = {k: int(counters[k]) for k in GATEWAY.fields if k in counters}
        text = line(self.gateway_prefix, fields, round(now * 1000))
        return (text, 1) if text else ("", 0)
