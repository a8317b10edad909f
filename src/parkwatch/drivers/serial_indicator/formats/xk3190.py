"""Yaohua XK3190-A9 continuous output (tf=0): fixed 12-byte frames with an XOR checksum.

    byte  0      1     2..7        8          9, 10          11
          STX    +/-   6 digits    decimals   XOR hi, lo     ETX
          0x02         high→low    '0'..'4'   ASCII hex      0x03

The XOR covers bytes 1..8 (sign, digits, decimals); each nibble is sent as nibble + 0x30 when
≤ 9, else + 0x37, i.e. as an upper-case hex digit.  The frame carries no stability flag, no
gross/net and no unit: the unit is the one set on the indicator's front panel.

A valid frame never contains STX or ETX between its ends, so a second STX inside the 12 bytes
means the frame was cut short (bytes lost) and the new STX starts the next frame; an early ETX
means the same.  Parsing searches with ``bytes.find`` rather than walking byte by byte.
"""

from __future__ import annotations

from functools import reduce
from operator import xor
from typing import ClassVar

from parkwatch.drivers.serial_indicator.formats.base import (
    Frame,
    FrameFormat,
    Parser,
    Reading,
    Rejection,
)

STX = 0x02
ETX = 0x03
FRAME_LEN = 12
_HEX = b"0123456789ABCDEF"  # nibble ≤ 9 → +0x30, else +0x37
_DECIMALS = b"01234"


def checksum(body: bytes) -> bytes:
    """The two checksum bytes of a frame body (sign, 6 digits, decimals)."""
    x = reduce(xor, body, 0)
    return bytes((_HEX[x >> 4], _HEX[x & 0x0F]))


class Xk3190Parser(Parser):
    def __init__(self) -> None:
        super().__init__()
        self._buf = b""

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf + data if self._buf else data
        out: list[Frame] = []
        n = len(buf)
        pos = 0
        while pos < n:
            stx = buf.find(STX, pos)
            if stx < 0:
                self.junk.add(buf[pos:], out)
                pos = n
                break
            self.junk.add(buf[pos:stx], out)
            self.junk.end(out)
            end = stx + FRAME_LEN
            limit = min(end, n)
            nxt = buf.find(STX, stx + 1, limit)
            etx = buf.find(ETX, stx + 1, limit)
            if nxt >= 0 and (etx < 0 or nxt < etx):
                out.append(Rejection("cut_frame", buf[stx:nxt]))  # a new frame began early
                pos = nxt
                continue
            if 0 <= etx < end - 1:
                out.append(Rejection("cut_frame", buf[stx:etx + 1]))  # ended early
                pos = etx + 1
                continue
            if end > n:
                pos = stx  # incomplete: wait for the rest
                break
            out.append(self._frame(buf[stx:end]))
            pos = end
        self._buf = buf[pos:]
        return out

    @staticmethod
    def _frame(frame: bytes) -> Frame:
        """Decode 12 bytes that start with STX and hold no other STX or ETX before byte 11."""
        if frame[11] != ETX:
            return Rejection("bad_frame", frame)  # no ETX where it belongs: bytes inserted
        body = frame[1:9]
        if frame[9:11] != checksum(body):
            return Rejection("bad_checksum", frame)
        sign, digits, dec = frame[1], frame[2:8], frame[8]
        if sign not in b"+-" or not digits.isdigit() or dec not in _DECIMALS:
            return Rejection("bad_digits", frame)
        counts = int(digits)
        return Reading(-counts if sign == 0x2D else counts, dec - 0x30, raw=frame)

    def flush(self) -> list[Frame]:
        out: list[Frame] = []
        self.junk.end(out)
        if self._buf:
            out.append(Rejection("cut_frame", self._buf))
            self._buf = b""
        return out


class Xk3190A9(FrameFormat):
    name: ClassVar[str] = "xk3190_a9"
    statuses: ClassVar[tuple[str, ...]] = ("ST",)
    carries_unit: ClassVar[bool] = False
    carries_net: ClassVar[bool] = False
    max_decimals: ClassVar[int] = 4
    delimiters: ClassVar[bytes] = bytes((STX,))

    @classmethod
    def max_counts(cls, decimals: int) -> int:
        return 999_999

    @classmethod
    def encode_counts(cls, counts: int, decimals: int, status: str = "ST", net: bool = False,
                      unit: str | None = None) -> bytes:
        cls._check(counts, decimals, status, net, unit)
        body = b"%c%06d%d" % (0x2D if counts < 0 else 0x2B, abs(counts), decimals)
        return bytes((STX,)) + body + checksum(body) + bytes((ETX,))

    @classmethod
    def corrupt(cls, frame: bytes) -> bytes:
        """Flip one bit of the lowest weight digit: the checksum no longer matches."""
        return frame[:7] + bytes((frame[7] ^ 0x01,)) + frame[8:]

    @classmethod
    def parser(cls) -> Parser:
        return Xk3190Parser()
