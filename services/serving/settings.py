"""Settings every service shares; each service subclasses with its own environment prefix.

Environment variables map 1:1 onto Kubernetes `env:` entries, e.g. `REWARD_API_MAX_IN_FLIGHT=32`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Bind address, auth, limits, batching and shutdown of one service process."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(default=8000, ge=0, le=65535, description="Bind port (0 picks a free one).")
    auth_token: SecretStr | None = Field(default=None, description="Bearer token required on /v1/* if set.")
    max_body_bytes: int = Field(default=64 * 2**20, gt=0, description="Largest request body, bytes.")
    max_in_flight: int = Field(default=64, gt=0, description="Requests processed at once; more get 429.")
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with 429/503, seconds.")
    max_batch: int = Field(default=32, gt=0, description="Work items per model call.")
    max_wait_ms: float = Field(default=5.0, ge=0, description="Longest wait to fill a batch, ms.")
    max_queue: int = Field(default=1024, gt=0, description="Queued work items before 503.")
    graceful_timeout_s: float = Field(default=30.0, ge=0, description="Time in-flight requests get at shutdown, s.")
    log_level: str = Field(default="info", description="Python log level.")
