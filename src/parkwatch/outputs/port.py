"""What a driver type that can switch outputs gives the output bank: a port per driver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

#: (output position, agrees, what was seen): the answer to a write (after its read-back) or to
#: a check; `agrees` False is a fault (no answer, an exception, a read-back that disagrees)
Done = Callable[[int, bool, str], None]


class OutputPort(Protocol):
    """Switches and reads back the outputs of one driver; answers on the driver's threads."""

    def write(self, position: int, on: bool, done: Done) -> None:
        """Switch the output on or to rest, read it back, then call `done`."""
        ...

    def check(self, position: int, on: bool, done: Done) -> None:
        """Read the output back and call `done` with whether it is `on` (or at rest)."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...
