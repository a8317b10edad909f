"""A&D-style line output: ``ST,GS,+00123.45kg`` CR LF.

    header 1   ST stable, US unstable (settling), OL overload
    header 2   GS gross, NT net
    data       sign and digits with at most one decimal point (A&D pads with zeros or blanks)
    unit       kg, g, t, lb, ... (blanks before it allowed)

These lines carry no checksum, so a line counts only if it matches the whole pattern up to its
end and its data field has the fixed width (8 characters after the sign, as A&D sends it): a
byte lost from the digits is then noticed rather than read as a smaller weight.

Junk before a line (noise, or a line whose end was lost) is skipped: the pattern is searched
for, and since a line holds exactly two commas, a match that ends at the line's end starts
exactly where the real line starts — junk can never lend it digits.  A headerless line is junk;
junk is counted per run ('garbage'), a line start without its end as 'cut_frame'.
"""

from __future__ import annotations

import re
from typing import ClassVar

from parkwatch.drivers.serial_indicator.formats.base import (
    Frame,
    FrameFormat,
    Parser,
    Reading,
    Rejection,
)

WIDTH = 8  # characters of the data field after the sign: digits, blanks, decimal point
_LINE = re.compile(rb"(ST|US|OL),(GS|NT),([+-])( *[0-9]+(?:\.[0-9]+)?) *([A-Za-z]{1,3})\r?\Z")
_HEAD = re.compile(rb"(ST|US|OL),(GS|NT),")
#: longest sensible line; a longer run without a line end is junk (wrong baud rate, noise)
MAX_LINE = 40


class AndLineParser(Parser):
    def __init__(self) -> None:
        super().__init__()
        self._buf = b""

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf + data if self._buf else data
        out: list[Frame] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self._line(buf[start:nl], out)
            start = nl + 1
        rest = buf[start:]
        if len(rest) > MAX_LINE:
            # no line end in sight: what cannot belong to a line any more is junk
            self.junk.add(rest[:-MAX_LINE], out)
            rest = rest[-MAX_LINE:]
        self._buf = rest
        return out

    def _line(self, line: bytes, out: list[Frame]) -> None:
        if line in (b"", b"\r"):
            return  # blank lines carry nothing and are harmless
        m = _LINE.search(line)
        if m is None or len(m[4]) != WIDTH:
            start = m.start() if m is not None else max(
                (h.start() for h in _HEAD.finditer(line)), default=-1)
            if start < 0:
                self.junk.add(line + b"\n", out)  # no header at all: junk, part of the run
                return
            self._prefix(line[:start], out)
            out.append(Rejection("bad_digits", line[start:] + b"\n"))
            return
        self._prefix(line[:m.start()], out)
        status, gn, sign, num, unit = m.groups()
        whole, _, frac = num.partition(b".")
        counts = int(whole + frac)
        out.append(Reading(-counts if sign == b"-" else counts, len(frac), status.decode(),
                           gn == b"NT", unit.decode(), raw=line[m.start():] + b"\n"))

    def _prefix(self, junk: bytes, out: list[Frame]) -> None:
        """Bytes before a line's header: the start of a line cut short, or plain junk."""
        head = _HEAD.search(junk)
        self.junk.add(junk if head is None else junk[:head.start()], out)
        self.junk.end(out)
        if head is not None:
            out.append(Rejection("cut_frame", junk[head.start():]))

    def flush(self) -> list[Frame]:
        out: list[Frame] = []
        if self._buf.strip():
            self.junk.end(out)
            out.append(Rejection("cut_frame", self._buf))
        self._buf = b""
        self.junk.end(out)
        return out


class AndLine(FrameFormat):
    name: ClassVar[str] = "and_line"
    statuses: ClassVar[tuple[str, ...]] = ("ST", "US", "OL")
    carries_unit: ClassVar[bool] = True
    carries_net: ClassVar[bool] = True
    max_decimals: ClassVar[int] = 4
    delimiters: ClassVar[bytes] = b"\n"

    @classmethod
    def max_counts(cls, decimals: int) -> int:
        digits: int = 10 ** (WIDTH - (1 if decimals else 0))  # int ** int is typed Any
        return digits - 1

    @classmethod
    def encode_counts(cls, counts: int, decimals: int, status: str = "ST", net: bool = False,
                      unit: str | None = "kg") -> bytes:
        cls._check(counts, decimals, status, net, unit)
        assert unit is not None
        if not re.fullmatch(r"[A-Za-z]{1,3}", unit):
            raise ValueError(f"and_line: unit must be 1-3 letters, not {unit!r}")
        digits = b"%0*d" % (WIDTH - (1 if decimals else 0), abs(counts))
        if decimals:
            digits = digits[:-decimals] + b"." + digits[-decimals:]
        return b"%s,%s,%c%s%s\r\n" % (status.encode(), b"NT" if net else b"GS",
                                      0x2D if counts < 0 else 0x2B, digits, unit.encode())

    @classmethod
    def encode(cls, weight: float, decimals: int, status: str = "ST", net: bool = False,
               unit: str | None = "kg") -> bytes:
        return cls.encode_counts(round(weight * 10**decimals), decimals, status, net, unit)

    @classmethod
    def corrupt(cls, frame: bytes) -> bytes:
        """A line has no checksum: turn its first digit into a letter, which the parser refuses.

        (A flipped bit that leaves a digit a digit goes unnoticed: this format's weakness.)
        """
        i = frame.index(b",", 3) + 2  # after "ST,GS," and the sign
        return frame[:i] + b"O" + frame[i + 1:]

    @classmethod
    def parser(cls) -> Parser:
        return AndLineParser()
