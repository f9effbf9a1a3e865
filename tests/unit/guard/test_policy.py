"""Policy files: the shipped ones load, and a bad one names its file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.guard.checks import (
    Harm,
    ImagePolicy,
    ShieldGemma2Check,
    ShieldGemmaCheck,
    ValidationCheck,
)
from monitor.guard.loader import PolicyError, load_policies, load_policy, parse_policy
from monitor.guard.policy import StreamMode

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def error_of(tmp_path: Path, text: str, name: str = "strict.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return str(caught.value)


def test_shipped_policies_load() -> None:
    policies = load_policies(POLICIES)
    assert set(policies) == {"default", "strict", "shieldgemma", "multimodal"}
    assert all(p.model_checks() == [] for n, p in policies.items() if n != "shieldgemma")
    default = policies["default"]
    assert [c.type for c in default.input.checks][:2] == ["validation", "length"]
    assert default.output.streaming.mode is StreamMode.INCREMENTAL


def test_shipped_policies_cap_the_size_of_a_request() -> None:
    """Every shipped policy bounds what its checks read: parts and characters in all."""
    for name, policy in load_policies(POLICIES).items():
        validation = policy.input.checks[0]
        assert isinstance(validation, ValidationCheck), name
        assert validation.max_parts is not None and validation.max_parts <= 128, name
        assert validation.max_total_chars is not None, name
        assert validation.max_total_chars <= 131_072, name


def test_shieldgemma_checks_are_declared_with_harms_and_thresholds() -> None:
    policy = load_policy(POLICIES / "shieldgemma.yaml")
    stages = policy.model_checks()
    assert [stage for stage, _ in stages] == ["input", "output"]
    check = stages[0][1]
    assert isinstance(check, ShieldGemmaCheck)
    assert check.thresholds() == {
        Harm.DANGEROUS_CONTENT: 0.5,
        Harm.HARASSMENT: 0.5,
        Harm.HATE_SPEECH: 0.5,
        Harm.SEXUALLY_EXPLICIT: 0.4,
    }
    assert check.on_error == "allow"
    output = stages[1][1]
    assert {h.harm for h in output.harms} == set(Harm)  # titles like "Hate Speech" accepted
    assert Harm.SEXUALLY_EXPLICIT.display_name == "Sexually Explicit Information"


def test_shieldgemma2_image_check_is_declared_with_policies_and_thresholds() -> None:
    policy = load_policy(POLICIES / "multimodal.yaml")
    [check] = [c for c in policy.input.checks if isinstance(c, ShieldGemma2Check)]
    assert check.thresholds() == {
        ImagePolicy.DANGEROUS: 0.5,
        ImagePolicy.SEXUAL: 0.4,
        ImagePolicy.VIOLENCE: 0.5,
    }
    assert (check.on_error, check.fetch_urls, check.unfetched_urls) == ("block", False, "flag")
    assert check.max_image_bytes == 5 * 1024 * 1024 and check.max_images == 4
    bare = parse_policy("input:\n  checks:\n    - {type: shieldgemma2, policies: [Sexual]}\n")
    [only] = bare.input.checks
    assert isinstance(only, ShieldGemma2Check)
    assert only.thresholds() == {ImagePolicy.SEXUAL: 0.5}
    assert (only.model, only.action, only.fetch_urls) == (
        "google/shieldgemma-2-4b-it",
        "block",
        False,
    )
    every = parse_policy("input:\n  checks:\n    - {type: shieldgemma2}\n").input.checks[0]
    assert isinstance(every, ShieldGemma2Check) and set(every.thresholds()) == set(ImagePolicy)


def test_defaults_fill_in() -> None:
    policy = parse_policy("input:\n  checks:\n    - type: length\n", default_name="p")
    assert policy.name == "p"
    length = policy.input.checks[0]
    assert length.type == "length" and length.max_chars == 8192 and length.action == "block"
    assert policy.output.streaming.mode is StreamMode.BUFFERED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "input:\n  checks:\n    - type: pii\n    - type: length\n    - type: injection\n"
            "      threshold: 3\n",
            "strict.yaml: input.checks[2].threshold: Input should be less than or equal to 1",
        ),
        (
            "input:\n  checks:\n    - type: bogus\n",
            "strict.yaml: input.checks[0]: Input tag 'bogus'",
        ),
        (
            "input:\n  checks:\n    - {type: pii, acton: block}\n",
            "strict.yaml: input.checks[0].acton: Extra inputs",
        ),
        (
            "input:\n  checks:\n    - {type: pii, action: truncate}\n",
            "strict.yaml: input.checks[0].action: Input should be",
        ),
        (
            "output:\n  checks:\n    - type: validation\n",
            "strict.yaml: output.checks[0]: Input tag 'validation'",
        ),
        (
            "output:\n  checks:\n    - {type: pii, roles: [user]}\n",
            "strict.yaml: output.checks[0].roles: only input",
        ),
        (
            "input:\n  checks: [{type: pii}, {type: pii}]\n",
            "strict.yaml: input.checks[1].id: the same id 'pii'",
        ),
        (
            "input:\n  checks:\n    - {type: denylist, terms: [a, ' ']}\n",
            "strict.yaml: input.checks[0].terms[1]: blank term",
        ),
        (
            "input:\n  checks:\n    - {type: denylist, terms: []}\n",
            "strict.yaml: input.checks[0].terms: List should have at least 1",
        ),
        (
            "input:\n  checks:\n    - type: shieldgemma\n      harms: [{harm: violence}]\n",
            "strict.yaml: input.checks[0].harms[0].harm: Input should be",
        ),
        (
            "input:\n  checks:\n    - type: shieldgemma\n      harms: [{harm: harassment}, {harm: Harassment}]\n",
            "strict.yaml: input.checks[0].harms[1].harm: harassment is listed twice",
        ),
        (
            "input:\n  checks:\n    - type: shieldgemma\n      harms: [{harm: harassment}]\n      on_error: maybe\n",
            "strict.yaml: input.checks[0].on_error: Input should be 'block' or 'allow'",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, policies: [hate]}\n",
            "strict.yaml: input.checks[0].policies[0].policy: Input should be 'dangerous'",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, policies: [sexual, {policy: sexual}]}\n",
            "strict.yaml: input.checks[0].policies[1].policy: sexual is listed twice",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, policies: []}\n",
            "strict.yaml: input.checks[0].policies: List should have at least 1",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, policies: [{policy: violence, threshold: 2}]}\n",
            "strict.yaml: input.checks[0].policies[0].threshold: Input should be less than or equal to 1",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, on_error: flag}\n",
            "strict.yaml: input.checks[0].on_error: Input should be 'block' or 'allow'",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, action: redact}\n",
            "strict.yaml: input.checks[0].action: Input should be 'block' or 'flag'",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, fetch_url: true}\n",
            "strict.yaml: input.checks[0].fetch_url: Extra inputs are not permitted",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, max_image_bytes: 0}\n",
            "strict.yaml: input.checks[0].max_image_bytes: Input should be greater than or equal to 1",
        ),
        (
            "input:\n  checks:\n    - {type: shieldgemma2, timeout_s: 0}\n",
            "strict.yaml: input.checks[0].timeout_s: Input should be greater than 0",
        ),
        (
            "output:\n  checks:\n    - type: shieldgemma2\n",
            "strict.yaml: output.checks[0]: Input tag 'shieldgemma2'",
        ),
        (
            "output:\n  streaming: {mode: sometimes}\n",
            "strict.yaml: output.streaming.mode: Input should be",
        ),
        (
            "output:\n  streaming: {every_chars: 0}\n",
            "strict.yaml: output.streaming.every_chars: Input should be greater",
        ),
        ("inptu: {}\n", "strict.yaml: inptu: Extra inputs are not permitted"),
        ("version: 2\n", "strict.yaml: version: Input should be 1"),
        ("- a\n- b\n", "strict.yaml: a policy is a mapping"),
        ("input:\n  checks: [\n", "strict.yaml: line 3, column 1: not valid YAML"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    error = error_of(tmp_path, text)
    assert error.startswith(str(tmp_path / "strict.yaml"))
    assert message.split(": ", 1)[1] in error, error


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="no policy files"):
        load_policies(tmp_path)


def test_duplicate_names_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: same\n")
    (tmp_path / "b.yml").write_text("name: same\n")
    with pytest.raises(PolicyError, match=r"b\.yml: name: 'same' is already the name of"):
        load_policies(tmp_path)


def test_an_empty_file_is_an_empty_policy(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    assert load_policy(tmp_path / "empty.yaml").input.checks == []
