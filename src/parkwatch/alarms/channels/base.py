"""What a notification channel declares (:class:`Channel`) and what it gives a courier
(:class:`Carrier`).

A channel's module holds the config model of its targets (a
:class:`~parkwatch.config.delivery.TargetBase` with `type` narrowed to the channel's name) and
a factory that builds, for one configured target, the sender, the backoff between attempts and
the event that says the target can be tried at all.  The courier
(:mod:`parkwatch.alarms.delivery`) needs nothing else of a channel.

A channel that addresses people (a chat robot's @-mention, an SMS's number) says by what
(:attr:`Channel.reaches`); its factory is then given the target's :data:`People`, so that its
sender can address each delivery to the contact of the subscriber it is for (``row.subscriber``).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from parkwatch.config.contacts import Contact
from parkwatch.config.delivery import Backoff, TargetBase

if TYPE_CHECKING:  # types only: the config schema imports the channels, keep them light
    import threading

    from parkwatch.alarms.senders import Sender
    from parkwatch.mqttlink.link import MqttLink

T = TypeVar("T", bound=TargetBase)
T_contra = TypeVar("T_contra", bound=TargetBase, contravariant=True)

#: who one target reaches for whom: subscriber id -> the contact it names
#: (:func:`parkwatch.config.contacts.people_of`); a subscriber not in it names no contact that
#: lists the target, and is reached as the target itself is configured
People = Mapping[str, Contact]
NOBODY: People = MappingProxyType({})
#: what a channel addresses one person by: a field of the contact
Reach = Literal["phone", "feishu_user_id"]


@dataclass(frozen=True)
class Carrier:
    """What a courier takes from a channel for one target."""

    sender: Sender
    #: how long to wait before trying a failed delivery again
    backoff: Backoff
    #: set while the target can be tried (e.g. the uplink broker connected); None: always
    ready: threading.Event | None = None


class CarrierFactory(Protocol[T_contra]):
    """(target name, target config, the uplink broker's link, the people it reaches) -> what
    its courier needs; a channel that reaches nobody may leave `people` out."""

    def __call__(self, name: str, target: T_contra, link: MqttLink,
                 people: People = ..., /) -> Carrier: ...


@dataclass(frozen=True)
class Channel(Generic[T]):
    """A notification channel: the config model of its targets, and how one is carried."""

    #: the `alarms.targets.{name}` model; its `type` is a Literal of the channel's name
    target: type[T]
    #: builds a target's carrier (with its people when the channel reaches people)
    carrier: CarrierFactory[T]
    #: what the channel addresses a person by (a contact's `phone`, `feishu_user_id`), None when
    #: it cannot address one (a webhook, the log): then no contact may list its targets
    reaches: Reach | None = None
    #: each message goes to one person's own device (an SMS), not to a group: a message never
    #: carries two subscribers' alarms (see :mod:`parkwatch.alarms.shaper`)
    personal: bool = False

    @property
    def type(self) -> str:
        """The channel's name: the value of `type` its targets are configured with."""
        (name,) = typing.get_args(self.target.model_fields["type"].annotation)
        return str(name)


def address(people: People, subscriber: str, reach: Reach) -> str | None:
    """How the contact of `subscriber` is addressed on this target (their phone, their Feishu
    user id), None when the subscriber names no contact that this target reaches."""
    contact = people.get(subscriber)
    return None if contact is None else getattr(contact, reach)


def mentions(own: list[str], people: People, subscriber: str, reach: Reach) -> list[str]:
    """Whom a group message for `subscriber` @-mentions: the target's own mentions, and the
    subscriber's contact (once)."""
    person = address(people, subscriber, reach)
    return own if person is None or person in own else [*own, person]


def mentions_of(own: list[str], people: People, subscribers: Iterable[str],
                reach: Reach) -> list[str]:
    """Whom one message carrying several deliveries @-mentions: the target's own mentions and
    each of their subscribers' contacts, once each, in order."""
    out = own
    for subscriber in subscribers:
        out = mentions(out, people, subscriber, reach)
    return out
