"""The local API commands (`parkwatch alarms`, `ack`, `reset`, `status`, `drill-report`) from
the command line: the arguments they share and the run that turns a :class:`Failure` into its
message and exit code (0 done or nothing to do, for `status` healthy; 1 refused, unhealthy or
the daemon cannot be reached; 2 the config cannot be used)."""

from __future__ import annotations

import argparse
import sys

from parkwatch.cli import configpath
from parkwatch.cli.ack_reset import command
from parkwatch.cli.alarm_list import list_alarms
from parkwatch.cli.api_endpoint import endpoint
from parkwatch.cli.drill_report import drill_report
from parkwatch.cli.exits import EXIT_CONFIG, Failure
from parkwatch.cli.status import show_status


def add_common(p: argparse.ArgumentParser) -> None:
    """The options every local API command takes: the config, and overrides of what it says."""
    default = configpath.DEFAULT_CONFIG
    p.add_argument("--config", "-c", default=default, help=f"park config YAML (default {default})")
    p.add_argument("--state-dir", help="override gateway.state_dir (where api.token is)")
    p.add_argument("--url", help="the API's base URL, e.g. http://127.0.0.1:9466 (default: "
                   "from api.listen and api.port)")
    p.add_argument("--token-file", help="read the bearer token from this file (default: "
                   "api.secret_file/secret_env, else STATE_DIR/api.token)")


def run(args: argparse.Namespace, argv_command: str) -> int:
    """Run one local API command with its parsed arguments; the exit code."""
    try:
        ep = endpoint(args.config, args.state_dir, args.url, args.token_file,
                      token_required=argv_command != "status")
        if argv_command == "status":
            return show_status(ep, args.json)
        if argv_command == "alarms":
            return list_alarms(ep, args.all, args.json)
        if argv_command == "drill-report":
            return drill_report(ep, args.drill_id, args.out, args.json)
        return command(ep, argv_command, args.alarm_id, args.by, args.note, args.key)
    except Failure as exc:
        print(exc.message if exc.code == EXIT_CONFIG else f"parkwatch {argv_command}: "
              f"{exc.message}", file=sys.stderr)
        return exc.code

