"""Terminal side of `crmhub import` and `crmhub quality report`: progress bar, summaries, files written.

Kept apart from hub/cli.py so the command definitions stay one screen each; the work itself is in
hub/importer.py and hub/quality_report.py.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from hub.cli_output import cut, table_time, terminal_safe
from hub.errors import HubError
from hub.gcpolicy import settle_gc
from hub.runtime import Hub, set_hub

_INTERRUPTED = ("interrupted: the rows stored so far are kept; run the same command again to import the rest (rows "
                "already imported are recognised, none is imported twice)")
_INTERRUPTED_DRY = "interrupted: a dry run, nothing was written"


def parse_mappings(mappings: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in mappings:
        column, sep, field = item.partition("=")
        if not sep or not column.strip() or not field.strip():
            raise click.BadParameter(f"{item!r}: use COLUMN=FIELD, e.g. --map 座机=phone", param_hint="--map")
        out[column.strip()] = field.strip()
    return out


def dry_run_hub() -> tuple[Hub, bool]:
    """(a hub, whether the database is empty) for a dry run, which reads the database but never migrates it, nor
    creates it or a secret key: a database not created yet is read as empty, one at an older or unknown revision is
    an error that says how to migrate it."""
    from hub.cli import hub_for_cli
    from hub.db import make_engine
    from hub.migrate import schema_state
    from hub.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        state = schema_state(engine)
    finally:
        engine.dispose()
    if state in ("behind", "unknown"):
        what = "an older schema" if state == "behind" else "a schema this crmhub does not know"
        raise HubError(f"the database has {what}, and a dry run changes nothing, so it does not migrate: start "
                       "`crmhub serve` once (it migrates), or upgrade crmhub, then run the dry run again",
                       code="schema_not_current")
    if state != "absent":
        return hub_for_cli(migrate=False), False
    # Nothing stored, nothing sealed: a database in memory and a key for this run only, so no file is made.
    unsealed = settings.model_copy(update={"secret_key": settings.secret_key or secrets.token_urlsafe(32)})
    hub = Hub(unsealed, engine=make_engine("sqlite://"))
    set_hub(hub)
    return hub, True


def run_import_command(
    hub: Hub, file: str, *, source_name: str, dry_run: bool, report_path: str | None, mappings: tuple[str, ...],
    batch_size: int, empty_database: bool = False,
) -> None:
    """`empty_database`: a dry run against a database not created yet, which it must not create by reading it."""
    from hub.importer import run_import

    overrides = parse_mappings(mappings)
    target = Path(report_path) if report_path else Path(file + ".report.json")
    if Path(file).is_file():  # otherwise the import names the missing file, the clearer problem
        check_report_target(target)
    console = Console(stderr=True)
    if not dry_run:  # a dry run queues nothing, and must not run the in-process schedules either
        hub.start()
    settle_gc()
    try:
        with Progress(TextColumn("[bold]importing[/] {task.description}"), BarColumn(), TaskProgressColumn(),
                      TimeRemainingColumn(), console=console, transient=True,
                      disable=not shows_a_bar(console)) as bar:
            task_id = bar.add_task(Path(file).name, total=None)
            report = run_import(hub, file, source_name=source_name, dry_run=dry_run, overrides=overrides,
                                batch_rows=batch_size, empty_database=empty_database,
                                progress=lambda done, total: bar.update(task_id, completed=done, total=total))
        if not dry_run:
            hub.runner.join(timeout=600)  # deliveries the import queued (in-process runtime)
    except KeyboardInterrupt:  # Ctrl-C: say whether running it again is safe, rather than click's bare "Aborted!"
        raise HubError(_INTERRUPTED_DRY if dry_run else _INTERRUPTED, code="interrupted") from None
    finally:
        hub.stop()
    try:
        target.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:  # a full disk, say: the rows are in, so the summary is shown before the error
        click.echo(_summary(report, None))
        raise HubError(f"cannot write the report to {target}: {exc.strerror or exc}", code="report_unwritable") from exc
    click.echo(_summary(report, target))


def shows_a_bar(console: Console) -> bool:
    """Only a real, interactive terminal gets the bar, which redraws itself ten times a second: a log gets none (nor
    a stray blank line). Rich takes FORCE_COLOR, which CI configs set for coloured logs, to mean a terminal, so the
    stream itself is asked too; TTY_INTERACTIVE=0 turns the bar off."""
    isatty = getattr(console.file, "isatty", None)
    return console.is_interactive and callable(isatty) and bool(isatty())


def check_report_target(target: Path) -> None:
    """Refuse a report path that cannot be written before importing: after it, the rows are in, and a re-run
    would only show them as duplicates, so the user would never learn what the import did."""
    from hub.export import unwritable_reason

    problem = unwritable_reason(target)
    if problem:
        raise HubError(f"cannot write the report to {target}: {problem}; nothing was imported",
                       code="report_unwritable")


def _summary(report: dict[str, Any], target: Path | None) -> str:
    issues = ", ".join(f"{k} {v}" for k, v in report["issues"].items() if v) or "none"
    lines = [
        f"{'dry run: ' if report['dry_run'] else ''}{report['rows']} rows in {report['seconds']:.1f}s — "
        f"imported {report['imported']}, quarantined {report['quarantined']}, duplicates {report['duplicates']}",
        "customers: none created or matched in a dry run" if report["customers_created"] is None else
        f"customers created {report['customers_created']}, matched {report['customers_matched']}",
        f"issues: {issues}; merged cells {report['merged_cells']}; BOM {'yes' if report['bom'] else 'no'}",
    ]
    lines += [f"warning [{w['code']}]: {w['detail']}" for w in report["warnings"]]
    if target is not None:
        lines.append(f"report: {target}")
    return "\n".join(lines)


def run_quality_command(hub: Hub, *, since: datetime | None, as_json: bool, limit: int,
                        export_path: str | None) -> None:
    from hub.export import check_export_target, write_table
    from hub.quality_report import build_report, quarantined_rows

    if export_path:
        check_export_target(export_path)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    report = build_report(hub, since=since)
    window = datetime.fromisoformat(report["since"])
    rows = quarantined_rows(hub, since=window, limit=limit)
    if as_json:
        click.echo(json.dumps({**report, "quarantined_rows": rows}, ensure_ascii=False, indent=2))
    else:
        click.echo(_quality_text(report, rows))
    if export_path:
        every = quarantined_rows(hub, since=window)
        count = write_table(export_path, ["created_at", "reason", "detail", "file", "row", "values"],
                            ([r["created_at"], r["reason"], r["detail"], r["file"], r["row"], r["values"]]
                             for r in every))
        click.echo(f"exported {count} quarantined row(s) to {export_path}")


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _quality_text(report: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [f"data health since {report['since']} ({report['events']} events)",
             f"duplicate rate: {_pct(report['duplicate_rate'])} ({report['duplicates']} duplicates)",
             f"abnormal-character rate: {_pct(report['abnormal_char_rate'])}"]
    if report["empty_value_rate"]:
        lines.append("empty values (imported records): " + ", ".join(
            f"{k} {_pct(v)}" for k, v in report["empty_value_rate"].items()))
    lines.append("invalid identifiers: " + ", ".join(f"{k} {v}" for k, v in report["invalid_identifiers"].items()))
    lines.append("quarantined: " + (", ".join(f"{k} {v}" for k, v in report["quarantine"].items()) or "none"))
    for row in rows:
        where = f"{row['file']} row {row['row']}" if row["file"] else row["id"]
        line = f"  {table_time(row['created_at'])}  {row['reason']:<20} {where}  {cut(row['detail'], 80)}"
        lines.append(terminal_safe(line))
    return "\n".join(lines)

