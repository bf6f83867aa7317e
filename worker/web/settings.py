"""Dashboard settings (``DASHBOARD_*``, ``HIREFIRE_*``), read from the environment."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 12


def parse_accounts(text: str) -> dict[str, str]:
    """``"alice:pw1,bob:pw2"`` -> ``{"alice": "pw1", "bob": "pw2"}``; raises ValueError naming the
    entry's position (never its password)."""
    accounts: dict[str, str] = {}
    for i, entry in enumerate(e for e in text.split(",") if e.strip()):
        name, sep, password = entry.strip().partition(":")
        if not sep or not _ACCOUNT_NAME.match(name):
            raise ValueError(
                f"DASHBOARD_ACCOUNTS entry {i + 1} must be name:password (name: letters, digits, ._@-)"
            )
        if len(password) < MIN_PASSWORD:
            raise ValueError(
                f"DASHBOARD_ACCOUNTS: the password of {name!r} needs at least {MIN_PASSWORD} characters"
            )
        accounts[name] = password
    return accounts


class DashboardSettings(BaseSettings):
    """Who may sign in to ``python -m worker web``, where it listens, and the autoscaling token."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    dashboard_password: SecretStr | None = Field(
        default=None,
        description=f"Password of the dashboard's `admin` account (at least {MIN_PASSWORD} characters); the "
        "dashboard refuses to start without it or DASHBOARD_ACCOUNTS.",
    )
    dashboard_accounts: SecretStr | None = Field(
        default=None,
        description="Named operator accounts, `name:password,name2:password2`; actions are logged with the name.",
    )
    dashboard_session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the dashboard's session cookie; unset: a random key per process "
        "(everyone signs in again after a restart).",
    )
    dashboard_session_hours: float = Field(
        default=12, gt=0, le=720, description="How long a dashboard sign-in lasts."
    )
    dashboard_host: str = Field(
        default="127.0.0.1",
        description="Address the dashboard binds when PORT is unset; with PORT (a Heroku web dyno) it is 0.0.0.0.",
    )
    dashboard_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port of the dashboard when PORT is unset (0: any free port).",
    )
    dashboard_preview_url_ttl_s: int = Field(
        default=900,
        ge=60,
        le=604800,
        description="Lifetime of the signed URL the job page plays a preview from.",
    )
    hirefire_token: SecretStr | None = Field(
        default=None,
        description="Serves HireFire's GET /hirefire/<token>/info (and /hirefire with a HireFire-Token header) "
        "for the worker process type; unset: no autoscaling endpoint.",
    )
    hirefire_metric: Literal["job_queue_size", "job_queue_latency"] = Field(
        default="job_queue_size",
        description="Value reported to HireFire: jobs due or running, or seconds the oldest due job has waited.",
    )

    @field_validator("dashboard_password")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < MIN_PASSWORD:
            raise ValueError(f"must be at least {MIN_PASSWORD} characters")
        return v

    @model_validator(mode="after")
    def _accounts_parse(self) -> DashboardSettings:
        if self.dashboard_accounts is not None:
            parse_accounts(self.dashboard_accounts.get_secret_value())
        return self

    def accounts(self) -> dict[str, str]:
        """Every account that may sign in (``admin`` for DASHBOARD_PASSWORD); empty: none set."""
        out: dict[str, str] = {}
        if self.dashboard_password is not None:
            out["admin"] = self.dashboard_password.get_secret_value()
        if self.dashboard_accounts is not None:
            out.update(parse_accounts(self.dashboard_accounts.get_secret_value()))
        return out

    def secrets(self) -> list[str]:
        """Values no page or log line may show."""
        out = list(self.accounts().values())
        for s in (self.dashboard_session_secret, self.hirefire_token):
            if s is not None and s.get_secret_value():
                out.append(s.get_secret_value())
        return out
