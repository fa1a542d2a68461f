"""The `crmhub` command line (contract §2), assembled from `register_commands` hooks."""

from __future__ import annotations

import logging
import sys
import traceback
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from hub.cli_output import TimeOption, terminal_safe
from hub.errors import HubError
from hub.gcpolicy import settle_gc
from hub.runtime import Hub, current_hub, get_hub
from hub.settings import Settings, describe_invalid, get_settings, hide_url_password


class DatabaseUnusable(Exception):
    """The configured database URL cannot even be turned into an engine (bad URL, unknown dialect)."""


def _database_problem(exc: BaseException) -> str | None:
    """One line naming the database and what is wrong with it, or None when `exc` is not a database problem.

    Connection-level failures (unreachable server, unopenable or corrupt file, bad URL) are an operator's
    problem, not a bug: they get a message instead of a traceback. Constraint or SQL errors stay tracebacks.
    """
    if isinstance(exc, DatabaseUnusable):
        reason = str(exc.__cause__ or exc)
    elif isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or type(exc) is sa_exc.DatabaseError:
        reason = str(getattr(exc, "orig", None) or exc)
    else:
        return None
    hub = current_hub()
    try:
        where = _redact((hub.settings if hub else get_settings()).database_url)
    except Exception:  # the URL itself may be what is broken
        where = "(the configured URL)"
    return f"database {where} is unreachable or unusable: {' '.join(reason.split())}"


def _fail(message: str, details: Any = None) -> NoReturn:
    click.echo(f"error: {terminal_safe(message, lines=True)}", err=True)
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict) and item.get("message"):
            click.echo(terminal_safe(f"  {item.get('field') or 'request'}: {item['message']}", lines=True), err=True)
    sys.exit(1)


class HubGroup(click.Group):
    """Turns HubErrors and database failures into a message on stderr and exit code 1 (usage errors stay 2).

    Anything else is a bug and keeps its traceback; with --verbose a database failure shows its traceback too.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HubError as exc:
            _fail(exc.message, exc.details)
        except ValidationError as exc:
            if exc.title != Settings.__name__:
                raise  # any other model failing validation here is a bug
            _fail(describe_invalid(exc))
        except (DatabaseUnusable, sa_exc.DBAPIError) as exc:
            problem = _database_problem(exc)
            if problem is None:
                raise
            if ctx.params.get("verbose"):
                traceback.print_exc()
            _fail(problem)


@click.group(cls=HubGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level; show tracebacks of database failures.")
def cli(verbose: bool) -> None:
    """crmhub: one customer journey across Douyin, Xiaohongshu, the call centre, POS, ERP and more."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def hub_for_cli(migrate: bool = True) -> Hub:
    try:
        hub = get_hub()
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:  # only the engine is built from SQLAlchemy args
        raise DatabaseUnusable(str(exc)) from exc
    if migrate:
        hub.migrate()
    return hub




@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Run the HTTP API (migrations are applied first)."""
    import uvicorn

    from hub.app import create_app

    _check_can_listen(host, port)
    settings = get_settings()
    if "public_url" not in settings.model_fields_set:  # callback URLs handed to platforms must reach this server
        reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        settings.public_url = f"http://{f'[{reach}]' if ':' in reach else reach}:{port}"
    hub = hub_for_cli()
    settings.remember_served_url()
    token, created = settings.resolved_admin_token()
    if created:
        click.echo(f"Generated admin token (stored in {settings.data_dir / 'admin.token'}, shown once):\n  {token}")
    mode = f"Celery via {_redact_broker(settings.broker_url)}" if settings.broker_url else "in-process tasks"
    click.echo(f"crmhub on http://{host}:{port}  database={_redact(settings.database_url)}  runtime={mode}")
    app = create_app(hub)
    settle_gc()  # everything loaded so far lives as long as the process: keep it out of the GC's scans
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _check_can_listen(host: str, port: int) -> None:
    """A taken port is an operator's problem: say so (exit 1) before migrating, not after uvicorn's exit 3."""
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no clash
            probe.bind(address)
    except OSError as exc:
        raise HubError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", code="cannot_listen") from exc


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _redact_broker(url: str) -> str:
    """The broker URL without its password (`redis://:pw@host`), for output and logs."""
    from sqlalchemy.exc import ArgumentError

    try:
        return _redact(url)
    except (ArgumentError, ValueError):  # a URL SQLAlchemy cannot parse (Celery's `a;b` failover list)
        return hide_url_password(url)


@cli.command()
@click.option("--queues", default="ingest,deliver,enrich", show_default=True)
@click.option("--concurrency", default=2, show_default=True, type=int)
@click.option("--pool", default="prefork", show_default=True)
@click.option("--metrics-port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Serve the processing and delivery metrics of this worker (all its pool processes) at "
                   "http://HOST:PORT/metrics, with the admin token unless CRMHUB_METRICS_PUBLIC=true; 0: off.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--metrics-dir", hidden=True, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def worker(ctx: click.Context, queues: str, concurrency: int, pool: str, metrics_port: int, metrics_host: str,
           metrics_dir: Path | None) -> None:
    """Run a Celery worker (requires CRMHUB_BROKER_URL)."""
    from hub import worker_metrics

    if metrics_port and metrics_dir is None:
        _require_broker(get_settings())  # before the restart below, not in the restarted process
        _check_can_listen(metrics_host, metrics_port)
        verbose = ["--verbose"] if ctx.find_root().params.get("verbose") else []
        worker_metrics.restart_in_multiprocess_mode([*verbose, "worker", "--queues", queues, "--concurrency",
                                                     str(concurrency), "--pool", pool, "--metrics-port",
                                                     str(metrics_port), "--metrics-host", metrics_host])
    if metrics_dir is not None and not worker_metrics.in_multiprocess_mode():  # never a loop of restarts
        raise HubError("the worker restarted for its metrics but prometheus_client is not in multiprocess mode",
                       code="metrics_unavailable")
    app = _celery_app()
    if metrics_port and metrics_dir is not None:
        worker_metrics.use_dir(metrics_dir)
        settings = get_settings()
        token = None if settings.metrics_public else settings.resolved_admin_token()[0]
        worker_metrics.serve(metrics_host, metrics_port, metrics_dir, token)
    settle_gc()  # before the prefork pool forks: the children share what is frozen here
    # Celery's "Unrecoverable error" (e.g. kombu failing to restore unacked messages when Redis drops the
    # connection) must exit non-zero, so a supervisor that restarts on failure (systemd Restart=on-failure)
    # brings the worker back: see _run_celery.
    _exit_with(_run_celery(app,
        [
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-P",
            pool,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
    ))


@cli.command()
def beat() -> None:
    """Run the Celery beat scheduler (exactly one): delivery retries, recovery sweep, pulls, ASR polling,
    silent-customer scan, daily quality report."""
    app = _celery_app()
    _exit_with(_run_celery(app, ["beat", "--loglevel", "INFO", "--schedule",
                                 str(get_settings().data_dir / "celerybeat-schedule")]))


def _run_celery(app: Any, argv: list[str]) -> int | None:
    """Celery's own command line, returning the exit code it chose.

    app.worker_main() and app.start() both drop it: with standalone_mode=False click hands `ctx.exit(code)` back
    as main()'s return value, which they ignore, so a worker that stopped on an error exited 0 (helper-32).
    """
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = app
    try:
        code = celery_command.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    finally:
        celery_command.params[0].default = None
    return code if isinstance(code, int) else None


def _exit_with(code: int | None) -> None:
    if code:
        click.echo(f"error: the Celery process stopped with exit code {code} (see its log above)", err=True)
        raise SystemExit(code)


def _require_broker(settings: Settings) -> None:
    """A missing setting is an error (exit 1, contract §2), as an invalid one is; a usage error (2) is reserved for
    what is wrong on the command line itself, and `crmhub worker` has nothing wrong there."""
    if not settings.broker_url:
        raise HubError("CRMHUB_BROKER_URL is not set; `crmhub worker` and `crmhub beat` need a broker "
                       "(the embedded default runs tasks inside `crmhub serve`)", code="broker_required")


def _celery_app() -> Any:
    settings = get_settings()
    _require_broker(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    hub = hub_for_cli()
    return hub.runner.app


@cli.command()
@click.option("--source", "source_id", type=click.UUID, help="Only this source.")
@click.option("--since", type=TimeOption())
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["failed", "quarantined", "pending"]),
    default=["failed"],
    show_default=True,
)
@click.option("--endpoint", "endpoint_id", type=click.UUID,
              help="Re-send an outbound endpoint's messages instead (failed ones, or all since --since): "
                   "POST /v1/endpoints/{id}/replay, as `crmhub endpoints replay ID`.")
@click.pass_context
def replay(ctx: click.Context, source_id: uuid.UUID | None, since: datetime | None, statuses: tuple[str, ...],
           endpoint_id: uuid.UUID | None) -> None:
    """Re-run processing of stored raw requests (failed by default) from their original bytes.

    Exits 1 when a replayed request failed again, naming its error. With --endpoint, re-sends deliveries.
    """
    from hub.pipeline import replay_outcomes, replay_raw

    if endpoint_id is not None:
        _replay_endpoint(ctx, endpoint_id, source_id, since, statuses)
        return
    hub = hub_for_cli()
    if source_id is not None:
        from hub.api import get_source

        get_source(source_id, hub)  # an unknown source is an error (exit 1), not "replayed 0"
    hub.start()
    try:
        ids = replay_raw(hub, source_id=source_id, since=since, statuses=statuses)
        hub.runner.join(timeout=600)
        counts, errors = replay_outcomes(hub, ids)
    finally:
        hub.stop()
    outcome = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    click.echo(f"replayed {len(ids)} raw request(s)" + (f": {outcome}" if outcome else ""))
    if counts.get("pending"):
        click.echo("pending requests are processed by the workers; run this again later to see how they ended")
    for raw_id, error in errors[:5]:
        click.echo(f"  failed again {raw_id}: {terminal_safe(error[:200])}", err=True)
    if errors:
        raise SystemExit(1)


def _replay_endpoint(ctx: click.Context, endpoint_id: uuid.UUID, source_id: uuid.UUID | None,
                     since: datetime | None, statuses: tuple[str, ...]) -> None:
    """`crmhub replay --endpoint ID`: the endpoint replay a plugin registered (`endpoints replay`), not raw requests."""
    status_given = ctx.get_parameter_source("statuses") is not click.core.ParameterSource.DEFAULT
    if source_id is not None or (status_given and (set(statuses) != {"failed"} or since is not None)):
        raise click.UsageError("with --endpoint give --since TIME or --status failed (and no --source)")
    root = ctx.find_root().command
    group = root.get_command(ctx, "endpoints") if isinstance(root, click.Group) else None
    command = group.get_command(ctx, "replay") if isinstance(group, click.Group) else None
    if command is None:
        raise click.UsageError("--endpoint needs the webhooks plugin (`crmhub endpoints replay`)")
    ctx.invoke(command, endpoint_id=endpoint_id, since=since, status=None if since else "failed", as_json=False)


@cli.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the demo keeps its database (default: the current directory).",
)
def demo(workdir: str | None) -> None:
    """Enable every connector with demo credentials, replay realistic events over HTTP, print a 360° view."""
    from hub.demo import run_demo

    run_demo(workdir)


@cli.command("import")
@click.argument("file", type=str)
@click.option(
    "--source",
    "source_name",
    default="import",
    show_default=True,
    help="Source (connector `spreadsheet`) the rows are imported into; created if missing.",
)
@click.option("--dry-run", is_flag=True, help="Read, check and report; change nothing.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the JSON report (default: FILE.report.json).",
)
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="Map a column header to a field (name, company, phone, email, uscc, city, industry …, or ignore).",
)
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 20000))
def import_(
    file: str, source_name: str, dry_run: bool, report_path: str | None, mappings: tuple[str, ...], batch_size: int
) -> None:
    """Bulk-import customer records from an .xlsx or .csv file (contract §8 report)."""
    from hub.import_cli import dry_run_hub, run_import_command

    hub, empty = dry_run_hub() if dry_run else (hub_for_cli(), False)
    run_import_command(
        hub,
        file,
        source_name=source_name,
        dry_run=dry_run,
        report_path=report_path,
        mappings=mappings,
        batch_size=batch_size,
        empty_database=empty,
    )


@cli.group()
def quality() -> None:
    """Data-health report and quarantine listing."""


@quality.command("report")
@click.option(
    "--since",
    type=TimeOption(),
    help="Events stored since (no offset means UTC; default: the last 24 hours).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0), help="Quarantined rows to list.")
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write every quarantined row in the window to PATH.csv or PATH.xlsx (formula cells neutralised).",
)
def quality_report(since: datetime | None, as_json: bool, limit: int, export_path: str | None) -> None:
    """Duplicate rate, empty values, abnormal characters, quarantine by reason, invalid identifiers."""
    from hub.import_cli import run_quality_command

    run_quality_command(hub_for_cli(), since=since, as_json=as_json, limit=limit, export_path=export_path)


def build_cli() -> click.Group:
    """The root group with every plugin's commands added."""
    from hub.plugins import load_plugins, make_plugin_manager

    try:
        settings: Settings = get_settings()
    except ValidationError as exc:  # before any command runs, so HubGroup cannot turn it into a message
        _fail(describe_invalid(exc))
    pm = make_plugin_manager()
    try:
        load_plugins(pm, settings.load_plugins)
    except HubError as exc:  # a misspelt CRMHUB_LOAD_PLUGINS: the operator's to fix, so it stops every command
        _fail(exc.message)
    except Exception as exc:  # a broken plugin must not take the CLI down
        logging.getLogger(__name__).warning("plugin loading failed: %s", exc)
    pm.hook.register_commands(cli=cli)
    describe_connectors(pm)
    return cli


from hub.cli_sources import describe_connectors, sources  # noqa: E402  (needs `cli` defined: it is added to it)

cli.add_command(sources)


def main() -> None:
    build_cli()(prog_name="crmhub")


if __name__ == "__main__":
    # `python -m hub.cli` runs this file as `__main__`, a second copy beside the `hub.cli` that plugin commands
    # import: the DatabaseUnusable they raise was not the class this copy's HubGroup catches (a traceback, not
    # `error: …`). Run the one module `crmhub` runs.
    from hub.cli import main as crmhub_main

    crmhub_main()
