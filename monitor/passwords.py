"""Password hashes for the dashboard login: PBKDF2-HMAC-SHA256 from the standard library.

A hash is written ``pbkdf2_sha256$<iterations>$<salt, hex>$<derived key, hex>``, the layout
Django and passlib use, so a hash made elsewhere with the same parameters works here too. Make
one with ``gemma-monitor dashboard --hash-password`` (it asks for the password), or::

    python -c "from monitor.passwords import hash_password as h; import getpass; print(h(getpass.getpass()))"

and set it as ``MONITOR_DASHBOARD__PASSWORD_HASH`` (or ``dashboard: {password_hash: ...}``).
Checks are constant-time (`hmac.compare_digest`), whether against a hash or a plain password.
"""

from __future__ import annotations

import hashlib
import hmac
import os

SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
_SALT_BYTES = 16


class PasswordHashError(ValueError):
    """Raised for a string that is not a hash in the format above."""


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${key.hex()}"


def parse_hash(encoded: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, derived key) of a hash; `PasswordHashError` when it is malformed."""
    parts = encoded.strip().split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise PasswordHashError(f"expected {SCHEME}$<iterations>$<salt hex>$<key hex>")
    try:
        iterations, salt, key = int(parts[1]), bytes.fromhex(parts[2]), bytes.fromhex(parts[3])
    except ValueError as exc:
        raise PasswordHashError(f"malformed {SCHEME} hash: {exc}") from None
    if iterations < 1 or not salt or len(key) < 16:
        raise PasswordHashError(f"malformed {SCHEME} hash: iterations, salt or key missing")
    return iterations, salt, key


def verify_password(password: str, encoded: str) -> bool:
    iterations, salt, key = parse_hash(encoded)
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, len(key))
    return hmac.compare_digest(candidate, key)


def matches(password: str, *, plain: str | None, encoded: str | None) -> bool:
    """Whether `password` is the configured one: the hash when there is one, else the plain
    password; False when neither is configured."""
    if encoded:
        return verify_password(password, encoded)
    if plain is None:
        return False
    return hmac.compare_digest(password.encode(), plain.encode())
