"""pyproject.toml lists the packages the wheel installs: every package folder, no other.

The list is written out because `migrations/` and `policies/` install inside `monitor` (a find
directive cannot rename a folder); a package folder added under monitor/ and forgotten here
would be left out of the wheel, while the editable install would still find it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _packages_under(folder: Path, name: str) -> set[str]:
    return {
        ".".join((name, *init.parent.relative_to(folder).parts))
        for init in folder.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_the_listed_packages_are_the_package_folders() -> None:
    with (REPO / "pyproject.toml").open("rb") as handle:
        config: dict[str, Any] = tomllib.load(handle)["tool"]["setuptools"]
    package_dir: dict[str, str] = config["package-dir"]
    assert package_dir == {
        "monitor.dashboard": "dashboard",
        "monitor.migrations": "migrations",
        "monitor.policies": "policies",
    }
    folders = _packages_under(REPO / "monitor", "monitor")
    for package, folder in package_dir.items():
        folders |= _packages_under(REPO / folder, package)
    listed: list[str] = config["packages"]
    assert sorted(listed) == sorted(folders)
