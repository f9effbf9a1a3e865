"""The house's shape: no import cycles anywhere in `monitor`, and every room under the layering
contract in pyproject.toml (which `lint-imports`, run by scripts/test.sh, enforces)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # Annotation-only imports count here: a cycle through `if TYPE_CHECKING:` is still a tangle.
    return grimp.build_graph("monitor", exclude_type_checking_imports=False)


def test_no_module_is_part_of_an_import_cycle(graph: grimp.ImportGraph) -> None:
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append(" -> ".join((importer, *back)))
    assert cycles == []


def test_every_room_is_in_the_layers(graph: grimp.ImportGraph) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    rooms = {m for m in graph.modules if m.count(".") == 1}
    assert rooms - named == set(), "a package or module of monitor/ is in no layer"
    assert named - rooms == set(), "the contract names a room that does not exist"
