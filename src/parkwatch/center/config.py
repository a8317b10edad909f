"""The command center's config file (`center.yaml`): where it listens, where it stores, who
it is among the instances that share the load.  Validated like a park config: every problem
with file, line and key path."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from parkwatch.center.noticeconfig import NoticeConfig
from parkwatch.config.base import ConfigPath, Id, Strict
from parkwatch.config.brokers import BrokerConfig
from parkwatch.config.delivery import Secret
from parkwatch.config.loader import Schema, load_config
from parkwatch.config.yamlsource import Loc

DEFAULT_CONFIG = Path("/etc/parkwatch/center.yaml")


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"不是 IP 地址或网段 (not an IP address or network): {value!r}") \
            from None
    return value


class IngestConfig(Strict):
    """How events are taken from the broker and written."""

    share_group: Id | None = Field(
        "parkwatch-center", description="MQTT shared-subscription group of the instances that "
        "share the events ($share/<group>/...; Mosquitto 2, EMQX): each event goes to one of "
        "them; null: this instance takes every event itself")
    batch_max: int = Field(2000, ge=1, le=50_000, description="most events written in one "
                           "transaction")
    retry_max_s: float = Field(10.0, gt=0, le=600, description="longest wait between attempts "
                               "to write while the database is down (events wait meanwhile)")
    process: bool = Field(True, description="receive and decode in a process of its own, so "
                          "that they use another core than the database writes; false: in "
                          "the center's process")


class HttpConfig(Strict):
    """The web console, /healthz and /metrics, served by the center itself."""

    enabled: bool = Field(True, description="serve the console (false: store only)")
    listen: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 or :: for "
                        "every interface: put a TLS reverse proxy in front, the console "
                        "speaks plain HTTP)")
    port: int = Field(8470, ge=0, le=65535, description="TCP port (0: any free port, tests)")
    secret: Secret = Field(default_factory=Secret,
                           description="the key that signs the login sessions' cookies "
                           "(secret_file or secret_env, at least 16 characters); when neither "
                           "is given, one is generated into state_file. Several instances "
                           "behind one address need the same secret")
    state_file: ConfigPath = Field(Path("/var/lib/parkwatch-center/http.secret"),
                                   description="where the generated session key is kept "
                                   "(mode 0600) when no secret is given")
    session_max_age_s: int = Field(43_200, ge=60, le=30 * 86_400,
                                   description="a login lasts this long (default 12 h)")
    stale_after_s: float = Field(180.0, gt=0, description="a gateway whose last status is "
                                 "older than this shows as stale (3 × the gateways' "
                                 "gateway.status_interval_s is a good value)")
    trusted_proxies: list[str] = Field(
        ["127.0.0.1", "::1"], description="addresses or networks (10.0.0.0/8) of the reverse "
        "proxies in front of the console: their X-Forwarded-For names the client, whom the "
        "failed-login limits and the log then see; [] trusts none")
    language: str = Field("zh-CN", pattern=r"^(zh-CN|en)$",
                          description="the console's default language (zh-CN or en); each "
                          "user can switch")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        return [_network(x) for x in v]


class CommandsConfig(Strict):
    """The commands the console sends to the gateways."""

    signing_keys_dir: ConfigPath | None = Field(
        None, description="a directory of the operators' Ed25519 private keys, one PEM file "
        "per console user named <user>.key (parkwatch keygen): an operator with a key file "
        "signs their acknowledgements, as gateways with alarms.require_signed_commands "
        "require; null: every ack is the plain one")


class TicketsConfig(Strict):
    """Hazard tickets (隐患整改): their deadlines and the escalation of overdue ones."""

    deadline_hours: dict[str, float] = Field(
        {"general": 168.0, "major": 72.0}, description="hours from a report to its deadline, "
        "by grade: general (一般隐患) and major (重大隐患); whoever assigns a ticket may set "
        "another deadline")
    escalate_after_hours: list[float] = Field(
        [0.0, 24.0, 48.0], min_length=1, max_length=3,
        description="hours past the deadline at which an open ticket is escalated to the "
        "responsible party, then the landlord, then the park's grid officers (inspectors)")
    check_interval_s: float = Field(60.0, ge=1.0, le=3600.0, description="how often the "
                                    "center looks for tickets to escalate")
    notify: NoticeConfig = Field(default_factory=NoticeConfig, description="who is told of an "
                                 "escalation, and where (chat robots, webhooks)")

    @field_validator("deadline_hours")
    @classmethod
    def _both_grades(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != {"general", "major"} or any(h <= 0 for h in v.values()):
            raise ValueError("需要 general 和 major 两级，且小时数为正 (both general and major, "
                             "in positive hours)")
        return v

    @field_validator("escalate_after_hours")
    @classmethod
    def _rising(cls, v: list[float]) -> list[float]:
        if any(h < 0 for h in v) or v != sorted(v):
            raise ValueError("须从小到大且不为负 (rising, not negative)")
        return v


class CenterConfig(Strict):
    """One command-center instance."""

    instance: Id = Field(description="this instance's name: its MQTT client id is "
                         "<broker.client_id_prefix or parkwatch-center>-<instance>, whose "
                         "persistent session keeps what it has not acknowledged")
    broker: BrokerConfig = Field(description="the central broker every park's gateway "
                                 "publishes the contract to")
    topic_prefix: str = Field("parkwatch/v1", pattern=r"^[^+#]+[^/+#]$",
                              description="the contract's prefix (uplink.topic_prefix of the "
                              "gateways)")
    database: str = Field(description="sqlite:////abs/path/center.db (four slashes: an "
                          "absolute path; one machine, the default of the demo) or "
                          "postgresql://user@host:port/dbname (several instances; the password "
                          "from PGPASSWORD or ~/.pgpass)")
    ingest: IngestConfig = Field(default_factory=IngestConfig,
                                 description="how events are taken and written")
    http: HttpConfig = Field(default_factory=HttpConfig,
                             description="the web console, /healthz and /metrics")
    commands: CommandsConfig = Field(default_factory=CommandsConfig,
                                     description="the commands the console sends")
    tickets: TicketsConfig = Field(default_factory=TicketsConfig,
                                   description="hazard tickets' deadlines and escalation")

    @property
    def client_id(self) -> str:
        """This instance's MQTT client id (its persistent session on the broker)."""
        return f"{self.broker.client_id_prefix or 'parkwatch-center'}-{self.instance}"

    @field_validator("database")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith(("postgresql://", "postgres://"))):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return v


def _cross_check(cfg: CenterConfig) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    problem = cfg.http.secret.secret_problem() if cfg.http.enabled else None
    if problem is not None:
        out.append((("http", "secret", problem[0]), problem[1]))
    for name, target in cfg.tickets.notify.targets.items():
        problem = target.secret_problem()
        if problem is not None:
            out.append((("tickets", "notify", "targets", name, problem[0]), problem[1]))
    keys = cfg.commands.signing_keys_dir
    if keys is not None and not keys.is_dir():
        out.append((("commands", "signing_keys_dir"), f"签名密钥目录不存在或不是目录 "
                    f"(not a directory): {keys}"))
    return out


SCHEMA: Schema[CenterConfig] = Schema(CenterConfig, _cross_check)


def load_center_config(path: str | Path,
                       overrides: dict[Loc, Any] | None = None) -> CenterConfig:
    """Read and validate a center config (raises ConfigError with every problem)."""
    return load_config(path, SCHEMA, overrides)


REFERENCE_HEADER = """# Command-center config reference

<!-- generated by `python -m parkwatch.center.config`; edit the models, not this file -->

One YAML file configures one command-center instance (`parkwatch center --config FILE`; see
[center.md](center.md)). Every problem is reported as `file:line: key.path: message` and the
center does not start (exit code 2). Unknown keys are errors. See `examples/center.yaml`.
"""


def reference() -> str:
    """The center's config reference (docs/center-config.md)."""
    from parkwatch.config.reference import render_model

    return render_model(CenterConfig, REFERENCE_HEADER)


if __name__ == "__main__":
    print(reference(), end="")
