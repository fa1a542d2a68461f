"""Meta-tests: every hook spec is documented in docs/hooks.md with its arguments, and has a test; what the page says
about each hook (firstresult, which of identity/, webhooks/ and enrichment/ implement it) is what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hub.plugins import load_plugins, make_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
PM = make_plugin_manager()
SPECS = sorted(PM.hook.__dict__)
DOC = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
# The packages whose hooks the page names; connectors are many, and the page speaks of them as a kind.
PACKAGES = ("identity", "webhooks", "enrichment")
_HEADING = re.compile(r"^### `(\w+)\(([^)]*)\)`$", re.MULTILINE)


def _sections() -> dict[str, str]:
    """Each `### `name(args)`` section's text (up to the next heading), by hook name."""
    found = list(_HEADING.finditer(DOC))
    out = {}
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(DOC)
        out[match.group(1)] = re.split(r"^## ", DOC[match.end():end], flags=re.MULTILINE)[0]
    return out


SECTIONS = _sections()


def _built_ins() -> dict[str, set[str]]:
    """hook name -> the packages of PACKAGES that implement it (built-ins only, no entry points)."""
    pm = make_plugin_manager()
    load_plugins(pm, entry_points=False)
    return {name: {pm.get_name(impl.plugin) for impl in getattr(pm.hook, name).get_hookimpls()} & set(PACKAGES)
            for name in SPECS}


IMPLEMENTERS = _built_ins()


@pytest.mark.parametrize("name", SPECS)
def test_hook_is_documented_with_its_arguments(name: str) -> None:
    caller = getattr(PM.hook, name)
    args = ", ".join(caller.spec.argnames)
    assert f"{name}({args})" in DOC, f"docs/hooks.md lacks `{name}({args})`"


@pytest.mark.parametrize("name", SPECS)
def test_hook_has_a_test(name: str) -> None:
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    assert f"def test_hook_{name}" in tests, f"no test_hook_{name} in tests/"


def test_every_hook_the_page_documents_exists() -> None:
    """A hook renamed or removed in hub/hookspecs.py must not stay documented under its old name."""
    assert sorted(SECTIONS) == SPECS


@pytest.mark.parametrize("name", SPECS)
def test_firstresult_is_stated_exactly_for_firstresult_hooks(name: str) -> None:
    firstresult = bool(getattr(PM.hook, name).spec.opts.get("firstresult"))
    assert ("*firstresult.*" in SECTIONS[name]) is firstresult, name


@pytest.mark.parametrize("name", SPECS)
def test_the_packages_named_are_those_that_implement_the_hook(name: str) -> None:
    """`identity/ preloads … here on SQLite` outlived the PostgreSQL preload, and the webhooks/ and enrichment/
    implementations of the same hook were never named: the section names every built-in package implementing it."""
    named = set(re.findall(rf"(?<![\w./])({'|'.join(PACKAGES)})/", SECTIONS[name]))
    assert named == IMPLEMENTERS[name], f"docs/hooks.md, `{name}`: names {sorted(named)}, " \
                                        f"implemented by {sorted(IMPLEMENTERS[name])}"
