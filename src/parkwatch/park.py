"""The park as the running daemon sees it: sensors by index, their places and their tenants.

Built once from the config; the rule engine uses the index, the alarm path the names.  Floors
(and zones with an area) that carry load cells are *groups*: virtual sensors numbered after the
real ones, so a floor-load alarm travels the same path as any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from parkwatch.config.measuring import PLAUSIBLE_LIMIT
from parkwatch.config.model import SENSOR_KINDS, ParkConfig, SensorConfig, load_unit_kn
from parkwatch.config.outputs import OutputConfig

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
    place: str  # "A栋 3F 东区": the names above, as a message gives the place

    @property
    def id(self) -> str:
        return self.config.id


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A floor or a zone whose load is the sum of its load cells."""

    index: int  # in the rule engine's numbering: len(park.sensors) + position in park.groups
    id: str  # "A/2F" or "A/2F/east": never a valid sensor id, so the two cannot collide
    kind: str  # "floor" or "zone"
    building: str
    floor: str
    zone: str | None
    capacity_kn: float  # rated live load × area
    members: tuple[int, ...]  # sensor indices of its load cells
    building_name: str
    floor_name: str
    zone_name: str
    tenants: tuple[str, ...]
    tenant_names: tuple[str, ...]
    place: str


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """The gateway as an alarm source, after the outputs: a fault of its own (its clock
    stepped), in no building and of no tenant."""

    index: int
    id: str  # "gateway:<gateway id>": never a sensor's, group's or output's id
    place: str
    building_name: str = ""
    floor_name: str = ""
    zone_name: str = ""
    tenants: tuple[str, ...] = ()
    tenant_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutputInfo:
    """An output (sounder, strobe, PA trigger, relay) as an alarm source: its `output_fault`
    alarm travels the same path as a sensor's."""

    index: int  # in the alarm sources' numbering: after the sensors and the groups
    position: int  # in park.outputs and cfg.outputs
    id: str  # "output:<id>": never a sensor's or a group's id (an id cannot hold ':')
    config: OutputConfig
    building_name: str
    floor_name: str
    zone_name: str
    place: str
    tenants: tuple[str, ...] = ()
    tenant_names: tuple[str, ...] = ()


def place_of(building_name: str, floor_name: str, zone_name: str) -> str:
    """A place as a message names it: the non-empty names, space-separated."""
    return " ".join(p for p in (building_name, floor_name, zone_name) if p)


class ParkModel:
    """Sensor table and place lookups derived from a validated :class:`ParkConfig`."""

    def __init__(self, cfg: ParkConfig) -> None:
        self.cfg = cfg
        self._occupants: dict[tuple[str | None, ...], tuple[str, ...]] = {}
        self.sensors: list[SensorInfo] = []
        self.index: dict[str, int] = {}
        buildings = {b.id: b for b in cfg.buildings}
        tenant_names = {t.id: t.name for t in cfg.tenants}
        #: one tuple of names per combination of tenants (10,000 tuples were 0.8 MB)
        names: dict[tuple[str, ...], tuple[str, ...]] = {}
        places: dict[tuple[str, str, str], str] = {}  # one string per place, likewise
        for i, s in enumerate(cfg.sensors):
            b = buildings.get(s.building) if s.building else None
            f = next((f for f in b.floors if f.id == s.floor), None) if b and s.floor else None
            z = next((z for z in f.zones if z.id == s.zone), None) if f and s.zone else None
            tenants = self._tenants_for(s)
            where = ((b.name or b.id) if b else "", (f.name or f.id) if f else "",
                     (z.name or z.id) if z else "")
            self.sensors.append(SensorInfo(
                index=i, config=s, building_name=where[0], floor_name=where[1],
                zone_name=where[2], tenants=tenants,
                tenant_names=names.get(tenants) or names.setdefault(
                    tenants, tuple(tenant_names[t] for t in tenants)),
                place=places.get(where) or places.setdefault(where, place_of(*where)),
            ))
            self.index[s.id] = i
        self.kind = np.array([KIND_CODE[s.kind] for s in cfg.sensors], dtype=np.int8)
        floors = cfg.rules.section("floor_load").enabled
        self.groups: list[GroupInfo] = self._groups() if floors else []
        self.outputs: list[OutputInfo] = self._outputs()
        #: the gateway itself, the last alarm source (its clock: rules/clock_step.py)
        self.gateway = GatewayInfo(self.size + len(self.outputs), f"gateway:{cfg.gateway.id}",
                                   place=cfg.gateway.id)
        drivers = {d.id: d for d in cfg.drivers}
        #: expected seconds between reports per sensor (NaN: unknown), for the no-data alarm
        self.report_interval = np.full(len(self.sensors), np.nan)
        for info in self.sensors:
            own = info.config.report_interval_s
            if own is None:
                own = drivers[info.config.driver].report_interval(info.config)
            if own is not None:
                self.report_interval[info.index] = own
        #: each sensor's measuring range as (min, max) side by side (one gather fetches both);
        #: ±PLAUSIBLE_LIMIT for a sensor without one, so any plausible value is inside
        self.bounds = np.empty((len(self.sensors), 2))
        self.bounds[:, 0], self.bounds[:, 1] = -PLAUSIBLE_LIMIT, PLAUSIBLE_LIMIT
        #: the sensors with a measuring range of their own or their kind's
        self.ranged = np.zeros(len(self.sensors), bool)
        for info in self.sensors:
            rng = cfg.range_for(info.config)
            if rng is not None:
                self.bounds[info.index] = (rng.min, rng.max)
                self.ranged[info.index] = True
        #: the bounds as one complex number a sensor (one 16-byte gather a reading); None
        #: when no sensor has a range
        self._bounds = (self.bounds.view(np.complex128).ravel() if self.ranged.any()
                        else None)

    def __len__(self) -> int:
        return len(self.sensors)

    def in_range(self, sensor: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Per reading, whether its value is inside its sensor's measuring range (within
        ±PLAUSIBLE_LIMIT for a sensor without one): False for NaN and ±inf.  What the rules
        may take as a measurement (the rule engine, floor sums)."""
        if self._bounds is None:
            inside: np.ndarray = np.abs(value) <= PLAUSIBLE_LIMIT
            return inside
        b = self._bounds.take(sensor)
        inside = value >= b.real
        inside &= value <= b.imag
        return inside

    @property
    def size(self) -> int:
        """Sensors plus groups: the length of the rule engine's per-alarm-source numbering."""
        return len(self.sensors) + len(self.groups)

    def ident(self, index: int) -> str:
        """The id of a sensor, a group or an output by its index."""
        n = len(self.sensors)
        if index < n:
            return self.sensors[index].id
        if index < n + len(self.groups):
            return self.groups[index - n].id
        if index >= self.gateway.index:
            return self.gateway.id
        return self.outputs[index - self.size].id

    def rule_idents(self) -> list[str]:
        """The sources the rule engine keeps state for: sensors, then groups."""
        return [s.id for s in self.sensors] + [g.id for g in self.groups]

    def idents(self) -> list[str]:
        """Every alarm source by index: sensors, groups, outputs, then the gateway."""
        return self.rule_idents() + [o.id for o in self.outputs] + [self.gateway.id]

    def _outputs(self) -> list[OutputInfo]:
        buildings = {b.id: b for b in self.cfg.buildings}
        out: list[OutputInfo] = []
        for k, o in enumerate(self.cfg.outputs):
            b = buildings[o.building]
            f = next((f for f in b.floors if f.id == o.floor), None)
            z = next((z for z in f.zones if z.id == o.zone), None) if f else None
            where = (b.name or b.id, (f.name or f.id) if f else "", (z.name or z.id) if z else "")
            out.append(OutputInfo(self.size + k, k, f"output:{o.id}", o, *where,
                                  place=place_of(*where)))
        return out

    def _groups(self) -> list[GroupInfo]:
        tenant_names = {t.id: t.name for t in self.cfg.tenants}
        out: list[GroupInfo] = []
        n = len(self.sensors)
        by_floor: dict[tuple[str | None, str | None], list[int]] = {}
        for i in self.sensors:
            if i.config.kind == "load_cell" and load_unit_kn(i.config.display_unit) is not None:
                by_floor.setdefault((i.config.building, i.config.floor), []).append(i.index)
        for b in self.cfg.buildings:
            for f in b.floors:
                cells = by_floor.get((b.id, f.id), [])
                places: list[tuple[str | None, float, str, list[int]]] = [
                    (None, f.rated_load_kn_m2 * f.area_m2, "", cells)]
                for z in f.zones:
                    if z.area_m2 is None:
                        continue
                    rated = z.rated_load_kn_m2 or f.rated_load_kn_m2
                    places.append((z.id, rated * z.area_m2, z.name or z.id,
                                   [c for c in cells if self.sensors[c].config.zone == z.id]))
                for zone, capacity, zone_name, members in places:
                    if not members:
                        continue
                    tenants = self.occupants(b.id, f.id, zone)
                    out.append(GroupInfo(
                        index=n + len(out), id="/".join(x for x in (b.id, f.id, zone) if x),
                        kind="zone" if zone else "floor", building=b.id, floor=f.id, zone=zone,
                        capacity_kn=capacity, members=tuple(members),
                        building_name=b.name or b.id, floor_name=f.name or f.id,
                        zone_name=zone_name, tenants=tenants,
                        tenant_names=tuple(tenant_names[t] for t in tenants),
                        place=place_of(b.name or b.id, f.name or f.id, zone_name)))
        return out

    def occupants(self, building: str | None, floor: str | None,
                  zone: str | None) -> tuple[str, ...]:
        """Tenants occupying a place: the zone (or the whole floor around it), or any of a floor.
        Remembered per place: a large park asks for the same few places thousands of times."""
        key = (building, floor, zone)
        known = self._occupants.get(key)
        if known is None:
            known = self._occupants[key] = self._find_occupants(building, floor, zone)
        return known

    def _find_occupants(self, building: str | None, floor: str | None,
                        zone: str | None) -> tuple[str, ...]:
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
