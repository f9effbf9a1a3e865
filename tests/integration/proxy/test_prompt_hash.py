"""The stored prompt and response hashes: keyed (HMAC-SHA256), of what was forwarded."""

from __future__ import annotations

import hashlib
import hmac
import stat
from collections.abc import Callable

import httpx

from monitor.store.hash_key import HASH_KEY_FILE
from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy


def _hmac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _chat(proxy: RunningProxy, content: str) -> str:
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "gemma-3-270m", "messages": [{"role": "user", "content": content}]},
    )
    assert resp.status_code == 200
    return resp.headers["x-request-id"]


def test_hashes_are_keyed_and_cannot_be_checked_against_guesses(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend
) -> None:
    proxy = make_proxy()
    first, second = (proxy.record(_chat(proxy, "Hello there")) for _ in range(2))
    assert first.prompt_hash == second.prompt_hash  # equal prompts, equal hashes
    assert first.prompt_hash != hashlib.sha256(b"Hello there").hexdigest()

    key_file = proxy.settings.spool_dir / HASH_KEY_FILE  # made at the first start
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text())
    assert first.prompt_hash == _hmac(key, "Hello there")
    assert first.response_hash == _hmac(key, "tok0 tok1 tok2 ")


def test_the_hash_is_of_the_prompt_as_forwarded_after_redaction(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend
) -> None:
    proxy = make_proxy(hash_key="k" * 32)
    alice = proxy.record(_chat(proxy, "Write to me at alice.smith@example.com please"))
    forwarded = fake_backend.last.body["messages"][0]["content"]
    assert "alice.smith@example.com" not in forwarded  # the default policy redacts emails
    bob = proxy.record(_chat(proxy, "Write to me at bob@example.org please"))

    assert alice.prompt_hash == _hmac(b"k" * 32, forwarded)  # the configured key
    assert alice.prompt_hash == bob.prompt_hash  # the redacted address is not in the hash


def test_the_key_made_at_first_start_is_kept_across_restarts(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend
) -> None:
    first = make_proxy()
    before = first.record(_chat(first, "Hello there")).prompt_hash
    first.stop()
    again = make_proxy(spool_dir=first.settings.spool_dir, database_url=first.settings.database_url)
    assert again.record(_chat(again, "Hello there")).prompt_hash == before
