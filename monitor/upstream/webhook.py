"""The webhook POST: the standard library's HTTP client, run in a thread pool of its own.

Receivers are few and notifications rare, so a thread per attempt costs little, and the
standard library speaks HTTPS (Slack, PagerDuty bridges) where the proxy's own upstream client
speaks only plain HTTP to a backend. The pool is the webhooks' own and bounded (`max_parallel`
threads): a slow receiver with many pending notifications ties up these threads only, never
asyncio's default executor, which health pings and feedback share. Attempts past the bound
wait their turn inside their own timeout. Redirects are not followed: a receiver's URL is
configuration, and a 3xx is reported as the status it is (a permanent failure) rather than
sending a signed alert somewhere else.
"""

from __future__ import annotations

import asyncio
import functools
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_MAX_PARALLEL = 8


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
    """An async `Post` (see `alerts.delivery`) on top of `post_sync`, in its own pool."""

    def __init__(self, timeout_s: float = 10.0, max_parallel: int = DEFAULT_MAX_PARALLEL) -> None:
        self.timeout_s = timeout_s
        # threads start on first use; idle ones end with the pool
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="monitor-webhook")

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        post = functools.partial(post_sync, url, body, headers, self.timeout_s)
        return await asyncio.get_running_loop().run_in_executor(self._pool, post)

    def close(self) -> None:
        """Drop the attempts still waiting for a thread; those under way end on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
