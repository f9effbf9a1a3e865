"""The in-process rate limiter: sliding logs in a dict, for a single proxy process.

Atomic without a lock: each call runs to completion without awaiting, on one event loop.
Memory stays bounded: a principal whose logs have emptied is idle and evicted (checked from
the least recently used end on every call, a few at a time). An active principal is never
evicted: evicting it would empty its window, so a client cycling through fresh principals
could reset everyone else's limits (and its own). When the table holds `max_principals` active
ones, a principal not in it shares one *overflow* window with every other newcomer (counted in
`overflowed`) until idle ones leave. Refusing newcomers outright was the alternative: it would
shut out every new client during a flood; the shared window lets them in at one principal's
rate, which is all a flood of fresh principals gets together.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from monitor.config_types import RateLimit
from monitor.proxy.ratelimit import (
    Decision,
    Quota,
    Usage,
    Window,
    decide,
    measured_usage,
    slot_end,
)

_SWEEP_PER_CALL = 8


class _Log:
    """Entries (time µs, weight), oldest first, and their running total."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[int, int]] = deque()
        self.total = 0

    def trim(self, now_us: int, window_us: int) -> None:
        cutoff = now_us - window_us  # an entry at `cutoff` or before has left the window
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            self.total -= entries.popleft()[1]

    def add(self, now_us: int, weight: int, slot_us: int = 1) -> None:
        at = slot_end(now_us, slot_us)
        entries = self.entries
        if entries:
            last, last_weight = entries[-1]
            if at <= last:  # the same slot (or a clock that stepped back): one entry
                entries[-1] = (last, last_weight + weight)
                self.total += weight
                return
        entries.append((at, weight))
        self.total += weight

    def window(self, excess: int, window_us: int) -> Window:
        """The measured state; `excess` > 0: how much weight must leave before a refusal fits."""
        oldest = self.entries[0][0] if self.entries else None
        fits_at = None
        if excess > 0:
            freed = 0
            for at, weight in self.entries:
                freed += weight
                if freed >= excess:
                    fits_at = at + window_us
                    break
        return Window(self.total, oldest, fits_at)


class _Principal:
    __slots__ = ("idle_at_us", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = _Log()
        self.tokens = _Log()
        self.idle_at_us = 0  # when both logs will be empty, as of the last write

    def touch(self, now_us: int, window_us: int) -> None:
        self.idle_at_us = max(self.idle_at_us, now_us + window_us)


class MemoryLimiter:
    """Sliding-log limits for one process. See `monitor.proxy.ratelimit` for the semantics."""

    def __init__(self, *, max_principals: int = 100_000) -> None:
        if max_principals < 1:
            raise ValueError(f"max_principals must be at least 1, not {max_principals}")
        self.max_principals = max_principals
        self._principals: OrderedDict[str, _Principal] = OrderedDict()
        self._overflow = _Principal()  # the newcomers' shared window while the table is full
        self.evicted_idle = 0
        self.overflowed = 0  # calls answered from the overflow window

    def __len__(self) -> int:
        return len(self._principals)

    async def acquire(
        self,
        principal: str,
        limit: RateLimit,
        cost: int = 1,
        *,
        budget: RateLimit | None = None,
        now: float | None = None,
    ) -> Decision:
        if cost < 1:
            raise ValueError(f"cost must be at least 1, not {cost}")
        now_us = _now_us(now)
        self._sweep(now_us)
        state = self._principals.get(principal)
        if state is None and len(self._principals) >= self.max_principals:
            state = self._full(now_us)
        requests_used = tokens_used = 0
        if state is not None:
            state.requests.trim(now_us, limit.window_us)
            requests_used = state.requests.total
            if budget is not None:
                state.tokens.trim(now_us, budget.window_us)
                tokens_used = state.tokens.total
        allowed = requests_used + cost <= limit.amount and (
            budget is None or tokens_used < budget.amount
        )
        if allowed:
            state = state or self._add(principal)
            state.requests.add(now_us, cost, limit.slot_us)
            state.touch(now_us, limit.window_us)
            if state is not self._overflow:
                self._principals.move_to_end(principal)
        log = state.requests if state is not None else _Log()
        excess = 0 if allowed else requests_used + cost - limit.amount
        requests = log.window(excess, limit.window_us)
        tokens = None
        if budget is not None:
            tlog = state.tokens if state is not None else _Log()
            texcess = 0 if allowed else tokens_used - budget.amount + 1
            tokens = tlog.window(texcess, budget.window_us)
        return decide(now_us, allowed, limit, cost, requests, budget, tokens)

    async def charge_tokens(
        self, principal: str, tokens: int, budget: RateLimit, *, now: float | None = None
    ) -> None:
        if tokens <= 0:
            return
        now_us = _now_us(now)
        self._sweep(now_us)
        state = self._principals.get(principal)
        if state is None and len(self._principals) >= self.max_principals:
            state = self._full(now_us)
        state = state or self._add(principal)
        state.tokens.trim(now_us, budget.window_us)
        state.tokens.add(now_us, tokens, budget.slot_us)
        state.touch(now_us, budget.window_us)
        if state is not self._overflow:
            self._principals.move_to_end(principal)

    async def usage(
        self,
        principal: str,
        limit: RateLimit,
        *,
        budget: RateLimit | None = None,
        now: float | None = None,
    ) -> Usage:
        now_us = _now_us(now)
        state = self._principals.get(principal)
        requests, tokens = _Log(), _Log()
        if state is not None:
            requests, tokens = state.requests, state.tokens
            requests.trim(now_us, limit.window_us)
            if budget is not None:
                tokens.trim(now_us, budget.window_us)
        quota = Quota(limit, budget)
        return measured_usage(
            principal,
            quota,
            now_us,
            requests.window(0, limit.window_us),
            tokens.window(0, budget.window_us) if budget is not None else None,
        )

    async def aclose(self) -> None:
        self._principals.clear()

    def evict_idle(self, now: float | None = None) -> int:
        """Evict every idle principal (a full scan, for a periodic task); returns how many."""
        now_us = _now_us(now)
        idle = [p for p, s in self._principals.items() if s.idle_at_us <= now_us]
        for principal in idle:
            del self._principals[principal]
        self.evicted_idle += len(idle)
        return len(idle)

    def _add(self, principal: str) -> _Principal:
        state = self._principals[principal] = _Principal()
        return state

    def _full(self, now_us: int) -> _Principal | None:
        """With the table full: room for a newcomer (None) if an idle principal can leave,
        else the overflow window. Only the least recently used end is looked at (O(1)): with
        one window length it is the first to go idle."""
        principal, state = next(iter(self._principals.items()))
        if state.idle_at_us <= now_us:
            del self._principals[principal]
            self.evicted_idle += 1
            return None
        self.overflowed += 1
        return self._overflow

    def _sweep(self, now_us: int) -> None:
        principals = self._principals
        for _ in range(_SWEEP_PER_CALL):
            if not principals:
                return
            principal, state = next(iter(principals.items()))
            if state.idle_at_us > now_us:
                return
            del principals[principal]
            self.evicted_idle += 1


def _now_us(now: float | None) -> int:
    return round((time.time() if now is None else now) * 1_000_000)
