"""Decoding register values: vectorised over every sensor of a poll block at once."""

from __future__ import annotations

import numpy as np

# per byte order, the position of bytes a, b, c, d (big-endian a..d) in two registers' bytes
_PERMUTATION = {"abcd": [0, 1, 2, 3], "cdab": [2, 3, 0, 1], "badc": [1, 0, 3, 2],
                "dcba": [3, 2, 1, 0]}
_DTYPES = {"int16": ">i2", "uint16": ">u2", "int32": ">i4", "uint32": ">u4", "float32": ">f4"}


def decode(registers: list[int] | np.ndarray, offsets: np.ndarray, dtype: str,
           order: str) -> np.ndarray:
    """Values of one type/order at ``offsets`` (register offsets into ``registers``).

    ``registers`` are 16-bit words as received (big-endian on the wire per word).
    """
    regs = np.asarray(registers, dtype=">u2")
    raw = regs.view(np.uint8).reshape(-1, 2)  # each row: the two bytes of one register
    width = 2 if dtype in ("int32", "uint32", "float32") else 1
    idx = offsets[:, None] + np.arange(width)[None, :]
    data = raw[idx].reshape(len(offsets), 2 * width)  # wire bytes per value
    if width == 1:
        if order == "badc":
            data = data[:, ::-1]
    else:
        # the wire holds the value's bytes a,b,c,d at the positions the order names
        data = data[:, np.argsort(_PERMUTATION[order])]
    values = np.ascontiguousarray(data).view(_DTYPES[dtype]).reshape(-1)
    # a device's float32 NaN may be a signalling one, which the CPU flags on the cast: it stays
    # NaN, and the rule engine counts it as unusable, so the flag is no news
    with np.errstate(invalid="ignore"):
        return values.astype(np.float64)


def encode(value: float, dtype: str, order: str) -> list[int]:
    """Registers holding ``value`` (the simulator's side of :func:`decode`)."""
    raw = np.array([value]).astype(_DTYPES[dtype]).view(np.uint8)
    if raw.shape[0] == 4:
        raw = raw[_PERMUTATION[order]]
    elif order == "badc":
        raw = raw[::-1]
    return [int(x) for x in np.ascontiguousarray(raw).view(">u2")]
