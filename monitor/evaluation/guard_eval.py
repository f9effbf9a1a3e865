"""`gemma-monitor eval-guard`: how well a policy's guard separates safe from unsafe text.

Reads a labelled CSV or JSONL file (a text column, a label column such as safe/unsafe, 0/1
or true/false, and optionally a `type` or `category` column), runs every text through the
guard as a one-message user prompt (or as a response, `--stage output`), and reports
precision, recall (the catch rate), F1 and the over-block rate (the share of safe items
blocked), overall and per category, plus the area under the precision-recall curve when
the checks produced scores. An item counts as flagged unsafe when the verdict blocks it.

Policies with `shieldgemma` checks run them as the proxy does (rules first, then the model),
so the scores are ShieldGemma's P(Yes) and AU-PRC measures the model itself; `--stage output`
takes the dataset's `prompt` column, when the text is another column, as what the response
answers.

`add_arguments` and `run` are the command: `gemma-monitor eval-guard` puts the options on its
own sub-command parser; `main(argv)` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monitor.evaluation.scores import Confusion, average_precision
from monitor.guard.classifier import ClassifierError
from monitor.guard.loader import PolicyError, load_policy, policy_path
from monitor.guard.model_guard import CLASSIFIER_CATEGORY, ClassifierFactory, ModelGuard
from monitor.guard.policy import Policy
from monitor.guard.verdict import Verdict

UNSAFE_LABELS = frozenset({"unsafe", "1", "true", "yes", "harmful", "toxic", "positive", "bad"})
SAFE_LABELS = frozenset({"safe", "0", "false", "no", "benign", "harmless", "negative", "ok"})
TEXT_COLUMNS = ("prompt", "text", "input", "content", "response")
CATEGORY_COLUMNS = ("type", "category")


class DatasetError(ValueError):
    """The dataset cannot be read: missing file or column, or a label that is not one."""


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    unsafe: bool
    category: str | None
    prompt: str = ""  # what a response answers (output stage)


@dataclass(slots=True)
class EvalReport:
    """What `run_eval` measured."""

    policy: str
    dataset: str
    stage: str
    overall: Confusion
    per_category: dict[str, Confusion]
    au_prc: float | None  # None when no check produced a score
    false_positive_rules: Counter[str] = field(default_factory=Counter)  # rules on safe items
    true_positive_rules: Counter[str] = field(default_factory=Counter)
    skipped_checks: tuple[str, ...] = ()
    mean_latency_us: float = 0.0
    classifier_failures: int = 0  # items a classifier could not judge (on_error decided)


def read_dataset(
    path: str | Path,
    text_column: str | None = None,
    label_column: str = "label",
    category_column: str | None = None,
) -> list[Item]:
    """Labelled items from a CSV file or a JSONL file (one object per line)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
                rows = [
                    _json_row(path, n, line) for n, line in enumerate(handle, 1) if line.strip()
                ]
            else:
                rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    if not rows:
        raise DatasetError(f"{path}: no rows")
    columns = set(rows[0])
    text_column = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if text_column is None or text_column not in columns:
        raise DatasetError(
            f"{path}: no text column {text_column or TEXT_COLUMNS}; has {sorted(columns)}"
        )
    if label_column not in columns:
        raise DatasetError(f"{path}: no label column {label_column!r}; has {sorted(columns)}")
    if category_column is None:
        category_column = next((c for c in CATEGORY_COLUMNS if c in columns), None)
    prompt_column = "prompt" if text_column != "prompt" and "prompt" in columns else None
    items = []
    for number, row in enumerate(rows, 1):
        items.append(
            Item(
                str(row.get(text_column) or ""),
                _label(path, number, row.get(label_column)),
                str(row[category_column]) if category_column and row.get(category_column) else None,
                str(row.get(prompt_column) or "") if prompt_column else "",
            )
        )
    return items


def _json_row(path: Path, number: int, line: str) -> dict[str, object]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: line {number}: not JSON: {exc}") from None
    if not isinstance(row, dict):
        raise DatasetError(f"{path}: line {number}: not a JSON object")
    return row


def _label(path: Path, number: int, value: object) -> bool:
    folded = str(value).strip().lower()
    if folded in UNSAFE_LABELS:
        return True
    if folded in SAFE_LABELS:
        return False
    raise DatasetError(f"{path}: row {number}: label {value!r} is neither safe nor unsafe")


def run_eval(
    dataset_path: str | Path,
    policy: Policy,
    text_column: str | None = None,
    label_column: str = "label",
    *,
    category_column: str | None = None,
    stage: str = "input",
    classifiers: ClassifierFactory | None = None,
) -> EvalReport:
    """Run `policy`'s guard (its rules, then its ShieldGemma checks through `classifiers`,
    by default the real ones) over the dataset and measure it. Raises `ClassifierError`
    when a classifier cannot be built or loaded."""
    items = read_dataset(dataset_path, text_column, label_column, category_column)
    return asyncio.run(_evaluate(items, str(dataset_path), policy, stage, classifiers))


async def _evaluate(
    items: list[Item],
    dataset: str,
    policy: Policy,
    stage: str,
    classifiers: ClassifierFactory | None,
) -> EvalReport:
    try:
        guard = ModelGuard(policy, classifiers)
    except (OSError, ValueError) as exc:  # a bad model path or endpoint
        raise ClassifierError(f"cannot build the policy's classifiers: {exc}") from exc
    try:
        await guard.ready()
        return await _measure(items, dataset, policy, stage, guard)
    finally:
        await guard.aclose()


async def _measure(
    items: list[Item], dataset: str, policy: Policy, stage: str, guard: ModelGuard
) -> EvalReport:
    overall = Confusion()
    per_category: dict[str, Confusion] = {}
    scored: list[tuple[float, bool]] = []
    any_score = False
    report = EvalReport(policy.name, dataset, stage, overall, per_category, None)
    latency = 0
    for item in items:
        if stage == "output":
            verdict = await guard.check_output(item.text, item.prompt)
        else:
            verdict = await guard.check_input([{"role": "user", "content": item.text}])
        report.classifier_failures += any(
            f.category == CLASSIFIER_CATEGORY for f in verdict.findings
        )
        latency += verdict.latency_us
        blocked = verdict.blocked
        overall.add(item.unsafe, blocked)
        if item.category is not None:
            per_category.setdefault(item.category, Confusion()).add(item.unsafe, blocked)
        score = verdict.max_score
        any_score |= score is not None
        scored.append((_ranking_score(verdict, score), item.unsafe))
        rules = {f.rule for f in verdict.findings if f.action is verdict.action and blocked}
        (report.true_positive_rules if item.unsafe else report.false_positive_rules).update(rules)
        report.skipped_checks = verdict.skipped
    report.au_prc = average_precision(scored) if any_score else None
    report.mean_latency_us = latency / len(items)
    return report


def _ranking_score(verdict: Verdict, score: float | None) -> float:
    """How strongly the guard leans to unsafe. Blocked items rank above all others, and
    among themselves by the deciding finding's score (1 without one: a deny-list hit is as
    sure as the rules get), so a classifier's scores still order what it blocked; other
    items rank by their best score (0 without one)."""
    if verdict.blocked:
        reason = verdict.reason
        return 1.0 + (reason.score if reason is not None and reason.score is not None else 1.0)
    return score if score is not None else 0.0


def format_report(report: EvalReport) -> str:
    """The report as the command prints it."""
    lines = [
        f"policy {report.policy} on {report.dataset} ({report.stage} stage), "
        f"{report.overall.total} items: {report.overall.positives} unsafe, "
        f"{report.overall.negatives} safe; mean guard latency {report.mean_latency_us:.0f} us",
    ]
    if report.skipped_checks:
        lines.append(f"not run (need a model classifier): {', '.join(report.skipped_checks)}")
    if report.classifier_failures:
        lines.append(
            f"classifier failed or timed out on {report.classifier_failures} items "
            "(decided by on_error): these numbers do not measure the model"
        )
    header = (
        f"{'category':<34}{'n':>5}{'unsafe':>8}{'blocked':>9}{'precision':>11}{'recall':>8}"
        f"{'F1':>7}{'over-block':>12}"
    )
    lines += ["", header, "-" * len(header)]
    lines.append(_row("overall", report.overall))
    for name in sorted(report.per_category):
        lines.append(_row(name, report.per_category[name]))
    lines.append("")
    lines.append(f"catch rate (recall on unsafe): {_pct(report.overall.recall)}")
    lines.append(f"over-block rate (safe items blocked): {_pct(report.overall.over_block)}")
    au = "n/a (no check produced scores)" if report.au_prc is None else f"{report.au_prc:.3f}"
    lines.append(f"AU-PRC: {au}")
    for title, counter in (
        ("rules that blocked unsafe items", report.true_positive_rules),
        ("rules that blocked safe items", report.false_positive_rules),
    ):
        if counter:
            top = ", ".join(f"{rule} x{count}" for rule, count in counter.most_common(8))
            lines.append(f"{title}: {top}")
    return "\n".join(lines)


def _row(name: str, c: Confusion) -> str:
    return (
        f"{name[:33]:<34}{c.total:>5}{c.positives:>8}{c.true_positives + c.false_positives:>9}"
        f"{_num(c.precision):>11}{_num(c.recall):>8}{_num(c.f1):>7}{_pct(c.over_block):>12}"
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def main(argv: Sequence[str] | None = None) -> int:
    """`eval-guard --dataset FILE [--policy FILE] [--text-column C --label-column L]`."""
    parser = argparse.ArgumentParser(
        prog="gemma-monitor eval-guard", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options, on its own parser or on the `gemma-monitor eval-guard` one."""
    parser.add_argument("--dataset", required=True, help="a labelled .csv or .jsonl file")
    parser.add_argument(
        "--policy", default="default", help="a policy file, or a shipped policy's name"
    )
    parser.add_argument("--text-column", default=None, help="default: prompt, text or input")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--category-column", default=None, help="default: type or category")
    parser.add_argument("--stage", choices=("input", "output"), default="input")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")


def run(args: argparse.Namespace) -> int:
    """Evaluate with parsed options (see `add_arguments`); exit code 2 for a bad input."""
    try:
        policy = load_policy(policy_path(args.policy))
        report = run_eval(
            args.dataset,
            policy,
            args.text_column,
            args.label_column,
            category_column=args.category_column,
            stage=args.stage,
        )
    except (PolicyError, DatasetError, ClassifierError) as exc:
        print(f"eval-guard: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report_dict(report), indent=2) if args.json else format_report(report))
    return 0


def report_dict(report: EvalReport) -> dict[str, object]:
    """The report's numbers as plain data."""
    return {
        "policy": report.policy,
        "dataset": report.dataset,
        "stage": report.stage,
        "overall": report.overall.as_dict(),
        "per_category": {k: v.as_dict() for k, v in sorted(report.per_category.items())},
        "au_prc": report.au_prc,
        "skipped_checks": list(report.skipped_checks),
        "mean_latency_us": round(report.mean_latency_us, 1),
        "classifier_failures": report.classifier_failures,
    }


if __name__ == "__main__":
    raise SystemExit(main())
