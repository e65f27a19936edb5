"""The import rules of docs/architecture.md, checked on the source: one direction, no shortcuts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sluice"

# package → sluice packages it may import (besides itself)
ALLOWED = {
    "schema": set(),
    "providers": {"schema"},
    "routing": {"schema", "providers"},
    "policies": {"schema", "store"},
    "store": {"schema"},
    "observability": {"schema", "store"},
    "api": {"gateway", "schema", "admin"},  # admin: the services behind the admin API
    "admin": {"schema", "store", "policies"},
    "mock": set(),
}


def _sluice_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "sluice":
            found.update(alias.name for alias in node.names)  # from sluice import admin
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sluice."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sluice."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    bad = {}
    for path in (ROOT / package).rglob("*.py"):
        extra = _sluice_imports(path) - ALLOWED[package] - {package}
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"layer rule broken: {bad}"
