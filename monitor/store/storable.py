"""Making a request row storable whatever the client sent: every record is kept.

A client chooses many of a record's values: the model name, the user header (the principal),
the prompt, and through the backend the response. Postgres refuses some of them outright: a NUL
character anywhere in text or JSON, a lone surrogate (not encodable as UTF-8), a value longer
than its `varchar(n)`, a huge model name (its btree index entry must fit in a page). A refused
row goes to `rejected.jsonl` and the request never reaches summaries or alerts, so a client
could hide its requests by choosing such values.

`make_storable(row)` replaces refused characters with U+FFFD (visible: something was there)
and cuts labels to their column's width; content columns (`Text`) are cleaned, not cut. It
runs in the recorder's thread on every row built from a record or read back from the spool.
A row whose values are already clean (nearly all) is left as it is, for about 1 µs.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson
from sqlalchemy import String, Text

from monitor.store.models import requests_table

REPLACEMENT: Final = "\ufffd"
# Width of a label column declared without one (model, route, backend): long enough for any
# real name, short enough for an index entry.
LABEL_CHARS: Final = 256
_REFUSED: Final = re.compile("[\x00\ud800-\udfff]")


# Set by the proxy itself, never from what a client or the backend sent.
_OWN_COLUMNS: Final = frozenset({"id", "protocol", "outcome", "prompt_hash", "response_hash"})


def _text_columns() -> tuple[tuple[str, int | None], ...]:
    """(name, longest value or None) of each text column of `requests` a client or the
    backend can fill."""
    out: list[tuple[str, int | None]] = []
    for column in requests_table.columns:
        if column.name in _OWN_COLUMNS:
            continue
        if isinstance(column.type, Text):
            out.append((column.name, None))
        elif isinstance(column.type, String):
            out.append((column.name, column.type.length or LABEL_CHARS))
    return tuple(out)


TEXT_COLUMNS: Final = _text_columns()


def storable_text(value: str, limit: int | None = None) -> str:
    """`value` without the characters Postgres refuses, and at most `limit` characters."""
    # ASCII without NUL (nearly every value) is checked at memchr speed; the rest is scanned
    if not (value.isascii() and "\x00" not in value) and _REFUSED.search(value) is not None:
        value = _REFUSED.sub(REPLACEMENT, value)
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return value


def make_storable(row: dict[str, Any]) -> dict[str, Any]:
    """`row`, changed in place where a value would be refused (see the module docstring)."""
    for name, limit in TEXT_COLUMNS:
        value = row.get(name)
        if type(value) is str and (
            not (value.isascii() and "\x00" not in value)  # storable_text's test, inlined
            or (limit is not None and len(value) > limit)
        ):
            row[name] = storable_text(value, limit)
    for name in ("extra", "verdicts"):  # JSON: empty in the common case
        value = row.get(name)
        if value:
            row[name] = storable_json(value)
    return row


def storable_json(value: Any) -> Any:
    """A JSON value with every string in it (keys too) made storable; `value` itself when
    nothing in it needs it (told by orjson, which refuses surrogates and escapes NUL, in a
    fraction of a walk's time)."""
    try:
        if b"\\u0000" not in orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS):
            return value
    except TypeError:
        pass
    return _cleaned_json(value)


def _cleaned_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {
            storable_text(k) if isinstance(k, str) else k: _cleaned_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_cleaned_json(item) for item in value]
    return value
