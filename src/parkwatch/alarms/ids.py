"""Alarm ids: time-ordered, unique across restarts and gateways, safe as an MQTT topic level."""

from __future__ import annotations

import os
import random

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: every pair of Crockford digits, by the 10 bits they encode
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
#: the random part: a generator seeded from the OS once per process (an id must be unique, not
#: secret; os.urandom for each id cost a system call per alarm)
_RANDOM = random.Random(os.urandom(32))


def new_alarm_id(ts: float) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford base32 characters."""
    return encode((int(ts * 1000) & ((1 << 48) - 1)) << 80 | _RANDOM.getrandbits(80))


def encode(value: int) -> str:
    """130 bits (a ULID's 128 and two zeros on top) as 26 Crockford digits, the most
    significant first: 13 pairs of 10 bits."""
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in range(120, -1, -10)])
