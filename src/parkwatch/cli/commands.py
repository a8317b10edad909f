"""The `parkwatch` command's subcommands and their arguments: run the daemon, check a config,
list and acknowledge alarms, play the demo or the simulator.  What a subcommand runs (the
daemon, the demo, the simulator, the console) is imported only when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from parkwatch import __version__
from parkwatch.cli.exits import EXIT_CONFIG, EXIT_OK
from parkwatch.extensions import ExtensionError


def _check_config(args: argparse.Namespace) -> int:
    from parkwatch.cli.configpath import DEFAULT_CONFIG, missing_config_hint
    from parkwatch.config import ConfigError
    from parkwatch.schema import load_config

    if args.file and args.config and args.file != args.config:
        print(f"check-config: two configs given ({args.file} and --config {args.config}); "
              "give one", file=sys.stderr)
        return EXIT_CONFIG
    path = args.file or args.config or DEFAULT_CONFIG
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        hint = missing_config_hint(path, exc, explicit=bool(args.file or args.config))
        print(hint or f"{path}: {len(exc.problems)} problem(s); not valid", file=sys.stderr)
        return EXIT_CONFIG
    from parkwatch.config.exposure import exposure_problems

    warnings = exposure_problems(path, cfg)  # valid, but anyone could command the gateway
    for warning in warnings:
        print(warning, file=sys.stderr)
    print(f"{path}: valid — park '{cfg.park.id}', {len(cfg.buildings)} building(s), "
          f"{len(cfg.tenants)} tenant(s), {len(cfg.drivers)} driver(s), "
          f"{len(cfg.sensors)} sensor(s)"
          + (f", {len(cfg.outputs)} output(s)" if cfg.outputs else "")
          + (f"; {len(warnings)} WARNING(s)" if warnings else ""))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from parkwatch.daemon.main import run_daemon

    return run_daemon(args.config, state_dir=args.state_dir, log_level=args.log_level,
                      record=args.record)


def _demo(args: argparse.Namespace) -> int:
    from parkwatch.demo import run_demo

    return run_demo(duration_s=args.duration, verbose=args.verbose, speed=args.speed)


def _center(args: argparse.Namespace) -> int:
    from parkwatch.center.main import run_center

    return run_center(args.config, log_level=args.log_level, check=args.check)


def _center_user(args: argparse.Namespace) -> int:
    from parkwatch.center.users import user_command

    return user_command(args.action, args.config, getattr(args, "name", None),
                        getattr(args, "role", None), park=getattr(args, "park", None),
                        tenant=getattr(args, "tenant", None),
                        buildings=tuple(getattr(args, "building", None) or ()))


def _sim(args: argparse.Namespace) -> int:
    from parkwatch.firmware_sim.cli import run_sim

    return run_sim(args.config, args.scenario, speed=args.speed, list_only=args.list)


def _replay(args: argparse.Namespace) -> int:
    from parkwatch.replay import run_replay

    return run_replay(args.config, args.recording, as_json=args.json, until=args.until)


def _alarms(args: argparse.Namespace) -> int:
    from parkwatch.cli.api_commands import run

    return run(args, "alarms")


def _ack(args: argparse.Namespace) -> int:
    from parkwatch.cli.api_commands import run

    return run(args, "ack")


def _reset(args: argparse.Namespace) -> int:
    from parkwatch.cli.api_commands import run

    return run(args, "reset")


def _silence(args: argparse.Namespace) -> int:
    from parkwatch.cli.api_commands import run

    return run(args, "silence")


def _drill_report(args: argparse.Namespace) -> int:
    from parkwatch.cli.api_commands import run

    return run(args, "drill-report")


def _keygen(args: argparse.Namespace) -> int:
    from parkwatch.commandsig import public_text, write_new_key

    try:
        key = write_new_key(args.file)
    except FileExistsError:
        print(f"keygen: {args.file} exists; not overwritten (a key in use would be lost)",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"keygen: cannot write {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    pub = public_text(key)
    print(f"private key: {args.file} (mode 0600: keep it to yourself)")
    print(f"public key:  {pub}")
    print("for the gateways' park config:")
    print(f"  alarms:\n    operators:\n      - id: {args.operator or 'YOUR-OPERATOR-ID'}\n"
          f"        public_key: \"{pub}\"")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from parkwatch.cli.api_commands import run

    return run(args, "status")


def _watch(args: argparse.Namespace) -> int:
    from parkwatch.console.app import run_watch
    from parkwatch.console.settings import SettingsError, options_from_args

    try:
        opts = options_from_args(args)
    except SettingsError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    return run_watch(opts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parkwatch",
        description="Edge gateway daemon for factory-park safety: floor load, fire buttons, "
        "water levels.",
    )
    parser.add_argument("--version", action="version", version=f"parkwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.add_argument("--config", "-c", required=True, help="park config YAML")
    p.add_argument("--state-dir", help="override gateway.state_dir")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--record", metavar="FILE", help="append every reading to FILE (JSONL) for "
                   "parkwatch replay")
    p.set_defaults(func=_run)

    from parkwatch.cli.api_commands import add_common
    from parkwatch.cli.configpath import DEFAULT_CONFIG

    p = sub.add_parser("check-config", help="validate a park config; exit 2 when invalid",
                       description="Validate a park config and list every problem, each as "
                       "file:line: key.path: what is wrong. The config is FILE or --config "
                       f"(default {DEFAULT_CONFIG}). Exit 0 when valid, 2 when not. A valid "
                       "config may still get warnings (exit 0): a broker without a login on "
                       "which anyone could acknowledge alarms or reset a fire button.")
    p.add_argument("file", nargs="?", metavar="FILE", help="park config YAML")
    p.add_argument("--config", "-c", metavar="FILE", help="the same, as the other commands "
                   "take it")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("alarms", help="list the running daemon's open alarms (local API)",
                       description="List the running daemon's alarms, most severe and oldest "
                       f"first. Reads the API address from the config (default {DEFAULT_CONFIG})"
                       " and its token from the state directory. Exit 1 when the daemon cannot "
                       "be reached, 2 when the config cannot be used.")
    add_common(p)
    p.add_argument("--all", action="store_true", help="closed alarms too")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=_alarms)

    for name, func, what in (
            ("ack", _ack, "acknowledge an open alarm"),
            ("reset", _reset, "reset an active fire alarm"),
            ("silence", _silence, "silence the sounders an alarm sounds in its building "
             "(strobes stay on, the alarms stay active)")):
        p = sub.add_parser(name, help=f"{what} (local API)",
                           description=f"{what[0].upper()}{what[1:]} as an operator of "
                           "alarms.operators. Exit 0 when done or nothing was left to do, 1 when "
                           "refused or the daemon cannot be reached, 2 when the config cannot be "
                           "used.")
        p.add_argument("alarm_id", metavar="ALARM_ID", help="the alarm's id (parkwatch alarms)")
        p.add_argument("--by", required=True, metavar="NAME",
                       help="your operator id (alarms.operators)")
        p.add_argument("--note", metavar="TEXT", help="a note kept with the alarm's history")
        p.add_argument("--key", type=Path, metavar="FILE", help="sign the command with your "
                       "private key (parkwatch keygen); required when the gateway has "
                       "alarms.require_signed_commands")
        add_common(p)
        p.set_defaults(func=func)

    p = sub.add_parser("drill-report", help="a declared drill's printable report: when each "
                       "tenant was told, acknowledged, reset (local API)",
                       description="Write the report of a declared drill (alarms.drills) as "
                       "one printable page in HTML: every alarm raised during it, when each "
                       "subscriber was notified on each channel, when it was acknowledged, "
                       "reset and closed, in seconds from the press. Exit 0 when written, 1 "
                       "when the drill is unknown or the daemon cannot be reached, 2 when the "
                       "config cannot be used.")
    p.add_argument("drill_id", metavar="DRILL_ID", help="the drill's id (alarms.drills[].id)")
    p.add_argument("--out", "-o", metavar="FILE", help="where to write the page (default "
                   "drill-report-DRILL_ID.html here; - for standard output)")
    p.add_argument("--json", action="store_true", help="print the API's JSON instead")
    add_common(p)
    p.set_defaults(func=_drill_report)

    p = sub.add_parser("keygen", help="make an operator's key pair for signed commands",
                       description="Write a new Ed25519 private key to FILE (mode 0600; never "
                       "over an existing file) and print its public key, for the operator's "
                       "public_key in alarms.operators. Keep FILE to yourself. Exit 0 when "
                       "written, 1 when not.")
    p.add_argument("file", type=Path, metavar="FILE", help="where to write the private key")
    p.add_argument("--operator", metavar="NAME", help="your operator id, for the config "
                   "snippet printed")
    p.set_defaults(func=_keygen)

    p = sub.add_parser("status", help="the running daemon's health (local API)",
                       description="Print the running daemon's health: the verdict with its "
                       "reasons and warnings, drivers, uplink, open alarms by state, delivery "
                       "targets and their outbox, the pipeline. Exit 0 when healthy, 1 when "
                       "unhealthy or the daemon cannot be reached, 2 when the config cannot be "
                       "used.")
    add_common(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON (/healthz and "
                   "/api/status)")
    p.set_defaults(func=_status)

    p = sub.add_parser("watch", help="live operator board of many parks (uplink broker)",
                       description="A live board of the open alarms of every park on a "
                       "command-center broker: most severe and oldest first, gateway statuses, "
                       "a bell for new fire alarms. Keys: up/down or j/k select, a "
                       "acknowledges (with --operator), q quits. The broker comes from a park "
                       f"config's uplink (default {DEFAULT_CONFIG}) or from --host. Exit 2 "
                       "when the broker settings cannot be used.")
    g = p.add_argument_group("broker from a park config")
    g.add_argument("--config", "-c", help=f"park config YAML (default {DEFAULT_CONFIG} "
                   "unless --host is given)")
    g.add_argument("--broker", metavar="NAME", help="a broker under the config's brokers "
                   "(default: the uplink broker)")
    g = p.add_argument_group("broker from the command line")
    g.add_argument("--host", help="broker host name or address")
    g.add_argument("--port", type=int, help="broker port (default 1883)")
    g.add_argument("--username", help="MQTT user name")
    g.add_argument("--password-file", metavar="FILE", help="file whose first line is the "
                   "password")
    g.add_argument("--ca-file", metavar="FILE", help="CA bundle: connect with TLS")
    g.add_argument("--cert-file", metavar="FILE", help="client certificate (mutual TLS)")
    g.add_argument("--key-file", metavar="FILE", help="client private key (mutual TLS)")
    g.add_argument("--no-verify-hostname", action="store_true",
                   help="do not check the broker's name in its certificate")
    p.add_argument("--operator", metavar="NAME", help="your operator id (the gateways' "
                   "alarms.operators); without it the board is read-only")
    p.add_argument("--note", metavar="TEXT", help="a note sent with every acknowledgement")
    p.add_argument("--sign-key", metavar="FILE", help="sign every acknowledgement with your "
                   "private key (parkwatch keygen); needed by gateways with "
                   "alarms.require_signed_commands")
    p.add_argument("--prefix", metavar="TOPIC", help="contract topic prefix (default: the "
                   "config's uplink.topic_prefix, else parkwatch/v1)")
    p.add_argument("--stale-after", type=float, metavar="SECONDS", help="show a gateway "
                   "as stale when its status is older than this (default 3 × the config's "
                   "gateway.status_interval_s, else 90)")
    p.set_defaults(func=_watch)

    p = sub.add_parser("demo", help="private broker + simulated devices + daemon, for a look")
    p.add_argument("--duration", type=float, default=45.0,
                   help="seconds to run before stopping (default 45)")
    p.add_argument("--verbose", "-v", action="store_true", help="show the daemon's log too")
    p.add_argument("--speed", type=float, default=1.0, help="time factor (2 = twice as fast)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("center", help="run a command-center instance: every park's alarm "
                       "events into its database (docs/center.md)",
                       description="Take every park's alarm events, alarm states and gateway "
                       "statuses from the central broker and store them idempotently. Exit 2 "
                       "when the config cannot be used, 1 when the database cannot be reached "
                       "at start.")
    p.add_argument("--config", "-c", default="/etc/parkwatch/center.yaml",
                   help="center config YAML (default %(default)s)")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--check", action="store_true", help="only validate the config (and that "
                   "its secret files are readable), without connecting: exit 0 or 2")
    p.set_defaults(func=_center)

    p = sub.add_parser("center-user", help="manage the users of the command center's web "
                       "console", description="Add, change, remove or list console users in "
                       "the center's database. A password is asked on the terminal, or read "
                       "from the first line of stdin.")
    usub = p.add_subparsers(dest="action", required=True)
    config_help = "center config YAML (default %(default)s)"
    pa = usub.add_parser("add", help="add a user")
    pa.add_argument("name", help="the user's name (shown as the author of their commands and "
                    "sent as `by` in their acknowledgements)")
    pa.add_argument("--role", required=True,
                    choices=["operator", "viewer", "inspector", "landlord", "tenant"],
                    help="operator: the command center, every park, acknowledges and "
                    "handles hazard tickets; viewer: reads only; inspector (网格员): reports "
                    "and verifies hazards; landlord: their buildings' hazards; tenant: a "
                    "tenant's safety officer, their own tenant's hazards only")
    pa.add_argument("--park", help="the park an inspector, landlord or tenant officer belongs "
                    "to (an inspector without it works in every park)")
    pa.add_argument("--tenant", help="a tenant officer's tenant id (as in the park config)")
    pa.add_argument("--building", action="append", help="a landlord's building id; repeat "
                    "for several, * for every building of the park")
    pp = usub.add_parser("passwd", help="give a user a new password; their logins end")
    pp.add_argument("name")
    pr = usub.add_parser("remove", help="remove a user; their logins end, their recorded "
                         "commands stay")
    pr.add_argument("name")
    pl = usub.add_parser("list", help="list the users, their roles and open logins")
    for q in (pa, pp, pr, pl):
        q.add_argument("--config", "-c", default="/etc/parkwatch/center.yaml", help=config_help)
        q.set_defaults(func=_center_user)

    p = sub.add_parser("sim", help="play simulated devices of a park config against its brokers")
    p.add_argument("--config", "-c", required=True, help="park config YAML")
    p.add_argument("--scenario", "-s", default="demo", help="scenario name (see --list)")
    p.add_argument("--speed", type=float, default=1.0, help="time factor (2 = twice as fast)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.set_defaults(func=_sim)

    p = sub.add_parser("replay", help="run a recording (parkwatch run --record) through a "
                       "config's rules and print the transitions")
    p.add_argument("--config", "-c", required=True, help="park config YAML")
    p.add_argument("recording", help="JSONL recording of readings")
    p.add_argument("--json", action="store_true", help="one JSON object per transition")
    p.add_argument("--until", type=float, help="let time run on to this epoch second at the "
                   "end (silences and durations that fall due after the last reading)")
    p.set_defaults(func=_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except ExtensionError as exc:
        print(f"parkwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
