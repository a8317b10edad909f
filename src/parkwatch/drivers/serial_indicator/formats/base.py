"""What a weighing-indicator frame format provides: an encoder and a streaming parser.

A format is a class with a few facts (``name``, ``statuses`` it can carry, whether frames carry
a unit or gross/net), ``encode`` for the simulator and the tests, ``corrupt`` for fault
injection, and ``parser()`` returning a fresh :class:`Parser` for one serial line.

The parser takes whatever bytes the port delivered (any chunking: half a frame, ten frames,
junk) and returns what it could decide: :class:`Reading` for a frame that passed every check,
:class:`Rejection` for bytes that did not.  Parsers resynchronise on their own — after junk or
a frame cut short they skip to the next frame start — and never turn damaged bytes into a
value.  Weights are kept as an integer count of the last displayed digit plus the number of
decimals, so a frame decodes to exactly what the indicator displayed (no float rounding).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from parkwatch.readings import Quality

#: indicator status -> reading quality (ST stable, US unstable / settling, OL overload)
STATUS_QUALITY: dict[str, Quality] = {"ST": Quality.GOOD, "US": Quality.UNSTABLE,
                                      "OL": Quality.OVERLOAD}


@dataclass(frozen=True, slots=True)
class Reading:
    """One weight as the indicator displayed it."""

    counts: int  # signed weight in units of the last displayed digit
    decimals: int  # digits after the decimal point
    status: str = "ST"  # "ST", "US" or "OL"
    net: bool = False  # net (tared) weight rather than gross
    unit: str | None = None  # as sent; None when the format carries no unit
    raw: bytes = field(default=b"", compare=False)  # the frame's bytes, for tests and logs

    @property
    def value(self) -> float:
        scale: int = 10**self.decimals  # int ** int is typed Any (a negative power is a float)
        return self.counts / scale

    @property
    def quality(self) -> Quality:
        return STATUS_QUALITY[self.status]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Bytes that did not make a valid frame, and why (the driver counts them by reason)."""

    reason: str  # garbage, cut_frame, bad_frame, bad_checksum, bad_digits, bad_line
    data: bytes  # the rejected bytes, or the first of them for a long run of junk
    size: int = 0  # how many bytes were rejected (len(data) unless data was shortened)

    def __post_init__(self) -> None:
        if self.size == 0:
            object.__setattr__(self, "size", len(self.data))


Frame = Reading | Rejection


class JunkRun:
    """Collects consecutive junk bytes so that one run counts as one 'garbage' rejection.

    A run may span several reads; it ends when a frame start follows or when it grows past
    ``limit`` bytes (so a line at the wrong baud rate is reported while it lasts, not never).
    Only the first ``keep`` bytes are kept, for the log.
    """

    def __init__(self, limit: int = 512, keep: int = 32) -> None:
        self.limit = limit
        self.keep = keep
        self.size = 0
        self.head = b""

    def add(self, data: bytes, out: list[Frame]) -> None:
        if not data:
            return
        if self.size < self.keep:
            self.head += data[: self.keep - self.size]
        self.size += len(data)
        if self.size >= self.limit:
            self.end(out)

    def end(self, out: list[Frame]) -> None:
        if self.size:
            out.append(Rejection("garbage", self.head, self.size))
            self.size = 0
            self.head = b""


class Parser(ABC):
    """Turns a byte stream into frames; keeps the unfinished tail between calls."""

    def __init__(self) -> None:
        self.junk = JunkRun()

    @abstractmethod
    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data`` (in stream order); a partial frame waits for more."""

    @abstractmethod
    def flush(self) -> list[Frame]:
        """The line went down or is being closed: report what is pending and start afresh.

        A frame begun but not finished is a ``cut_frame``; a junk run in progress is reported.
        """


class FrameFormat(ABC):
    """One indicator protocol: facts, encoder (simulator side) and parser (driver side)."""

    name: ClassVar[str]
    statuses: ClassVar[tuple[str, ...]]  # the statuses a frame can carry
    carries_unit: ClassVar[bool]
    carries_net: ClassVar[bool]
    max_decimals: ClassVar[int]
    #: bytes that start or end a frame; junk free of these can never disturb framing
    delimiters: ClassVar[bytes]

    @classmethod
    @abstractmethod
    def max_counts(cls, decimals: int) -> int:
        """Largest |counts| a frame with ``decimals`` decimals can carry."""

    @classmethod
    @abstractmethod
    def encode_counts(cls, counts: int, decimals: int, status: str = "ST", net: bool = False,
                      unit: str | None = None) -> bytes:
        """The frame for an exact weight; ValueError for what the format cannot carry."""

    @classmethod
    def encode(cls, weight: float, decimals: int, status: str = "ST", net: bool = False,
               unit: str | None = None) -> bytes:
        """The frame an indicator showing ``weight`` (rounded to ``decimals``) sends."""
        return cls.encode_counts(round(weight * 10**decimals), decimals, status, net, unit)

    @classmethod
    @abstractmethod
    def corrupt(cls, frame: bytes) -> bytes:
        """The frame damaged as line noise would damage it, detectably (fault injection)."""

    @classmethod
    @abstractmethod
    def parser(cls) -> Parser:
        """A fresh parser for one serial line."""

    @classmethod
    def _check(cls, counts: int, decimals: int, status: str, net: bool,
               unit: str | None) -> None:
        """Refuse what this format cannot carry (shared by the encoders)."""
        if not 0 <= decimals <= cls.max_decimals:
            raise ValueError(f"{cls.name}: decimals must be 0..{cls.max_decimals}, "
                             f"not {decimals}")
        if abs(counts) > cls.max_counts(decimals):
            raise ValueError(f"{cls.name}: {counts} x 10^-{decimals} does not fit the frame")
        if status not in cls.statuses:
            raise ValueError(f"{cls.name}: status must be one of {cls.statuses}, not {status!r}")
        if net and not cls.carries_net:
            raise ValueError(f"{cls.name}: frames do not say gross or net")
        if (unit is not None) != cls.carries_unit:
            raise ValueError(f"{cls.name}: frames {'need' if cls.carries_unit else 'carry no'} "
                             "unit")
