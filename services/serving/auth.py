"""Bearer-token auth for /v1/* routes (probes and metrics stay open for the orchestrator)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from services.serving.problems import ProblemError

_bearer = HTTPBearer(auto_error=False, description="Required when the service is started with a token.")


def require_token(token: SecretStr | None) -> Callable[..., None]:
    """A dependency that accepts every request when `token` is None, else only `Bearer <token>`."""

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        # Constant-time comparison: the token must not leak through response timing.
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise ProblemError(
                401, "unauthorized", "Missing or invalid bearer token",
                "Send 'Authorization: Bearer <token>'.", headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip

    return check
