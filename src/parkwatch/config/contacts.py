"""People: the `alarms.contacts` section, and which targets reach whom.

A contact is one person (a tenant's safety officer, the landlord's duty manager) with a phone
and the targets that reach them (`channels`, names under `alarms.targets`).  A subscriber that
names a contact is told on every one of those channels, and each of them addresses the contact
themself: the @-mention of a chat robot, the number an SMS goes to.  So one entry, reached on
every channel they have, instead of a subscriber per channel with the phone copied into each
target.

This module knows no channel: what a channel addresses a person by (``phone``,
``feishu_user_id``) is told to :func:`check_contacts` by the channel registry
(:mod:`parkwatch.schema`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from pydantic import Field, field_validator

from parkwatch.config.base import Id, Strict

#: a mainland China mobile number: 11 digits, 1 then 3-9 (MIIT numbering plan)
_MOBILE = re.compile(r"1[3-9]\d{9}")
#: what may come before it: the country code (+86, 0086 or 86)
_COUNTRY = re.compile(r"^(\+86|0086|86)(?=1\d{10}$)")


def mobile(value: str) -> str:
    """`value` as an 11-digit mainland China mobile number (spaces, hyphens and a leading
    +86 / 0086 / 86 removed); ValueError when it is not one."""
    digits = _COUNTRY.sub("", re.sub(r"[\s\-]", "", value))
    if not _MOBILE.fullmatch(digits):
        raise ValueError(f"'{value}' is not a mainland China mobile number (11 digits starting "
                         "with 13-19, e.g. 13812345678, optionally +86 in front)")
    return digits


class Contact(Strict):
    """A person, and the targets that reach them."""

    id: Id = Field(description="what subscribers name in `contact`")
    name: str = Field(min_length=1, description="the person, e.g. 华鑫电子 安全员 李娜")
    phone: str = Field(description="mainland China mobile number, e.g. 13812345678 (+86 "
                       "allowed, kept as the 11 digits): the @-mention on DingTalk and WeCom, "
                       "the number an SMS goes to")
    feishu_user_id: str | None = Field(None, min_length=1, description="the person's Feishu "
                                       "user id (open_id ou_…, or user_id): how a Feishu bot "
                                       "@-mentions them (it cannot by phone)")
    channels: list[Id] = Field(min_length=1, description="targets under `alarms.targets` that "
                               "reach this person, e.g. [officers-ding, sms]; each must be of "
                               "a channel that addresses people (dingtalk, wecom, feishu, "
                               "aliyun_sms, http_sms)")

    @field_validator("phone")
    @classmethod
    def _mobile(cls, v: str) -> str:
        return mobile(v)


class Subscriber(Protocol):
    """What of an `alarms.subscribers` entry this module reads (config.delivery.Subscriber,
    which imports this module)."""

    @property
    def id(self) -> str: ...
    @property
    def target(self) -> str | None: ...
    @property
    def contact(self) -> str | None: ...


class DeliveryConfig(Protocol):
    """What of the `alarms` section this module reads (config.delivery.DeliveryConfig)."""

    @property
    def contacts(self) -> Sequence[Contact]: ...
    @property
    def subscribers(self) -> Sequence[Subscriber]: ...
    @property
    def targets(self) -> Mapping[str, object]: ...


def _contacts(a: DeliveryConfig) -> dict[str, Contact]:
    return {c.id: c for c in a.contacts}


def subscriber_targets(a: DeliveryConfig) -> dict[str, tuple[str, ...]]:
    """The targets each subscriber is told through: its own `target`, then each channel of its
    contact (once each, in that order)."""
    contacts = _contacts(a)
    out: dict[str, tuple[str, ...]] = {}
    for s in a.subscribers:
        contact = contacts.get(s.contact) if s.contact is not None else None
        names = ([s.target] if s.target is not None else []) + (
            list(contact.channels) if contact is not None else [])
        out[s.id] = tuple(dict.fromkeys(names))
    return out


def people_of(a: DeliveryConfig, target: str) -> dict[str, Contact]:
    """Who `target` reaches for whom: subscriber id -> the contact it names, for each subscriber
    whose contact lists `target` among its channels (the courier of `target` addresses each of
    their deliveries to that contact)."""
    contacts = _contacts(a)
    out: dict[str, Contact] = {}
    for s in a.subscribers:
        contact = contacts.get(s.contact) if s.contact is not None else None
        if contact is not None and target in contact.channels:
            out[s.id] = contact
    return out


Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


def check_contacts(a: DeliveryConfig, channel_of: Mapping[str, str],
                   reaches: Mapping[str, str | None],
                   alone: Mapping[str, bool]) -> list[Problem]:
    """Contacts and the subscribers naming them refer to what exists and can reach a person.

    `channel_of`: each target's channel (its `type`); `reaches`: what each channel addresses a
    person by (a field of :class:`Contact`), None for one that cannot (a webhook, the log);
    `alone`: whether a target reaches anyone for a subscriber that names no contact (an SMS
    target without phones of its own does not).
    """
    out: list[Problem] = []
    base: Loc = ("alarms", "contacts")
    seen: dict[str, int] = {}
    for ci, c in enumerate(a.contacts):
        if c.id in seen:
            out.append(((*base, ci, "id"), f"duplicate contact id '{c.id}' (also at "
                        f"contacts[{seen[c.id]}])"))
        seen.setdefault(c.id, ci)
        out += _channels((*base, ci, "channels"), c, a, channel_of, reaches)
    known = ", ".join(sorted(seen)) or "none"
    for si, s in enumerate(a.subscribers):
        loc: Loc = ("alarms", "subscribers", si)
        if s.contact is not None and s.contact not in seen:
            out.append(((*loc, "contact"), f"unknown contact '{s.contact}' (known: {known})"))
        out += _alone(loc, s, a, alone)
    return out


def _channels(loc: Loc, c: Contact, a: DeliveryConfig, channel_of: Mapping[str, str],
              reaches: Mapping[str, str | None]) -> Iterator[Problem]:
    people = sorted(name for name, key in reaches.items() if key is not None)
    for i, name in enumerate(c.channels):
        if name not in a.targets:
            yield (*loc, i), (f"unknown target '{name}' (known: "
                              f"{', '.join(sorted(a.targets)) or 'none'})")
            continue
        channel = channel_of[name]
        key = reaches.get(channel)
        if key is None:
            yield (*loc, i), (f"target '{name}' ({channel}) cannot reach a person: a contact's "
                              f"channels are targets that address people "
                              f"({', '.join(people)})")
        elif getattr(c, key, None) is None:
            yield (*loc, i), (f"target '{name}' ({channel}) reaches a person by {key}: give "
                              f"contact '{c.id}' a {key}")


def _alone(loc: Loc, s: Subscriber, a: DeliveryConfig,
           alone: Mapping[str, bool]) -> Sequence[Problem]:
    if s.target is None or alone.get(s.target, True):
        return []
    contact = next((c for c in a.contacts if c.id == s.contact), None)
    if contact is not None and s.target in contact.channels:
        return []
    return [((*loc, "target"), f"target '{s.target}' has no recipients of its own (it sends "
             "only to contacts): name a contact that lists it in `contact`, or give the "
             "target its own phones")]
