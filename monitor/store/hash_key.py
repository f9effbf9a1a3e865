"""The key of the prompt and response hashes stored with each record.

A record's `prompt_hash` and `response_hash` let an operator find repeated prompts and answers
without storing them. Unkeyed, a hash of a short prompt (or of the personal data a redaction
took out) is recovered by hashing guesses; keyed (HMAC-SHA256, `monitor.record.TextHasher`),
it says nothing without the key.

The key is the `hash_key` setting when given (give several replicas the same one, so their
hashes compare). Otherwise a random key is made at the first start and kept beside the spool,
in `hash.key` (owner-only), so hashes stay comparable across restarts; losing the file only
means hashes from before and after no longer match.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from monitor.config import Settings

logger = logging.getLogger(__name__)

HASH_KEY_FILE = "hash.key"
KEY_BYTES = 32


def text_hash_key(settings: Settings) -> bytes:
    """The configured key, or the one kept in the spool directory (made if missing)."""
    if settings.hash_key is not None:
        return settings.hash_key.get_secret_value().encode()
    return load_or_create_key(Path(settings.spool_dir) / HASH_KEY_FILE)


def load_or_create_key(path: Path) -> bytes:
    """The key stored at `path` (hex), or a new random one written there, owner-only.

    Written to a temporary file and linked into place, so a reader never sees half a key and
    two processes starting at once agree on one. Raises ValueError for a file that is not a key.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_hex(KEY_BYTES).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
        logger.info("made a new key for prompt and response hashes in %s", path)
    except FileExistsError:
        pass  # another process was first: use its key
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError(f"{path} does not hold a hash key (64 hex digits); remove it to make one")
    return key
