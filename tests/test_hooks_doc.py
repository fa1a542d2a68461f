"""Meta-tests: every hook spec is documented in docs/hooks.md with its arguments, and has a test."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.plugins import make_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
PM = make_plugin_manager()
SPECS = sorted(PM.hook.__dict__)


@pytest.mark.parametrize("name", SPECS)
def test_hook_is_documented_with_its_arguments(name: str) -> None:
    caller = getattr(PM.hook, name)
    args = ", ".join(caller.spec.argnames)
    doc = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert f"{name}({args})" in doc, f"docs/hooks.md lacks `{name}({args})`"


@pytest.mark.parametrize("name", SPECS)
def test_hook_has_a_test(name: str) -> None:
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    assert f"def test_hook_{name}" in tests, f"no test_hook_{name} in tests/"
