"""Typed, validated settings read from BACKBEAT_* environment variables.

Each process builds one frozen settings object at start; a bad value stops
the process with a message naming the variable, the value and what was
expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_STATE_DIR = REPO_ROOT / "var"
DEV_SECRET = "backbeat-dev-secret-change-me-0123456789"


class SettingsError(ValueError):
    """Raised when an environment variable has an invalid value."""


class MeshSettings(BaseSettings):
    """Settings every service process shares."""

    model_config = SettingsConfigDict(env_prefix="BACKBEAT_", frozen=True, extra="ignore")

    host: str = Field("127.0.0.1", description="Address the gRPC server binds to.")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    port_file: Path | None = Field(None, description="File the bound port is written to once serving.")
    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Folder with the public catalog, listening and audio data."
    )
    state_dir: Path = Field(DEFAULT_STATE_DIR, description="Folder with the stores that ingest builds.")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "BACKBEAT_REDIS_URL"),
        description="Redis URL for sessions, caches and rate limits; in-process stores when unset.",
    )
    redis_timeout_s: float = Field(0.05, gt=0, description="Socket timeout of every Redis call, seconds.")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    drain_s: float = Field(5.0, ge=0, description="Seconds in-flight calls get to finish on shutdown.")
    unready_s: float = Field(
        0.5, ge=0, description="Seconds a stopping service reports NOT_SERVING before it stops taking calls."
    )
    deadline_margin_s: float = Field(
        0.002, ge=0, description="Time kept back from the incoming deadline for each downstream call."
    )
    breaker_fail_max: int = Field(20, ge=1, description="Consecutive failures that open a circuit breaker.")
    breaker_reset_s: float = Field(
        5.0, gt=0, description="Seconds an open breaker waits before a trial call."
    )
    secret: str = Field(
        DEV_SECRET, min_length=32, description="HMAC key for access tokens and stream grants."
    )
    breaker_half_open_trials: int = Field(
        1, ge=1, description="Trial calls at once while a breaker is half-open."
    )
    shared_breakers: bool = Field(False, description="Keep breaker state in Redis, shared by every replica.")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="HTTP port of /metrics; unset for none."
    )
    tracing: bool = Field(True, description="Record spans; off only to measure what tracing costs.")
    breakers: bool = Field(True, description="Guard downstream calls with breakers; off only for benchmarks.")
    deadlines: bool = Field(True, description="Give downstream calls deadlines; off only for benchmarks.")


SettingsT = TypeVar("SettingsT", bound=MeshSettings)


def load_settings(settings_class: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build settings from the environment, raising SettingsError naming each bad variable."""
    try:
        return settings_class(**overrides)
    except ValidationError as error:
        prefix = settings_class.model_config.get("env_prefix", "")
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"])
            problems.append(f"{prefix}{field.upper()}={item.get('input')!r}: {item['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from error
