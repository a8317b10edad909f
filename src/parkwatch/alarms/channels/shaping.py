"""The keys that shape what a notification target is sent: its rate limit (a vendor robot
takes about 20 messages a minute) and the grouping of its alarms into one message.

A channel whose targets subclass :class:`Paced` is carried within their `rate_limit`; one whose
targets subclass :class:`Grouped` (its sender can carry several alarms in one message:
``send_many``) also folds alarms into one message, by `group_by` and `group_wait_s`, and when
more wait than the window has room for.  The courier that does it is
:class:`parkwatch.alarms.shaped.ShapedCourier`; docs/alarms.md, *Rate limits, folding and
grouping*, says what a reader sees.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from parkwatch.alarms.channels.httppost import HttpTarget
from parkwatch.config.base import Strict

#: what alarms can be grouped by: fields of the alarm event, and `driver` (the sensor's
#: driver, e.g. one RS-485 bus: a cut cable raises the same fault on every sensor behind it)
GroupField = Literal["rule", "building", "floor", "zone", "sensor_kind", "severity", "event",
                     "driver", "sensor_id"]
#: a robot's grouping unless configured: the same rule in the same building
DEFAULT_GROUP_BY: list[GroupField] = ["rule", "building"]


class RateLimit(Strict):
    """At most `messages` in any `per_s` seconds, some of them kept for fire alarms."""

    messages: int = Field(ge=1, le=100_000, description="messages at most in any window of "
                          "per_s seconds (what is over is folded into one message, or waits)")
    per_s: float = Field(gt=0, le=86_400, description="the length of the sliding window")
    fire_reserve: int | None = Field(None, ge=0, description="messages of each window only a "
                                     "fire alarm may use, so that a fire never waits behind "
                                     "other alarms (default: a quarter of `messages`)")

    @model_validator(mode="after")
    def _room(self) -> RateLimit:
        if self.fire_reserve is not None and self.fire_reserve >= self.messages:
            raise ValueError("fire_reserve must leave room for other alarms: less than "
                             "messages")
        return self

    @property
    def reserve(self) -> int:
        """The messages of a window kept for fire alarms."""
        return self.messages // 4 if self.fire_reserve is None else self.fire_reserve


#: a robot's documented rate (DingTalk, WeCom): 20 messages a minute
ROBOT_RATE = [RateLimit(messages=20, per_s=60.0)]


class Paced(HttpTarget):
    """An HTTP target carried within its rate limits (none by default)."""

    rate_limit: list[RateLimit] = Field(
        default_factory=list, description="the target's rate: {messages: 20, per_s: 60}, or a "
        "list of such windows, each kept (none: as fast as it answers)")

    @model_validator(mode="before")
    @classmethod
    def _one_window(cls, data: object) -> object:
        """`rate_limit: {messages: 20, per_s: 60}` is a list of one window."""
        if isinstance(data, dict) and isinstance(data.get("rate_limit"), dict):
            return {**data, "rate_limit": [data["rate_limit"]]}
        return data


class Grouped(Paced):
    """A target whose messages can carry several alarms: grouped, and folded when over rate."""

    rate_limit: list[RateLimit] = Field(
        default_factory=lambda: list(ROBOT_RATE), description="the target's rate: "
        "{messages: 20, per_s: 60}, or a list of such windows, each kept (default: 20 a minute, "
        "what a chat robot takes; [] for none)")
    group_by: list[GroupField] = Field(
        default_factory=lambda: list(DEFAULT_GROUP_BY), description="alarms with the same "
        "values of these are one group: raised within group_wait_s of the first, they are one "
        "message (default [rule, building]; [rule, driver]: one message for every sensor of a "
        "cut RS-485 cable); [] groups each alarm alone")
    group_wait_s: float = Field(0.0, ge=0, le=3600, description="how long the first alarm of a "
                                "group waits for more of its group (a fire alarm never waits)")
