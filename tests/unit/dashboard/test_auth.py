"""The login without Streamlit: password and hash checks, session tokens, the throttle."""

from __future__ import annotations

import pytest
from monitor.dashboard import auth

from monitor.config import Settings
from monitor.passwords import PasswordHashError, hash_password, parse_hash, verify_password


def test_a_hash_verifies_its_password_only() -> None:
    encoded = hash_password("s3cret", iterations=1000)
    assert encoded.startswith("pbkdf2_sha256$1000$")
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)


@pytest.mark.parametrize("bad", ["", "s3cret", "pbkdf2_sha256$x$00$11", "md5$1$00$" + "0" * 32])
def test_a_malformed_hash_is_refused(bad: str) -> None:
    with pytest.raises(PasswordHashError):
        parse_hash(bad)


def test_the_settings_refuse_a_malformed_hash() -> None:
    with pytest.raises(ValueError, match="pbkdf2_sha256"):
        Settings(dashboard={"password_hash": "plain-text"})


def test_the_password_or_its_hash_signs_in() -> None:
    plain = Settings(dashboard_password="letmein-please")
    hashed = Settings(dashboard={"password_hash": hash_password("letmein-please", iterations=1000)})
    for settings in (plain, hashed):
        assert auth.login_configured(settings)
        assert auth.check_password(settings, "letmein-please")
        assert not auth.check_password(settings, "letmein")
    nothing = Settings()
    assert not auth.login_configured(nothing)
    assert not auth.check_password(nothing, "")
    assert auth.signing_key(nothing) is None


def test_a_token_is_valid_until_it_expires_and_only_under_its_key() -> None:
    key = auth.signing_key(Settings(dashboard_password="one-password"))
    other = auth.signing_key(Settings(dashboard_password="another-password"))
    assert key is not None and other is not None
    token = auth.issue_token(key, now=1000.0, ttl_s=60)
    assert auth.token_valid(key, token, now=1059.0)
    assert not auth.token_valid(key, token, now=1060.0)
    assert not auth.token_valid(other, token, now=1000.0)  # a changed password ends sessions
    expiry, nonce, signature = token.split(".")
    forged = f"{int(expiry) + 3600}.{nonce}.{signature}"
    assert not auth.token_valid(key, forged, now=1000.0)
    for junk in (None, "", "a.b", "x.y.z", token + "."):
        assert not auth.token_valid(key, junk, now=1000.0)


def test_failed_logins_make_each_next_attempt_wait_longer() -> None:
    waits: list[float] = []
    throttle = auth.LoginThrottle(sleep=waits.append)
    settings = Settings(dashboard_password="right-password")
    for _ in range(8):
        assert not throttle.attempt(settings, "wrong")
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert throttle.attempt(settings, "right-password")
    assert throttle.failures == 0
    assert not throttle.attempt(settings, "wrong")
    assert waits[-1] == 30.0 and len(waits) == 8  # the success waited; this one did not
