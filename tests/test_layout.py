"""The import direction of architecture.md, checked on the source (AST), plus package surfaces."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_PACKAGES = ("connectors", "identity", "enrichment", "webhooks")
FORBIDDEN_IN_CONNECTORS = ("fastapi", "celery", "sqlalchemy")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def py_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", py_files("hub"), ids=lambda p: str(p.relative_to(ROOT)))
def test_kernel_imports_no_plugin_package(path: Path) -> None:
    bad = {m for m in imported_modules(path) if top(m) in PLUGIN_PACKAGES}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("package", PLUGIN_PACKAGES)
def test_plugin_packages_import_only_hub_and_themselves(package: str) -> None:
    for path in py_files(package):
        others = {m for m in imported_modules(path) if top(m) in PLUGIN_PACKAGES and top(m) != package}
        assert not others, f"{path.relative_to(ROOT)} imports {others}"


def test_connectors_never_import_each_other_nor_infrastructure() -> None:
    for sub in sorted(p for p in (ROOT / "connectors").iterdir() if (p / "__init__.py").exists()):
        for path in sorted(sub.rglob("*.py")):
            for module in imported_modules(path):
                parts = module.split(".")
                if parts[0] == "connectors" and len(parts) > 1:
                    assert parts[1] == sub.name, f"{path.relative_to(ROOT)} imports {module}"
                assert top(module) not in FORBIDDEN_IN_CONNECTORS, f"{path.relative_to(ROOT)} imports {module}"


PUBLIC_PACKAGES = ["hub", "identity", "webhooks", "enrichment", *[
    f"connectors.{p.name}" for p in sorted((ROOT / "connectors").iterdir()) if (p / "__init__.py").exists()
]]


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_every_package_has_a_sorted_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names missing {item}"


def test_plugin_authors_surface() -> None:
    import hub

    for name in ("hookimpl", "Connector", "schemas", "errors"):
        assert name in hub.__all__
