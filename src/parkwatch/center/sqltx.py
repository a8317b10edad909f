"""One transaction of a center store's backend, as the backend-neutral SQL sees it: queries
are written with ``?``, and each backend's transaction turns them into its own parameter
style."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Tx(Protocol):
    """One transaction of a backend."""

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        ...

    def script(self, sql: str) -> None:
        """Several statements, no parameters (a migration file)."""
        ...

    def lock_schema(self) -> None:
        """Hold the right to migrate until the transaction ends (one center instance
        migrates while the others wait)."""
        ...
