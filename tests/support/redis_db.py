"""Real Redis for tests: the server named by MONITOR_TEST_REDIS_URL, keys under a fresh prefix.

Each test gets its own key prefix, and every key under it is deleted afterwards, so tests are
isolated from each other and from earlier runs on the same server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    return os.environ.get("MONITOR_TEST_REDIS_URL", DEFAULT_REDIS_URL)


async def require_redis(client: Redis) -> None:
    """Skip the test when Redis is unreachable; fail it in CI, which provides Redis."""
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        await client.aclose()
        message = f"Redis at {redis_url()} unreachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """A client and a key prefix no other test uses; the prefix's keys are deleted on exit."""
    client = Redis.from_url(redis_url(), socket_connect_timeout=2)
    await require_redis(client)
    prefix = f"test-rl:{uuid.uuid4().hex[:12]}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
