"""Every notification channel a target can be configured with: one line each (then those of
extension packages, see :mod:`parkwatch.extensions`).

The order is the order of the `alarms.targets` union (and of the config reference).  The
command-center contract is built in (:mod:`parkwatch.alarms.channels.uplink`), not listed.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from parkwatch.alarms.channels import (
    aliyun_sms,
    dingtalk,
    feishu,
    gb26875,
    http_sms,
    log,
    mqtt,
    webhook,
    wecom,
)
from parkwatch.alarms.channels.base import Channel
from parkwatch.extensions import merged

CHANNELS: dict[str, Channel[Any]] = merged("CHANNELS", {
    "webhook": webhook.CHANNEL,
    "log": log.CHANNEL,
    "mqtt": mqtt.CHANNEL,
    "dingtalk": dingtalk.CHANNEL,
    "wecom": wecom.CHANNEL,
    "feishu": feishu.CHANNEL,
    "aliyun_sms": aliyun_sms.CHANNEL,
    "http_sms": http_sms.CHANNEL,
    "gb26875": gb26875.CHANNEL,
})

_models = tuple(c.target for c in CHANNELS.values())
#: An `alarms.targets.{name}` entry: a union discriminated by `type` once there is more than
#: one channel.  The park config's `AlarmsConfig.targets` takes it.
TargetConfig: Any = (
    _models[0] if len(_models) == 1
    else Annotated[Union[_models], Field(discriminator="type")]  # noqa: UP007
)
