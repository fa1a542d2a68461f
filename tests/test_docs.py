"""Meta-tests: what README.md and docs/*.md name exists, as an integrator would type or look it up.

Files and modules they point to, the settings (names and README's defaults), every `crmhub …` command and option
they show, and the keys of the JSON answers whose shape they describe field by field. (docs/hooks.md has its own:
tests/test_hooks_doc.py.)
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from hub.runtime import Hub
from hub.settings import _NOT_SETTINGS, ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
IDS = [str(p.relative_to(ROOT)) for p in DOCS]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# A path into the repository: a file with an extension, or a folder (trailing slash).
_PATH = re.compile(r"(?<![\w./-])((?:hub|connectors|identity|enrichment|webhooks|migrations|tests|bench|scripts|docs"
                   r"|\.ci)/(?:[\w.-]+/)*(?:[\w-]+\.\w+)?)")
# A dotted name in one of the project's packages, in code: `hub.pipeline.process_raw`, `webhooks.sender.MAX_IN_FLIGHT`.
_DOTTED = re.compile(r"(?<![\w./-])((?:hub|connectors|identity|enrichment|webhooks)(?:\.[A-Za-z_]\w*)+)")
_FILE_SUFFIXES = {"md", "py", "json", "toml", "yml", "csv", "xlsx"}
_ENV = re.compile(r"\bCRMHUB_[A-Z0-9_]+\b")
_EXAMPLE_TYPO = "CRMHUB_DATABSE_URL"  # README's example of a misspelt setting the hub warns about
_CRMHUB = re.compile(r"(?<![\w/.-])crmhub(?=\s|$)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _code(text: str) -> Iterator[str]:
    """Inline code spans and the lines of fenced blocks (without a trailing `# comment`)."""
    prose = []
    in_block = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif in_block:
            yield line.split(" #")[0]
        else:
            prose.append(line)
    yield from re.findall(r"`([^`]+)`", "\n".join(prose))


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_repository_path_named_exists(doc: Path) -> None:
    text = _text(doc)
    missing = sorted({m for m in _PATH.findall(text) if not (ROOT / m).exists()})
    assert not missing, f"{doc.name} names files that are not in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_dotted_name_in_code_resolves(doc: Path) -> None:
    unresolved = []
    for span in _code(_text(doc)):
        for match in _DOTTED.finditer(span):
            name = match.group(1)
            if name.rsplit(".", 1)[1] in _FILE_SUFFIXES or span[match.end():match.end() + 1] == "/":
                continue  # a file name (`webhooks.md`) or a host (`hub.example.cn/hooks/…`), not a module
            if not _resolves(name):
                unresolved.append(name)
    assert not unresolved, f"{doc.name} names what the code does not have: {sorted(set(unresolved))}"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


SETTING_NAMES = {ENV_PREFIX + name.upper(): name for name in Settings.model_fields}


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_crmhub_variable_named_is_a_setting(doc: Path) -> None:
    named = set(_ENV.findall(_text(doc))) - {_EXAMPLE_TYPO}
    unknown = sorted(n for n in named if n not in SETTING_NAMES and not n.startswith(_NOT_SETTINGS))
    assert not unknown, f"{doc.name} names settings the hub does not read: {unknown}"


def test_the_readme_names_every_setting() -> None:
    """README: "All settings are environment variables": the table, or a pointer to the page that describes it."""
    assert sorted(set(SETTING_NAMES) - set(_ENV.findall(README))) == []


def _readme_settings_table() -> Iterator[tuple[str, str]]:
    """(variable, the default README gives) for each row of its Configuration table whose default can be checked."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    for row in rows[2:]:
        variables_cell, default_cell = (c.strip() for c in row.strip("|").split("|")[:2])
        variables = _ENV.findall(variables_cell)
        pieces = default_cell.split(" / ") if len(variables) > 1 else [default_cell]
        if len(pieces) != len(variables):
            pieces = [default_cell] * len(variables)
        for variable, piece in zip(variables, pieces, strict=True):
            literal = re.match(r"`([^`]*)`", piece)
            if literal:
                yield variable, literal.group(1)
            elif piece.startswith(("empty", "all")):
                yield variable, piece.split()[0].strip(";,")


README_DEFAULTS = list(_readme_settings_table())


def test_the_readme_table_has_the_settings_defaults_to_check() -> None:
    assert len(README_DEFAULTS) >= 20  # the parser below still reads the table


@pytest.mark.parametrize(("variable", "documented"), README_DEFAULTS, ids=[v for v, _ in README_DEFAULTS])
def test_the_readme_gives_each_settings_real_default(variable: str, documented: str) -> None:
    default = Settings.model_fields[SETTING_NAMES[variable]].default
    if documented == "empty":
        assert default == "", variable
    elif documented == "all":
        assert default is None, variable
    elif isinstance(default, bool):
        assert documented == str(default).lower(), variable
    elif isinstance(default, int | float):
        assert float(documented) == default, variable
    else:
        assert documented == str(default), variable


def _cli() -> click.Group:
    from hub.cli import build_cli

    return build_cli()


def _commands(text: str) -> Iterator[list[str]]:
    """The words after each `crmhub` in code: `crmhub endpoints messages ID [--cursor C]` → endpoints, messages, …"""
    for span in _code(text):
        span = span.replace("\\|", " ").replace("|", " ")
        starts = [m.end() for m in _CRMHUB.finditer(span)]
        for i, start in enumerate(starts):
            end = starts[i + 1] - len("crmhub") if i + 1 < len(starts) else len(span)
            words = (w.strip("[](){},;…'\"") for w in span[start:end].split())
            yield [w for w in words if w]


def _problems(root: click.Group, words: list[str]) -> Iterator[str]:
    command: click.Command = root
    path = ["crmhub"]
    naming_commands = True
    for word in words:
        if word.startswith("-"):
            option = word.split("=")[0]
            known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
            if option not in known:
                yield f"`{' '.join(path)}` has no option {option}"
        elif naming_commands and isinstance(command, click.Group):
            sub = command.commands.get(word)
            if sub is None:
                yield f"`{' '.join(path)}` has no command {word!r}"
                return
            command = sub
            path.append(word)
        else:
            naming_commands = False  # an argument or an option's value: the command is named


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_crmhub_command_and_option_shown_exists(doc: Path) -> None:
    root = _cli()
    problems = sorted({p for words in _commands(_text(doc)) for p in _problems(root, words)})
    assert not problems, f"{doc.name}: {problems}"


def test_the_command_check_finds_a_missing_option_and_command() -> None:
    """The parser above must see what it checks: a stale option or command in a doc fails the test."""
    root = _cli()
    text = "Run `crmhub worker --metrics-port 9100 --metric-host x` then\n```\ncrmhub sources helth   # oops\n```\n"
    assert sorted(p for words in _commands(text) for p in _problems(root, words)) == [
        "`crmhub sources` has no command 'helth'", "`crmhub worker` has no option --metric-host"]


# ------------------------------------------------------------------ JSON answers described key by key


def _table_keys(text: str, header: str) -> set[str]:
    """The backticked names in the first column of the markdown table under `header`."""
    table = text.split(header, 1)[1].split("\n\n", 1)[0]
    return {key for row in table.splitlines()[2:] for key in re.findall(r"`(\w+)`", row.split("|")[1])}


def _backticked(paragraph: str) -> set[str]:
    return set(re.findall(r"`(\w+)`", paragraph))


def test_the_import_report_has_the_keys_docs_import_md_shows(hub: Hub, tmp_path: Path) -> None:
    from hub.importer import run_import
    from tests.connectors.spreadsheet.files import HEADER, write_csv

    doc = _text(ROOT / "docs" / "import.md")
    shown = json.loads(doc.split("```json", 1)[1].split("```", 1)[0])
    path = write_csv(tmp_path / "customers.csv", [HEADER, ["腾讯科技", "张三", "13800138000", None, None, "深圳"]])
    report = run_import(hub, str(path), dry_run=True)
    assert set(report) == set(shown) and set(report["issues"]) == set(shown["issues"])


def test_the_quality_report_has_the_keys_docs_quality_md_lists(hub: Hub) -> None:
    from hub.quality_report import build_report

    listed = _table_keys(_text(ROOT / "docs" / "quality.md"), "| key | meaning |")
    assert set(build_report(hub)) | {"quarantined_rows"} == listed


@pytest.fixture
def private_hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub that accepts an endpoint on 127.0.0.1 (never called here)."""
    from tests.conftest import make_hub, make_settings, running

    yield from running(make_hub(make_settings(tmp_path, allow_private_endpoints=True)))


def test_source_and_endpoint_health_have_the_keys_docs_webhooks_md_lists(private_hub: Hub) -> None:
    from sqlalchemy import select

    from hub.api import create_source
    from hub.schemas import SourceCreate
    from webhooks.api import EndpointCreate, create_endpoint, get_source_health
    from webhooks.health import endpoint_health
    from webhooks.models import EndpointRow

    doc = _text(ROOT / "docs" / "webhooks.md").splitlines()
    sources_doc = _backticked(next(line for line in doc if line.startswith("`GET /v1/health/sources` →")))
    endpoint_doc = _backticked(next(line for line in doc if line.startswith("`GET /v1/endpoints/{id}/health` →")))
    create_source(private_hub, SourceCreate(connector="web", name="site", config={"write_key": "a-long-random-key"}))
    create_endpoint(EndpointCreate(url="http://127.0.0.1:9/hook"), private_hub)
    (item,) = get_source_health(private_hub)["items"]
    with private_hub.sessions() as session:
        health = endpoint_health(session, session.scalars(select(EndpointRow)).one())
    assert set(item) - sources_doc == set() and set(health) - endpoint_doc == set()


# ------------------------------------------------------------------ connector guides: the config keys they show

CONNECTOR_DOCS = sorted((ROOT / "docs" / "connectors").glob("*.md"))


def _config_keys_shown(text: str) -> set[str]:
    """The keys a guide tells an integrator to put in a source's config.

    The first column of its `| config key |` / `| key |` table, the top-level keys of every `"config": {…}` example
    (nested objects, `label_map`'s captions or `channel_roles`' directions, are values, not keys), and of an inline
    JSON object in its set-up section (credit_registry.md's `{"provider": "tianyancha", "token": "…"}`).
    """
    shown: set[str] = set()
    for section in re.findall(r"^## (?:Setup|\d+\. Create the source)\n(.*?)(?=^## |\Z)", text, re.M | re.S):
        for span in re.findall(r"`(\{[^`]*\})`", section):
            try:
                shown |= set(json.loads(span))
            except ValueError:
                continue
    for table in re.finditer(r"^\| (?:config key|key) \|.*\n\|[-| ]+\|\n((?:\|.*\n?)+)", text, re.M):
        for row in table.group(1).splitlines():
            shown |= set(re.findall(r"`(\w+)`", row.split("|")[1]))
    for example in re.finditer(r'"config":\s*\{', text):
        depth, end = 1, example.end()
        while depth and end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        body = text[example.end():end - 1]
        while re.search(r"\{[^{}]*\}", body):
            body = re.sub(r"\{[^{}]*\}", "0", body)
        shown |= set(re.findall(r'"(\w+)"\s*:', body))
    return shown


@pytest.mark.parametrize("doc", CONNECTOR_DOCS, ids=[p.stem for p in CONNECTOR_DOCS])
def test_every_config_key_a_connector_guide_shows_is_one_the_connector_accepts(hub: Hub, doc: Path) -> None:
    """A key the connector does not know is refused (422 `invalid_config`, "unknown config key") when pasted."""
    shown = _config_keys_shown(_text(doc))
    unknown = sorted(shown - hub.connectors.get(doc.stem).config_keys())
    assert shown and not unknown, f"{doc.name} shows config keys the {doc.stem} connector refuses: {unknown}"


def test_the_config_key_check_reads_tables_and_examples() -> None:
    """The parser above must see what it checks: a table row and an example's top-level keys, not nested ones."""
    text = ('## Setup\n- `{"provider": "qichacha", "app_kye": "…"}`\n\n## Events\n`{"accepted": 1}`\n'
            '| config key | required |\n|---|---|\n| `token` | yes |\n| `base_ur` | no |\n\n'
            '{"connector": "x", "config": {"secret": "s", "label_map": {"想学的课程": "message"}, "scope": null}}')
    assert _config_keys_shown(text) == {"provider", "app_kye", "token", "base_ur", "secret", "label_map", "scope"}
