"""The `guard` scorer: a safety score read from the guard's verdicts on a request.

The guard's findings are the real safety signal (the heuristic's word list is for parity with
the seed). Each finding's action costs the request some safety; the score is one minus the
highest cost among its findings, input and output stages alike:

=========  ====  =====================================================================
action     cost  meaning
=========  ====  =====================================================================
allow      0.0   a near miss below its threshold: noticed, not acted on
flag       0.25  something to look at, let through
redact     0.5   personal data or a secret was in the text and was removed
block      1.0   refused (only an incremental stream cut short can still be `ok`)
=========  ====  =====================================================================

A request without findings scores 1.0. Pure: reads `Verdict.as_dict()` dicts as the record
holds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ACTION_COST = {"allow": 0.0, "flag": 0.25, "redact": 0.5, "block": 1.0}


def guard_safety(verdicts: Iterable[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """The safety score (0..1) and a detail naming the strongest action and what found it."""
    worst, rule, count = 0.0, None, 0
    for verdict in verdicts:
        for finding in verdict.get("findings") or ():
            cost = ACTION_COST.get(str(finding.get("action")), 0.0)
            if cost > 0:
                count += 1
            if cost > worst:
                worst, rule = cost, finding.get("rule")
    action = next(a for a, c in ACTION_COST.items() if c == worst)
    return 1.0 - worst, {"action": action, "rule": rule, "findings": count}
