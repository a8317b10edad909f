"""MQTT broker connection settings; secrets come from a file or the environment, never inline."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator

from parkwatch.config.base import ConfigPath, Strict


class TlsConfig(Strict):
    ca_file: ConfigPath = Field(description="CA bundle that signed the broker's certificate")
    cert_file: ConfigPath | None = Field(None, description="client certificate (mutual TLS)")
    key_file: ConfigPath | None = Field(None, description="client private key (mutual TLS)")
    verify_hostname: bool = Field(True, description="check the broker's name in its cert")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class BrokerConfig(Strict):
    host: str = Field(min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="8883 is usual with TLS")
    client_id_prefix: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.\-]{1,40}$",
        description="MQTT client ids on this broker start with this (default parkwatch-"
        "{gateway}); each connection adds its role: -uplink, -uplink-alarms (with "
        "`uplink.process`), -driver-{id}",
    )
    username: str | None = Field(None, description="MQTT user name")
    password_file: ConfigPath | None = Field(
        None, description="file whose first line is the password")
    password_env: str | None = Field(None, description="environment variable with the password")
    tls: TlsConfig | None = Field(None, description="TLS with CA verification when set")
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(
        0.25, gt=0, le=60, description="first wait before reconnecting after a loss")
    reconnect_max_s: float = Field(
        1.0, gt=0, le=3600,
        description="longest wait between attempts: with 1 s the gateway is back within about "
        "a second of its broker (a refused TCP connect costs nothing on a LAN); raise it only "
        "for a remote broker that must not be hammered")

    @model_validator(mode="after")
    def _secrets(self) -> BrokerConfig:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("a password needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be below reconnect_min_s")
        return self

    def client_id(self, gateway: str, role: str) -> str:
        """A client id that is stable across restarts (persistent sessions) and unique."""
        return f"{self.client_id_prefix or 'parkwatch-' + gateway}-{role}"

    def password(self) -> str | None:
        """The password, read now from its file or environment variable (never logged)."""
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise KeyError(self.password_env)
            return value
        return None

    def secret_problems(self) -> list[tuple[str, str]]:
        """(key, message) for every secret or TLS file that cannot be read right now."""
        problems: list[tuple[str, str]] = []
        if self.password_file is not None:
            try:
                if not self.password():
                    problems.append(("password_file", f"{self.password_file} is empty"))
            except (OSError, IndexError, UnicodeDecodeError) as exc:
                problems.append(("password_file", f"cannot read {self.password_file}: "
                                 f"{getattr(exc, 'strerror', None) or 'empty file'}"))
        if self.password_env is not None and self.password_env not in os.environ:
            problems.append(("password_env", f"environment variable {self.password_env} "
                             "is not set"))
        if self.tls is not None:
            for key in ("ca_file", "cert_file", "key_file"):
                p: Path | None = getattr(self.tls, key)
                if p is not None and not p.is_file():
                    problems.append((f"tls.{key}", f"file {p} does not exist"))
        return problems
