"""Where a sensor's value lives on a Modbus RTU bus: `<slave>/<table><register>[:type[:order]]`.

Examples: `3/hr100:float32:cdab` (slave 3, holding register 100, a 32-bit float with swapped
words), `2/ir0:int16` (input register 0), `5/di2` (discrete input 2: a fire-button contact).
Tables: hr (holding, function 0x03), ir (input, 0x04), di (discrete input, 0x02), co (coil,
0x01).  Types: int16, uint16 (default), int32, uint32, float32.  Byte order of 32-bit values:
abcd (big-endian, the Modbus default), cdab (words swapped), badc (bytes swapped), dcba.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TABLES = {"hr": 0x03, "ir": 0x04, "di": 0x02, "co": 0x01}
TYPES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
ORDERS = ("abcd", "cdab", "badc", "dcba")
_PATTERN = re.compile(r"^(\d{1,3})/(hr|ir|di|co)(\d{1,5})(?::([a-z0-9]+))?(?::([a-z]{4}))?$")


@dataclass(frozen=True, slots=True)
class ModbusAddress:
    slave: int
    table: str
    register: int
    dtype: str = "uint16"
    order: str = "abcd"

    @property
    def function(self) -> int:
        return TABLES[self.table]

    @property
    def is_bit(self) -> bool:
        return self.table in ("di", "co")

    @property
    def width(self) -> int:
        """Registers (or bits) the value occupies."""
        return 1 if self.is_bit else TYPES[self.dtype]


def parse_address(text: str) -> ModbusAddress:
    """Parse an address; ValueError with a message a field engineer can act on."""
    m = _PATTERN.match(text.strip().lower())
    if not m:
        raise ValueError(f"'{text}' is not a Modbus address like '3/hr100:float32:abcd' or "
                         "'5/di2' (slave/table+register[:type[:order]])")
    slave, table, reg, dtype, order = m.groups()
    slave_n, reg_n = int(slave), int(reg)
    if not 1 <= slave_n <= 247:
        raise ValueError(f"slave {slave_n} is outside 1..247")
    if reg_n > 65535:
        raise ValueError(f"register {reg_n} is outside 0..65535")
    if table in ("di", "co"):
        if dtype or order:
            raise ValueError(f"'{table}' is a single bit; it takes no type or byte order")
        return ModbusAddress(slave_n, table, reg_n, "bit", "abcd")
    dtype = dtype or "uint16"
    if dtype not in TYPES:
        raise ValueError(f"unknown type '{dtype}' (known: {', '.join(TYPES)})")
    order = order or "abcd"
    if order not in ORDERS:
        raise ValueError(f"unknown byte order '{order}' (known: {', '.join(ORDERS)})")
    if TYPES[dtype] == 1 and order not in ("abcd", "badc"):
        raise ValueError(f"a 16-bit {dtype} has no word order; use abcd or badc")
    return ModbusAddress(slave_n, table, reg_n, dtype, order)
