"""Serial line settings shared by the RS-485 drivers, and the line timing they imply."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from parkwatch.config.base import Strict


class LineSettings(Strict):
    """The character format and speed of an RS-485 line: on the gateway's own port, or behind
    a serial server (where they only give the line's timing: the server's own serial settings
    are made on the server)."""

    baudrate: int = Field(9600, ge=300, le=921_600)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_time(self) -> float:
        """Seconds one character occupies the line."""
        return self.bits_per_char / self.baudrate

    @property
    def t35(self) -> float:
        """Modbus RTU inter-frame silence: 3.5 characters of 11 bits (the RTU character is
        always 11 bits: 8N1 lines pad with a second stop bit), fixed 1.75 ms above 19200 baud."""
        return t35(self.baudrate)


class _Port(Strict):
    port: str = Field(min_length=1, description="device path, e.g. /dev/ttyUSB0 or "
                      "/dev/serial/by-id/...; a stable by-id path survives re-plugging")


class SerialLine(LineSettings, _Port):  # in this order, `port` comes first in docs/config.md
    """A serial port of the gateway and its line settings."""

    reopen_max_s: float = Field(30.0, gt=0, le=3600,
                                description="longest wait between attempts to reopen the port")


def char_time(baudrate: int, bits_per_char: int = 11) -> float:
    return bits_per_char / baudrate


def t35(baudrate: int, bits_per_char: int = 11) -> float:
    return 0.00175 if baudrate > 19200 else 3.5 * bits_per_char / baudrate
