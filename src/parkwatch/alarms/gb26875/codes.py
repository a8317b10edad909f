"""The codes of GB/T 26875.3-2011 that parkwatch sends or checks.

Facts, not code, taken from the standard's tables as public implementations reproduce them:

- the frame layout (§6.6, table 1: field order, low byte first, the checksum over bytes 3-27
  and the data unit), the command bytes (table 2) and the type flags (§8.1.1, table 3):
  GitHub dgiot/dgiot, apps/dgiot_gb26875/include/dgiot_gb26875.hrl and the comment tables of
  apps/dgiot_gb26875/src/protocol/dgiot_gb26875_decoder.erl, which reproduce the standard's;
- the system types (table 4), component types (table 5), the state bits of a system
  (§8.2.1.1), a component (§8.2.1.2) and of the device (§8.2.1.8), and the object lengths:
  dgiot/dgiot, apps/dgiot_gb26875/src/protocol/dgiot_gb26875_utils.erl;
- the downstream control types 89-91 (初始化, 同步用户信息传输装置时钟, 查岗) and the time
  sync's object (one 6-byte time label): the rest of table 3, as public decoders found by
  code search list it (a Java constants class `DATA_TYPE_DOWN_SYNC_USER_DEVICE_CLOCK = 90`, a
  dictionary seed `(90, '同步用户信息传输装置时钟', '下行')`, a Java parser "单个数据共6个字节");
  their repositories were not named by the index.

The standard's scope and terms are published at http://www.gongliff.cn/m/biaozhun/864.html
and https://anquanfagui.com/thread-192-1-1.html (GB/T 26875.3-2011, in force since
2011-11-01).
"""

from __future__ import annotations

from enum import IntEnum

START = b"@@"
END = b"##"
#: start, serial, version, time label, source, destination, length, command: table 1
HEADER_LEN = 2 + 2 + 2 + 6 + 6 + 6 + 2 + 1
#: checksum and end
TRAILER_LEN = 1 + 2
#: "应用数据单元长度 … 不应大于 1 024"
MAX_DATA_LEN = 1024
#: the main protocol version is fixed at 1; the second byte is the user's
MAIN_VERSION = 1


class Command(IntEnum):
    """Table 2: the command byte of the control unit."""

    CONTROL = 1  # 控制命令 (e.g. time sync), center -> device
    SEND = 2  # 发送数据: fire alarms and running states, device -> center
    CONFIRM = 3  # 确认
    REQUEST = 4  # 请求 (查询)
    REPLY = 5  # 应答
    DENY = 6  # 否认


class DataType(IntEnum):
    """Table 3 (§8.1.1): the type flag of an application data unit, those parkwatch knows."""

    SYSTEM_STATE = 1  # 上传建筑消防设施系统状态
    COMPONENT_STATE = 2  # 上传建筑消防设施部件运行状态
    OPERATION = 4  # 上传建筑消防设施操作信息
    DEVICE_STATE = 21  # 上传用户信息传输装置运行状态
    DEVICE_OPERATION = 24  # 上传用户信息传输装置操作信息
    DEVICE_TIME = 28  # 上传用户信息传输装置系统时间
    INIT_DEVICE = 89  # 初始化用户信息传输装置 (control)
    SYNC_CLOCK = 90  # 同步用户信息传输装置时钟 (control)
    INSPECT = 91  # 查岗命令 (control)


#: the length of one information object of each type, its 6-byte time label included where it
#: has one (dgiot_gb26875_utils.erl, get_infobody_len)
OBJECT_LEN: dict[int, int] = {
    DataType.SYSTEM_STATE: 2 + 2 + 6,
    DataType.COMPONENT_STATE: 40 + 6,
    DataType.OPERATION: 4 + 6,
    DataType.DEVICE_STATE: 1 + 6,
    DataType.DEVICE_OPERATION: 2 + 6,
    DataType.DEVICE_TIME: 6,
    DataType.SYNC_CLOCK: 6,
}

#: table 4: system types (建筑消防设施系统类型), those a park's gateway would name
SYSTEM_TYPES: dict[int, str] = {
    0: "通用", 1: "火灾报警系统", 10: "消防联动控制器", 11: "消火栓系统",
    12: "自动喷水灭火系统", 13: "气体灭火系统", 18: "防烟排烟系统", 19: "防火门及卷帘系统",
    23: "消防电源", 24: "消防电话",
}
FIRE_ALARM_SYSTEM = 1

#: table 5: component types (建筑消防设施部件类型), those a park's gateway would name
COMPONENT_TYPES: dict[int, str] = {
    0: "通用", 1: "火灾报警控制器", 21: "探测回路", 23: "手动火灾报警按钮", 24: "消火栓按钮",
    25: "火灾探测器", 31: "点型感温火灾探测器", 40: "感烟火灾探测器",
    42: "点型光电感烟火灾探测器", 84: "模块", 85: "输入模块", 121: "警报装置",
}
GENERIC_COMPONENT = 0
MANUAL_CALL_POINT = 23


class SystemBit(IntEnum):
    """§8.2.1.1: the 2-byte state of a building fire facility system (bit numbers)."""

    NORMAL = 0  # 1: 正常运行状态, 0: 测试状态
    FIRE = 1  # 火警
    FAULT = 2  # 故障
    MAIN_POWER_FAULT = 8  # 主电故障
    BACKUP_POWER_FAULT = 9  # 备电故障
    BUS_FAULT = 10  # 总线故障
    RESET = 13  # 复位


class ComponentBit(IntEnum):
    """§8.2.1.2: the 2-byte state of a component (bit numbers)."""

    NORMAL = 0  # 1: 正常运行状态, 0: 测试状态
    FIRE = 1  # 火警
    FAULT = 2  # 故障
    DISABLED = 3  # 屏蔽
    SUPERVISORY = 4  # 监管
    POWER_FAULT = 8  # 电源故障


class DeviceBit(IntEnum):
    """§8.2.1.8: the 1-byte running state of the user information transmission device."""

    NORMAL = 0  # 1: 正常监视状态, 0: 测试状态
    FIRE = 1  # 火警
    FAULT = 2  # 故障
    MAIN_POWER_FAULT = 3  # 主电故障
    BACKUP_POWER_FAULT = 4  # 备电故障
    CHANNEL_FAULT = 5  # 与监控中心通信信道故障
    LINE_FAULT = 6  # 监测连接线路故障


def flags(*bits: int) -> int:
    """The state word with these bits set."""
    value = 0
    for bit in bits:
        value |= 1 << bit
    return value
