"""A worker's batch of readings on the wire to the daemon: one frame of bytes, not a pickle.

Pickling a small batch (five numpy arrays in a tuple) cost about as much as the readings in it
on both sides of the pipe, hundreds of times a second at a modest rate; a frame is the header
and the arrays' bytes, and the daemon reads the arrays straight out of it.

Layout (little-endian): ``tag`` (1, :data:`TAG`), ``urgent`` (1), 6 bytes of padding, the ack
id (int64; -1: none), the number of readings ``n`` (uint64); then ``value``, ``ts`` and
``battery`` (``n`` float64 each), ``sensor`` (``n`` int32) and ``quality`` (``n`` uint8), so
every array starts aligned.  A pickle starts with another byte (protocol 2 and later: 0x80),
so one connection carries both.
"""

from __future__ import annotations

import struct

import numpy as np

from parkwatch.readings import ReadingBatch

TAG = 0x01
_HEAD = struct.Struct("<BB6xqQ")


def encode(urgent: bool, batch: ReadingBatch, ack_id: int | None) -> bytes:
    n = len(batch)
    return b"".join((
        _HEAD.pack(TAG, urgent, -1 if ack_id is None else ack_id, n),
        np.asarray(batch.value, np.float64).tobytes(),
        np.asarray(batch.ts, np.float64).tobytes(),
        np.asarray(batch.battery, np.float64).tobytes(),
        np.asarray(batch.sensor, np.int32).tobytes(),
        np.asarray(batch.quality, np.uint8).tobytes()))


def decode(data: bytes | bytearray) -> tuple[bool, ReadingBatch, int | None] | None:
    """(urgent, batch, ack id) of a frame; None when `data` is not one (a pickled message).
    The arrays are views of a writable copy of `data`."""
    if not data or data[0] != TAG:
        return None
    if len(data) < _HEAD.size:
        raise ValueError(f"batch frame of {len(data)} bytes, shorter than its header")
    _tag, urgent, ack_id, n = _HEAD.unpack_from(data)
    if len(data) != _HEAD.size + 29 * n:
        raise ValueError(f"batch frame of {len(data)} bytes for {n} readings")
    buf = bytearray(data)
    off = _HEAD.size
    value, ts, battery = (np.frombuffer(buf, np.float64, n, off + 8 * n * k) for k in range(3))
    off += 24 * n
    sensor = np.frombuffer(buf, np.int32, n, off)
    quality = np.frombuffer(buf, np.uint8, n, off + 4 * n)
    return bool(urgent), ReadingBatch(sensor, value, ts, quality, battery), (
        None if ack_id < 0 else int(ack_id))
