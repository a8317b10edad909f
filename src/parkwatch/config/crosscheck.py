"""Checks that relate one part of the park config to another.

Each problem is returned as (key path, message) so the loader can put the YAML line in front.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from parkwatch.config.delivery import UPLINK, Filter, Scope
from parkwatch.config.inhibit import Matcher
from parkwatch.config.model import SENSOR_KINDS, ParkConfig
from parkwatch.config.yamlsource import Loc

Problem = tuple[Loc, str]


@dataclass(frozen=True)
class Vocabulary:
    """The names the park config may use that the extensions bring (parkwatch.schema)."""

    #: every rule name the registered rule kinds emit
    rules: Sequence[str]
    #: every event of the contract
    events: Sequence[str]
    #: every placeholder a message template may name
    placeholders: Sequence[str]


def duplicate_ids(ids: Iterable[str], loc: Loc, what: str) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for i, ident in enumerate(ids):
        if ident in seen:
            yield (*loc, i, "id"), f"duplicate {what} id '{ident}' (also at {what}s[{seen[ident]}])"
        else:
            seen[ident] = i


def park_floors(cfg: ParkConfig) -> dict[tuple[str, str], set[str]]:
    """(building, floor) -> its zone ids: every place the config declares."""
    return {(b.id, f.id): {z.id for z in f.zones} for b in cfg.buildings for f in b.floors}


def place_problems(floors: dict[tuple[str, str], set[str]], loc: Loc, building: str | None,
                   floor: str | None, zone: str | None) -> list[Problem]:
    """A place (building, floor, zone) that the park does not have, named at `loc`."""
    buildings = {b for b, _ in floors}
    if building is not None and building not in buildings:
        return [((*loc, "building"), f"unknown building '{building}' "
                 f"(known: {', '.join(sorted(buildings))})")]
    if floor is not None and (building, floor) not in floors:
        known = sorted(f for (b, f) in floors if b == building)
        return [((*loc, "floor"), f"building '{building}' has no floor '{floor}' "
                 f"(floors: {', '.join(known)})")]
    zones = floors.get((building or "", floor or ""))
    if zone is not None and zones is not None and zone not in zones:
        return [((*loc, "zone"), f"floor '{floor}' of building '{building}' has no zone "
                 f"'{zone}' (zones: {', '.join(sorted(zones)) or 'none'})")]
    return []


def cross_check(cfg: ParkConfig, words: Vocabulary) -> list[Problem]:
    out: list[Problem] = []
    out += duplicate_ids((b.id for b in cfg.buildings), ("buildings",), "building")
    out += duplicate_ids((t.id for t in cfg.tenants), ("tenants",), "tenant")
    out += duplicate_ids((d.id for d in cfg.drivers), ("drivers",), "driver")
    out += duplicate_ids((s.id for s in cfg.sensors), ("sensors",), "sensor")
    floors: dict[tuple[str, str], set[str]] = {}
    for bi, b in enumerate(cfg.buildings):
        out += duplicate_ids((f.id for f in b.floors), ("buildings", bi, "floors"), "floor")
        for fi, f in enumerate(b.floors):
            loc: Loc = ("buildings", bi, "floors", fi)
            out += duplicate_ids((z.id for z in f.zones), (*loc, "zones"), "zone")
            floors[(b.id, f.id)] = {z.id for z in f.zones}
            zone_area = sum(z.area_m2 or 0.0 for z in f.zones)
            if zone_area > f.area_m2 + 1e-9:
                out.append(((*loc, "zones"), f"zones cover {zone_area:g} m² but the floor has "
                            f"only {f.area_m2:g} m²"))

    def place(loc: Loc, building: str | None, floor: str | None, zone: str | None) -> None:
        out.extend(place_problems(floors, loc, building, floor, zone))

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
        loc = ("sensors", si)
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

    out += _check_templates(cfg, words)
    out += _check_delivery(cfg, floors, tenants, words.rules)
    return out


def _check_templates(cfg: ParkConfig, words: Vocabulary) -> list[Problem]:
    rule_names, events, placeholders = words.rules, words.events, words.placeholders
    out: list[Problem] = []
    for key, template in cfg.alarms.messages.items():
        loc: Loc = ("alarms", "messages", key)
        rule, _, event = key.partition(".")
        if key not in ("default", "auto_closed") and (
                rule not in rule_names or (event and event not in events)):
            out.append((loc, f"unknown message key '{key}': use 'default', 'auto_closed', a rule "
                        f"({', '.join(rule_names)}) or rule.event with an event of "
                        f"{', '.join(events)}"))
            continue
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            out.append((loc, f"bad template: {exc}"))
            continue
        unknown = sorted(n for n in names if n.split(".")[0].split("[")[0] not in placeholders)
        if unknown:
            out.append((loc, f"unknown placeholder {{{unknown[0]}}} (known: "
                        f"{', '.join(sorted(placeholders))})"))
    return out


def _check_delivery(cfg: ParkConfig, floors: dict[tuple[str, str], set[str]],
                    tenants: set[str], rule_names: Sequence[str]) -> list[Problem]:
    """Subscribers, targets, ladders, silences and drills name things that exist."""
    a = cfg.alarms
    out: list[Problem] = []
    out += duplicate_ids((o.id for o in a.operators), ("alarms", "operators"), "operator")
    if a.require_signed_commands and not any(o.public_key for o in a.operators):
        out.append((("alarms", "require_signed_commands"), "signed commands are required but "
                    "no operator in alarms.operators has a public_key: nobody could acknowledge "
                    "or reset an alarm (give each operator the key `parkwatch keygen` prints)"))
    out += duplicate_ids((s.id for s in a.subscribers), ("alarms", "subscribers"), "subscriber")
    out += duplicate_ids((s.id for s in a.silences), ("alarms", "silences"), "silence")
    out += duplicate_ids((d.id for d in a.drills), ("alarms", "drills"), "drill")
    subscribers = {s.id for s in a.subscribers}
    buildings = {b for b, _ in floors}
    zones = {f"{b}/{f}/{z}" for (b, f), zs in floors.items() for z in zs}

    def known(what: str, have: set[str]) -> str:
        return f"(known: {', '.join(sorted(have)) or 'none'})"

    def places(loc: Loc, f: Filter | Scope | Matcher) -> None:
        for key, have, what in (("buildings", buildings, "building"),
                                ("floors", {f"{b}/{fl}" for b, fl in floors}, "floor"),
                                ("zones", zones, "zone"), ("tenants", tenants, "tenant")):
            for i, item in enumerate(getattr(f, key)):
                if item not in have:
                    out.append(((*loc, key, i), f"unknown {what} '{item}' {known(what, have)}"))
        for i, rule in enumerate(getattr(f, "rules", [])):
            if rule not in rule_names:
                out.append(((*loc, "rules", i), f"unknown rule '{rule}' "
                            f"{known('rule', set(rule_names))}"))
        for i, sensor in enumerate(getattr(f, "sensors", [])):
            if sensor not in {s.id for s in cfg.sensors}:
                out.append(((*loc, "sensors", i), f"unknown sensor '{sensor}'"))

    def names(loc: Loc, ids: list[str] | None) -> None:
        for i, ident in enumerate(ids or []):
            if ident not in subscribers:
                out.append(((*loc, i), f"unknown subscriber '{ident}' "
                            f"{known('subscriber', subscribers)}"))

    if UPLINK in a.targets:
        out.append((("alarms", "targets", UPLINK), f"'{UPLINK}' is the built-in command-center "
                    "contract; give this target another name"))
    for name, target in a.targets.items():
        problem = getattr(target, "secret_problem", lambda: None)()
        if problem is not None:
            out.append((("alarms", "targets", name, problem[0]), problem[1]))
    for si, s in enumerate(a.subscribers):
        loc: Loc = ("alarms", "subscribers", si)
        if s.id == UPLINK:
            out.append(((*loc, "id"), f"'{UPLINK}' is reserved for the command-center contract"))
        if s.target is not None and s.target not in a.targets:
            out.append(((*loc, "target"), f"unknown target '{s.target}' "
                        f"{known('target', set(a.targets))}"))
        if s.tenant is not None and s.tenant not in tenants:
            out.append(((*loc, "tenant"), f"unknown tenant '{s.tenant}' "
                        f"{known('tenant', tenants)}"))
        places((*loc, "filter"), s.filter)
        for i, park in enumerate(s.filter.parks):
            if park != cfg.park.id:
                out.append(((*loc, "filter", "parks", i), f"this gateway watches park "
                            f"'{cfg.park.id}' only; '{park}' never matches"))
    for li, ladder in enumerate(a.escalation):
        for i, step in enumerate(ladder.steps):
            names(("alarms", "escalation", li, "steps", i, "notify"), step.notify)
    for si, silence in enumerate(a.silences):
        places(("alarms", "silences", si, "scope"), silence.scope)
        names(("alarms", "silences", si, "subscribers"), silence.subscribers)
    for di, drill in enumerate(a.drills):
        places(("alarms", "drills", di, "scope"), drill.scope)
        names(("alarms", "drills", di, "notify"), drill.notify)
    out += duplicate_ids((r.id for r in a.inhibit), ("alarms", "inhibit"), "inhibit rule")
    for ii, rule in enumerate(a.inhibit):
        for side, matcher in (("source", rule.source), ("target", rule.target)):
            places(("alarms", "inhibit", ii, side), matcher)
            out += inhibit_names(("alarms", "inhibit", ii, side), matcher, cfg)
    if cfg.api is not None:
        problem = cfg.api.secret_problem()
        if problem is not None:
            out.append((("api", problem[0]), problem[1]))
    influx = cfg.telemetry.influxdb
    if influx is not None:
        try:
            influx.secret()
        except OSError as exc:
            out.append((("telemetry", "influxdb", "secret_file"),
                        f"cannot read {influx.secret_file}: {exc.strerror}"))
        except KeyError:
            out.append((("telemetry", "influxdb", "secret_env"),
                        f"environment variable {influx.secret_env} is not set"))
    return out


def inhibit_names(loc: Loc, m: Matcher, cfg: ParkConfig) -> list[Problem]:
    """The drivers and sensor kinds an inhibition rule's matcher names exist (its places,
    tenants and rules are checked with the filters')."""
    out: list[Problem] = []
    drivers = {d.id for d in cfg.drivers}
    for i, driver in enumerate(m.drivers):
        if driver not in drivers:
            out.append(((*loc, "drivers", i), f"unknown driver '{driver}' "
                        f"(known: {', '.join(sorted(drivers))})"))
    kinds = (*SENSOR_KINDS, "floor", "zone")
    for i, kind in enumerate(m.sensor_kinds):
        if kind not in kinds:
            out.append(((*loc, "sensor_kinds", i), f"unknown sensor kind '{kind}' "
                        f"(known: {', '.join(kinds)})"))
    return out
