"""Data-health report (CLI, API, daily event) and export neutralisation (CSV injection)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st
from openpyxl import load_workbook

from hub.export import write_table
from hub.importer import run_import
from hub.models import QuarantineRow
from hub.quality_report import build_report, daily
from hub.runtime import Hub
from hub.schemas import utcnow
from tests.helpers import ADMIN, client_for, count_events

from .files import HEADER, write_csv

ROWS = [HEADER,
        ["腾讯科技", "张\u200e三", "13800138000", None, None, "深圳"],
        ["=HYPERLINK(\"http://x\")", "李四", "13900139000", None, None, None],
        ["阿里巴巴", "王五", "13700137000", "bad@", None, None],
        ["阿里巴巴", "王五", "13700137000", "bad@", None, None]]


@pytest.fixture
def imported(hub: Hub, tmp_path: Path) -> Hub:
    run_import(hub, str(write_csv(tmp_path / "q.csv", ROWS)))
    return hub


def test_report_counts(imported: Hub) -> None:
    report = build_report(imported)
    assert report["events"] == 2 and report["records"] == 2
    assert report["quarantine"] == {"formula_residue": 1} and report["quarantined"] == 1
    assert report["invalid_identifiers"]["invalid_email"] == 1
    assert report["abnormal_char_rate"] == 0.5
    assert report["empty_value_rate"]["email"] == 0.5 and report["empty_value_rate"]["phone"] == 0.0
    assert report["empty_value_rate"]["uscc"] == 1.0  # empty in every row: it used to be left out
    assert report["duplicate_rate"] == pytest.approx(1 / 3, abs=1e-3)


def test_invalid_identifiers_count_quarantined_rows_too(hub: Hub, tmp_path: Path) -> None:
    """A row quarantined because its only phone is invalid still has an invalid phone to report."""
    rows = [HEADER, ["腾讯科技", "张三", "12345", None, None, None],
            ["阿里巴巴", "王五", "13700137000", None, None, None]]
    run_import(hub, str(write_csv(tmp_path / "p.csv", rows)))
    report = build_report(hub)
    assert report["quarantine"] == {"no_person_identity": 1} and report["events"] == 1
    assert report["invalid_identifiers"]["invalid_phone"] == 1


def test_api_requires_token_and_returns_the_report(imported: Hub) -> None:
    client = client_for(imported)
    assert client.get("/v1/quality").status_code == 401
    body = client.get("/v1/quality?quarantine_limit=5", headers=ADMIN).json()
    assert body["quarantine"] == {"formula_residue": 1}
    assert body["quarantined_rows"][0]["values"]["客户名称"].startswith("=HYPERLINK")


def test_api_lists_the_quarantined_rows_of_the_reports_window_as_the_cli_does(
    imported: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `since`, the report covers 24 h but the API listed every quarantined row ever kept (a row from last
    month beside `quarantined: 1`), while `crmhub quality report --json` lists the window's rows only."""
    from hub.cli import cli

    with imported.transaction() as session:
        session.add(QuarantineRow(reason="invalid_pos_event", detail="last month", payload={},
                                  created_at=utcnow() - timedelta(days=30)))
    api = client_for(imported).get("/v1/quality?quarantine_limit=10", headers=ADMIN).json()
    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: imported)
    from_cli = json.loads(CliRunner().invoke(cli, ["quality", "report", "--json"]).output)
    assert api["quarantine"] == from_cli["quarantine"] == {"formula_residue": 1}
    assert [r["reason"] for r in api["quarantined_rows"]] == ["formula_residue"]
    assert [r["id"] for r in api["quarantined_rows"]] == [r["id"] for r in from_cli["quarantined_rows"]]


def test_daily_task_stores_one_quality_report_event_per_day(imported: Hub) -> None:
    assert daily() == 1
    assert daily() == 0
    assert count_events(imported, type="quality.report") == 1
    assert count_events(imported, type="quality.report", customer_id=None) == 1  # no customer made up for it
    # Checked hourly: a 24 h interval restarts with the process, so a hub restarted daily never sent one.
    assert ("hub.quality_report.daily", 3600.0) in imported.schedules


def test_the_daily_check_does_not_rebuild_a_report_already_stored(imported: Hub,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert daily() == 1

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("today's report was built again")

    monkeypatch.setattr("hub.quality_report.build_report", no_rebuild)
    assert daily() == 0


def test_the_daily_report_covers_the_previous_utc_day_whatever_minute_it_runs(imported: Hub,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """It covered the 24 hours before the run: as the run's minute moved (restarts, downtime) consecutive reports
    overlapped or left gaps, and an event stored between two windows was in no report at all."""
    from datetime import timedelta

    from sqlalchemy import select, update

    from hub.models import EventRow, QuarantineRow, RawEvent

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    with imported.transaction() as session:
        events = {c["code"]: row for row in session.scalars(select(EventRow))
                  for c in row.data["quality"]["issues"]}
        moved = {events["invisible_chars_removed"].seq: today + timedelta(minutes=10),  # yesterday, at the run
                 events["invalid_email"].seq: tomorrow + timedelta(minutes=20)}  # the run's own day
        for seq, at in moved.items():
            session.execute(update(EventRow).where(EventRow.seq == seq).values(stored_at=at))
        session.execute(update(RawEvent).values(received_at=today + timedelta(minutes=10)))
        session.execute(update(QuarantineRow).values(created_at=tomorrow + timedelta(minutes=20)))
    monkeypatch.setattr("hub.quality_report.utcnow", lambda: tomorrow + timedelta(minutes=30))
    assert daily() == 1
    with imported.sessions() as session:
        report = session.scalars(select(EventRow.data).where(EventRow.type == "quality.report")).one()["properties"]
    assert report["events"] == 1 and report["abnormal_char_events"] == 1
    assert report["invalid_identifiers"]["invalid_email"] == 0 and report["quarantined"] == 0
    assert report["duplicate_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert (report["since"], report["until"]) == (today.isoformat(), tomorrow.isoformat())


@pytest.fixture
def pg_hub(pg_url: str, tmp_path: Path) -> Iterator[Hub]:
    from tests.conftest import make_hub, make_settings, running

    yield from running(make_hub(make_settings(tmp_path, pg_url)))


@pytest.mark.postgres
def test_two_overlapping_daily_runs_store_the_days_report_once(pg_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs storing at once (two beats, a task redelivered after the broker's visibility timeout) each found no
    report and stored one: hub-made events have no source_id, PostgreSQL's unique (source_id, source_event_id) lets
    NULLs repeat, and every endpoint got the day's report twice, under two webhook-ids."""
    import threading
    import time

    from sqlalchemy import text

    from hub import pipeline

    real_store = pipeline.store_internal
    first_stored, second_done = threading.Event(), threading.Event()

    def second_run_waits_on_a_lock() -> bool:
        with pg_hub.engine.connect() as conn:
            return bool(conn.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")))

    def store_and_hold(*args: Any, **kwargs: Any) -> int:
        """The first run keeps its transaction open until the second has finished or is waiting for it."""
        stored = real_store(*args, **kwargs)
        if threading.current_thread().name == "first-run":
            first_stored.set()
            deadline = time.monotonic() + 30  # only a safety net: either outcome is decided by the counts below
            while not (second_done.is_set() or second_run_waits_on_a_lock()) and time.monotonic() < deadline:
                time.sleep(0.02)
        return stored

    monkeypatch.setattr(pipeline, "store_internal", store_and_hold)
    results: list[int] = []

    def second() -> None:
        try:
            results.append(daily())
        finally:
            second_done.set()

    first = threading.Thread(target=lambda: results.append(daily()), name="first-run")
    first.start()
    assert first_stored.wait(30)
    other = threading.Thread(target=second)
    other.start()
    first.join(60)
    other.join(60)
    assert sorted(results) == [0, 1]
    assert count_events(pg_hub, type="quality.report") == 1


def test_cli_quality_report_lists_and_exports_neutralised(imported: Hub, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import cli

    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: imported)
    out = tmp_path / "q.csv"
    result = CliRunner().invoke(cli, ["quality", "report", "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert "formula_residue" in result.output and "exported 1" in result.output
    rows = list(csv.reader(out.open(encoding="utf-8-sig")))
    values = json.loads(rows[1][5])
    assert values["客户名称"].startswith("=HYPERLINK")  # inside JSON text: the cell itself starts with {
    as_json = CliRunner().invoke(cli, ["quality", "report", "--json"])
    assert json.loads(as_json.output)["quarantined"] == 1


def test_cli_quality_report_since_takes_an_offset_like_the_api(imported: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import cli

    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: imported)
    result = CliRunner().invoke(cli, ["quality", "report", "--json", "--since", "2000-01-01T08:00:00+0800"])
    assert result.exit_code == 0, result.output
    assert datetime.fromisoformat(json.loads(result.output)["since"]) == datetime(2000, 1, 1, tzinfo=UTC)
    result = CliRunner().invoke(cli, ["quality", "report", "--since", "0001-01-01T00:00:00+1400"])
    assert result.exit_code == 2 and "out of range" in result.stderr


@pytest.mark.parametrize(("where", "says", "code"), [
    ("missing/q.csv", "does not exist", 1),
    ("a-file/q.csv", "is not a folder", 1),
    ("a-folder.csv", "is a directory", 2),  # click's own check: a usage error
    ("q.txt", "export to .csv or .xlsx", 1),
])
def test_cli_export_to_an_unusable_path_is_one_line_before_the_report(
    imported: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, says: str, code: int
) -> None:
    from hub.cli import cli

    (tmp_path / "a-folder.csv").mkdir()
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: imported)
    result = CliRunner().invoke(cli, ["quality", "report", "--export", str(tmp_path / where)])
    assert result.exit_code == code, result.output
    assert says in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""  # refused before the report is printed


def test_export_that_fails_while_writing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.errors import InvalidRequest

    def full_disk(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "open", full_disk)
    with pytest.raises(InvalidRequest, match="No space left on device"):
        write_table(tmp_path / "q.csv", ["a"], [["1"]])


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_neutralises_formula_cells(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"e{suffix}"
    rows = [["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\t=x", "+8613800138000", "-12.5", "普通", 5]]
    assert write_table(path, ["a", "=b", "c", "d", "e", "f", "g", "h", "i"], rows) == 1
    if suffix == ".csv":
        header, row = list(csv.reader(path.open(encoding="utf-8-sig")))
    else:
        sheet = load_workbook(path).active
        header, row = ([c.value for c in r] for r in sheet.iter_rows())
        assert all(c.data_type != "f" for r in sheet.iter_rows() for c in r)
    assert header[1] == "'=b"
    assert row[:5] == ["'=1+2", "'+SUM(A1)", "'-2+3", "'@cmd", "'\t=x"]
    assert row[5] == "+8613800138000" and row[6] == "-12.5" and row[7] == "普通"


def test_xlsx_export_of_a_control_character_is_a_replacement_not_a_crash(tmp_path: Path) -> None:
    """A header with a stray \\x01 reaches the quarantine detail; openpyxl refused the whole export for it."""
    path = tmp_path / "q.xlsx"
    rows = [["row 2: no usable phone or email in 手机\x01号", "\x1b[31m红", "=\x00cmd", "tab\tand\nnewline"]]
    assert write_table(path, ["a", "b", "c", "d"], rows) == 1
    row = [c.value for c in list(load_workbook(path).active.iter_rows())[1]]
    assert row == ["row 2: no usable phone or email in 手机\ufffd号", "\ufffd[31m红", "'=\ufffdcmd",
                   "tab\tand\nnewline"]


@settings(max_examples=40, deadline=None)
@given(value=st.text(max_size=20))
def test_any_text_can_be_exported_to_xlsx(tmp_path_factory: pytest.TempPathFactory, value: str) -> None:
    path = tmp_path_factory.mktemp("x") / "q.xlsx"
    assert write_table(path, ["a"], [[value]]) == 1
    cell = list(load_workbook(path).active.iter_rows())[1][0]
    assert cell.data_type != "f"


def test_cli_report_of_a_header_with_control_characters_lists_and_exports_it(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quarantine detail names the header as the file has it: an ESC must not reach the terminal, and a \\x01
    must not stop the .xlsx export (openpyxl's IllegalCharacterError)."""
    from hub.cli import cli

    path = tmp_path / "ctl.csv"
    path.write_text("客户名称,联系人,手机\x1b\x01号\n腾讯科技,张三,abc\n", encoding="utf-8")
    run_import(hub, str(path))
    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: hub)
    out = tmp_path / "q.xlsx"
    result = CliRunner().invoke(cli, ["quality", "report", "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert "no_person_identity" in result.output and "手机\ufffd\ufffd号" in result.output
    assert "\x1b" not in result.output and "exported 1" in result.output
    detail = list(load_workbook(out).active.iter_rows())[1][2].value
    assert "手机\ufffd\ufffd号" in detail  # XML 1.0 holds no C0 control but tab, LF and CR


def test_cli_report_marks_a_quarantine_detail_it_cuts() -> None:
    """A detail cut at 80 characters mid-word ("no usable phone or email in 手") read as the whole, naming too few
    columns to fix: the cut is shown, and --json or --export has the rest."""
    from hub.import_cli import _quality_text

    report = {"since": "2026-12-07T00:00:00+00:00", "events": 1, "duplicate_rate": None, "duplicates": 0,
              "abnormal_char_rate": None, "empty_value_rate": {}, "invalid_identifiers": {}, "quarantine": {}}
    detail = "row 4: formula_residue in 手机号; no_person_identity: no usable phone or email in 手机号, 邮箱, 备用电话"
    short = "row 5: no_person_identity: no usable phone or email in 手机号, 邮箱"
    rows = [{"created_at": "2026-12-07T02:44:08", "reason": "formula_residue", "file": "c.xlsx", "row": 4,
             "id": "q1", "detail": detail},
            {"created_at": "2026-12-07T02:44:08", "reason": "no_person_identity", "file": "c.xlsx", "row": 5,
             "id": "q2", "detail": short}]
    long_line, short_line = _quality_text(report, rows).splitlines()[-2:]
    assert long_line.endswith(detail[:79] + "…") and short_line.endswith(short)
