"""Who hears of an alarm, when, and how: operators, subscribers and targets, the 厂中厂 routing
policy, escalation ladders, silences, drills and the local HTTP API.

Kept apart from the park model: this is about people and channels, not sensors and floors.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from parkwatch.config.base import ConfigPath, Id, Strict
from parkwatch.config.contacts import Contact

Hazard = Literal["fire", "overload", "water", "fault"]
#: how long after it cleared an unacknowledged alarm is closed: up to a year
_CloseAfter = Annotated[float, Field(gt=0, le=365 * 86_400)]
HAZARDS: tuple[str, ...] = ("fire", "overload", "water", "fault")
SeverityName = Literal["info", "warning", "critical"]

#: the built-in subscriber that carries the command-center contract (DESIGN §3.1)
UPLINK = "uplink"
TARGETS_DESCRIPTION = "delivery channels by name (the command-center contract is built in)"


class Secret(Strict):
    """A secret read from a file (first line) or an environment variable, never inline."""

    secret_file: ConfigPath | None = Field(None, description="file whose first line is the "
                                           "secret (keep it root- or parkwatch-only)")
    secret_env: str | None = Field(None, description="environment variable with the secret")

    @model_validator(mode="after")
    def _one(self) -> Secret:
        if self.secret_file is not None and self.secret_env is not None:
            raise ValueError("give secret_file or secret_env, not both")
        return self

    def secret(self) -> str | None:
        """The secret, read now (raises OSError/KeyError when it cannot be read)."""
        if self.secret_file is not None:
            lines = self.secret_file.read_text(encoding="utf-8").splitlines()
            return lines[0].strip() if lines else ""
        if self.secret_env is not None:
            return os.environ[self.secret_env]
        return None

    def secret_problem(self) -> tuple[str, str] | None:
        try:
            value = self.secret()
        except OSError as exc:
            return "secret_file", f"cannot read {self.secret_file}: {exc.strerror}"
        except KeyError:
            return "secret_env", f"environment variable {self.secret_env} is not set"
        if value is not None and len(value) < 16:
            key = "secret_file" if self.secret_file is not None else "secret_env"
            return key, "the secret is shorter than 16 characters; use a long random one"
        return None


class Operator(Strict):
    id: Id = Field(description="the name operators give as `by` when they acknowledge")
    name: str | None = Field(None, description="display name")
    public_key: str | None = Field(
        None, description="the operator's Ed25519 public key (32 bytes in base64, as "
        "`parkwatch keygen` prints it): commands signed with its private key are theirs; "
        "see docs/contract.md, Signed commands")

    @field_validator("public_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            raw = base64.b64decode(v.strip(), validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise ValueError("must be an Ed25519 public key: 32 bytes in base64 (44 characters "
                             "ending in '='), as `parkwatch keygen` prints it")
        return v.strip()


class ApiConfig(Secret):
    """The local HTTP API (alarms, acknowledgement) for the CLI and local tools.

    Every `/api/` request must carry `Authorization: Bearer <token>`.  The token is the secret;
    without secret_file or secret_env the daemon creates a random one in
    `{state_dir}/api.token` (mode 0600), where `parkwatch alarms` and `parkwatch ack` find it.
    The limits bound what clients may hold of the gateway, so that no flood of connections can
    lock out an operator (docs/alarms.md, "The local HTTP API").
    """

    listen: str = Field("127.0.0.1", description="address to listen on; keep it loopback or a "
                        "management network")
    port: int = Field(9466, ge=0, le=65535, description="0 picks a free port (tests)")
    max_connections: int = Field(256, ge=1, le=10_000, description="connections held at once; "
                                 "at the bound a new one closes the oldest that made no "
                                 "authorised request (keep it below the open-file limit)")
    workers: int = Field(4, ge=2, le=32, description="threads that answer requests; one is "
                         "kept for those that never wait on the alarm pipeline (all the "
                         "connections share one more thread for their I/O)")
    header_timeout_s: float = Field(10.0, gt=0, le=300, description="time to send a request's "
                                    "head, from the connection or from its first byte")
    body_timeout_s: float = Field(10.0, gt=0, le=300, description="time to send a request's "
                                  "body once its head is in")
    idle_timeout_s: float = Field(30.0, gt=0, le=3600, description="how long a kept-alive "
                                  "connection may wait between requests")


class Backoff(Strict):
    initial_s: float = Field(1.0, gt=0, le=3600, description="first retry after this")
    max_s: float = Field(300.0, gt=0, le=86_400, description="retries never wait longer")
    factor: float = Field(2.0, ge=1, le=10, description="each retry waits this much longer")


class TargetBase(Strict):
    """What every entry of `alarms.targets` has: the `type` that names its notification channel.

    The channels themselves (:mod:`parkwatch.alarms.channels`, one module each) subclass this
    with `type` narrowed to their name and their own keys; the `targets` map of the park config
    takes their union (``TargetConfig`` of the channel registry, in ``AlarmsConfig``), so that
    this module knows no channel.
    """

    type: str

    def reaches_without_contact(self) -> bool:
        """Whether a delivery for a subscriber that names no contact reaches anyone (an SMS
        target without phones of its own sends only to contacts: it does not)."""
        return True


class Filter(Strict):
    """What a subscriber wants; an empty list means any.  Places are `B`, `B/F` or `B/F/Z`."""

    parks: list[Id] = Field(default_factory=list)
    buildings: list[Id] = Field(default_factory=list)
    floors: list[str] = Field(default_factory=list, description="'building/floor'")
    zones: list[str] = Field(default_factory=list, description="'building/floor/zone'")
    tenants: list[Id] = Field(default_factory=list, description="alarms concerning these")
    kinds: list[Hazard] = Field(default_factory=list, description="fire, overload, water, fault")
    rules: list[str] = Field(default_factory=list, description="rule names")
    min_severity: SeverityName = "info"


class Subscriber(Strict):
    """Someone who is told of alarms: a party of the 厂中厂 policy, or anyone by filter."""

    id: Id
    name: str | None = None
    party: Literal["landlord", "tenant", "facilities", "any", "escalation"] = Field(
        "any", description="landlord / tenant / facilities: told what the routing policy gives "
        "that party; any: told every alarm its filter matches; escalation: told only when an "
        "escalation step or a drill names it")
    tenant: Id | None = Field(None, description="the tenant, for party: tenant")
    target: Id | None = Field(None, description="name under `targets` (give a target, a "
                              "contact, or both)")
    contact: Id | None = Field(None, description="a person under `contacts`: told on each of "
                               "their channels, each addressed to them (mention, SMS number)")
    filter: Filter = Field(default_factory=Filter)

    @model_validator(mode="after")
    def _tenant(self) -> Subscriber:
        if (self.party == "tenant") != (self.tenant is not None):
            raise ValueError("party: tenant needs `tenant`, and only it takes one")
        if self.target is None and self.contact is None:
            raise ValueError("give the subscriber a `target`, a `contact`, or both")
        return self


class HazardPolicy(Strict):
    tenants: Literal["none", "place", "building", "park"] = Field(
        description="which tenants are told: none, those of the alarm's floor/zone, of its "
        "building, or of the whole park")
    landlord: bool = Field(description="the landlord is told")
    facilities: bool = Field(description="facilities (maintenance) are told")


class RoutingPolicy(Strict):
    """The 厂中厂 policy: which parties hear of which hazard."""

    fire: HazardPolicy = HazardPolicy(tenants="building", landlord=True, facilities=False)
    overload: HazardPolicy = HazardPolicy(tenants="place", landlord=True, facilities=False)
    water: HazardPolicy = HazardPolicy(tenants="none", landlord=False, facilities=True)
    fault: HazardPolicy = HazardPolicy(tenants="none", landlord=False, facilities=True)


class EscalationStep(Strict):
    after_s: float = Field(gt=0, le=7 * 86_400, description="unacknowledged this long since "
                           "the raise")
    notify: list[Id] = Field(min_length=1, description="subscribers told from this step on")


class Ladder(Strict):
    """An escalation ladder for alarms of some hazards and a minimum severity."""

    kinds: list[Hazard] = Field(default_factory=list, description="empty: every hazard")
    min_severity: SeverityName = "warning"
    steps: list[EscalationStep] = Field(default_factory=list, description="in order of after_s")
    reminder_every_s: float | None = Field(None, gt=0, le=86_400, description="remind every "
                                           "recipient this often until acknowledged")

    @model_validator(mode="after")
    def _order(self) -> Ladder:
        times = [s.after_s for s in self.steps]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("steps must have growing after_s")
        return self


class Scope(Strict):
    """Where a silence or drill applies; an empty list means any."""

    buildings: list[Id] = Field(default_factory=list)
    floors: list[str] = Field(default_factory=list, description="'building/floor'")
    zones: list[str] = Field(default_factory=list, description="'building/floor/zone'")
    tenants: list[Id] = Field(default_factory=list)
    kinds: list[Hazard] = Field(default_factory=list)
    sensors: list[Id] = Field(default_factory=list)


class Silence(Strict):
    """Mutes notifications to subscribers (not the command-center contract) in a scope and span;
    a maintenance window is a silence.  Fire alarms are muted only with `include_fire: true`."""

    id: Id
    start: AwareDatetime = Field(description="RFC 3339 with a UTC offset")
    end: AwareDatetime
    scope: Scope = Field(default_factory=Scope)
    subscribers: list[Id] = Field(default_factory=list, description="muted subscribers; empty: "
                                  "all")
    include_fire: bool = Field(False, description="also mute fire alarms (say so explicitly)")
    reason: str = Field(min_length=1, description="why, shown in the API and the log")

    @model_validator(mode="after")
    def _span(self) -> Silence:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Drill(Strict):
    """A declared drill: alarms raised in its scope and span carry `drill: true` and are routed
    to `notify` only (plus the command-center contract), and do not escalate unless asked."""

    id: Id
    start: AwareDatetime
    end: AwareDatetime
    scope: Scope = Field(default_factory=Scope)
    notify: list[Id] | None = Field(None, description="subscribers told; null: the usual "
                                    "routing")
    escalate: bool = Field(False, description="run escalation ladders for drill alarms")
    reason: str = Field("drill", min_length=1)

    @model_validator(mode="after")
    def _span(self) -> Drill:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class DeliveryConfig(Strict):
    """Operators, subscribers, targets, routing, escalation, silences and drills (the keys of
    `alarms` besides the message language and templates)."""

    operators: list[Operator] = Field(default_factory=list, description="who may acknowledge "
                                      "or reset alarms")
    require_signed_commands: bool = Field(
        False, description="accept an acknowledgement or reset from the command topic or the "
        "HTTP API only when signed by the key of the operator it names (docs/contract.md, "
        "Signed commands); off, a plain command is trusted by the name it carries")
    command_max_age_s: float = Field(
        300.0, ge=10, le=86_400, description="a signed command whose time is further than this "
        "from the gateway's clock is refused as stale (its nonce is remembered twice as long)")
    #: the park config narrows this to the channels' union (`AlarmsConfig.targets`)
    targets: dict[Id, TargetBase] = Field(default_factory=dict, description=TARGETS_DESCRIPTION)
    contacts: list[Contact] = Field(default_factory=list, description="people, each reached "
                                    "on every channel they have (docs/alarms.md, Contacts)")
    subscribers: list[Subscriber] = Field(default_factory=list)
    routing: RoutingPolicy = Field(default_factory=RoutingPolicy)
    escalation: list[Ladder] = Field(default_factory=list, description="the first ladder that "
                                     "matches an alarm applies")
    silences: list[Silence] = Field(default_factory=list)
    drills: list[Drill] = Field(default_factory=list)
    outbox_retention_s: float = Field(7 * 86_400.0, ge=3600, le=365 * 86_400,
                                      description="closed alarms and their deliveries are "
                                      "kept this long in the store")
    close_unacknowledged_after_s: dict[Hazard, _CloseAfter] = (
        Field(default_factory=dict, description="per kind of hazard (overload, water, fault): "
              "an alarm that cleared and that nobody acknowledged is closed this long after "
              "it cleared, recorded as closed automatically; never for fire"))

    @field_validator("close_unacknowledged_after_s")
    @classmethod
    def _never_fire(cls, value: dict[str, float]) -> dict[str, float]:
        if "fire" in value:
            raise ValueError("a fire alarm is never closed without an acknowledgement: remove "
                             "'fire' (overload, water and fault alarms may be closed this way)")
        return value
