"""Worker settings, read from the environment and validated at start.

Every setting here is documented in the README's configuration table (a test keeps the two in
step). An invalid value stops the process before it touches the database, naming the variable and
the rule it broke.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from psycopg.conninfo import conninfo_to_dict
from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PoolMode = Literal["auto", "direct", "session", "transaction"]


class WorkerSettings(BaseSettings):
    """Settings of the queue side of the worker: database, concurrency, leases, shutdown, logs."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    database_url: SecretStr = Field(
        description="PostgreSQL connection URL (Heroku sets it; on Supabase use the session pooler)."
    )
    listen_database_url: SecretStr | None = Field(
        default=None,
        description="Separate direct/session connection for LISTEN when DATABASE_URL is a transaction pooler.",
    )
    database_pool_mode: PoolMode = Field(
        default="auto",
        description="How DATABASE_URL is reached; auto: port 6543 (Supabase's transaction pooler) or a server "
        "that shares sessions between transactions (probed at start) is a transaction pooler.",
    )
    max_concurrent_jobs: int = Field(default=2, ge=1, le=10, description="Jobs one process runs at once.")
    poll_interval_ms: int = Field(
        default=5000, ge=1000, le=3_600_000, description="Fallback poll when no NOTIFY arrives."
    )
    job_timeout_ms: int = Field(
        default=300_000, ge=10_000, le=86_400_000, description="A job's work is stopped after this long."
    )
    lease_seconds: int = Field(
        default=60,
        ge=3,
        le=3600,
        description="Lease of a claimed job; heartbeats renew it every third of it. A dead worker's job "
        "is rescued after this long.",
    )
    rescue_interval_seconds: float = Field(
        default=60, ge=0.5, le=3600, description="How often one worker of the fleet runs reset_stuck_jobs."
    )
    shutdown_grace_seconds: float = Field(
        default=20,
        ge=0,
        le=3600,
        description="On SIGTERM, running jobs get this long to finish before they are released. On "
        "Heroku keep it at 22 or less (a worker with DYNO set warns at start).",
    )
    job_handler: str = Field(
        default="worker.job.pipeline:render_job",
        description="module:function that does a job's work (see worker/queue/handlers.py).",
    )
    worker_id: str | None = Field(
        default=None,
        description="Fixed worker id prefix; default hostname or DYNO. A pid and random suffix are always added.",
    )
    log_level: Literal["trace", "debug", "info", "warning", "warn", "error", "critical"] = Field(
        default="info", description="Lowest level logged (warn = warning)."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json writes one JSON object per line, for log drains."
    )
    health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve /healthz and /metrics (Prometheus) on this port (0: any free port, logged); unset: "
        "PORT if set (web dyno), else no endpoint and no metrics.",
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Set by Heroku on web dynos only; used for the health endpoint (bound to 0.0.0.0) when "
        "HEALTH_PORT is unset.",
    )
    health_host: str = Field(
        default="127.0.0.1",
        description="Address the health endpoint binds with HEALTH_PORT (0.0.0.0 to expose it); with PORT "
        "alone it is 0.0.0.0.",
    )
    webhook_url: AnyHttpUrl | None = Field(
        default=None,
        description="POST a JSON notice here when a job ends (completed, failed, cancelled); never delays the queue.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signs each webhook: X-Audio-Worker-Signature = sha256=HMAC-SHA256(secret, "
        "timestamp + '.' + body).",
    )
    webhook_timeout_s: float = Field(default=5, ge=0.5, le=60, description="Timeout of one webhook attempt.")
    webhook_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Webhook tries (backoff 1 s, 2 s, 4 s ... between them) until a 2xx answer.",
    )

    @model_validator(mode="after")
    def _normalise(self) -> WorkerSettings:
        if self.log_level == "warn":
            self.log_level = "warning"
        return self

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease_seconds / 3

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or an error."""
        out = []
        for url in (self.database_url, self.listen_database_url):
            if url is not None:
                pw = password_of(url.get_secret_value())
                if pw:
                    out.append(pw)
        if self.webhook_secret is not None and self.webhook_secret.get_secret_value():
            out.append(self.webhook_secret.get_secret_value())
        return out

    def health_bind(self) -> tuple[str, int] | None:
        """(host, port) of the health/metrics endpoint, or None when it is off."""
        if self.health_port is not None:
            return self.health_host, self.health_port
        if self.port is not None:
            return "0.0.0.0", self.port  # a web dyno: the router reaches us from outside
        return None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per broken rule: ``MAX_CONCURRENT_JOBS: must be <= 10 (got '12')``."""
    lines = []
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"]).upper()
        msg = err["msg"].removeprefix("Value error, ")
        if not name:  # a rule across several variables: its message names them
            lines.append(msg)
            continue
        msg = msg.replace("Input should be", "must be").replace("Field required", "is required but not set")
        got = err.get("input")
        # Never echo a value that could be a secret.
        shown = (
            ""
            if got is None or isinstance(got, dict) or "URL" in name or "KEY" in name or "SECRET" in name
            else f" (got {got!r})"
        )
        lines.append(f"{name}: {msg}{shown}")
    return "\n".join(lines)


def password_of(url: str) -> str | None:
    """The password inside a libpq URL or key=value string, or None (a secret to mask everywhere)."""
    try:
        return conninfo_to_dict(url).get("password") or None  # type: ignore[return-value]
    except Exception:
        return None


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read ``cls`` from the environment; exits (status 1) with one line per broken rule."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"configuration error:\n{describe_validation_error(exc)}") from None


def load_worker_settings(**overrides: Any) -> WorkerSettings:
    """The queue side's settings; exits with a message per broken rule when invalid."""
    return load_settings(WorkerSettings, **overrides)
