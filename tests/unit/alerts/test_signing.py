"""HMAC-SHA256 webhook signatures: what receivers accept and what they reject."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from monitor.alerts.signing import compute_signature, signature_header, verify_signature

BODY = b'{"alert":"high_response_time","state":"firing"}'
SECRET = "whsec_test"
T = 1_700_000_000


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(BODY, SECRET, T) == expected
    assert signature_header(BODY, SECRET, T) == f"t={T},v1={expected}"


def test_valid_signature_verifies() -> None:
    assert verify_signature(BODY, signature_header(BODY, SECRET, T), SECRET, now=T + 10)


def test_tampered_body_is_rejected() -> None:
    header = signature_header(BODY, SECRET, T)
    assert not verify_signature(BODY.replace(b"firing", b"resolved"), header, SECRET, now=T)
    assert not verify_signature(BODY + b" ", header, SECRET, now=T)


def test_wrong_secret_is_rejected() -> None:
    header = signature_header(BODY, SECRET, T)
    assert not verify_signature(BODY, header, "another secret", now=T)


def test_stale_or_future_timestamp_is_rejected_as_a_replay() -> None:
    header = signature_header(BODY, SECRET, T)
    assert verify_signature(BODY, header, SECRET, tolerance_s=300, now=T + 300)
    assert not verify_signature(BODY, header, SECRET, tolerance_s=300, now=T + 301)
    assert not verify_signature(BODY, header, SECRET, tolerance_s=300, now=T - 301)


def test_a_replayed_body_with_a_new_timestamp_does_not_verify() -> None:
    old = signature_header(BODY, SECRET, T).split(",v1=")[1]
    forged = f"t={T + 3600},v1={old}"
    assert not verify_signature(BODY, forged, SECRET, now=T + 3600)


def test_any_of_several_v1_signatures_may_match_during_rotation() -> None:
    header = f"t={T},v1={compute_signature(BODY, 'old', T)},v1={compute_signature(BODY, SECRET, T)}"
    assert verify_signature(BODY, header, SECRET, now=T)
    assert verify_signature(BODY, header, "old", now=T)
    assert not verify_signature(BODY, header, "neither", now=T)


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", f"t={T}", "v1=abc", f"t=soon,v1={'0' * 64}", f"t={T};v1=abc",
     f"t={T},v1=é"],
)  # fmt: skip
def test_missing_or_malformed_header_is_rejected(header: str | None) -> None:
    assert not verify_signature(BODY, header, SECRET, now=T)


def test_default_now_is_the_current_time() -> None:
    import time

    now = int(time.time())
    assert verify_signature(BODY, signature_header(BODY, SECRET, now), SECRET)
    assert not verify_signature(BODY, signature_header(BODY, SECRET, now - 3600), SECRET)
