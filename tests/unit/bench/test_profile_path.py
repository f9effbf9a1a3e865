"""The profile summary of `bench/profile_path.py`: collapsed stacks as py-spy writes them
(`--format raw --threads`), read into threads, parts of the request path and functions."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"

# py-spy's lines: the thread, the frames outermost first, the count of samples
STACKS = "\n".join(
    [
        "thread (8102): MainThread;<module> (monitor/__main__.py:4);Runner.run (asyncio/runners.py:118) 10",
        "thread (8102): MainThread;<module> (monitor/__main__.py:4);"
        "ProxyHandler._handle (monitor/proxy/handler.py:187);"
        "GuardStep.check_request (monitor/proxy/guarding.py:124);"
        "Guard.check_input (monitor/guard/engine.py:130);"
        "Pattern.finditer (re/__init__.py:10) 30",
        "thread (8102): MainThread;<module> (monitor/__main__.py:4);"
        "ProxyHandler._handle (monitor/proxy/handler.py:190);"
        "Admission.admit (monitor/proxy/admission.py:80);"
        "decide (monitor/proxy/ratelimit.py:224);"
        "__create_fn__.<locals>.__init__ (<string>:2) 20",
        "thread (8102): MainThread;<module> (monitor/__main__.py:4);"
        "ProxyHandler._handle (monitor/proxy/handler.py:200) 15",
        "thread (8107): uvloop_4;Thread.run (threading.py:982);"
        "seal_step (monitor/store/rollup_build.py:237);walk (monitor/store/rollup_build.py:12);"
        "walk (monitor/store/rollup_build.py:12) 5",
        "thread (8105): uvloop_2;Thread.run (threading.py:982);"
        "RecentRequests.add (monitor/api/feedback.py:71) 5",
        "thread (8219): monitor-recorder_0;Thread.run (threading.py:982);"
        "Recorder._write_records (monitor/store/recorder.py:350);"
        "Connection.execute (sqlalchemy/engine/base.py:1494) 15",
        "a line that is not a stack",
    ]
)


@pytest.fixture(scope="module")
def profile_path() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        import profile_path

        yield profile_path
    finally:
        sys.path.remove(str(BENCH))


def test_threads_are_named_and_a_pools_threads_counted_as_one(profile_path: ModuleType) -> None:
    profile = profile_path.Profile.parse(STACKS)
    assert profile.samples == 100
    assert profile.threads == {"MainThread": 75, "uvloop": 10, "monitor-recorder": 15}


def test_a_sample_counts_to_the_part_of_its_innermost_project_frame(
    profile_path: ModuleType,
) -> None:
    parts = profile_path.Profile.parse(STACKS).parts()
    assert parts == {
        # the regular expression's time is the guard's, which called it
        "guard (rules)": 30,
        # a dataclass's generated __init__ is the rate limiter's, which built it
        "admission and rate limits": 20,
        "handler (its own lines)": 15,
        "store (recorder, rollups, alert reads)": 20,
        "the record and metrics": 5,
        # the loop's own time: only `monitor/__main__.py` above it, which names no part
        "other project code (__main__.py)": 10,
    }


def test_inclusive_counts_a_recursive_function_once_and_self_the_innermost_frame(
    profile_path: ModuleType,
) -> None:
    profile = profile_path.Profile.parse(STACKS)
    inclusive = {f.label: n for f, n in profile.inclusive(project_only=True).items()}
    assert inclusive["walk (monitor/store/rollup_build.py)"] == 5  # twice in one stack
    assert inclusive["ProxyHandler._handle (monitor/proxy/handler.py)"] == 65  # three lines
    assert "Pattern.finditer (re/__init__.py)" not in inclusive  # library code
    inner = {f.label: n for f, n in profile.self_time().items()}
    assert inner["Pattern.finditer (re/__init__.py)"] == 30
    assert inner["ProxyHandler._handle (monitor/proxy/handler.py)"] == 15


def test_the_summary_gives_shares_of_all_samples(profile_path: ModuleType) -> None:
    summary = profile_path.summarize(STACKS, top=3)
    assert "Collapsed stacks: 100 samples." in summary
    assert "| MainThread | 75.0 % |" in summary
    assert "| guard (rules) | 30.0 % |" in summary
    assert "| `Pattern.finditer (re/__init__.py)` | 30.0 % |" in summary
    # top 3 of the project's functions by inclusive share: the entry point first
    inclusive = summary.split("inclusive (top 3):")[1].split("All functions")[0]
    assert inclusive.count("| `") == 3
    assert "| `<module> (monitor/__main__.py)` | 75.0 % |" in inclusive
