"""`gemma-monitor policy check`: validates policies, names their models, loads none."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main


def test_policy_check_names_model_checks_without_loading_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", "shieldgemma", "default"]) == 0
    out = capsys.readouterr().out
    assert "'shieldgemma'" in out and "ShieldGemma checks (input: google/shieldgemma-2b;" in out
    assert "default: valid policy 'default'" in out and "rules only" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {checks: [{type: shieldgemma, harms: [{harm: nonsense}]}]}\n")
    assert main(["policy", "check", str(bad)]) == 2
    assert "input.checks[0].harms[0].harm" in capsys.readouterr().err


def test_a_policy_file_named_eval_guard_is_checked_not_evaluated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval-guard").write_text("input: {checks: [{type: denylist, terms: [x]}]}\n")
    assert main(["policy", "check", "eval-guard"]) == 0
    assert "eval-guard: valid policy 'eval-guard': 1 input and 0 output checks; rules only" in (
        capsys.readouterr().out
    )
