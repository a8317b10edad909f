"""Alarm ids are ULIDs: 26 Crockford base32 digits, time-ordered, and unique."""

from __future__ import annotations

import random

from parkwatch.alarms.ids import encode, new_alarm_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def digit_by_digit(value: int) -> str:
    """The ULID text the slow, obvious way: 26 base-32 digits, the most significant first."""
    out = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        out.append(CROCKFORD[digit])
    return "".join(reversed(out))


def test_the_encoding_is_crockford_base32_of_all_128_bits() -> None:
    rng = random.Random(26)
    values = [0, 1, (1 << 128) - 1, *(rng.getrandbits(128) for _ in range(20_000))]
    for v in values:
        assert encode(v) == digit_by_digit(v)


def test_ids_sort_by_time_and_do_not_repeat() -> None:
    ids = [new_alarm_id(1_795_000_000.0 + k / 1000) for k in range(5_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 and set(i) <= set(CROCKFORD) for i in ids)
    same_ms = {new_alarm_id(1_795_000_000.0) for _ in range(5_000)}
    assert len(same_ms) == 5_000  # 80 random bits tell apart ids of one millisecond


def test_an_id_is_the_encoding_of_its_time_and_random_bits() -> None:
    """The id, written as a time part and a random part, is exactly the 128-bit encoding:
    its first 10 digits the milliseconds, its last 16 digits 80 random bits."""
    from parkwatch.alarms import ids

    for k in range(2_000):
        ts = 1_795_000_000.0 + k * 0.0137
        i = new_alarm_id(ts)
        value = int("".join(f"{CROCKFORD.index(c):05b}" for c in i), 2)
        assert encode(value) == i
        assert value >> 80 == int(ts * 1000)
    before = ids._RANDOM.getstate()
    rng = random.Random()
    rng.setstate(before)
    i = new_alarm_id(1_795_000_000.0)
    a, b = rng.getrandbits(40), rng.getrandbits(40)
    assert i == encode(1_795_000_000_000 << 80 | a << 40 | b)
