"""The park as the running daemon sees it: sensors by index, their places and their tenants.

Built once from the config; the rule engine uses the index, the alarm path the names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from parkwatch.config.model import SENSOR_KINDS, ParkConfig, SensorConfig

KIND_CODE = {kind: code for code, kind in enumerate(SENSOR_KINDS)}


@dataclass(frozen=True, slots=True)
class SensorInfo:
    index: int
    config: SensorConfig
    building_name: str
    floor_name: str
    zone_name: str
    tenants: tuple[str, ...]  # tenant ids this sensor's alarms concern (contract field)
    tenant_names: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def place(self) -> str:
        return " ".join(p for p in (self.building_name, self.floor_name, self.zone_name) if p)


class ParkModel:
    """Sensor table and place lookups derived from a validated :class:`ParkConfig`."""

    def __init__(self, cfg: ParkConfig) -> None:
        self.cfg = cfg
        self.sensors: list[SensorInfo] = []
        self.index: dict[str, int] = {}
        buildings = {b.id: b for b in cfg.buildings}
        tenant_names = {t.id: t.name for t in cfg.tenants}
        for i, s in enumerate(cfg.sensors):
            b = buildings.get(s.building) if s.building else None
            f = next((f for f in b.floors if f.id == s.floor), None) if b and s.floor else None
            z = next((z for z in f.zones if z.id == s.zone), None) if f and s.zone else None
            tenants = self._tenants_for(s)
            self.sensors.append(SensorInfo(
                index=i, config=s,
                building_name=(b.name or b.id) if b else "",
                floor_name=(f.name or f.id) if f else "",
                zone_name=(z.name or z.id) if z else "",
                tenants=tenants,
                tenant_names=tuple(tenant_names[t] for t in tenants),
            ))
            self.index[s.id] = i
        self.kind = np.array([KIND_CODE[s.kind] for s in cfg.sensors], dtype=np.int8)

    def __len__(self) -> int:
        return len(self.sensors)

    def occupants(self, building: str | None, floor: str | None,
                  zone: str | None) -> tuple[str, ...]:
        """Tenants occupying a place: the zone (or the whole floor around it), or any of a floor."""
        out: list[str] = []
        for t in self.cfg.tenants:
            for occ in t.occupies:
                if occ.building != building or (floor is not None and occ.floor != floor):
                    continue
                if zone is None or occ.zone is None or occ.zone == zone:
                    out.append(t.id)
                    break
        return tuple(out)

    def _tenants_for(self, s: SensorConfig) -> tuple[str, ...]:
        if s.kind == "fire_button":
            # 厂中厂: everyone in the building must evacuate, not only the floor's tenant
            return self.occupants(s.building, None, None)
        if s.tenant is not None:
            return (s.tenant,)
        if s.building is None:
            return ()
        return self.occupants(s.building, s.floor, s.zone)
