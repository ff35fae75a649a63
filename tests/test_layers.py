"""The dependency order of revflow's packages (README, "How it is built"): a module imports
only from its own package and from packages listed before it. A feature's ``routes.py`` (the
HTTP edge) sits above every feature, so services never depend on request handling. Parsed from
the source, so a new import against the order fails here before it can tangle the graph."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "revflow"

# Lowest first. Names on one line form one layer and may import each other.
ORDER: list[set[str]] = [
    {"config", "logging", "errors", "db", "migrate"},
    {"models"},
    {"kit", "problems"},
    {"definition"},
    {"diff"},
    {"client"},  # the typed HTTP client: imports nothing of the server
    {"apply"},  # workflows as code, through the client
    {"engine"},
    {"audit"},
    {"auth"},
    {"deps"},
    {"webhooks"},
    {"workflows"},
    {"executions"},
    {"contacts"},
    {"migrations"},
    {"releases"},
    {"retention", "simulations"},
    {"routes"},
    {"ui"},
    {"worker", "app", "cli", "bench", "__main__", "__init__", "alembic"},
]
LAYER = {name: i for i, names in enumerate(ORDER) for name in names}


def unit_of(path: Path) -> str:
    """The package (or top-level module) a source file belongs to; every routes module
    belongs to the routes layer."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return "routes" if len(parts) == 2 and parts[1] == "routes" else parts[0]


def imported_units(path: Path) -> set[tuple[str, int]]:
    """(unit, line) of every ``revflow.…`` import in the file, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "revflow":
                names = [f"revflow.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "revflow" and len(parts) > 1:
                routes = len(parts) > 2 and parts[2] == "routes"
                found.add(("routes" if routes else parts[1], node.lineno))
    return found


def sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "alembic" not in p.parts or p.name == "env.py")


def test_every_unit_has_a_place_in_the_order() -> None:
    units = {unit_of(p) for p in sources()}
    assert units - LAYER.keys() == set()


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_dependency_order(path: Path) -> None:
    unit = unit_of(path)
    against = [
        f"line {line}: {unit} imports revflow.{target}"
        for target, line in sorted(imported_units(path), key=lambda t: t[1])
        if target != unit and LAYER.get(target, len(ORDER)) > LAYER[unit]
    ]
    assert against == [], f"{path.relative_to(SRC)} imports against the order: {against}"


def test_the_check_sees_an_import_against_the_order(tmp_path: Path) -> None:
    """The parser finds imports in every form (guards the test above against passing empty)."""
    source = tmp_path / "sample.py"
    source.write_text(
        "import revflow.workflows.service\n"
        "from revflow.migrations import service\n"
        "from revflow import app\n"
        "def f():\n    from revflow.engine.store import claim_due\n"
        "from revflow.audit.routes import router\n"
    )
    assert {unit for unit, _ in imported_units(source)} == {
        "workflows",
        "migrations",
        "app",
        "engine",
        "routes",
    }
