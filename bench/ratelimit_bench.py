"""Cost of one rate-limit check: µs per `acquire`, in memory and in Redis.

    .venv/bin/python bench/ratelimit_bench.py                  # 20,000 acquires per case
    .venv/bin/python bench/ratelimit_bench.py --acquires 100000 --only memory

Cases: sequential (one awaited at a time: the latency a request pays) and 64 in flight (what
one proxy process sustains), over 200 principals at `100/hour`, so most are allowed and some
refused once a principal's window is full; plus a token budget, which adds a second log.
Redis: MONITOR_TEST_REDIS_URL (default local), keys under a throwaway prefix, deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from monitor.config_types import RateLimit
from monitor.proxy.ratelimit import Limiter
from monitor.proxy.ratelimit_memory import MemoryLimiter
from monitor.proxy.ratelimit_redis import RedisLimiter

LIMIT = RateLimit.parse("100/hour")
BUDGET = RateLimit.parse("100000/hour")
PRINCIPALS = [f"principal-{i:04d}" for i in range(200)]


async def sequential(limiter: Limiter, count: int, budget: RateLimit | None) -> tuple[float, int]:
    allowed = 0
    started = time.perf_counter()
    for i in range(count):
        decision = await limiter.acquire(PRINCIPALS[i % len(PRINCIPALS)], LIMIT, budget=budget)
        allowed += decision.allowed
    return (time.perf_counter() - started) / count * 1e6, allowed


async def concurrent(
    limiter: Limiter, count: int, budget: RateLimit | None, in_flight: int = 64
) -> tuple[float, int]:
    allowed = 0
    queue = iter(range(count))

    async def worker() -> None:
        nonlocal allowed
        for i in queue:
            decision = await limiter.acquire(PRINCIPALS[i % len(PRINCIPALS)], LIMIT, budget=budget)
            allowed += decision.allowed

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return (time.perf_counter() - started) / count * 1e6, allowed


async def run(name: str, make: type[MemoryLimiter] | str, count: int) -> None:
    for budget in (None, BUDGET):
        for mode, fn in (("sequential", sequential), ("64 in flight", concurrent)):
            if isinstance(make, str):
                prefix = f"bench-rl:{uuid.uuid4().hex[:8]}:"
                limiter: MemoryLimiter | RedisLimiter = RedisLimiter.from_url(make, prefix=prefix)
            else:
                limiter = make()
            try:
                await fn(limiter, min(count, 2000), budget)  # warm up (and fill some windows)
                us, allowed = await fn(limiter, count, budget)
            finally:
                if isinstance(limiter, RedisLimiter):
                    keys = [k async for k in limiter.client.scan_iter(match=limiter.prefix + "*")]
                    for start in range(0, len(keys), 1000):
                        await limiter.client.delete(*keys[start : start + 1000])
                await limiter.aclose()
            extra = "+ token budget" if budget else ""
            print(
                f"{name:7} {mode:13} {extra:15} {us:8.1f} µs/acquire  ({allowed}/{count} allowed)"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acquires", type=int, default=20_000)
    parser.add_argument("--only", choices=["memory", "redis"])
    args = parser.parse_args()
    if args.only != "redis":
        await run("memory", MemoryLimiter, args.acquires)
    if args.only != "memory":
        url = os.environ.get("MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        await run("redis", url, args.acquires)


if __name__ == "__main__":
    asyncio.run(main())
