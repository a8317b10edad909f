"""The `parkwatch` command line (``parkwatch.cli:main``, ``python -m parkwatch``).

commands.py holds the subcommands and their arguments.  The local API commands (`alarms`,
`ack`, `reset`, `status`, `drill-report`) are the daemon's HTTP API from a shell on the gateway:
api_endpoint.py finds the API and its token, api_request.py makes one call, alarm_list.py,
ack_reset.py, status.py and drill_report.py are the commands, api_commands.py their shared
arguments and run.
configpath.py (the default config and the hint when it is missing), exits.py (exit codes)
and ages.py (times and ages for an operator) serve the other commands and the console too.
"""

from parkwatch.cli.commands import build_parser, main
from parkwatch.cli.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_OK", "build_parser", "main"]
