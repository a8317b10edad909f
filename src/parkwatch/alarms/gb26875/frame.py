"""One GB/T 26875.3-2011 frame (§6.6, table 1), encoded and decoded byte by byte.

    @@ | serial (2, low byte first) | version (main 1, user) | time label (6) |
    source (6, low byte first) | destination (6, low byte first) |
    data length (2, low byte first) | command (1) | application data unit | checksum (1) | ##

The checksum is the sum of every byte from the serial number through the data unit, mod 256
(控制单元中各字节数据(第3~27字节)及应用数据单元的算术校验和).  The time label (§8.2.2) is
second, minute, hour, day, month, year - 2000, the device's local time; parkwatch uses China
Standard Time (UTC+8) whatever the host's zone.  Layout and codes: see :mod:`.codes`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from parkwatch.alarms.gb26875.codes import (
    END,
    HEADER_LEN,
    MAIN_VERSION,
    MAX_DATA_LEN,
    START,
    TRAILER_LEN,
    Command,
)

#: China Standard Time: the time labels of a Chinese monitoring center
CST = timezone(timedelta(hours=8), "CST")
ADDRESS_MAX = (1 << 48) - 1


class FrameError(ValueError):
    """Bytes that are not a well-formed frame; the message says which field and why."""


def time_label(at: datetime) -> bytes:
    """The 6-byte time label of `at` (aware: converted to China Standard Time)."""
    t = at.astimezone(CST) if at.tzinfo is not None else at
    if not 2000 <= t.year <= 2255:
        raise FrameError(f"time label: year {t.year} outside 2000-2255")
    return bytes((t.second, t.minute, t.hour, t.day, t.month, t.year - 2000))


def parse_time_label(raw: bytes) -> datetime:
    """The China Standard Time a 6-byte time label names; FrameError if it names none."""
    s, mi, h, d, mo, y = raw
    try:
        return datetime(2000 + y, mo, d, h, mi, s, tzinfo=CST)
    except ValueError as exc:
        raise FrameError(f"time label {raw.hex()}: {exc}") from None


def now_cst() -> datetime:
    return datetime.now(UTC).astimezone(CST).replace(microsecond=0)


@dataclass(frozen=True)
class Frame:
    """A frame's fields; `data` is the application data unit (empty for a bare confirm)."""

    serial: int
    at: datetime
    source: int
    destination: int
    command: int
    data: bytes = b""
    user_version: int = 0
    main_version: int = MAIN_VERSION

    def encode(self) -> bytes:
        """The frame's bytes, start to end."""
        if not 0 <= self.serial <= 0xFFFF:
            raise FrameError(f"serial number {self.serial} outside 0-65535")
        for name, addr in (("source", self.source), ("destination", self.destination)):
            if not 0 <= addr <= ADDRESS_MAX:
                raise FrameError(f"{name} address {addr} outside 6 bytes")
        if len(self.data) > MAX_DATA_LEN:
            raise FrameError(f"data unit of {len(self.data)} bytes, over {MAX_DATA_LEN}")
        body = (struct.pack("<HBB", self.serial, self.main_version, self.user_version)
                + time_label(self.at)
                + self.source.to_bytes(6, "little") + self.destination.to_bytes(6, "little")
                + struct.pack("<HB", len(self.data), self.command) + self.data)
        return START + body + bytes((checksum(body),)) + END

    def answer(self, command: Command, at: datetime, data: bytes = b"") -> Frame:
        """The confirm / deny / reply to this frame: same serial, addresses swapped."""
        return Frame(self.serial, at, self.destination, self.source, int(command), data,
                     self.user_version, self.main_version)


def checksum(body: bytes) -> int:
    """Sum of the bytes from the serial number through the data unit, mod 256."""
    return sum(body) & 0xFF


def decode(raw: bytes) -> Frame:
    """The frame in `raw` (exactly one frame); FrameError naming the first bad field."""
    if len(raw) < HEADER_LEN + TRAILER_LEN:
        raise FrameError(f"{len(raw)} bytes: shorter than a frame's "
                         f"{HEADER_LEN + TRAILER_LEN}")
    if raw[:2] != START:
        raise FrameError(f"start {raw[:2].hex()}, not 4040 ('@@')")
    (length,) = struct.unpack_from("<H", raw, 24)
    if length > MAX_DATA_LEN:
        raise FrameError(f"data length {length} over {MAX_DATA_LEN}")
    if len(raw) != HEADER_LEN + length + TRAILER_LEN:
        raise FrameError(f"data length {length} says {HEADER_LEN + length + TRAILER_LEN} "
                         f"bytes, the frame has {len(raw)}")
    if raw[-2:] != END:
        raise FrameError(f"end {raw[-2:].hex()}, not 2323 ('##')")
    body = raw[2:-3]
    if checksum(body) != raw[-3]:
        raise FrameError(f"checksum {raw[-3]:02x}, the bytes sum to {checksum(body):02x}")
    serial, main, user = struct.unpack_from("<HBB", raw, 2)
    command = raw[26]
    if command not in Command._value2member_map_:
        raise FrameError(f"command byte {command}: not one of table 2 (1-6)")
    return Frame(serial, parse_time_label(raw[6:12]), int.from_bytes(raw[12:18], "little"),
                 int.from_bytes(raw[18:24], "little"), command, bytes(raw[27:27 + length]),
                 user, main)


def split(buffer: bytearray) -> bytes | None:
    """Take the next whole frame off the front of `buffer` (a TCP stream's bytes), None when
    it holds no whole frame yet.  Bytes before a start mark are dropped (line noise), and so
    is a stray '@' right before one; a length over the limit drops the start mark's first byte, so a
    corrupt frame cannot stall the stream.  A frame that is whole but wrong is returned, for
    :func:`decode` to say what is wrong with it."""
    while True:
        at = buffer.find(START)
        if at < 0:
            del buffer[:max(0, len(buffer) - 1)]  # keep a lone trailing '@'
            return None
        del buffer[:at]
        if len(buffer) < HEADER_LEN:
            return None
        (length,) = struct.unpack_from("<H", buffer, 24)
        if length > MAX_DATA_LEN:
            del buffer[:1]  # not a start mark after all (or a stray '@' before one)
            continue
        total = HEADER_LEN + length + TRAILER_LEN
        if len(buffer) < total:
            return None
        raw = bytes(buffer[:total])
        if raw[-2:] != END and raw[1:3] == START:
            del buffer[:1]  # a stray '@' before the real start mark
            continue
        del buffer[:total]
        return raw
