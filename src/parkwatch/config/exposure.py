"""Brokers through which anyone could command the gateway: the warnings `check-config` prints
and the daemon logs once at start.

parkwatch cannot see a broker's ACL, but it knows how it logs in there itself.  A broker it
reaches with no user name and no client certificate takes anonymous clients, so anyone who can
reach the broker can do what the gateway obeys on it:

* acknowledge alarms, on the uplink broker's ``commands/ack`` topic, which the gateway obeys
  whenever ``alarms.operators`` lists someone (with nobody listed, every ack is refused) and
  ``alarms.require_signed_commands`` is off (with it, only an operator's key can);
* clear a fire alarm, with ``{"event": "reset"}`` on a fire button's uplink topic.

These are warnings, not problems: the config is valid and the daemon runs (a bench or a test
broker is anonymous on purpose).  docs/securing.md says how to lock the broker down.
"""

from __future__ import annotations

from pathlib import Path

from parkwatch.config.brokers import BrokerConfig
from parkwatch.config.loader import ConfigProblem, format_path
from parkwatch.config.model import ParkConfig
from parkwatch.config.yamlsource import ConfigSyntaxError, Loc, load_yaml_with_lines

SECURING = "docs/securing.md"
#: how many fire buttons a warning names before it says "and N more"
NAMED = 5


def anonymous(broker: BrokerConfig) -> bool:
    """parkwatch logs in to `broker` with neither a user name nor a client certificate."""
    return not broker.username and (broker.tls is None or broker.tls.cert_file is None)


def ack_topic(cfg: ParkConfig) -> str:
    """The topic the gateway takes acknowledgements on (parkwatch.alarms.uplink.Topics.ack)."""
    return f"{cfg.uplink.topic_prefix}/{cfg.park.id}/commands/ack"


def exposure_warnings(cfg: ParkConfig) -> list[tuple[Loc, str]]:
    """(where, what) for each anonymous broker that carries acknowledgements or fire-button
    uplinks."""
    out: list[tuple[Loc, str]] = []
    uplink = cfg.brokers.get(cfg.uplink.broker)
    operators = len(cfg.alarms.operators)
    if (uplink is not None and anonymous(uplink) and operators
            and not cfg.alarms.require_signed_commands):
        out.append((("brokers", cfg.uplink.broker),
                    "anyone who can connect to this broker can acknowledge alarms (and so stop "
                    f"their escalation): the gateway obeys acknowledgements on {ack_topic(cfg)} "
                    f"there (alarms.operators lists {operators}), and parkwatch logs in with no "
                    "username and no client certificate, so the broker takes anonymous "
                    "clients. Give the broker logins and an ACL, and set username and "
                    f"password_file (or tls.cert_file) here: see {SECURING}"))
    drivers = {d.id: d for d in cfg.drivers}
    buttons: dict[str, list[str]] = {}
    topics: dict[str, set[str]] = {}
    for s in cfg.sensors:
        driver = drivers.get(s.driver)
        name = getattr(driver, "broker", None) if s.kind == "fire_button" else None
        if name in cfg.brokers and anonymous(cfg.brokers[name]):
            buttons.setdefault(name, []).append(s.id)
            topics.setdefault(name, set()).add(str(s.address or getattr(driver, "topic", "?")))
    for name, ids in buttons.items():
        shown = ", ".join(ids[:NAMED]) + (f" and {len(ids) - NAMED} more" if len(ids) > NAMED
                                          else "")
        out.append((("brokers", name),
                    "anyone who can connect to this broker can clear a fire alarm: fire "
                    f"button(s) {shown} send their uplinks here "
                    f"({', '.join(sorted(topics[name]))}), where a {{\"event\": \"reset\"}} "
                    "from any client resets the button, and parkwatch logs in with no "
                    "username and no client certificate, so the broker takes anonymous "
                    "clients. Give every device its own login and an ACL that lets it publish "
                    f"only its own topic, and set username and password_file here: see "
                    f"{SECURING}"))
    return out


def exposure_problems(path: str | Path, cfg: ParkConfig) -> list[ConfigProblem]:
    """The warnings of `cfg`, loaded from `path`, as ``file:line: key: WARNING: ...`` lines."""
    warnings = exposure_warnings(cfg)
    if not warnings:
        return []
    try:
        _data, smap = load_yaml_with_lines(path)
    except ConfigSyntaxError:  # changed since it was loaded: the warnings without lines
        return [ConfigProblem(str(path), 0, format_path(loc), f"WARNING: {msg}")
                for loc, msg in warnings]
    return [ConfigProblem(smap.file, smap.line_of(loc), format_path(loc), f"WARNING: {msg}")
            for loc, msg in warnings]
