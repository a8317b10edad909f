"""Which broker `parkwatch watch` connects to, as whom, and the board's tunables.

From a park config (`--config`): its uplink broker (or `--broker NAME`) with the same
credentials and TLS handling as the daemon (password from a file or the environment, checked
when the config is loaded), its topic prefix and 3 × its status interval as the staleness
limit.  From the command line (`--host`, `--port`, `--username`, `--password-file`,
`--ca-file`, ...): the same :class:`~parkwatch.config.brokers.BrokerConfig`, validated the same
way.  Problems raise :class:`SettingsError` with the lines to print; the CLI exits 2.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from parkwatch.cli.configpath import DEFAULT_CONFIG, missing_config_hint
from parkwatch.commandsig import load_private_key
from parkwatch.config.brokers import BrokerConfig

DEFAULT_PREFIX = "parkwatch/v1"
DEFAULT_STATUS_INTERVAL_S = 30.0  # gateway.status_interval_s's default
STALE_FACTOR = 3.0


class SettingsError(Exception):
    """The broker settings cannot be used; `lines` say why (exit code 2)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class WatchOptions:
    broker: BrokerConfig
    prefix: str
    operator: str | None
    stale_after_s: float
    note: str | None = None
    #: the operator's key: acknowledgements are signed with it (docs/contract.md)
    sign_key: Ed25519PrivateKey | None = None


def _from_config(args: argparse.Namespace) -> tuple[BrokerConfig, str, float]:
    from parkwatch.config import ConfigError
    from parkwatch.schema import load_config

    path = args.config or DEFAULT_CONFIG
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        hint = missing_config_hint(path, exc, explicit=args.config is not None,
                                   more=", or the command center's broker with --host HOST")
        raise SettingsError([*(str(p) for p in exc.problems),
                             hint or f"{path}: {len(exc.problems)} problem(s); not valid"]
                            ) from None
    name = args.broker or cfg.uplink.broker
    if name not in cfg.brokers:
        raise SettingsError([f"{path}: no broker '{name}' under brokers (there are: "
                             f"{', '.join(sorted(cfg.brokers))})"])
    return cfg.brokers[name], cfg.uplink.topic_prefix, cfg.gateway.status_interval_s


def _from_flags(args: argparse.Namespace) -> BrokerConfig:
    data: dict[str, object] = {"host": args.host,
                               "port": args.port if args.port is not None else 1883}
    if args.username:
        data["username"] = args.username
    if args.password_file:
        data["password_file"] = args.password_file
    if args.ca_file:
        data["tls"] = {"ca_file": args.ca_file, "verify_hostname": not args.no_verify_hostname,
                       **({"cert_file": args.cert_file} if args.cert_file else {}),
                       **({"key_file": args.key_file} if args.key_file else {})}
    elif args.cert_file or args.key_file or args.no_verify_hostname:
        raise SettingsError(["--cert-file, --key-file and --no-verify-hostname need --ca-file "
                             "(TLS)"])
    try:
        broker = BrokerConfig.model_validate(data)
    except ValidationError as exc:
        raise SettingsError([_flag_problem(e["loc"], e["msg"]) for e in exc.errors()]) from None
    problems = broker.secret_problems()
    if problems:
        raise SettingsError([f"--{key.removeprefix('tls.').replace('_', '-')}: {msg}"
                             for key, msg in problems])
    return broker


def _flag_problem(loc: tuple[object, ...], msg: str) -> str:
    """'--ca-file: ...' for a validation error of the broker built from the flags."""
    names = [str(p).replace("_", "-") for p in loc if p != "tls"]
    msg = msg.removeprefix("Value error, ")
    return f"--{names[-1]}: {msg}" if names else f"broker options: {msg}"


def options_from_args(args: argparse.Namespace) -> WatchOptions:
    """The settings for `parkwatch watch` from its parsed command line."""
    if args.host is not None:
        if args.config is not None:
            raise SettingsError(["give --config or --host, not both"])
        if args.broker:
            raise SettingsError(["--broker names a broker of a config; with --host give the "
                                 "broker's settings directly"])
        broker = _from_flags(args)
        prefix, interval = DEFAULT_PREFIX, DEFAULT_STATUS_INTERVAL_S
    else:
        if any((args.username, args.password_file, args.ca_file, args.cert_file,
                args.key_file, args.no_verify_hostname)) or args.port is not None:
            raise SettingsError(["--port, --username, --password-file and the TLS options go "
                                 "with --host; with a config the broker's settings come from "
                                 "it"])
        broker, prefix, interval = _from_config(args)
    operator = args.operator.strip() if args.operator else None
    if args.operator is not None and not operator:
        raise SettingsError(["--operator must name you (an id from the gateways' "
                             "alarms.operators)"])
    stale = args.stale_after if args.stale_after is not None else STALE_FACTOR * interval
    key = None
    if args.sign_key is not None:
        if operator is None:
            raise SettingsError(["--sign-key signs your acknowledgements: give --operator too"])
        try:
            key = load_private_key(Path(args.sign_key))
        except ValueError as exc:
            raise SettingsError([f"--sign-key: {exc}"]) from None
    return WatchOptions(broker=broker, prefix=args.prefix or prefix, operator=operator,
                        stale_after_s=stale, note=args.note, sign_key=key)

