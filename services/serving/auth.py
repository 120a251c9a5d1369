"""Bearer-token auth for /v1/* routes (probes and metrics stay open for the orchestrator).

The check itself runs in `AdmissionMiddleware`, from the headers alone, before the body is read or
any limit is counted; the route dependency below repeats it (it costs nothing) and declares the
security scheme in the OpenAPI page.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from services.serving.problems import ProblemError

_bearer = HTTPBearer(auto_error=False, description="Required when the service is started with a token.")
# (slug, title, detail) of every 401, wherever it is raised.
UNAUTHORIZED = ("unauthorized", "Missing or invalid bearer token", "Send 'Authorization: Bearer <token>'.")


def bearer_matches(authorization: str | None, token: SecretStr) -> bool:
    """Whether an `Authorization` header value is `Bearer <token>` (scheme case-insensitive)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    # Constant-time comparison: the token must not leak through response timing.
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


def require_token(token: SecretStr | None) -> Callable[..., None]:
    """A dependency that accepts every request when `token` is None, else only `Bearer <token>`."""

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if token is None:
            return
        header = f"Bearer {credentials.credentials}" if credentials is not None else None
        if not bearer_matches(header, token):
            raise ProblemError(401, *UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})

    return check
