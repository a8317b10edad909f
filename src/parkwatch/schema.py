"""The park config as the gateway validates it: the config package's models completed by what
every registered rule kind, driver type and notification channel brings.

:mod:`parkwatch.config` knows the park, its sensors and its people, and never the extensions;
this module sits above both and assembles the root model once, at import: ``drivers[]`` is the
union of the registered driver types' models, ``rules`` gains one section per rule kind with
settings, ``alarms.targets`` takes the union of the notification channels' target models, and
the cross-checks gain the names and checks of the extensions.  Everything that
reads a park config file goes through :func:`load_config` here.

``python -m parkwatch.schema > docs/config.md`` regenerates the config reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, create_model

from parkwatch.alarms.channels.registry import CHANNELS, TargetConfig
from parkwatch.alarms.messages import EVENTS, PLACEHOLDERS
from parkwatch.config import loader
from parkwatch.config.base import Id
from parkwatch.config.contacts import check_contacts
from parkwatch.config.crosscheck import Vocabulary
from parkwatch.config.crosscheck import cross_check as park_cross_check
from parkwatch.config.delivery import TARGETS_DESCRIPTION
from parkwatch.config.model import AlarmsConfig as AlarmsConfigBase
from parkwatch.config.model import ParkConfig as ParkConfigBase
from parkwatch.config.model import RulesConfig as RulesConfigBase
from parkwatch.config.reference import render
from parkwatch.config.yamlsource import Loc, SourceMap
from parkwatch.drivers.registry import DRIVER_KINDS, DriverConfig, cross_check_drivers
from parkwatch.outputs.checks import check_outputs
from parkwatch.rules.registry import RULE_KINDS, RULE_NAMES


def _rules_model() -> type[RulesConfigBase]:
    """``rules``: the sensor kinds' defaults, then each rule kind's own section."""
    fields: dict[str, Any] = {}
    for kind in RULE_KINDS.values():
        section = kind.settings
        if section is None:
            continue
        annotation: Any = section.model | None if section.nullable else section.model
        fields[section.key] = (annotation, Field(default_factory=section.model,
                                                 description=section.description))
    return create_model("RulesConfig", __base__=RulesConfigBase,
                       __doc__=RulesConfigBase.__doc__, **fields)


RulesConfig = _rules_model()


def _field(name: str) -> Any:
    return ParkConfigBase.model_fields[name]


#: ``alarms``: its ``targets`` are the union of the registered channels' target models
AlarmsConfig = create_model(
    "AlarmsConfig", __base__=AlarmsConfigBase, __doc__=AlarmsConfigBase.__doc__,
    targets=(dict[Id, TargetConfig], Field(default_factory=dict,
                                           description=TARGETS_DESCRIPTION)))

ParkConfig: type[ParkConfigBase] = create_model(
    "ParkConfig", __base__=ParkConfigBase, __doc__=ParkConfigBase.__doc__,
    drivers=(list[DriverConfig], Field(min_length=1, description=_field("drivers").description)),
    rules=(RulesConfig, Field(default_factory=RulesConfig,
                              description=_field("rules").description)),
    alarms=(AlarmsConfig, Field(default_factory=AlarmsConfig,
                                description=_field("alarms").description)),
)

#: the names a park config may use that the extensions bring
VOCABULARY = Vocabulary(rules=RULE_NAMES, events=EVENTS, placeholders=tuple(PLACEHOLDERS))


def cross_check(cfg: ParkConfigBase) -> list[tuple[Loc, str]]:
    """Every cross-check: the park's own, each configured driver's, each rule kind's."""
    out = park_cross_check(cfg, VOCABULARY)
    out += cross_check_drivers(cfg)
    out += check_outputs(cfg, RULE_NAMES)
    targets = cfg.alarms.targets
    out += check_contacts(cfg.alarms, {name: t.type for name, t in targets.items()},
                          {name: channel.reaches for name, channel in CHANNELS.items()},
                          {name: t.reaches_without_contact() for name, t in targets.items()})
    for kind in RULE_KINDS.values():
        out += kind.cross_check(cfg)
    return out


SCHEMA = loader.Schema(ParkConfig, cross_check)


def load_config(path: str | Path, overrides: dict[Loc, Any] | None = None) -> ParkConfigBase:
    """Read, validate and cross-check a park config file (see :func:`loader.load_config`)."""
    return loader.load_config(path, SCHEMA, overrides)


def validate_data(data: Any, smap: SourceMap) -> ParkConfigBase:
    """Validate parsed YAML with its source map (see :func:`loader.validate_data`)."""
    return loader.validate_data(data, smap, SCHEMA)


def reference() -> str:
    """docs/config.md: every key of the assembled park config and of each driver type."""
    return render(ParkConfig, {name: kind.config_model for name, kind in DRIVER_KINDS.items()})


if __name__ == "__main__":
    print(reference(), end="")
