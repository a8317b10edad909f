"""How a `parkwatch` command ends: its exit codes, and :class:`Failure`, the message for the
operator that ends a command with one of them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # refused, unhealthy, or the daemon cannot be reached
EXIT_CONFIG = 2  # the config cannot be used (the systemd unit does not restart on it)


class Failure(Exception):
    """A message for the operator and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
