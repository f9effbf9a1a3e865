"""The hash key kept beside the spool: made once, owner-only, the same on every start."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest

from monitor.config import Settings
from monitor.record import TextHasher
from monitor.store.hash_key import HASH_KEY_FILE, load_or_create_key, text_hash_key


def test_a_key_is_made_once_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "spool" / HASH_KEY_FILE
    old = os.umask(0)
    try:
        key = load_or_create_key(path)
    finally:
        os.umask(old)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key  # as after a restart
    assert [p.name for p in path.parent.iterdir()] == [HASH_KEY_FILE]  # no temporary left


def test_a_file_that_is_not_a_key_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / HASH_KEY_FILE
    path.write_text("not a key")
    with pytest.raises(ValueError, match="does not hold a hash key"):
        load_or_create_key(path)


def test_the_setting_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings(spool_dir=tmp_path, hash_key="s" * 32)  # type: ignore[arg-type]
    assert text_hash_key(settings) == b"s" * 32
    assert not (tmp_path / HASH_KEY_FILE).exists()


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 32, b"k" * 64, b"k" * 100])
@pytest.mark.parametrize("text", ["", "hello", "é" * 1000])
def test_the_text_hash_is_hmac_sha256(key: bytes, text: str) -> None:
    expected = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    assert TextHasher(key)(text) == TextHasher(key)(text) == expected


def test_the_text_hash_depends_on_the_key() -> None:
    assert TextHasher(b"a" * 32)("hello") != TextHasher(b"b" * 32)("hello")
    assert len(TextHasher(b"a" * 32)("lone \ud800")) == 64  # any text the proxy may see
