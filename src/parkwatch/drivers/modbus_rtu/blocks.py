"""Poll blocks: the sensors of one slave and table, merged into as few requests as possible."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

from parkwatch.drivers.modbus_rtu import registers
from parkwatch.drivers.modbus_rtu.address import ModbusAddress
from parkwatch.drivers.modbus_rtu.loop import loop_values

_REQUESTS: dict[str, type[ModbusPDU]] = {
    "hr": ReadHoldingRegistersRequest, "ir": ReadInputRegistersRequest,
    "di": ReadDiscreteInputsRequest, "co": ReadCoilsRequest}
MAX_GAP = 8  # unused registers worth reading to save a request
MAX_BITS = 2000

CLIENT_FRAMER = FramerRTU(DecodePDU(False))


@dataclass
class PollBlock:
    slave: int
    table: str
    start: int
    count: int
    interval: float
    priority: int  # 0: the fire-button lane, 1: bulk registers
    sensors: list[int] = field(default_factory=list)
    #: (dtype, order, positions in `sensors`, register offsets) for vectorised decoding
    groups: list[tuple[str, str, np.ndarray, np.ndarray]] = field(default_factory=list)
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: 4-20 mA transmitters of the block (:mod:`.loop`): their positions in `sensors` and
    #: their ranges (min, max); None when it has none
    loop: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    request: bytes = b""
    next_due: float = 0.0
    polls: int = 0
    failures: int = 0

    @property
    def is_bits(self) -> bool:
        return self.table in ("di", "co")

    @property
    def response_len(self) -> int:
        """Bytes of a normal answer: address, function, byte count, data, CRC."""
        data = (self.count + 7) // 8 if self.is_bits else 2 * self.count
        return 5 + data

    def values(self, pdu: ModbusPDU) -> np.ndarray:
        """The block's sensor values from a response PDU, scaled."""
        out = np.empty(len(self.sensors))
        if self.is_bits:
            bits = np.asarray(pdu.bits[: self.count], dtype=np.float64)
            for _, _, pos, offs in self.groups:
                out[pos] = bits[offs]
            return out
        # as registers.decode() reads them: converted once for every group, not once a group
        regs = np.asarray(pdu.registers, dtype=">u2")
        for dtype, order, pos, offs in self.groups:
            out[pos] = registers.decode(regs, offs, dtype, order)
        scaled: np.ndarray = out * self.scale + self.offset
        if self.loop is not None:  # loop currents in mA: onto their ranges, NAMUR NE43
            pos, lo, hi = self.loop
            scaled[pos] = loop_values(scaled[pos], lo, hi)
        return scaled


def build_blocks(points: list[tuple[int, ModbusAddress, float, float]],
                 interval_of: dict[int, float], di_interval: float,
                 max_block: int,
                 loops: dict[int, tuple[float, float]] | None = None) -> list[PollBlock]:
    """Merge (sensor index, address, scale, offset) points into poll blocks; `loops` gives
    the range (min, max) of each 4-20 mA sensor by its index."""
    by_key: dict[tuple[int, str], list[tuple[int, ModbusAddress, float, float]]] = {}
    for p in points:
        by_key.setdefault((p[1].slave, p[1].table), []).append(p)
    blocks: list[PollBlock] = []
    for (slave, table), pts in sorted(by_key.items()):
        pts.sort(key=lambda p: p[1].register)
        limit = MAX_BITS if table in ("di", "co") else max_block
        current: list[tuple[int, ModbusAddress, float, float]] = []
        for p in pts:
            if current:
                start = current[0][1].register
                end = max(q[1].register + q[1].width for q in current)
                if (p[1].register - end > MAX_GAP
                        or p[1].register + p[1].width - start > limit):
                    blocks.append(_block(slave, table, current, interval_of, di_interval, loops))
                    current = []
            current.append(p)
        blocks.append(_block(slave, table, current, interval_of, di_interval, loops))
    return blocks


def _block(slave: int, table: str, pts: list[tuple[int, ModbusAddress, float, float]],
           interval_of: dict[int, float], di_interval: float,
           loops: dict[int, tuple[float, float]] | None) -> PollBlock:
    start = pts[0][1].register
    count = max(p[1].register + p[1].width for p in pts) - start
    bits = table in ("di", "co")
    block = PollBlock(slave, table, start, count,
                      di_interval if bits else interval_of[slave], 0 if bits else 1)
    block.sensors = [p[0] for p in pts]
    block.scale = np.array([1.0 if bits else p[2] for p in pts])
    block.offset = np.array([0.0 if bits else p[3] for p in pts])
    at = [i for i, p in enumerate(pts) if loops and p[0] in loops and not bits]
    if at:
        ranges = np.array([loops[pts[i][0]] for i in at] if loops else [])
        block.loop = (np.array(at), ranges[:, 0].copy(), ranges[:, 1].copy())
    kinds: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(pts):
        kinds.setdefault((p[1].dtype, p[1].order), []).append(i)
    for (dtype, order), positions in kinds.items():
        pos = np.array(positions)
        offs = np.array([pts[i][1].register - start for i in positions])
        block.groups.append((dtype, order, pos, offs))
    block.request = CLIENT_FRAMER.buildFrame(
        _REQUESTS[table](dev_id=slave, address=start, count=count))
    return block


def parse_response(data: bytes, slave: int) -> ModbusPDU | None:
    """The response PDU if ``data`` is one valid frame from ``slave`` (CRC checked), else None."""
    try:
        used, pdu = CLIENT_FRAMER.handleFrame(data, slave, 0)
    except (ModbusException, ValueError, IndexError, struct.error):
        return None  # a frame with a valid CRC but an undecodable body
    return pdu if pdu is not None and used == len(data) else None
