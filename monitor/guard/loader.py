"""Reading policy files: YAML in, `Policy` out, or one `PolicyError` that names the file and
the field (`policies/strict.yaml: input.checks[2].threshold: ...`), so that a bad file stops
startup with a message an operator can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.guard.checks import CHECK_TYPES
from monitor.guard.policy import Policy

SUFFIXES = (".yaml", ".yml")


class PolicyError(ValueError):
    """A policy file is missing, is not YAML, or does not describe a valid policy."""


def load_policy(path: str | Path) -> Policy:
    """Read one policy file. Its `name` defaults to the file's stem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read: {exc}") from exc
    return parse_policy(text, source=str(path), default_name=path.stem)


def parse_policy(text: str, *, source: str = "<policy>", default_name: str = "policy") -> Policy:
    """Parse a policy from YAML text; errors name `source`."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{source}: {where}not valid YAML: {problem}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: a policy is a mapping (input:, output:), not a list or text")
    document.setdefault("name", default_name)
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(_describe(source, exc)) from None


def load_policies(path: str | Path) -> dict[str, Policy]:
    """Read a policy file, or every `*.yaml` / `*.yml` file of a folder, keyed by name."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise PolicyError(f"{path}: no policy files (*.yaml) in this folder")
    else:
        files = [path]
    policies: dict[str, Policy] = {}
    origins: dict[str, Path] = {}
    for file in files:
        policy = load_policy(file)
        if policy.name in policies:
            raise PolicyError(
                f"{file}: name: {policy.name!r} is already the name of {origins[policy.name]}"
            )
        policies[policy.name] = policy
        origins[policy.name] = file
    return policies


def _describe(source: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        where = field_path(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if message.startswith("@") and "@ " in message:  # see monitor.guard.checks.at
            subpath, message = message[1:].split("@ ", 1)
            where += subpath
        lines.append(f"{source}: {where}: {message}" if where else f"{source}: {message}")
    return "\n".join(lines)


def field_path(loc: Sequence[Any]) -> str:
    """`('input', 'checks', 2, 'pii', 'threshold')` → `input.checks[2].threshold`: the check
    type pydantic puts after a list index (the union's tag) is not part of the document."""
    out = ""
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(previous, int) and part in CHECK_TYPES:
            pass
        else:
            out += f".{part}" if out else str(part)
        previous = part
    return out


def policy_path(name_or_path: str | Path) -> Path:
    """A policy file by path, or one shipped with the project by name (default, strict, ...)."""
    path = Path(name_or_path)
    text = str(name_or_path)
    if path.exists() or "/" in text or path.suffix in SUFFIXES:
        return path
    from importlib import resources

    # monitor.policies: the repository's policies/ folder, installed inside the monitor package
    shipped = resources.files("monitor.policies") / f"{text}.yaml"
    if not shipped.is_file():
        raise PolicyError(f"{text}: no such policy file, and no shipped policy of that name")
    return Path(str(shipped))
