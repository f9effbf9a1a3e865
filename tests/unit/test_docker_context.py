"""The Docker build context leaves out local configuration, secrets and data.

`.dockerignore` is read with Docker's rules (Go's `filepath.Match` per path segment, `**` for
any number of them; a pattern that matches a directory leaves out all under it), written
here small rather than depending on Docker in the unit tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _patterns() -> list[re.Pattern[str]]:
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "an exception would need the full rules"
        parts = []
        for segment in line.strip("/").split("/"):
            if segment == "**":
                parts.append("(?:[^/]+/)*")
                continue
            glob = re.escape(segment).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            parts.append(glob + "/")
        patterns.append(re.compile("".join(parts)[:-1] + "$"))
    return patterns


def _ignored(path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(p.match(prefix) for p in _patterns() for prefix in prefixes)


@pytest.mark.parametrize(
    "path",
    [
        "monitor.yaml",
        "deploy/monitor.yaml",
        ".env",
        ".env.production",
        "var/spool/segment-000000000001.jsonl",
        "var/spool/hash.key",
        "gemma-monitor.db",
        "var/gemma-monitor.db",
        "data/monitor.db-wal",
    ],
)
def test_local_configuration_secrets_and_data_stay_out_of_the_image(path: str) -> None:
    assert _ignored(path)


@pytest.mark.parametrize(
    "path", ["monitor/app.py", "monitor.example.yaml", "policies/default.yaml", "pyproject.toml"]
)
def test_what_the_image_is_built_from_goes_in(path: str) -> None:
    assert not _ignored(path)
