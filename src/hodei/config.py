"""Settings from HODEI_* environment variables (the edge); CLI flags override them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevelName = Literal["trace", "debug", "info", "warn", "warning", "error"]


def default_data_dir() -> Path:
    """``~/.local/share/hodei``; ``/var/lib/hodei`` for root, whose home PostgreSQL cannot enter."""
    if os.geteuid() == 0:
        return Path("/var/lib/hodei")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hodei"


class Settings(BaseSettings):
    """Every setting of the server, worker and CLI. See ``hodei server --help``."""

    model_config = SettingsConfigDict(env_prefix="HODEI_", extra="ignore")

    database_url: str | None = None
    # The PostgreSQL server programs for the embedded database; searched for when unset.
    postgres_bin_dir: Path | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    bind_host: str = Field("127.0.0.1", validation_alias=AliasChoices("HODEI_BIND", "bind_host"))
    grpc_port: int = Field(
        50051, ge=1, le=65535, validation_alias=AliasChoices("GRPC_PORT", "HODEI_GRPC_PORT")
    )
    http_port: int = Field(8080, ge=1, le=65535)
    server_address: str = "localhost:50051"
    log_level: LogLevelName = Field(
        "info", validation_alias=AliasChoices("HODEI_LOG_LEVEL", "RUST_LOG", "log_level")
    )
    # Dev mode (no token, or `dev-…` tokens, act as admin): unset, `hodei up` on a loopback
    # address runs in it and `hodei server` does not.
    dev_mode: bool | None = None
    insecure_dev_mode: bool = False  # allow dev mode on an address others can reach
    # Jobs a minute one token may submit (0: no limit); admins only with limit_admins.
    submit_rate_per_minute: float = Field(600.0, ge=0)
    limit_admins: bool = False
    # TLS: the server's certificate and key (both ports), and the CA that must have signed its
    # gRPC clients' certificates (mutual TLS, for workers).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # The docker provider: on (1), off (0), or unset: `hodei up` turns it on when an engine answers.
    docker_enabled: bool | None = None
    k8s_enabled: bool = False
    fc_enabled: bool = False
    local_workers: int = Field(2, ge=0, le=64)
    heartbeat_interval_s: float = Field(5.0, gt=0)
    lease_ttl_s: float = Field(30.0, gt=0)
    cancel_grace_s: float = Field(10.0, ge=0)
    retry_base_s: float = Field(1.0, ge=0)
    # How long past a job's deadline the server waits for the worker's own timeout to report.
    timeout_grace_s: float = Field(15.0, ge=0)
    # Log lines older than this many days are deleted (0 keeps them forever).
    log_retention_days: float = Field(30.0, ge=0)
    # Keep at most this many bytes of one attempt's output (0: no cap); the log says so.
    log_max_bytes_per_job: int = Field(0, ge=0)
    drain_timeout_s: float = Field(10.0, ge=0)
    otp_token: str | None = None
    # 32 bytes in base64 that seal secret variables at rest; `hodei up` keeps one in data_dir.
    secret_key: SecretStr | None = None

    @model_validator(mode="after")
    def _consistent_timings(self) -> Settings:
        if self.lease_ttl_s < 2 * self.heartbeat_interval_s:
            raise ValueError(
                f"HODEI_LEASE_TTL_S ({self.lease_ttl_s:g}) must be at least twice "
                f"HODEI_HEARTBEAT_INTERVAL_S ({self.heartbeat_interval_s:g}): one late "
                "heartbeat would make a healthy worker's jobs count as lost"
            )
        if self.timeout_grace_s <= self.cancel_grace_s:
            raise ValueError(
                f"HODEI_TIMEOUT_GRACE_S ({self.timeout_grace_s:g}) must be greater than "
                f"HODEI_CANCEL_GRACE_S ({self.cancel_grace_s:g}): the server would declare a "
                "timeout while the worker still waits for the job to stop"
            )
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("HODEI_TLS_CERT and HODEI_TLS_KEY go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("HODEI_TLS_CLIENT_CA (mutual TLS) needs HODEI_TLS_CERT and _KEY")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _simple_level(cls, value: object) -> object:
        """Accept RUST_LOG forms such as ``hodei=debug,info``: keep the last plain level."""
        if isinstance(value, str):
            levels = [part.split("=")[-1].strip().lower() for part in value.split(",")]
            return levels[-1] if levels else value
        return value
