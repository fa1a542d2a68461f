"""`crmhub import` end to end: pipeline, idempotent re-import, dry run, report shape, CLI exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.importer import run_import
from hub.models import EventRow, QuarantineRow, RawEvent, SourceRow
from hub.runtime import Hub
from tests.helpers import count_events

from .files import GOOD_USCC, HEADER, write_csv, write_xlsx

REPORT_KEYS = {"file", "rows", "imported", "quarantined", "duplicates", "customers_created", "customers_matched",
               "warnings", "issues", "merged_cells", "bom", "seconds"}
ISSUE_KEYS = {"invisible_chars", "formula_residue", "invalid_phone", "invalid_email", "short_company_name",
              "invalid_uscc"}

ROWS = [
    HEADER,
    ["腾讯科技", "张\u200e三", "13800138000", "zs@example.com", GOOD_USCC, "深圳"],
    ["=VLOOKUP(A2,Sheet2!A:B,2,0)", "李四", "13900139000", None, None, "北京"],
    ["阿里", "王五", "12345", "ww@example.com", "123", "杭州"],
    ["字节跳动", "赵六", "12345", "bad@", None, None],
    ["腾讯科技", "张三", "13800138000", "zs@example.com", GOOD_USCC, "深圳"],  # duplicate of row 2 once cleaned
]


def _count(hub: Hub, model: type) -> int:
    with hub.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_import_report_pipeline_and_idempotent_reimport(hub: Hub, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "legacy.xlsx", ROWS, merges=())
    report = run_import(hub, str(path))
    assert REPORT_KEYS <= set(report) and ISSUE_KEYS <= set(report["issues"])
    assert (report["rows"], report["imported"], report["quarantined"], report["duplicates"]) == (5, 2, 2, 1)
    assert report["issues"]["invisible_chars"] == 1 and report["issues"]["formula_residue"] == 1
    assert report["issues"]["invalid_phone"] == 2 and report["issues"]["invalid_email"] == 1
    assert report["issues"]["short_company_name"] == 1 and report["issues"]["invalid_uscc"] == 1
    assert report["customers_created"] == 2 and report["customers_matched"] == 0
    assert report["bom"] is False and report["merged_cells"] == 0 and isinstance(report["seconds"], float)
    assert count_events(hub, type="record.imported") == 2
    with hub.sessions() as s:
        reasons = sorted(s.scalars(select(QuarantineRow.reason)))
        details = sorted(s.scalars(select(QuarantineRow.detail)))
        source = s.scalars(select(SourceRow).where(SourceRow.name == "import")).one()
        data = s.scalars(select(EventRow.data).where(EventRow.type == "record.imported")).all()
    assert reasons == ["formula_residue", "no_person_identity"] and source.connector == "spreadsheet"
    assert details == ["row 3: formula_residue in 客户名称",  # each reason names the column to fix
                       "row 5: no_person_identity: no usable phone or email in 手机号, 邮箱; phone '12345' left out; "
                       "email 'bad@' left out"]
    first = next(d for d in data if d["properties"]["row"] == 2)
    assert first["properties"]["record"]["name"] == "张三"
    assert {i["code"] for i in first["quality"]["issues"]} >= {"invisible_chars_removed"}
    assert {"type": "phone", "value": "+8613800138000"} in first["identities"]

    events, raws, quarantined = _count(hub, EventRow), _count(hub, RawEvent), _count(hub, QuarantineRow)
    again = run_import(hub, str(path))
    assert (again["imported"], again["duplicates"], again["quarantined"]) == (0, 3, 2)
    assert (_count(hub, EventRow), _count(hub, RawEvent), _count(hub, QuarantineRow)) == (events, raws, quarantined)


def test_rows_already_known_match_existing_customers(hub: Hub, tmp_path: Path) -> None:
    run_import(hub, str(write_csv(tmp_path / "a.csv", ROWS[:2])))
    report = run_import(hub, str(write_csv(tmp_path / "b.csv", [HEADER, ["腾讯科技", "张三", "13800138000",
                                                                          None, None, "广州"]])))
    assert (report["imported"], report["customers_created"], report["customers_matched"]) == (1, 0, 1)


def test_two_columns_for_one_field_keep_both_values(hub: Hub, tmp_path: Path) -> None:
    """The second 备注 (or 电话 next to 手机) was dropped, and so were rows differing only there (helper-20)."""
    rows = [["客户名称", "联系人", "手机", "电话", "备注", "备注"],
            ["腾讯科技", "张三", "13800138041", "13900139041", "r1", "r2"],
            ["腾讯科技", "张三", "13800138041", None, "r1", "other"]]
    report = run_import(hub, str(write_csv(tmp_path / "dup.csv", rows)))
    assert (report["rows"], report["imported"], report["duplicates"]) == (2, 2, 0)
    with hub.sessions() as s:
        data = s.scalars(select(EventRow.data).where(EventRow.type == "record.imported")).all()
    first = next(d for d in data if d["properties"]["row"] == 2)
    kept = first["properties"]["extra"] | first["properties"]["record"]
    assert "r1; r2" in kept.values() and kept["phone"] == "13800138041; 13900139041"
    assert {"type": "phone", "value": "+8613900139041"} in first["identities"]


def test_dry_run_changes_nothing(hub: Hub, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ROWS, "utf-8-sig")
    report = run_import(hub, str(path), dry_run=True)
    assert (report["rows"], report["imported"], report["quarantined"], report["duplicates"]) == (5, 2, 2, 1)
    assert report["bom"] is True and report["dry_run"] is True and report["customers_created"] is None
    assert _count(hub, EventRow) == _count(hub, RawEvent) == _count(hub, QuarantineRow) == _count(hub, SourceRow) == 0


@pytest.fixture
def cli_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: hub)
    return hub


def test_cli_import_writes_the_report_and_exit_codes(cli_hub: Hub, tmp_path: Path) -> None:
    from hub.cli import cli

    path = write_xlsx(tmp_path / "c.xlsx", ROWS)
    target = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["import", str(path), "--report", str(target), "--map", "城市=ignore"])
    assert result.exit_code == 0, result.output
    report = json.loads(target.read_text(encoding="utf-8"))
    assert report["imported"] == 2 and "imported 2" in result.output

    missing = CliRunner().invoke(cli, ["import", str(tmp_path / "nope.xlsx")])
    assert missing.exit_code == 1 and "no such file" in missing.output
    bad_map = CliRunner().invoke(cli, ["import", str(path), "--map", "nonsense"])
    assert bad_map.exit_code == 2
    bad_field = CliRunner().invoke(cli, ["import", str(path), "--map", "手机号=phon"])
    assert bad_field.exit_code == 1 and isinstance(bad_field.exception, SystemExit)  # a message, no traceback
    assert bad_field.output.startswith("error: --map 手机号=phon") and "did you mean 'phone'" in bad_field.output
    folder = CliRunner().invoke(cli, ["import", str(tmp_path)])
    assert folder.exit_code == 1 and "is a directory" in folder.output
    (tmp_path / "junk.xlsx").write_bytes(b"junk")
    assert CliRunner().invoke(cli, ["import", str(tmp_path / "junk.xlsx")]).exit_code == 1
    assert CliRunner().invoke(cli, ["import"]).exit_code == 2


def test_cli_dry_run_writes_report_only(cli_hub: Hub, tmp_path: Path) -> None:
    from hub.cli import cli

    path = write_csv(tmp_path / "g.csv", ROWS, "gb18030")
    result = CliRunner().invoke(cli, ["import", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    report = json.loads(Path(str(path) + ".report.json").read_text(encoding="utf-8"))
    assert report["dry_run"] and report["rows"] == 5
    assert _count(cli_hub, EventRow) == 0


def test_dry_run_row_keys_use_the_whole_id() -> None:
    """The key took the id's last 8 hex characters (32 bits): different rows could count as duplicates."""
    from hub.importer import _id_key

    a, b = "row:" + "a" * 32 + "12345678", "row:" + "b" * 32 + "12345678"
    assert _id_key(a) != _id_key(b) and _id_key(a) == _id_key(a) and _id_key(a) < 2**64


def test_a_reimport_whose_batches_shifted_quarantines_no_row_twice(hub: Hub, tmp_path: Path) -> None:
    """One row inserted at the top moves every batch boundary: each new batch held the same bad rows, and
    they were quarantined again (a 3,000-row file's 31 quarantine rows became 62; helper-20)."""
    good = [[f"公司{i}有限公司", f"人{i}", f"1391234{i:04d}", None, None, None] for i in range(6)]
    bad = [["=VLOOKUP(A2,Sheet2!A:B,2,0)", "坏", "13700137000", None, None, None],
           ["某某科技有限公司", "无号", "12345", None, None, None]]
    first = run_import(hub, str(write_csv(tmp_path / "a.csv", [HEADER, *good[:3], *bad, *good[3:]])), batch_rows=2)
    assert first["quarantined"] == 2 and _count(hub, QuarantineRow) == 2
    new_row = ["新公司有限公司", "新人", "13600136000", None, None, None]
    again = run_import(hub, str(write_csv(tmp_path / "b.csv", [HEADER, new_row, *good[:3], *bad, *good[3:]])),
                       batch_rows=2)
    assert (again["imported"], again["quarantined"]) == (1, 2)  # the report still names the file's bad rows
    assert _count(hub, QuarantineRow) == 2
    assert count_events(hub, type="record.imported") == 7


def test_an_unwritable_report_path_is_refused_before_anything_is_imported(cli_hub: Hub, tmp_path: Path) -> None:
    """The rows used to be imported first, then the command failed without a summary; a re-run only showed
    them as duplicates, so the user never learned what the import did (helper-21)."""
    from hub.cli import cli

    path = write_csv(tmp_path / "r.csv", ROWS)
    (tmp_path / "a-file").write_text("")
    for target in (tmp_path / "missing" / "r.json", tmp_path / "a-file" / "r.json"):
        result = CliRunner().invoke(cli, ["import", str(path), "--report", str(target)])
        assert result.exit_code == 1 and "cannot write the report" in result.output, result.output
        assert "nothing was imported" in result.output
    assert _count(cli_hub, EventRow) == _count(cli_hub, RawEvent) == 0


def test_a_bad_row_quarantined_last_week_and_imported_again_shows_in_todays_report(any_hub: Hub,
                                                                                   tmp_path: Path) -> None:
    """Skipping a keyed row already held left today's report without it (helper-23): it is refreshed instead,
    pointing at today's file and row, so the table still holds it once."""
    from datetime import timedelta

    from sqlalchemy import update

    from hub.quality_report import build_report
    from hub.schemas import utcnow

    bad = ["某某科技有限公司", "无号", "12345", None, None, None]
    run_import(any_hub, str(write_csv(tmp_path / "march.csv", [HEADER, ["腾讯科技有限公司", "张三", "13800138000",
                                                                     None, None, None], bad])))
    with any_hub.transaction() as s:  # that import was last week
        s.execute(update(QuarantineRow).values(created_at=utcnow() - timedelta(days=7)))
    assert build_report(any_hub)["quarantined"] == 0
    today = run_import(any_hub, str(write_csv(tmp_path / "april.csv", [HEADER, bad])))
    assert today["quarantined"] == 1 and build_report(any_hub)["quarantined"] == 1
    with any_hub.sessions() as s:
        (row,) = s.scalars(select(QuarantineRow)).all()
    assert row.payload["item"]["file"] == "april.csv" and row.payload["item"]["row"] == 2


def test_source_names_are_trimmed_and_an_empty_one_is_refused(cli_hub: Hub, tmp_path: Path) -> None:
    """--source " crm " worked once, then failed with "a source named 'crm' exists"; --source "" was a
    traceback; a missing file was reported as an unwritable report (helper-23)."""
    from hub.cli import cli

    path = write_csv(tmp_path / "s.csv", ROWS)
    for _ in range(2):
        result = CliRunner().invoke(cli, ["import", str(path), "--source", " crm "])
        assert result.exit_code == 0, result.output
    empty = CliRunner().invoke(cli, ["import", str(path), "--source", ""])
    assert empty.exit_code == 1 and "--source needs a name" in empty.output
    missing = CliRunner().invoke(cli, ["import", str(tmp_path / "nowhere" / "c.xlsx")])
    assert missing.exit_code == 1 and "no such file" in missing.output


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_bad_row_repeated_in_the_file_is_quarantined_once_and_counted_once(hub: Hub, tmp_path: Path,
                                                                             dry_run: bool) -> None:
    """The quarantine keeps one row per content; the report's `quarantined` said 2 for it (a known gap)."""
    bad = ["=VLOOKUP(A2,Sheet2!A:B,2,0)", "李四", "13900139000", None, None, "北京"]
    path = write_csv(tmp_path / "twice.csv", [HEADER, bad, ROWS[1], bad])
    report = run_import(hub, str(path), dry_run=dry_run)
    assert (report["rows"], report["imported"], report["quarantined"], report["duplicates"]) == (3, 1, 1, 1)
    assert report["issues"]["formula_residue"] == 2  # issues still count rows
    if not dry_run:
        assert _count(hub, QuarantineRow) == 1


def test_a_quarantined_row_keeps_every_cell_and_names_every_column_to_fix(hub: Hub, tmp_path: Path) -> None:
    """The payload was keyed by header, so a repeated or blank header (and a cell past the header row) lost
    cells; the detail named the last column of a field, not the one holding the formula."""
    rows = [["客户名称", "联系人", "手机", "电话", "备注", "备注", None, "邮箱"],
            ["腾讯科技", "张三", "=A2", "13900139000", "r1", "r2", "无表头", "zs@example.com", "表外"],
            ["阿里巴巴", "李四", "=A3", "=B3", None, None, None, "ls@example.com"]]
    report = run_import(hub, str(write_csv(tmp_path / "q.csv", rows)))
    assert report["quarantined"] == 2
    with hub.sessions() as s:
        held = {r.payload["item"]["row"]: r for r in s.scalars(select(QuarantineRow))}
    assert held[2].detail == "row 2: formula_residue in 手机"
    assert held[3].detail == "row 3: formula_residue in 手机, 电话"
    assert held[2].payload["item"]["values"] == {
        "客户名称": "腾讯科技", "联系人": "张三", "手机": "=A2", "电话": "13900139000", "备注 (column E)": "r1",
        "备注 (column F)": "r2", "column G": "无表头", "邮箱": "zs@example.com", "column I": "表外"}


def _every_table(hub: Hub) -> dict[str, list[str]]:
    from hub.db import Base

    with hub.sessions() as s:
        return {t.name: sorted(map(repr, s.execute(select(t)).all())) for t in Base.metadata.sorted_tables}


def test_a_dry_run_changes_no_row_of_any_table(hub: Hub, tmp_path: Path) -> None:
    """Rows already stored (good and quarantined) and new ones, under the stored source and under a new one."""
    run_import(hub, str(write_csv(tmp_path / "a.csv", ROWS)))
    before = _every_table(hub)
    assert before["events"] and before["quarantine"]
    again = [*ROWS, ["新公司", "新人", "13700137000", "x@example.com", None, None], ["=SUM(A1)", "坏", "13600136000"]]
    for source in ("import", "elsewhere"):
        report = run_import(hub, str(write_csv(tmp_path / "b.csv", again)), dry_run=True, source_name=source)
        assert report["rows"] == 7 and report["dry_run"] is True
        assert _every_table(hub) == before


def test_the_progress_bar_stays_out_of_a_log_even_when_ci_forces_colour(cli_hub: Hub, tmp_path: Path) -> None:
    """FORCE_COLOR (set in CI configs for coloured logs) made rich draw the bar into the log ten times a second."""
    from hub.cli import cli

    path = write_csv(tmp_path / "c.csv", ROWS)
    result = CliRunner().invoke(cli, ["import", str(path), "--dry-run"], env={"FORCE_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "importing" not in result.stderr and "\x1b[" not in result.output and "\r" not in result.output
    assert "dry run: 5 rows" in result.stdout


def test_ctrl_c_mid_import_says_run_it_again_and_the_rerun_loses_and_doubles_nothing(
    cli_hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between storing a batch and processing it; click said only `Aborted!`."""
    from hub import pipeline
    from hub.cli import cli

    rows = [HEADER, *([f"公司{n}有限公司", f"联系人{n}", f"1380013{n:04d}", None, None, "深圳"] for n in range(10))]
    path, target = write_csv(tmp_path / "ten.csv", rows), tmp_path / "r.json"
    real, calls = pipeline.process_raw, []

    def interrupted_second_batch(raw_id: object) -> object:
        calls.append(raw_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(raw_id)

    monkeypatch.setattr(pipeline, "process_raw", interrupted_second_batch)
    args = ["import", str(path), "--batch-size", "4", "--report", str(target)]
    stopped = CliRunner().invoke(cli, args)
    assert stopped.exit_code == 1 and stopped.output.startswith("error: interrupted: the rows stored so far are kept; "
                                                                "run the same command again")
    assert count_events(cli_hub, type="record.imported") == 4 and _count(cli_hub, RawEvent) == 2
    monkeypatch.setattr(pipeline, "process_raw", real)
    assert CliRunner().invoke(cli, args).exit_code == 0
    report = json.loads(target.read_text(encoding="utf-8"))
    assert (report["rows"], report["imported"], report["duplicates"], report["customers_created"]) == (10, 6, 4, 6)
    assert count_events(cli_hub, type="record.imported") == 10 and _count(cli_hub, RawEvent) == 3


def _cli(tmp_path: Path, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: this checkout's code, not whichever one the editable install points at (a worktree's tests ran
    # main's newer migrations in the subprocess and then compared them with their own).
    env = {**os.environ, "CRMHUB_DATABASE_URL": database, "CRMHUB_DATA_DIR": str(tmp_path / "data"),
           "CRMHUB_BROKER_URL": "", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, check=False)


def test_a_dry_run_on_a_fresh_machine_creates_no_database(tmp_path: Path) -> None:
    """A dry run changes nothing: it used to create the SQLite file and migrate it before reading the file."""
    path = write_csv(tmp_path / "legacy.csv", ROWS, "utf-8")
    database = tmp_path / "hub.db"
    result = _cli(tmp_path, f"sqlite:///{database}", "import", str(path), "--dry-run", "--report",
                  str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert (report["rows"], report["imported"], report["quarantined"], report["duplicates"]) == (5, 2, 2, 1)
    assert not database.exists() and not Path(f"{database}.migrate-lock").exists()


def test_a_dry_run_refuses_a_database_it_would_have_to_migrate(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from hub.migrate import schema_state, upgrade

    database = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = create_engine(database)
    upgrade(engine, "0008")
    path = write_csv(tmp_path / "legacy.csv", ROWS, "utf-8")
    result = _cli(tmp_path, database, "import", str(path), "--dry-run")
    assert result.returncode == 1
    assert "older schema" in result.stderr and "crmhub serve" in result.stderr
    assert schema_state(engine) == "behind" and not Path(str(path) + ".report.json").exists()
    assert _cli(tmp_path, database, "import", str(path)).returncode == 0  # a real import migrates, as before
    assert schema_state(engine) == "current"
    engine.dispose()
