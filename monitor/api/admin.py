"""`/admin/*`: the operator's API, behind `Authorization: Bearer <MONITOR_ADMIN_TOKEN>`.

Mounted only when an admin token is configured: usage per principal (the seed's
requests_last_hour, remaining_requests, reset_time) and reloading the guard policy. Errors are
`monitor.errors` exceptions, rendered by `monitor.api.errors` like every other route's.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import SecretStr

from monitor.errors import NotFound, RequestInvalid, StoreUnavailable, Unauthorized
from monitor.guard.loader import PolicyError
from monitor.proxy.admission import Admission
from monitor.proxy.ratelimit import LimiterUnavailable


def bearer_dependency(token: SecretStr) -> Any:
    """A FastAPI dependency refusing requests without `Authorization: Bearer <token>` (401
    UNAUTHORIZED with `WWW-Authenticate: Bearer`), comparing in constant time."""
    expected = token.get_secret_value().encode()

    def require_admin(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
        if not hmac.compare_digest(given, expected):
            error = Unauthorized("admin token required")
            error.headers.append((b"www-authenticate", b"Bearer"))
            raise error

    return Depends(require_admin)


def admin_router(
    token: SecretStr,
    admission: Admission,
    reload_policy: Callable[[], Awaitable[str | None]],
) -> APIRouter:
    router = APIRouter(prefix="/admin", dependencies=[bearer_dependency(token)])

    @router.get("/usage/{principal}")
    async def usage(principal: str) -> dict[str, Any]:
        """Usage of a principal id: sha256 of its API key, 16 hex chars (never the key itself,
        which would end up in access logs)."""
        if admission.limiter is None:
            raise NotFound("rate limiting is off")
        try:
            found = await admission.limiter.usage(principal)
        except LimiterUnavailable as exc:
            raise StoreUnavailable(f"rate-limit store unreachable: {exc}") from exc
        return {"principal": principal, **found.to_dict()}

    @router.post("/policies/reload")
    async def reload() -> dict[str, Any]:
        """Read the configured policy again; a bad file is refused and the running one stays."""
        try:
            name = await reload_policy()
        except PolicyError as exc:
            raise RequestInvalid(str(exc)) from exc
        return {"policy": name, "status": "reloaded" if name else "guard off"}

    return router
