"""The signature check README.md gives receivers verifies what the outbox signs."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from monitor.alerts.signing import signature_header

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_verify() -> Any:
    text = README.read_text(encoding="utf-8")
    (code,) = [
        block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify(" in block
    ]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["verify"]


def test_the_readme_receiver_check_accepts_ours_and_rejects_tampering() -> None:
    verify = readme_verify()
    body = b'{"alert":"low_success_rate","state":"firing"}'
    now = int(time.time())
    header = signature_header(body, "s3cret", now)
    assert verify(body, header, "s3cret")
    assert not verify(body + b" ", header, "s3cret")
    assert not verify(body, header, "other")
    assert not verify(body, signature_header(body, "s3cret", now - 3600), "s3cret")
