"""The guard: policies, deterministic rules and verdicts. Pure code: no web, HTTP or database.

policy = load_policy("policies/default.yaml")
guard = Guard(policy)
verdict = guard.check_input(messages)   # or guard.check_output(text)
if verdict.blocked: ...                 # a normal result, never an exception
"""

from monitor.guard.engine import Guard
from monitor.guard.loader import PolicyError, load_policies, load_policy, parse_policy
from monitor.guard.policy import Policy
from monitor.guard.verdict import Action, Finding, Stage, Verdict

__all__ = [
    "Action",
    "Finding",
    "Guard",
    "Policy",
    "PolicyError",
    "Stage",
    "Verdict",
    "load_policies",
    "load_policy",
    "parse_policy",
]
