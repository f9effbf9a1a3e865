"""`/admin/*`: the operator's API, behind `Authorization: Bearer <MONITOR_ADMIN_TOKEN>`.

Mounted only when an admin token is configured: usage per principal (the seed's
requests_last_hour, remaining_requests, reset_time) and reloading the guard policy.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import SecretStr

from monitor.guard.loader import PolicyError
from monitor.proxy.admission import Admission
from monitor.proxy.ratelimit import LimiterUnavailable


def bearer_dependency(token: SecretStr) -> Any:
    """A FastAPI dependency refusing requests without `Authorization: Bearer <token>` (401),
    comparing in constant time."""
    expected = token.get_secret_value().encode()

    def require_admin(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, "admin token required", {"www-authenticate": "Bearer"})

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
            raise HTTPException(404, "rate limiting is off")
        try:
            found = await admission.limiter.usage(principal)
        except LimiterUnavailable as exc:
            raise HTTPException(503, f"rate-limit store unreachable: {exc}") from exc
        return {"principal": principal, **found.to_dict()}

    @router.post("/policies/reload")
    async def reload() -> dict[str, Any]:
        """Read the configured policy again; a bad file is refused and the running one stays."""
        try:
            name = await reload_policy()
        except PolicyError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"policy": name, "status": "reloaded" if name else "guard off"}

    return router
