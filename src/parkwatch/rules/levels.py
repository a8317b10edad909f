"""Levels with hysteresis, shared by every kind that compares a number with limits.

A level is 0 (normal), 1 (warning) or 2 (critical) on one side of a value.  A limit is crossed
on the way out at the limit itself and on the way back only past it by the deadband.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from parkwatch.rules.transitions import Severity

#: level (0 normal, 1 warning, 2 critical) -> Severity
LEVEL_SEVERITY = np.array([Severity.NORMAL, Severity.WARNING, Severity.CRITICAL], np.int8)


def limit(x: float | None) -> float:
    """A configured limit as a float; an unset one is NaN, which never compares true."""
    return np.nan if x is None else float(x)


def high_level(v: np.ndarray, cur: np.ndarray, warn: np.ndarray, crit: np.ndarray,
               deadband: np.ndarray) -> np.ndarray:
    """New level of values against high limits; NaN limits (disabled) never trigger.

    `warn` must already stand in for a missing warning limit with the critical one.
    """
    raised = (v >= crit).astype(np.int8) + (v >= warn)
    held = (v >= crit - deadband).astype(np.int8) + (v >= warn - deadband)
    level: np.ndarray = np.maximum(raised, np.minimum(cur, held))
    return level


def limit_of(level: np.ndarray, warn: np.ndarray, crit: np.ndarray) -> np.ndarray:
    """The limit a level refers to: the critical one for 2, else the warning one."""
    return np.where(level == 2, crit, warn)


def limit_concerned(old: np.ndarray, new: np.ndarray, warn: np.ndarray,
                    crit: np.ndarray) -> np.ndarray:
    """The limit an event names: the one in force at the new level (a critical alarm that
    falls back to warning names the warning limit, not the critical one it left), or, for a
    clear, the one the value fell back below."""
    return limit_of(np.where(new > 0, new, old), warn, crit)


@dataclass(slots=True)
class StateArray:
    """A piece of rule state that survives a restart, indexed by sensor (or group) first.

    A *clock* holds times of the last sign of life; on restart they are moved up to the start
    time, so the gateway's own downtime is never blamed on a sensor.
    """

    array: np.ndarray
    space: str = "sensor"  # "sensor" or "group"
    clock: bool = False
