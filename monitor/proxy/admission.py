"""Admission: whether the request may reach us at all (its `Host`, its `Content-Type`), who is
asking (the principal), whether they may (API keys), and how often (rate limits and the token
budget). Runs before the body is read, so a refused request costs almost nothing.

The principal, strongest first:

- with `api_keys` configured, the key: matched on its full sha256 digest, in constant time
  against every configured key; its label is the digest's first 16 hex chars (public: stored
  with records, used in `rate_limits` and `/admin/usage`), never the key;
- else the `user_header` value, only when the peer is a `trusted_proxies` entry (anyone else
  could name any user and get a fresh window per name);
- else the client's address: the peer's, or, when the peer is a trusted proxy, the right-most
  `X-Forwarded-For` address that is not a trusted proxy (the left part of the header is
  whatever the client wrote). A bearer or `X-API-Key` value is not a principal without
  configured keys: any string would be a fresh window.

Refusals before the body is read (421 for a `Host` not allowed, 401, 429) are counted through
`on_refusal` and are not recorded: unauthenticated traffic must not grow the database.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable

from monitor.config import Settings
from monitor.config_types import RateLimit
from monitor.errors import (
    HostNotAllowed,
    ProxyError,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
)
from monitor.proxy.exchange import Scope
from monitor.proxy.ratelimit import (
    Decision,
    Quota,
    Quotas,
    RateLimiter,
    rate_limit_headers,
)
from monitor.proxy.ratelimit_memory import MemoryLimiter
from monitor.record import RequestRecord, utcnow

log = logging.getLogger(__name__)

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
_JSON = "application/json"
_HOSTS_REMEMBERED = 64
_COUNTED_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/api/chat",
        "/api/generate",
        "/v1/models",
        "/api/tags",
        "/v1/feedback",
        "/metrics",
    }
)


# error codes of refusals that are counted in metrics but never recorded
NOT_RECORDED = frozenset({Unauthorized.code, RateLimited.code, HostNotAllowed.code})


@functools.lru_cache(maxsize=4096)  # a client's address comes back with each of its requests
def principal_id(value: bytes) -> str:
    """The public label of a key, user or address: the first 16 hex chars of its sha256."""
    return hashlib.sha256(value).hexdigest()[:16]


class Admission:
    """Checks the host, API keys and rate limits for one request; refusals are raised as
    `ProxyError`s. `on_refusal` (set by the composition root) counts refused requests."""

    def __init__(self, settings: Settings, limiter: RateLimiter | None) -> None:
        # (full digest, label) per configured key; matched on the digest, labelled by the prefix
        self._keys = [
            (digest, digest.hex()[:16])
            for digest in (
                hashlib.sha256(key.get_secret_value().encode()).digest()
                for key in settings.api_keys
            )
        ]
        self._user_header = settings.user_header.lower().encode() if settings.user_header else None
        self._trusted = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in settings.trusted_proxies
        )
        self._hosts, self._host_suffixes = _host_rules(settings)
        self._hosts_seen: set[bytes] = set()  # raw Host values already found allowed
        self.limiter = limiter
        self.on_refusal: Callable[[RequestRecord], object] | None = None

    async def admit(
        self, scope: Scope, *, json_body: bool = False
    ) -> tuple[str | None, Decision | None]:
        """The request's principal and its rate-limit decision (None when limits are off).
        Checks, in order: the host, the key, the rate limit, then (`json_body`) the body's
        declared type, so that a refused media type still counts against the window."""
        try:
            headers = _Headers(scope["headers"], self._user_header)
            self._check_host(headers.host)
            principal = self._principal(scope, headers)
            decision = await self._acquire(principal)
        except ProxyError as error:
            self.refused(scope, error)
            raise
        if json_body:
            check_json_type(headers.content_type)
        return principal, decision

    @property
    def checks_host(self) -> bool:
        """Whether some `Host` names are refused (False: any is accepted)."""
        return self._hosts is not None

    def check_host(self, scope: Scope) -> None:
        """Raise `HostNotAllowed` (counted) for a `Host` outside `allowed_hosts`."""
        if self._hosts is None:
            return
        try:
            self._check_host(_Headers(scope["headers"], None).host)
        except ProxyError as error:
            self.refused(scope, error)
            raise

    def principal(self, scope: Scope) -> str | None:
        """The principal alone (no host check, no rate limit); raises `Unauthorized`."""
        return self._principal(scope, _Headers(scope["headers"], self._user_header))

    def refused(self, scope: Scope, error: ProxyError) -> None:
        """Count a refusal (a minimal record for the metrics; never stored)."""
        if self.on_refusal is None:
            return
        path = scope.get("path", "")
        record = RequestRecord(
            id="",
            ts=utcnow(),
            route=path if path in _COUNTED_ROUTES else "other",  # a bounded label set
            protocol="ollama" if path.startswith("/api/") else "openai",
            outcome=error.outcome,
            error_code=error.code,
            http_status=error.status,
        )
        self.on_refusal(record)

    async def charge(self, principal: str | None, tokens: int) -> None:
        if self.limiter is not None and principal is not None and tokens:
            await self.limiter.charge_tokens(principal, tokens)

    def _check_host(self, host: bytes | None) -> None:
        if self._hosts is None or host in self._hosts_seen:
            return
        name = _host_name(host)
        if name in self._hosts or any(name.endswith(s) for s in self._host_suffixes):
            if host is not None and len(self._hosts_seen) < _HOSTS_REMEMBERED:
                self._hosts_seen.add(bytes(host))  # the same few values on every request
            return
        raise HostNotAllowed(
            f"host {name[:100]!r} is not allowed here (allowed_hosts lists the names this "
            "monitor answers to)"
        )

    def _principal(self, scope: Scope, headers: _Headers) -> str | None:
        if self._keys:
            key = headers.key()
            if key is None:
                raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
            label = self._match(key)
            if label is None:
                raise Unauthorized("invalid API key")
            return label
        client = scope.get("client")
        peer = client[0] if client else None
        if not self._trusted or peer is None or not self._is_trusted(peer):
            return principal_id(peer.encode()) if peer else None
        if headers.user:
            return principal_id(headers.user)
        return principal_id(self._forwarded_for(headers.forwarded, peer).encode())

    def _match(self, key: bytes) -> str | None:
        """The label of the configured key `key` is, comparing full digests in constant time
        and against every key (no early exit: the time says nothing about which matched)."""
        digest = hashlib.sha256(key).digest()
        found = None
        for expected, label in self._keys:
            if hmac.compare_digest(digest, expected):
                found = label
        return found

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def _forwarded_for(self, values: list[bytes], peer: str) -> str:
        """The right-most X-Forwarded-For address that is not a trusted proxy (the left-most
        when all are): each proxy appends the address it saw, so only the part our own proxies
        wrote can be believed. The peer when there is no header."""
        hops = [h.strip() for v in values for h in v.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    async def _acquire(self, principal: str | None) -> Decision | None:
        if self.limiter is None or principal is None:
            return None
        decision = await self.limiter.acquire(principal)
        if not decision.allowed:
            error = RateLimited(
                f"rate limit exceeded: {decision.limit} requests per window; "
                f"retry in {max(1, round(decision.retry_after_s))}s"
                if decision.refused_by != "tokens"
                else "token budget exhausted for this window"
            )
            error.headers = rate_limit_headers(decision)
            raise error
        return decision


class _Headers:
    """The headers admission reads, found in one pass over the request's headers."""

    __slots__ = ("authorization", "content_type", "forwarded", "host", "user", "x_api_key")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]], user_header: bytes | None) -> None:
        self.host: bytes | None = None
        self.content_type: bytes | None = None
        self.authorization: bytes | None = None
        self.x_api_key: bytes | None = None
        self.user: bytes | None = None
        self.forwarded: list[bytes] = []
        for name, value in raw:
            if name == b"host":
                self.host = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"authorization":
                self.authorization = value
            elif name == b"x-api-key":
                self.x_api_key = value
            elif name == b"x-forwarded-for":
                self.forwarded.append(value)
            elif name == user_header:
                self.user = value

    def key(self) -> bytes | None:
        auth = self.authorization
        if auth and auth[:7].lower() == b"bearer " and len(auth) > 7:
            return bytes(auth[7:].strip())
        return bytes(self.x_api_key) if self.x_api_key is not None else None


def check_json_type(content_type: bytes | None) -> None:
    """Refuse (415) a body not declared `application/json` (parameters such as charset are
    fine). A missing type is refused too: a browser sends a body without one cross-origin
    without asking first, just as it does text/plain and form encodings."""
    if content_type == b"application/json":  # what nearly every client sends
        return
    if content_type is not None:
        media = content_type.split(b";", 1)[0].strip().lower()
        if media == b"application/json":
            return
        given = media.decode("latin-1")[:100]
    else:
        given = "none"
    raise UnsupportedMediaType(
        f"the body must be JSON with Content-Type: {_JSON} (got {given})", param="content-type"
    )


def _host_rules(settings: Settings) -> tuple[frozenset[str] | None, tuple[str, ...]]:
    """(exact names, `.suffix`es) the Host may name; None: any host."""
    entries = [h.strip().lower() for h in settings.allowed_hosts if h.strip()]
    if not entries:
        if settings.api_keys:
            return None, ()
        bind = settings.host.strip().lower()
        entries = [*_LOCAL_HOSTS, *([] if bind in _WILDCARD_BINDS else [bind])]
    if "*" in entries:
        return None, ()
    exact = {e.removeprefix("[").removesuffix("]") for e in entries if not e.startswith("*.")}
    suffixes = tuple(e[1:] for e in entries if e.startswith("*."))
    return frozenset(exact), suffixes


def _host_name(host: bytes | None) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower-case."""
    if not host:
        return ""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text[1:]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def build_limiter(settings: Settings) -> RateLimiter | None:
    """The configured limiter: Redis when `redis_url` is set, else in memory; None when off."""
    if not settings.rate_limit_enabled:
        return None
    budget = settings.token_budget
    default = Quota(
        RateLimit.parse(settings.rate_limit), RateLimit.parse(budget) if budget else None
    )
    overrides = {
        principal: Quota(RateLimit.parse(limit), default.tokens)
        for principal, limit in settings.rate_limits.items()
    }
    quotas = Quotas(default, overrides)
    if settings.redis_url:
        from monitor.proxy.ratelimit_redis import RedisLimiter

        return RateLimiter(
            RedisLimiter.from_url(settings.redis_url, fail_open=settings.rate_limit_fail_open),
            quotas,
        )
    return RateLimiter(MemoryLimiter(), quotas)
