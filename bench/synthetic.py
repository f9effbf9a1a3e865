"""A month of synthetic traffic for a Gemma Monitor store: the requests `fill_store.py` writes.

Deterministic for a seed. Every row is a plain dict keyed by column name, ready for an insert
into its table (`monitor.store.models`):

- requests follow a daily curve (quiet at 03:00 UTC, busy at 15:00, weekends at about half),
  spread over four Gemma models on two backends and fifty principals (a few heavy, many light);
  outcomes are mostly `ok`, with blocked, invalid, rate-limited, failed and aborted requests at
  the rates a busy deployment sees; latencies, time to first token, inter-token latency and
  tokens/s follow the model's size and the load of the hour;
- guard verdicts for every blocked, redacted and flagged request, and ShieldGemma verdicts
  (with their scores) for the requests under the `shieldgemma` policy;
- quality scores for a sample of answers (heuristic, embedding, judge, user feedback);
- incidents at fixed points of the span (a backend down, a slow hour, a burst of blocked
  prompts, a hot GPU, GPU memory high until the end), which show in the requests here and in
  the probes and alerts of `operations.py`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

Row = dict[str, Any]

# name, share of traffic, backend, tokens/s when idle, prefill ms per prompt token
MODELS = (
    ("gemma-3-27b-it", 0.35, "vllm-main", 38.0, 0.45),
    ("gemma-3-12b-it", 0.30, "vllm-main", 65.0, 0.25),
    ("gemma-3-4b-it", 0.25, "llamacpp-edge", 110.0, 0.12),
    ("gemma-3-270m", 0.10, "llamacpp-edge", 320.0, 0.03),
)
BACKENDS = ("vllm-main", "llamacpp-edge")
ROUTES = (  # route, protocol, share
    ("/v1/chat/completions", "openai", 0.70),
    ("/v1/completions", "openai", 0.10),
    ("/api/chat", "ollama", 0.15),
    ("/api/generate", "ollama", 0.05),
)
# outcome, share in normal operation
OUTCOMES = (
    ("ok", 0.9555),
    ("blocked_input", 0.012),
    ("blocked_output", 0.004),
    ("invalid", 0.010),
    ("rate_limited", 0.006),
    ("backend_error", 0.0075),
    ("client_abort", 0.005),
)
ERRORS = {  # outcome -> (error code, HTTP status)
    "blocked_input": ("CONTENT_FILTERED", 400),
    "blocked_output": ("RESPONSE_FILTERED", 400),
    "invalid": ("VALIDATION_ERROR", 400),
    "rate_limited": ("RATE_LIMIT_EXCEEDED", 429),
    "backend_error": ("GENERATION_ERROR", 502),
    "client_abort": (None, 499),
}
PRINCIPALS = 50
SHIELDGEMMA_SHARE = 0.2  # of requests, under the `shieldgemma` policy
HARMS = ("dangerous_content", "harassment", "hate_speech", "sexually_explicit")
INPUT_BLOCKS = (  # rule, category, check: the rules engine's refusals
    ("injection.ignore_previous", "injection", "injection"),
    ("injection.jailbreak", "injection", "injection"),
    ("secret.aws_key", "secret", "pii"),
    ("length.max_chars", "length", "length"),
    ("markup.script", "markup", "sanitize"),
    ("denylist.mass_harm", "weapons", "mass-harm"),
)
REDACTIONS = ("pii.email", "pii.phone", "pii.card", "pii.iban")
QUALITY_SAMPLE = 0.05  # of ok answers scored by the heuristic, guard and embedding scorers
JUDGE_SAMPLE = 0.01
FEEDBACK_SAMPLE = 0.005


@dataclass(frozen=True)
class Incident:
    """A stretch of time where something went wrong, seen in requests, probes and alerts."""

    kind: str  # backend_down, slow, gpu_hot, blocked_burst
    start: datetime
    end: datetime
    backend: str | None = None


@dataclass
class Month:
    """The shape of the generated span: its start, length and incidents."""

    start: datetime
    minutes: int
    incidents: list[Incident] = field(default_factory=list)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)

    def active(self, ts: datetime) -> list[Incident]:
        return [i for i in self.incidents if i.start <= ts < i.end]


def plan(start: datetime, days: float) -> Month:
    """The span and its incidents, at fixed fractions of it (so a shorter span has them too)."""
    minutes = max(1, int(days * 24 * 60))
    month = Month(start, minutes)

    def at(fraction: float, length: timedelta, kind: str, backend: str | None = None) -> None:
        begin = start + timedelta(minutes=int(minutes * fraction))
        end = min(begin + length, month.end)
        month.incidents.append(Incident(kind, begin, end, backend))

    at(0.31, timedelta(minutes=25), "backend_down", "llamacpp-edge")
    at(0.55, timedelta(hours=2), "slow", "vllm-main")
    at(0.72, timedelta(minutes=40), "blocked_burst")
    at(0.86, timedelta(minutes=35), "gpu_hot")
    at(0.985, timedelta(days=1), "gpu_memory_high")  # still going at the end: a firing alert
    return month


def load(ts: datetime) -> float:
    """Relative traffic at a moment: a daily curve, weekends lower."""
    hour = ts.hour + ts.minute / 60
    daily = 0.2 + 0.8 * (0.5 - 0.5 * math.cos(2 * math.pi * (hour - 3) / 24)) ** 1.5
    return daily * (0.55 if ts.weekday() >= 5 else 1.0)


def minute_counts(month: Month, records: int, rng: random.Random) -> list[int]:
    """How many requests each minute holds: `records` in all, shaped by `load` (with noise)."""
    weights = [
        load(month.start + timedelta(minutes=m)) * rng.lognormvariate(0, 0.15)
        for m in range(month.minutes)
    ]
    total = sum(weights)
    counts, cumulative, placed = [], 0.0, 0
    for w in weights:
        cumulative += w
        upto = round(records * cumulative / total)
        counts.append(upto - placed)
        placed = upto
    return counts


class Traffic:
    """Generates the rows of `month`; call `requests` first (quality and alerts follow it)."""

    def __init__(self, month: Month, records: int, seed: int) -> None:
        self.month = month
        self.records = records
        self.rng = random.Random(seed)
        weights = [1 / (i + 1) ** 1.1 for i in range(PRINCIPALS)]
        self.principals = [f"{self.rng.getrandbits(64):016x}" for _ in range(PRINCIPALS)]
        self.principal_weights = weights
        self.model_weights = [m[1] for m in MODELS]
        self.route_weights = [r[2] for r in ROUTES]
        self.outcome_names = [o[0] for o in OUTCOMES]
        self.outcome_weights = [o[1] for o in OUTCOMES]
        self.quality: list[Row] = []

    # --- requests and their verdicts ----------------------------------------------------------

    def requests(self, batch: int) -> Iterator[tuple[list[Row], list[Row]]]:
        """Batches of (request rows, guard verdict rows), in time order."""
        rng = self.rng
        counts = minute_counts(self.month, self.records, rng)
        rows: list[Row] = []
        verdicts: list[Row] = []
        for m, count in enumerate(counts):
            if not count:
                continue
            minute = self.month.start + timedelta(minutes=m)
            incidents = self.month.active(minute)
            offsets = sorted(rng.random() * 60 for _ in range(count))
            busy = load(minute)
            for offset in offsets:
                ts = minute + timedelta(seconds=offset)
                row, row_verdicts = self._request(ts, busy, incidents)
                rows.append(row)
                verdicts.extend(row_verdicts)
                if len(rows) >= batch:
                    yield rows, verdicts
                    rows, verdicts = [], []
        if rows:
            yield rows, verdicts

    def _request(
        self, ts: datetime, busy: float, incidents: list[Incident]
    ) -> tuple[Row, list[Row]]:
        rng = self.rng
        model, _, backend, idle_tps, prefill_ms = rng.choices(MODELS, self.model_weights)[0]
        route, protocol, _ = rng.choices(ROUTES, self.route_weights)[0]
        outcome = rng.choices(self.outcome_names, self.outcome_weights)[0]
        slow = 1.0
        policy = "shieldgemma" if rng.random() < SHIELDGEMMA_SHARE else "default"
        for incident in incidents:
            if incident.kind == "backend_down" and backend == incident.backend:
                outcome = "backend_error" if rng.random() < 0.9 else outcome
            elif incident.kind == "slow" and backend == incident.backend:
                slow = 9.0
            elif incident.kind == "blocked_burst" and rng.random() < 0.15:
                outcome = "blocked_input"
        request_id = f"{rng.getrandbits(128):032x}"
        chat = route in ("/v1/chat/completions", "/api/chat")
        stream = chat and rng.random() < 0.55
        prompt_tokens = min(8000, int(rng.lognormvariate(5.4, 0.9)) + 8)
        completion_tokens = min(4096, int(rng.lognormvariate(4.9, 0.8)) + 1)
        # Slower under load: up to a third at the busiest hour, far more in a slow incident.
        tps = idle_tps * rng.lognormvariate(0, 0.2) / (1 + 0.35 * busy) / slow
        ttft = (
            (40 + prompt_tokens * prefill_ms * (1 + 0.5 * busy)) * slow * rng.lognormvariate(0, 0.3)
        )
        guard_ms = rng.lognormvariate(0.4, 0.5)
        if policy == "shieldgemma":
            guard_ms += rng.lognormvariate(3.6, 0.35)  # the classifier, ~40 ms
        error_code, status = ERRORS.get(outcome, (None, 200))
        row: Row = {
            "id": request_id,
            "ts": ts,
            "route": route,
            "protocol": protocol,
            "model": model,
            "backend": backend,
            "principal": rng.choices(self.principals, self.principal_weights)[0],
            "stream": stream,
            "outcome": outcome,
            "error_code": error_code,
            "http_status": status,
            "latency_ms": None,
            "ttft_ms": None,
            "itl_ms": None,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": None,
            "tokens_estimated": protocol == "ollama" and rng.random() < 0.3,
            "tokens_per_s": None,
            "input_chars": prompt_tokens * 4 + rng.randrange(4),
            "input_messages": rng.randint(1, 9) if chat else 1,
            "guard_ms": round(guard_ms, 3),
            "prompt_hash": f"{rng.getrandbits(256):064x}",
            "response_hash": None,
            "prompt_text": None,
            "response_text": None,
            "extra": {"policy": policy},
        }
        verdicts: list[Row] = []
        if outcome == "ok" or outcome == "client_abort" or outcome == "blocked_output":
            if outcome != "ok":  # cut short: by the client, or by the output guard
                completion_tokens = max(1, int(completion_tokens * rng.random()))
            generation_ms = completion_tokens / tps * 1000
            row["ttft_ms"] = round(ttft, 2) if stream or outcome == "ok" else None
            row["itl_ms"] = round(1000 / tps, 3) if stream else None
            row["latency_ms"] = round(ttft + generation_ms + guard_ms, 2)
            row["completion_tokens"] = completion_tokens
            row["tokens_per_s"] = round(tps, 2)
            row["response_hash"] = f"{rng.getrandbits(256):064x}"
        elif outcome == "backend_error":
            timeout = rng.random() < 0.2
            row["http_status"] = 504 if timeout else 502
            row["latency_ms"] = round(
                30_000 + rng.random() * 50 if timeout else rng.lognormvariate(4, 1), 2
            )
        else:  # refused before the backend: the guard, validation or the token budget
            row["latency_ms"] = round(guard_ms + rng.lognormvariate(0, 0.5), 2)
            if outcome == "invalid":
                row["prompt_tokens"] = None
                row["model"] = None if rng.random() < 0.3 else model
        verdicts.extend(self._verdicts(row, policy))
        if outcome == "ok":
            self._maybe_score(row)
        return row, verdicts

    def _verdicts(self, row: Row, policy: str) -> list[Row]:
        rng, outcome = self.rng, row["outcome"]
        out: list[Row] = []
        classifier = "rules+shieldgemma" if policy == "shieldgemma" else "rules"
        if outcome in ("invalid", "rate_limited"):
            return out
        input_findings: list[Row] = []
        input_action = "allow"
        if outcome == "blocked_input":
            if policy == "shieldgemma" and rng.random() < 0.6:
                harm = rng.choice(HARMS)
                input_findings.append(
                    _finding(
                        f"shieldgemma.{harm}",
                        harm,
                        "block",
                        "shieldgemma",
                        score=0.5 + 0.5 * rng.random(),
                    )
                )
            else:
                rule, category, check = rng.choice(INPUT_BLOCKS)
                input_findings.append(_finding(rule, category, "block", check, span=True))
            input_action = "block"
        elif rng.random() < 0.03:
            rule = rng.choice(REDACTIONS)
            input_findings.append(_finding(rule, "pii", "redact", "pii", span=True))
            input_action = "redact"
        elif rng.random() < 0.01:
            input_findings.append(
                _finding(
                    "injection.jailbreak",
                    "injection",
                    "flag",
                    "injection",
                    score=0.6 + 0.2 * rng.random(),
                )
            )
            input_action = "flag"
        if policy == "shieldgemma" and input_action != "block":
            input_findings.extend(self._near_misses("input"))
        if input_findings or policy == "shieldgemma":
            latency = 60 if policy == "default" else int(row["guard_ms"] * 1000)
            out.append(
                _verdict(row, "input", policy, input_action, input_findings, latency, classifier)
            )
        if outcome == "blocked_output":
            if policy == "shieldgemma":
                harm = rng.choice(HARMS)
                finding = _finding(
                    f"shieldgemma.{harm}",
                    harm,
                    "block",
                    "shieldgemma",
                    score=0.5 + 0.5 * rng.random(),
                )
            else:
                finding = _finding("secret.private_key", "secret", "block", "pii", span=True)
            out.append(_verdict(row, "output", policy, "block", [finding], 900, classifier))
        elif outcome == "ok" and policy == "shieldgemma" and rng.random() < 0.5:
            out.append(
                _verdict(
                    row, "output", policy, "allow", self._near_misses(None), 35_000, classifier
                )
            )
        return out

    def _near_misses(self, stage: str | None) -> list[Row]:
        """ShieldGemma's scores below the threshold: most near 0, a few closer to it."""
        path = "messages[0].content" if stage == "input" else None
        return [
            _finding(
                f"shieldgemma.{harm}",
                harm,
                "allow",
                "shieldgemma",
                path=path,
                score=round(min(0.49, self.rng.betavariate(0.6, 12)), 4),
            )
            for harm in HARMS
        ]

    def _maybe_score(self, row: Row) -> None:
        rng = self.rng
        ts = row["ts"] + timedelta(seconds=2 + rng.random() * 5)
        rid = row["id"]
        if rng.random() < QUALITY_SAMPLE:
            parts = {
                "relevance": _unit(rng.gauss(0.78, 0.12)),
                "coherence": _unit(rng.gauss(0.85, 0.08)),
                "safety": _unit(1 - rng.betavariate(0.5, 30)),
                "factual_accuracy": _unit(rng.gauss(0.7, 0.1)),
            }
            parts["overall"] = sum(parts.values()) / 4
            for metric, value in parts.items():
                self.quality.append(_score(rid, ts, "heuristic", metric, value))
            similarity = _unit(rng.gauss(0.62, 0.13))
            for metric in ("similarity", "overall"):
                self.quality.append(_score(rid, ts, "embedding", metric, similarity))
            self.quality.append(
                _score(rid, ts, "guard", "safety", _unit(1 - rng.betavariate(0.4, 40)))
            )
        if rng.random() < JUDGE_SAMPLE:
            rating = rng.choices((1, 2, 3, 4, 5), (2, 4, 14, 45, 35))[0]
            self.quality.append(
                _score(
                    rid,
                    ts + timedelta(seconds=3),
                    "judge",
                    "overall",
                    (rating - 1) / 4,
                    {"rating": rating},
                )
            )
        if rng.random() < FEEDBACK_SAMPLE:
            liked = rng.random() < 0.82
            self.quality.append(
                _score(
                    rid, ts + timedelta(minutes=1), "user", "satisfaction", 1.0 if liked else 0.0
                )
            )


def _finding(
    rule: str,
    category: str,
    action: str,
    check: str,
    *,
    score: float | None = None,
    span: bool = False,
    path: str | None = "messages[0].content",
) -> Row:
    detail = None
    if score is not None:
        detail = f"P(Yes) {score:.3f}, threshold 0.5"
    return {
        "rule": rule,
        "category": category,
        "action": action,
        "check": check,
        "path": path,
        "span": [10, 42] if span else None,
        "score": score,
        "detail": detail,
    }


def _verdict(
    row: Row,
    stage: str,
    policy: str,
    action: str,
    findings: list[Row],
    latency_us: int,
    classifier: str,
) -> Row:
    deciding = (
        next((f for f in findings if f["action"] == action), None) if action != "allow" else None
    )
    scores = [f["score"] for f in findings if f["score"] is not None]
    return {
        "request_id": row["id"],
        "ts": row["ts"],
        "stage": stage,
        "policy": policy,
        "action": action,
        "category": deciding["category"] if deciding else None,
        "rule": deciding["rule"] if deciding else None,
        "score": max(scores) if scores else None,
        "classifier": classifier,
        "latency_us": latency_us,
        "findings": findings,
        "skipped": [],
    }


def _score(
    request_id: str, ts: datetime, scorer: str, metric: str, value: float, detail: Row | None = None
) -> Row:
    return {
        "request_id": request_id,
        "ts": ts,
        "scorer": scorer,
        "metric": metric,
        "value": round(value, 4),
        "detail": detail,
    }


def _unit(value: float) -> float:
    return clamp(value, 0.0, 1.0)


def clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value
