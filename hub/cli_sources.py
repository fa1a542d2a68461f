"""`crmhub sources …`: the source admin API (contract §2, §3) from a shell.

Every command calls the function its `/v1/sources` route runs, so validation and the JSON (`--json`) are the
API's own; a HubError becomes `error: …` and exit 1 in `hub.cli.HubGroup`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from hub.cli_output import echo_json, echo_result, json_option, request_body
from hub.runtime import Hub

__all__ = ["sources"]


def _hub() -> Hub:
    from hub import cli  # looked up per call, so tests can point the CLI at their hub

    return cli.hub_for_cli()


@click.group()
def sources() -> None:
    """List, show, add, change, enable, disable and delete sources (enabled connector instances)."""


@sources.command("list")
@click.option("--json", "as_json", is_flag=True)
def sources_list(as_json: bool) -> None:
    """Every source, oldest first (--json: a list of what GET /v1/sources/{id} shows)."""
    from sqlalchemy import select

    from hub.api import source_view
    from hub.models import SourceRow

    hub = _hub()
    with hub.sessions() as session:
        views = [source_view(hub, r) for r in session.scalars(select(SourceRow).order_by(SourceRow.created_at))]
    if as_json:
        click.echo(json.dumps([v.model_dump(mode="json") for v in views], ensure_ascii=False, indent=2))
        return
    if not views:
        click.echo("no sources (add one: crmhub sources add CONNECTOR NAME --config JSON)")
    for v in views:
        click.echo(
            f"{v.id}  {v.connector:<16} {v.name:<24} {'enabled' if v.enabled else 'disabled':<9} {v.webhook_url}"
        )


def _config_arg(config_json: str) -> dict[str, Any]:
    """--config must be a JSON object: anything else is a usage error (exit 2), not a traceback."""
    try:
        config = json.loads(config_json)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--config") from exc
    if not isinstance(config, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--config")
    return config


def _echo_source(view: Any, as_json: bool, headline: str | None = None) -> None:
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    if headline:
        click.echo(headline)
    state = "enabled" if view.enabled else "disabled"
    click.echo(f"  id: {view.id}\n  connector: {view.connector}\n  name: {view.name}\n  state: {state}\n"
               f"  webhook URL: {view.webhook_url}\n  created: {view.created_at.isoformat()}\n"
               f"  config: {json.dumps(view.config, ensure_ascii=False, sort_keys=True)}")


@sources.command("show")
@click.argument("source_id", type=click.UUID)
@json_option
def sources_show(source_id: uuid.UUID, as_json: bool) -> None:
    """One source, as GET /v1/sources/{id} shows it (secrets masked)."""
    from hub.api import get_source

    view = get_source(source_id, _hub())
    _echo_source(view, as_json, f"{view.connector} source {view.name}")


@sources.command("add")
@click.argument("connector")
@click.argument("name")
@click.option("--config", "config_json", default="{}", help="The connector's config as JSON.")
@json_option
def sources_add(connector: str, name: str, config_json: str, as_json: bool) -> None:
    """Enable CONNECTOR as a new source NAME; prints its webhook URL."""
    from hub.api import create_source
    from hub.schemas import SourceCreate

    body = request_body(SourceCreate, connector=connector, name=name, config=_config_arg(config_json))
    view = create_source(_hub(), body)
    echo_result(as_json, view.model_dump(mode="json"),
                f"created {view.connector} source {view.name}\n  id: {view.id}\n  webhook URL: {view.webhook_url}")


def describe_connectors(pm: Any) -> None:
    """List the installed connectors and their required config keys under `crmhub sources add --help`."""
    from hub.connector import ConnectorRegistry

    registry = ConnectorRegistry()
    registry.collect(pm.hook.register_connectors)
    lines = []
    for connector in registry:
        required = [k for k, f in connector.config_model.model_fields.items() if f.is_required()]
        lines.append(f"  {connector.name:<16}{', '.join(required) or '(no required keys)'}")
    # \b keeps click from rewrapping the list into one paragraph.
    sources_add.epilog = "\b\nConnectors and their required --config keys:\n" + "\n".join(lines)


def _update_source(source_id: uuid.UUID, **change: Any) -> Any:
    from hub.api import update_source
    from hub.schemas import SourceUpdate

    given = {k: v for k, v in change.items() if v is not None}  # an option left out changes nothing
    return update_source(_hub(), source_id, request_body(SourceUpdate, **given))


@sources.command("update")
@click.argument("source_id", type=click.UUID)
@click.option("--config", "config_json", default=None,
              help="Config keys to change, as a JSON object (merged into the stored config, then validated).")
@click.option("--replace-config", is_flag=True,
              help="--config is the whole new config, not merged with the stored one (e.g. after a lost key).")
@click.option("--name", default=None, help="A new name for the source.")
@json_option
def sources_update(source_id: uuid.UUID, config_json: str | None, replace_config: bool, name: str | None,
                   as_json: bool) -> None:
    """Change a source's config or name, as PATCH /v1/sources/{id} does."""
    if config_json is None and name is None:
        raise click.UsageError("give --config, --name or both")
    if replace_config and config_json is None:
        raise click.UsageError("--replace-config needs --config with the whole new config")
    view = _update_source(source_id, name=name, replace_config=replace_config or None,
                          config=_config_arg(config_json) if config_json is not None else None)
    _echo_source(view, as_json, f"updated {view.name}")


@sources.command("enable")
@click.argument("source_id", type=click.UUID)
@json_option
def sources_enable(source_id: uuid.UUID, as_json: bool) -> None:
    """Accept requests on the source's webhook URL again."""
    _set_enabled(source_id, True, as_json)


@sources.command("disable")
@click.argument("source_id", type=click.UUID)
@json_option
def sources_disable(source_id: uuid.UUID, as_json: bool) -> None:
    """Answer 404 on the source's webhook URL; nothing stored is lost."""
    _set_enabled(source_id, False, as_json)


def _set_enabled(source_id: uuid.UUID, enabled: bool, as_json: bool) -> None:
    view = _update_source(source_id, enabled=enabled)
    echo_result(as_json, view.model_dump(mode="json"), f"{'enabled' if enabled else 'disabled'} {view.name}")


@sources.command("delete")
@click.argument("source_id", type=click.UUID)
@json_option
def sources_delete(source_id: uuid.UUID, as_json: bool) -> None:
    """Delete a source, as DELETE /v1/sources/{id} does (its webhook URL stops answering)."""
    from hub.api import delete_source, get_source

    hub = _hub()
    view = get_source(source_id, hub)
    delete_source(source_id, hub)
    echo_result(as_json, {"id": str(view.id), "deleted": True}, f"deleted {view.name} ({view.id})")
