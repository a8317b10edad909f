"""Checks that relate one part of the park config to another.

Each problem is returned as (key path, message) so the loader can put the YAML line in front.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator

from parkwatch.config.model import LOAD_UNITS_KN, ParkConfig, load_unit_kn
from parkwatch.config.yamlsource import Loc

Problem = tuple[Loc, str]


def _duplicates(ids: Iterable[str], loc: Loc, what: str) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for i, ident in enumerate(ids):
        if ident in seen:
            yield (*loc, i, "id"), f"duplicate {what} id '{ident}' (also at {what}s[{seen[ident]}])"
        else:
            seen[ident] = i


def cross_check(cfg: ParkConfig) -> list[Problem]:
    out: list[Problem] = []
    out += _duplicates((b.id for b in cfg.buildings), ("buildings",), "building")
    out += _duplicates((t.id for t in cfg.tenants), ("tenants",), "tenant")
    out += _duplicates((d.id for d in cfg.drivers), ("drivers",), "driver")
    out += _duplicates((s.id for s in cfg.sensors), ("sensors",), "sensor")
    floors: dict[tuple[str, str], set[str]] = {}
    for bi, b in enumerate(cfg.buildings):
        out += _duplicates((f.id for f in b.floors), ("buildings", bi, "floors"), "floor")
        for fi, f in enumerate(b.floors):
            loc = ("buildings", bi, "floors", fi)
            out += _duplicates((z.id for z in f.zones), (*loc, "zones"), "zone")
            floors[(b.id, f.id)] = {z.id for z in f.zones}
            zone_area = sum(z.area_m2 or 0.0 for z in f.zones)
            if zone_area > f.area_m2 + 1e-9:
                out.append(((*loc, "zones"), f"zones cover {zone_area:g} m² but the floor has "
                            f"only {f.area_m2:g} m²"))
    buildings = {b.id for b in cfg.buildings}

    def place(loc: Loc, building: str | None, floor: str | None, zone: str | None) -> None:
        if building is not None and building not in buildings:
            out.append(((*loc, "building"), f"unknown building '{building}' "
                        f"(known: {', '.join(sorted(buildings))})"))
            return
        if floor is not None and (building, floor) not in floors:
            known = sorted(f for (b, f) in floors if b == building)
            out.append(((*loc, "floor"), f"building '{building}' has no floor '{floor}' "
                        f"(floors: {', '.join(known)})"))
            return
        if zone is not None and zone not in floors[(building, floor)]:  # type: ignore[index]
            known = sorted(floors[(building, floor)])  # type: ignore[index]
            out.append(((*loc, "zone"), f"floor '{floor}' of building '{building}' has no zone "
                        f"'{zone}' (zones: {', '.join(known) or 'none'})"))

    for ti, t in enumerate(cfg.tenants):
        for oi, occ in enumerate(t.occupies):
            place(("tenants", ti, "occupies", oi), occ.building, occ.floor, occ.zone)

    tenants = {t.id for t in cfg.tenants}
    drivers = {d.id: d for d in cfg.drivers}
    for di, d in enumerate(cfg.drivers):
        broker = getattr(d, "broker", None)
        if broker is not None and broker not in cfg.brokers:
            out.append((("drivers", di, "broker"), f"unknown broker '{broker}' "
                        f"(known: {', '.join(sorted(cfg.brokers))})"))
    if cfg.uplink.broker not in cfg.brokers:
        out.append((("uplink", "broker"), f"unknown broker '{cfg.uplink.broker}' "
                    f"(known: {', '.join(sorted(cfg.brokers))})"))

    for kind in ("load_cell", "water_level"):
        rules = getattr(cfg.rules, kind)
        for key, msg in rules.problems():
            out.append((("rules", kind, key), msg))
        if rules.rate is not None:
            for key, msg in rules.rate.problems():
                out.append((("rules", kind, "rate", key), msg))

    for si, s in enumerate(cfg.sensors):
        loc: Loc = ("sensors", si)
        place(loc, s.building, s.floor, s.zone)
        if s.kind == "load_cell" and s.floor is None:
            out.append(((*loc, "floor"), "a load cell must name the floor it weighs"))
        if s.kind == "fire_button" and s.building is None:
            out.append(((*loc, "building"), "a fire button must name its building"))
        if s.tenant is not None and s.tenant not in tenants:
            out.append(((*loc, "tenant"), f"unknown tenant '{s.tenant}' "
                        f"(known: {', '.join(sorted(tenants)) or 'none'})"))
        if s.driver not in drivers:
            out.append(((*loc, "driver"), f"unknown driver '{s.driver}' "
                        f"(known: {', '.join(sorted(drivers))})"))
        if s.kind == "fire_button" and s.thresholds is not None:
            out.append(((*loc, "thresholds"), "fire buttons latch on press; they take no "
                        "thresholds"))
        if s.kind == "fire_button" and s.rate is not None:
            out.append(((*loc, "rate"), "fire buttons latch on press; they have no rate"))
        rate = cfg.rate_for(s)
        if s.rate is not None and rate is not None:
            out += [((*loc, "rate", key), msg) for key, msg in rate.problems()]
        if (s.kind == "load_cell" and cfg.rules.floor_load.enabled
                and load_unit_kn(s.display_unit) is None):
            out.append(((*loc, "unit"), f"unit '{s.display_unit}' cannot be summed into a "
                        f"floor load: use one of {', '.join(LOAD_UNITS_KN)} (or turn off "
                        "rules.floor_load)"))
        limits = cfg.thresholds_for(s)
        if s.thresholds is not None and limits is not None:
            own = s.thresholds.model_fields_set
            for key, msg in limits.problems():
                inherited = sorted(k for k in ("high_warning", "high_critical", "low_warning",
                                               "low_critical", "deadband") if k not in own
                                   and k in msg + key)
                if inherited:
                    msg += (f" ({', '.join(inherited)} inherited from rules.{s.kind}; "
                            "override it here too)")
                out.append(((*loc, "thresholds", key), msg))

    for name, broker in cfg.brokers.items():
        for key, msg in broker.secret_problems():
            out.append((("brokers", name, *key.split(".")), msg))

    out += _check_templates(cfg)
    from parkwatch.drivers.registry import cross_check_drivers

    out += cross_check_drivers(cfg)
    return out


def _check_templates(cfg: ParkConfig) -> list[Problem]:
    from parkwatch.alarms.messages import EVENTS, PLACEHOLDERS
    from parkwatch.rules.registry import RULE_NAMES

    out: list[Problem] = []
    for key, template in cfg.alarms.messages.items():
        loc: Loc = ("alarms", "messages", key)
        rule, _, event = key.partition(".")
        if key != "default" and (rule not in RULE_NAMES or (event and event not in EVENTS)):
            out.append((loc, f"unknown message key '{key}': use 'default', a rule "
                        f"({', '.join(RULE_NAMES)}) or rule.event with an event of "
                        f"{', '.join(EVENTS)}"))
            continue
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            out.append((loc, f"bad template: {exc}"))
            continue
        unknown = sorted(n for n in names if n.split(".")[0].split("[")[0] not in PLACEHOLDERS)
        if unknown:
            out.append((loc, f"unknown placeholder {{{unknown[0]}}} (known: "
                        f"{', '.join(sorted(PLACEHOLDERS))})"))
    return out
