"""The application data unit (§7, figure 5) and the information objects parkwatch sends and
receives (§8.2, §8.3): type flag (1) | object count (1) | objects, each an information body
and, for most types, its 6-byte time label.

Lengths and bit layouts: :mod:`.codes` (with the sources).  Multi-byte numbers go low byte
first; a component's description is 31 bytes of GB 18030, padded with zero bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

from parkwatch.alarms.gb26875.codes import OBJECT_LEN, DataType
from parkwatch.alarms.gb26875.frame import FrameError, parse_time_label, time_label

DESCRIPTION_LEN = 31


def description_bytes(text: str) -> bytes:
    """`text` in GB 18030, cut at a character boundary to 31 bytes, padded with zeros."""
    out = b""
    for ch in text:
        enc = ch.encode("gb18030")
        if len(out) + len(enc) > DESCRIPTION_LEN:
            break
        out += enc
    return out.ljust(DESCRIPTION_LEN, b"\0")


@dataclass(frozen=True)
class SystemState:
    """Type 1: a building fire facility system's state (§8.2.1.1)."""

    system_type: int
    system_address: int
    state: int
    at: datetime

    def encode(self) -> bytes:
        return struct.pack("<BBH", self.system_type, self.system_address,
                           self.state) + time_label(self.at)


@dataclass(frozen=True)
class ComponentState:
    """Type 2: a component's running state (§8.2.1.2): fire alarm, fault, recovery."""

    system_type: int
    system_address: int
    component_type: int
    component_address: int
    state: int
    description: str
    at: datetime

    def encode(self) -> bytes:
        return (struct.pack("<BBBIH", self.system_type, self.system_address,
                            self.component_type, self.component_address, self.state)
                + description_bytes(self.description) + time_label(self.at))


@dataclass(frozen=True)
class DeviceState:
    """Type 21: the user information transmission device's running state (§8.2.1.8): the
    gateway's heartbeat."""

    state: int
    at: datetime

    def encode(self) -> bytes:
        return bytes((self.state,)) + time_label(self.at)


@dataclass(frozen=True)
class ClockSync:
    """Type 90, a control command: the center's time for the device's clock."""

    at: datetime

    def encode(self) -> bytes:
        return time_label(self.at)


InfoObject = SystemState | ComponentState | DeviceState | ClockSync
_TYPE_OF: dict[type, DataType] = {
    SystemState: DataType.SYSTEM_STATE, ComponentState: DataType.COMPONENT_STATE,
    DeviceState: DataType.DEVICE_STATE, ClockSync: DataType.SYNC_CLOCK,
}


def data_unit(objects: list[InfoObject]) -> bytes:
    """The application data unit carrying `objects`, all of one type."""
    kinds = {_TYPE_OF[type(o)] for o in objects}
    if len(kinds) != 1:
        raise ValueError("one data unit carries objects of exactly one type")
    (kind,) = kinds
    if len(objects) > 255:
        raise ValueError("at most 255 objects in one data unit")
    return bytes((kind, len(objects))) + b"".join(o.encode() for o in objects)


def _decode_one(kind: int, raw: bytes) -> InfoObject | bytes:
    if kind == DataType.SYSTEM_STATE:
        st, sa, state = struct.unpack_from("<BBH", raw)
        return SystemState(st, sa, state, parse_time_label(raw[4:10]))
    if kind == DataType.COMPONENT_STATE:
        st, sa, ct, ca, state = struct.unpack_from("<BBBIH", raw)
        text = raw[9:40].rstrip(b"\0")
        try:
            desc = text.decode("gb18030")
        except UnicodeDecodeError:
            raise FrameError(f"component description {text.hex()}: not GB 18030") from None
        return ComponentState(st, sa, ct, ca, state, desc, parse_time_label(raw[40:46]))
    if kind == DataType.DEVICE_STATE:
        return DeviceState(raw[0], parse_time_label(raw[1:7]))
    if kind == DataType.SYNC_CLOCK:
        return ClockSync(parse_time_label(raw))
    return raw  # a known type parkwatch does not interpret: its bytes


def parse_data_unit(data: bytes) -> tuple[int, list[InfoObject | bytes]]:
    """(type flag, objects) of an application data unit; FrameError when its type is unknown
    or its length does not match the count of objects of that type."""
    if len(data) < 2:
        raise FrameError(f"data unit of {len(data)} bytes: no type flag and object count")
    kind, count = data[0], data[1]
    size = OBJECT_LEN.get(kind)
    if size is None:
        raise FrameError(f"type flag {kind}: not one parkwatch knows (table 3)")
    if len(data) != 2 + count * size:
        raise FrameError(f"type {kind}: {count} objects of {size} bytes make "
                         f"{2 + count * size} bytes, the data unit has {len(data)}")
    return kind, [_decode_one(kind, data[2 + i * size:2 + (i + 1) * size])
                  for i in range(count)]
