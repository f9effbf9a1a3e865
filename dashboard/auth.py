"""The dashboard's login, without Streamlit: password check, session tokens, the throttle.

A login gives a session token, ``<expiry>.<nonce>.<signature>``: the expiry in Unix seconds,
16 random hex characters, and an HMAC-SHA256 over both under a key derived from the configured
password (or its hash). The token is kept in the session and in the page's URL (`?auth=`), so
it survives moving between pages and a browser reload until it expires; Streamlit cannot set
a cookie. Changing the password invalidates every token. The password itself is compared in
constant time and never kept.

Failed logins slow down every later attempt, process-wide (a new browser tab does not reset
it): after n consecutive failures an attempt waits `delay_after(n)` seconds before its check,
doubling up to `MAX_DELAY_S`; a successful login resets the count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.config import Settings
from monitor.passwords import matches

TOKEN_PARAM = "auth"
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0


def login_configured(settings: Settings) -> bool:
    return settings.dashboard_password is not None or settings.dashboard.password_hash is not None


def check_password(settings: Settings, password: str) -> bool:
    plain = settings.dashboard_password
    return matches(
        password,
        plain=plain.get_secret_value() if plain is not None else None,
        encoded=settings.dashboard.password_hash,
    )


def signing_key(settings: Settings) -> bytes | None:
    """The key tokens are signed with; None when no login is configured."""
    if settings.dashboard.password_hash is not None:
        material = settings.dashboard.password_hash
    elif settings.dashboard_password is not None:
        material = settings.dashboard_password.get_secret_value()
    else:
        return None
    return hashlib.sha256(b"gemma-monitor dashboard session\0" + material.encode()).digest()


def issue_token(key: bytes, now: float, ttl_s: float) -> str:
    payload = f"{int(now + ttl_s)}.{secrets.token_hex(8)}"
    return f"{payload}.{_sign(key, payload)}"


def token_valid(key: bytes, token: str | None, now: float) -> bool:
    """Whether `token` was issued under `key` and has not expired."""
    if not token or token.count(".") != 2:
        return False
    payload, _, signature = token.rpartition(".")
    if not hmac.compare_digest(_sign(key, payload), signature):
        return False
    expiry = payload.split(".", 1)[0]
    return expiry.isdigit() and int(expiry) > now


def _sign(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def delay_after(failures: int) -> float:
    """Seconds an attempt waits after `failures` consecutive failed ones."""
    if failures <= 0:
        return 0.0
    return min(FIRST_DELAY_S * 2 ** (failures - 1), MAX_DELAY_S)


@dataclass
class LoginThrottle:
    """Consecutive failed logins of this process, and the wait they impose."""

    sleep: Callable[[float], None] = time.sleep
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attempt(self, settings: Settings, password: str) -> bool:
        """Wait as the failures so far require, then check `password`."""
        with self._lock:
            wait = delay_after(self.failures)
        if wait:
            self.sleep(wait)
        ok = check_password(settings, password)
        with self._lock:
            self.failures = 0 if ok else self.failures + 1
        return ok
