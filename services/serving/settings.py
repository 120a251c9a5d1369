"""Settings every service shares; each service subclasses with its own environment prefix.

Environment variables map 1:1 onto Kubernetes `env:` entries, e.g. `REWARD_API_MAX_IN_FLIGHT=32`.
A variable with the service's prefix that is no setting (`REWARD_API_MAX_INFLIGHT`) stops the service
at start-up, naming the closest real one: ops set these from manifests, and a silent typo is a
silent misconfiguration.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class UnknownSettingError(ValueError):
    """An environment variable with the service's prefix names no setting."""


class ServingSettings(BaseSettings):
    """Bind address, auth, limits, batching and shutdown of one service process."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(default=8000, ge=0, le=65535, description="Bind port (0 picks a free one).")
    auth_token: SecretStr | None = Field(default=None, description="Bearer token required on /v1/* if set.")
    max_body_bytes: int = Field(default=64 * 2**20, gt=0, description="Largest request body, bytes.")
    body_timeout_s: float = Field(
        default=15.0, gt=0, description="Time a client has to send its whole body, s; then 408 (slow clients)."
    )
    max_in_flight: int = Field(default=64, gt=0, description="Requests processed at once; more get 429.")
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with 429/503, seconds.")
    max_batch: int = Field(default=32, gt=0, description="Work items per model call.")
    max_wait_ms: float = Field(default=5.0, ge=0, description="Longest wait to fill a batch, ms.")
    max_queue: int = Field(default=1024, gt=0, description="Queued work items before 503.")
    # 64 Mpx is 24 images of 1024^2 or 256 of 512^2; decoded RGB it is 192 MB.
    max_request_pixels: int = Field(
        default=64 * 2**20, gt=0, description="Pixels of all images of one request together, read from headers."
    )
    graceful_timeout_s: float = Field(default=30.0, ge=0, description="Time in-flight requests get at shutdown, s.")
    log_level: str = Field(default="info", description="Python log level.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _RefuseUnknownVariables(settings_cls), env_settings, dotenv_settings, file_secret_settings


class _RefuseUnknownVariables(PydanticBaseSettingsSource):
    """Supplies no values; raises UnknownSettingError for a prefixed variable that names no field."""

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix") or "").upper()
        if not prefix:
            return {}
        known = {prefix + name.upper() for name in self.settings_cls.model_fields}
        for variable in sorted(os.environ):
            if variable.upper().startswith(prefix) and variable.upper() not in known:
                close = difflib.get_close_matches(variable.upper(), sorted(known), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else f"; the settings are: {', '.join(sorted(known))}"
                raise UnknownSettingError(f"{variable} is not a setting of this service{hint}")
        return {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False
