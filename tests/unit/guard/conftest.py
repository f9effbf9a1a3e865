from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_shieldgemma2 import build_tiny_shieldgemma2


@pytest.fixture(scope="session")
def tiny_shieldgemma2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a tiny ShieldGemma 2 (random weights), built once per session."""
    return build_tiny_shieldgemma2(tmp_path_factory.mktemp("tiny-shieldgemma2"))
