"""HMAC-SHA256 signatures on webhook bodies, so receivers can trust them and reject replays.

When a receiver has a secret, every delivery carries::

    X-Gemma-Monitor-Signature: t=<unix seconds>,v1=<hex>

where ``<hex>`` is ``HMAC-SHA256(secret, f"{t}.".encode() + body)`` as lower-case hex, over the
exact bytes of the request body (the same scheme as Stripe's). The timestamp is signed with
the body, so a captured request cannot be replayed later with a fresh timestamp: a receiver
rejects a signature whose ``t`` is more than a tolerance (5 minutes by default) away from its
own clock. A header may carry several ``v1=`` values (during a secret rotation); one match is
enough. Each delivery also carries ``X-Gemma-Monitor-Delivery``, the same for every retry of
one notification, which receivers can use to drop duplicates.

A receiver verifies with `verify_signature` (copy it; it needs only the standard library)::

    if not verify_signature(raw_body, request.headers["X-Gemma-Monitor-Signature"], SECRET):
        return 401
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Gemma-Monitor-Signature"
DEFAULT_TOLERANCE_S = 300.0


def compute_signature(body: bytes, secret: str, timestamp: int) -> str:
    """Lower-case hex HMAC-SHA256 of ``f"{timestamp}." + body`` under `secret`."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """The value of `SIGNATURE_HEADER`: ``t=<timestamp>,v1=<hex>``."""
    return f"t={timestamp},v1={compute_signature(body, secret, timestamp)}"


def verify_signature(
    body: bytes,
    header: str | None,
    secret: str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when `header` signs `body` under `secret` with a timestamp within `tolerance_s` of
    `now` (default: the current time). False for a missing or malformed header, a stale or
    future timestamp, a tampered body or the wrong secret."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = compute_signature(body, secret, timestamp).encode()
    return any(hmac.compare_digest(expected, c.encode()) for c in candidates)
