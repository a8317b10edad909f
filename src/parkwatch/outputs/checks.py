"""What can be wrong in the `outputs` and `linkage` sections, as (key path, message) problems
that the loader puts the file and line in front of."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from parkwatch.config.crosscheck import Problem, duplicate_ids, park_floors, place_problems


def check_outputs(cfg: Any, rules: Sequence[str]) -> list[Problem]:
    """Places, drivers and addresses of the outputs; the names the linkage rules use."""
    from parkwatch.drivers.registry import DRIVER_KINDS  # the registry imports the config

    out: list[Problem] = list(duplicate_ids((o.id for o in cfg.outputs), ("outputs",), "output"))
    floors = park_floors(cfg)
    drivers = {d.id: d for d in cfg.drivers}
    sensor_ids = {s.id for s in cfg.sensors}
    for oi, o in enumerate(cfg.outputs):
        loc: tuple[str | int, ...] = ("outputs", oi)
        out += place_problems(floors, loc, o.building, o.floor, o.zone)
        if o.id in sensor_ids:  # a wireless device logs in to the broker with its id
            out.append(((*loc, "id"), f"'{o.id}' is a sensor's id too; give the output an id "
                        "of its own (a wireless device logs in with it)"))
        driver = drivers.get(o.driver)
        if driver is None:
            out.append(((*loc, "driver"), f"unknown driver '{o.driver}' "
                        f"(known: {', '.join(sorted(drivers))})"))
            continue
        check = DRIVER_KINDS[driver.type].check_output
        if check is None:
            able = sorted(name for name, k in DRIVER_KINDS.items() if k.check_output)
            out.append(((*loc, "driver"), f"driver '{o.driver}' ({driver.type}) cannot switch "
                        f"an output; use a driver of type {' or '.join(able)}"))
            continue
        out += check(cfg, oi)
    outputs = {o.id for o in cfg.outputs}
    sensors = {s.id for s in cfg.sensors}
    link = cfg.linkage
    out += duplicate_ids((r.id for r in link.rules), ("linkage", "rules"), "linkage rule")
    for ri, r in enumerate(link.rules):
        loc = ("linkage", "rules", ri)
        for key, names, known, what in (("outputs", r.outputs, outputs, "output"),
                                        ("sensors", r.sensors, sensors, "sensor"),
                                        ("rules", r.rules, set(rules), "rule")):
            for k, name in enumerate(names):
                if name not in known:
                    out.append(((*loc, key, k), f"unknown {what} '{name}' (known: "
                                f"{', '.join(sorted(known)) or 'none'})"))
        if "fire" in r.kinds:  # the model refuses it already; kept for extension kinds
            out.append(((*loc, "kinds"), "fire switches outputs through linkage.fire"))
    return out
