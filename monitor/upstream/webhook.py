"""The webhook POST: the standard library's HTTP client, run in a thread.

Receivers are few and notifications rare, so a thread per attempt costs nothing, and the
standard library speaks HTTPS (Slack, PagerDuty bridges) where the proxy's own upstream client
speaks only plain HTTP to a backend. Redirects are not followed: a receiver's URL is
configuration, and a 3xx is reported as the status it is (a permanent failure) rather than
sending a signed alert somewhere else.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

_MAX_RESPONSE_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def post_sync(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    """POST and return the response status (4xx and 5xx included); raises on transport errors."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read(_MAX_RESPONSE_BYTES)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


class ThreadedPost:
    """An async `Post` (see `alerts.delivery`) on top of `post_sync`."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        return await asyncio.to_thread(post_sync, url, body, headers, self.timeout_s)
