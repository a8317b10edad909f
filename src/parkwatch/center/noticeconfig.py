"""``tickets.notify`` of the center's config: where the people an overdue hazard ticket is
escalated to are told (their chat groups' robots, a webhook), and who is who."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from parkwatch.config.base import Id, Strict
from parkwatch.config.delivery import Secret


class NoticeTarget(Secret):
    """A chat group's robot or a webhook, as a park config's ``alarms.targets`` of that type:
    ``dingtalk`` (signed when a secret is given: 加签), ``wecom``, ``feishu`` (signed when a
    secret is given), or ``webhook`` (a JSON POST, HMAC-SHA256 signed when a secret is
    given)."""

    type: Literal["dingtalk", "wecom", "feishu", "webhook"]
    url: SecretStr = Field(description="the robot's webhook URL (it carries the robot's "
                           "token or key: kept out of logs) or the webhook's URL")
    timeout_s: float = Field(10.0, gt=0, le=60, description="seconds to wait for an answer")


class Recipient(Strict):
    """Who is told at which escalation level: a tenant's safety officers (their tickets,
    level 1), the landlord (level 1 for the shared parts, level 2 for every ticket of their
    buildings), the park's grid officers (level 3)."""

    party: Literal["tenant", "landlord", "grid"]
    park: Id
    tenant: Id | None = Field(None, description="party tenant: which tenant")
    buildings: list[Id] = Field(default_factory=list, description="party landlord: their "
                                "buildings (empty: every building of the park)")
    target: Id = Field(description="one of tickets.notify.targets")


class NoticeConfig(Strict):
    """How overdue tickets reach people (none configured: the escalation is recorded and
    logged, and shown on the ticket, but nobody is told)."""

    targets: dict[Id, NoticeTarget] = Field(default_factory=dict)
    recipients: list[Recipient] = Field(default_factory=list)
    retry_for_s: float = Field(86_400.0, ge=60, le=7 * 86_400, description="a notice that "
                               "cannot be delivered is tried again, with growing pauses, this "
                               "long, then given up (and logged)")

    @model_validator(mode="after")
    def _targets_known(self) -> NoticeConfig:
        for r in self.recipients:
            if r.target not in self.targets:
                raise ValueError(f"recipient of {r.party} {r.tenant or r.park}: target "
                                 f"{r.target!r} is not in tickets.notify.targets")
            if (r.party == "tenant") != (r.tenant is not None):
                raise ValueError("a tenant recipient names its tenant, and only it does")
            if r.buildings and r.party != "landlord":
                raise ValueError("only a landlord recipient has buildings")
        return self
