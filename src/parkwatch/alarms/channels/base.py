"""What a notification channel declares (:class:`Channel`) and what it gives a courier
(:class:`Carrier`).

A channel's module holds the config model of its targets (a
:class:`~parkwatch.config.delivery.TargetBase` with `type` narrowed to the channel's name) and
a factory that builds, for one configured target, the sender, the backoff between attempts and
the event that says the target can be tried at all.  The courier
(:mod:`parkwatch.alarms.delivery`) needs nothing else of a channel.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from parkwatch.config.delivery import Backoff, TargetBase

if TYPE_CHECKING:  # types only: the config schema imports the channels, keep them light
    import threading

    from parkwatch.alarms.senders import Sender
    from parkwatch.mqttlink.link import MqttLink

T = TypeVar("T", bound=TargetBase)


@dataclass(frozen=True)
class Carrier:
    """What a courier takes from a channel for one target."""

    sender: Sender
    #: how long to wait before trying a failed delivery again
    backoff: Backoff
    #: set while the target can be tried (e.g. the uplink broker connected); None: always
    ready: threading.Event | None = None


@dataclass(frozen=True)
class Channel(Generic[T]):
    """A notification channel: the config model of its targets, and how one is carried."""

    #: the `alarms.targets.{name}` model; its `type` is a Literal of the channel's name
    target: type[T]
    #: (target name, target config, the uplink broker's link) -> what its courier needs
    carrier: Callable[[str, T, MqttLink], Carrier]

    @property
    def type(self) -> str:
        """The channel's name: the value of `type` its targets are configured with."""
        (name,) = typing.get_args(self.target.model_fields["type"].annotation)
        return str(name)
