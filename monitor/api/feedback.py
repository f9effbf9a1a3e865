"""`POST /v1/feedback`: a user's satisfaction with one answer, stored as a quality score.

Body: ``{"request_id": "<X-Request-ID of the answer>", "score": 0..1}`` or
``{"request_id": "...", "rating": 1..5}`` (stored as ``(rating - 1) / 4``), with an optional
``"comment"`` (kept only when `content_storage` is `full`; otherwise only its length is).
Stored as scorer `user`, metric `satisfaction`; feedback sent again for the same request
replaces the earlier one.

Why `rating` is a field of its own rather than an integer `score`: JSON does not tell ``1``
from ``1.0`` (JavaScript sends both as ``1``), so "integer means rating" would read a perfect
score of 1.0 as the worst rating.

Errors are raised here and rendered by `monitor.api.errors` as OpenAI error objects with the
request id, like the proxy's: 400 VALIDATION_ERROR for a body that is not a JSON object or has
a field of the wrong type or missing, 413 for a body over `MAX_BODY_BYTES`, 415 for a body
not declared `application/json`, 422 for values out of range, 401 when API keys are configured
and none (or a wrong one) is given, 429 over the principal's rate limit (feedback counts
against the same window as generation), 404 for a request id that is neither stored nor just
finished (a record may still wait in the recorder's queue: `RecentRequests` remembers the last
ids the proxy finished and their principals), 503 when the database cannot take the score.

Only the principal that made a request may rate it. Someone else gets the same 404 as for an
unknown id, not a 403: a 403 would tell a guesser that the id exists, and ids are the only
thing standing between one user's requests and another's feedback.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from monitor.errors import BodyTooLarge, NotFound, OutOfRange, RequestInvalid, StoreUnavailable
from monitor.proxy import protocols
from monitor.proxy.admission import Admission
from monitor.record import utcnow
from monitor.store.samples import QualityScore
from monitor.workers.quality import QualityStats

MAX_BODY_BYTES = 16 * 1024
MAX_COMMENT_CHARS = 4000
MAX_ID_CHARS = 64  # the column's width


@dataclass(frozen=True, slots=True)
class Made:
    """Who made a request: its principal (None when it had none)."""

    principal: str | None


class RecentRequests:
    """The ids (and principals) of the last `size` requests the proxy finished, whatever their
    outcome: their records may not be in the database yet. Bounded; O(1) to add and to ask."""

    def __init__(self, size: int = 10_000) -> None:
        self._order: deque[str] = deque()
        # request id -> principal: a `Made` is built only when asked (rarely), not per request
        self._principals: dict[str, str | None] = {}
        self._size = size

    def add(self, request_id: str, principal: str | None = None) -> None:
        principals = self._principals
        if request_id in principals:
            return
        self._order.append(request_id)
        principals[request_id] = principal
        if len(self._order) > self._size:
            principals.pop(self._order.popleft(), None)

    def get(self, request_id: str) -> Made | None:
        if request_id not in self._principals:
            return None
        return Made(self._principals[request_id])

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._principals


Lookup = Callable[[str], Made | None]  # blocking store look-up, called in a thread
Write = Callable[[Sequence[QualityScore]], object]  # blocking, called in a thread


def feedback_router(
    admission: Admission,
    recent: RecentRequests,
    lookup: Lookup,
    write: Write,
    *,
    store_comments: bool = False,
    stats: QualityStats | None = None,
) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/feedback")
    async def feedback(request: Request) -> Response:
        principal, _ = await admission.admit(request.scope, json_body=True)
        payload = protocols.parse_json_object(await _read_body(request))
        score = _parse(payload, store_comments)
        made = recent.get(score.request_id)
        if made is None:
            made = await asyncio.to_thread(lookup, score.request_id)
        if made is None or made.principal != principal:
            raise NotFound(f"no request with id {score.request_id!r}", param="request_id")
        try:
            await asyncio.to_thread(write, [score])
        except Exception as exc:
            raise StoreUnavailable(
                f"the feedback could not be stored: {exc.__class__.__name__}"
            ) from exc
        if stats is not None:
            stats.scored["user"] += 1
        answer = {"request_id": score.request_id, "score": score.value, "stored": True}
        return Response(orjson.dumps(answer), 200, media_type="application/json")

    return router


async def _read_body(request: Request) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _parse(payload: dict[str, Any], store_comments: bool) -> QualityScore:
    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise RequestInvalid("request_id must be a non-empty string", param="request_id")
    if len(request_id) > MAX_ID_CHARS:
        raise OutOfRange(f"request_id is over {MAX_ID_CHARS} characters", param="request_id")
    unknown = set(payload) - {"request_id", "score", "rating", "comment"}
    if unknown:
        raise RequestInvalid(f"unknown field {sorted(unknown)[0]!r}", param=sorted(unknown)[0])
    has_score, has_rating = "score" in payload, "rating" in payload
    if has_score == has_rating:
        raise RequestInvalid("give either score (0..1) or rating (an integer 1..5)", param="score")
    detail: dict[str, Any] = {}
    if has_score:
        value = payload["score"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestInvalid("score must be a number from 0 to 1", param="score")
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise OutOfRange(
                "score must be from 0 to 1 (send a 1..5 rating as rating)", param="score"
            )
        score = float(value)
    else:
        rating = payload["rating"]
        if isinstance(rating, float) and rating.is_integer():
            rating = int(rating)
        if isinstance(rating, bool) or not isinstance(rating, int):
            raise RequestInvalid("rating must be an integer from 1 to 5", param="rating")
        if not 1 <= rating <= 5:
            raise OutOfRange("rating must be from 1 to 5", param="rating")
        score = (rating - 1) / 4
        detail["rating"] = rating
    comment = payload.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise RequestInvalid("comment must be a string", param="comment")
        if len(comment) > MAX_COMMENT_CHARS:
            raise OutOfRange(f"comment is over {MAX_COMMENT_CHARS} characters", param="comment")
        detail["comment_chars"] = len(comment)
        if store_comments:
            detail["comment"] = comment
    return QualityScore(request_id, utcnow(), "user", "satisfaction", score, detail or None)
