"""What a reload (SIGHUP) would change, decided before anything running is touched.

A reload applies a new, already validated config to the running daemon.  Most of a park's
config is reloadable: sensors, places, tenants, rules and thresholds, drivers, and the whole
``alarms`` section (operators, targets, subscribers, routing, escalation, silences, drills).
What identifies the gateway to the world, or owns a socket or a file the daemon keeps open,
needs a restart: the park id, the ``gateway`` section, the uplink and its broker, the local
``api`` and ``telemetry``.  A config that changes one of those is refused as a whole, so a
reload never leaves the daemon half on one config and half on the other.

Drivers are kept running when nothing they read changed: their own config, their broker, and
the index and device settings (id, kind, address, unit, scale, ...) of every sensor they serve;
a new threshold or place does not restart a driver.  Any other driver is replaced (stopped, and a
new one started), added or removed.  Delivery targets are compared the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parkwatch.config.contacts import people_of
from parkwatch.config.model import ParkConfig
from parkwatch.park import ParkModel


class ReloadRefused(Exception):
    """The new config is valid but cannot be applied without a restart."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass
class ReloadPlan:
    """Which drivers and delivery targets a reload keeps, replaces, adds and removes."""

    keep_drivers: list[str] = field(default_factory=list)
    replace_drivers: list[str] = field(default_factory=list)
    add_drivers: list[str] = field(default_factory=list)
    remove_drivers: list[str] = field(default_factory=list)
    keep_targets: list[str] = field(default_factory=list)
    replace_targets: list[str] = field(default_factory=list)
    add_targets: list[str] = field(default_factory=list)
    remove_targets: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the log: what moved (unchanged parts are not listed)."""
        parts = []
        for what, prefix in (("drivers", "driver"), ("targets", "target")):
            for verb in ("add", "replace", "remove"):
                names = getattr(self, f"{verb}_{what}")
                if names:
                    parts.append(f"{prefix}s {verb}{'d' if verb.endswith('e') else 'ed'}: "
                                 f"{', '.join(names)}")
        return "; ".join(parts) or "no driver or target changed"


#: sensor settings only the rules and the alarm path read: changing them keeps the driver
RULES_ONLY = {"name", "building", "floor", "zone", "tenant", "thresholds", "rate"}


def _dump(model: Any) -> Any:
    return None if model is None else model.model_dump(mode="json")


def restart_only_changes(old: ParkConfig, new: ParkConfig) -> list[str]:
    """The sections that differ and need a restart; empty when the reload can go ahead."""
    reasons = []
    for label, a, b in (
            ("park.id", old.park.id, new.park.id),
            ("gateway", _dump(old.gateway), _dump(new.gateway)),
            ("uplink", _dump(old.uplink), _dump(new.uplink)),
            (f"brokers.{old.uplink.broker} (the uplink's broker)",
             _dump(old.brokers.get(old.uplink.broker)), _dump(new.brokers.get(new.uplink.broker))),
            ("api", _dump(old.api), _dump(new.api)),
            ("telemetry", _dump(old.telemetry), _dump(new.telemetry))):
        if a != b:
            reasons.append(f"{label} changed")
    return reasons


def _driver_view(cfg: ParkConfig, park: ParkModel, driver_id: str) -> Any:
    """Everything a driver reads when it is built: a driver whose view is unchanged keeps
    running across a reload."""
    dcfg = next((d for d in cfg.drivers if d.id == driver_id), None)
    if dcfg is None:
        return None
    broker = getattr(dcfg, "broker", None)
    return {"driver": _dump(dcfg),
            "broker": _dump(cfg.brokers.get(broker)) if broker else None,
            "sensors": [(s.index, s.config.model_dump(mode="json", exclude=RULES_ONLY))
                        for s in park.sensors if s.config.driver == driver_id]}


def _target_view(cfg: ParkConfig, name: str) -> Any:
    """Everything a target's courier is built from: its config, and the contacts it reaches
    (a contact's new phone replaces the couriers of its channels)."""
    return {"target": _dump(cfg.alarms.targets[name]),
            "people": {sid: _dump(c) for sid, c in people_of(cfg.alarms, name).items()}}


def _split(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], ...]:
    keep = [k for k in new if k in old and old[k] == new[k]]
    replace = [k for k in new if k in old and old[k] != new[k]]
    add = [k for k in new if k not in old]
    remove = [k for k in old if k not in new]
    return keep, replace, add, remove


def plan_reload(old: ParkConfig, old_park: ParkModel, new: ParkConfig,
                new_park: ParkModel) -> ReloadPlan:
    """The plan to go from `old` to `new`; :class:`ReloadRefused` when it needs a restart."""
    reasons = restart_only_changes(old, new)
    if reasons:
        raise ReloadRefused(reasons)
    plan = ReloadPlan()
    (plan.keep_drivers, plan.replace_drivers, plan.add_drivers,
     plan.remove_drivers) = _split({d.id: _driver_view(old, old_park, d.id) for d in old.drivers},
                                   {d.id: _driver_view(new, new_park, d.id) for d in new.drivers})
    (plan.keep_targets, plan.replace_targets, plan.add_targets,
     plan.remove_targets) = _split({k: _target_view(old, k) for k in old.alarms.targets},
                                   {k: _target_view(new, k) for k in new.alarms.targets})
    return plan
