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


_MS = (1 << 48) - 1
#: the last millisecond's 10 digits (a storm's changes of one round share their millisecond)
_last: tuple[int, str] = (-1, "")


def new_alarm_id(ts: float) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford base32 characters
    (what :func:`encode` gives for the 128 bits, written in two parts)."""
    global _last
    ms = int(ts * 1000) & _MS
    last = _last
    if last[0] == ms:
        head = last[1]
    else:  # the top 50 bits (two zeros and the time): 5 pairs of digits
        head = "".join([_PAIRS[(ms >> shift) & 0x3FF] for shift in (40, 30, 20, 10, 0)])
        _last = (ms, head)
    a, b = _RANDOM.getrandbits(40), _RANDOM.getrandbits(40)  # 80 bits, 8 pairs
    p = _PAIRS
    return (head + p[a >> 30] + p[(a >> 20) & 0x3FF] + p[(a >> 10) & 0x3FF] + p[a & 0x3FF]
            + p[b >> 30] + p[(b >> 20) & 0x3FF] + p[(b >> 10) & 0x3FF] + p[b & 0x3FF])


def encode(value: int) -> str:
    """130 bits (a ULID's 128 and two zeros on top) as 26 Crockford digits, the most
    significant first: 13 pairs of 10 bits."""
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in range(120, -1, -10)])
