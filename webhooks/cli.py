"""`crmhub endpoints …`: the outbound-endpoint admin API (contract §3) from a shell; also `crmhub sources health`.

Every command calls the same function its `/v1/endpoints` route runs, so validation, the SSRF guard
(`CRMHUB_ALLOW_PRIVATE_ENDPOINTS`) and the JSON (`--json`) are the API's own. A HubError (unknown id,
refused URL, disabled endpoint) becomes `error: …` on stderr and exit 1 in `hub.cli.HubGroup`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from pydantic import BaseModel, TypeAdapter

from hub.cli_output import TimeOption, cut, echo_json, request_body, table_time, terminal_safe
from hub.runtime import Hub
from webhooks import api
from webhooks.health import STATUS_ORDER, rate_percent
from webhooks.models import MESSAGE_STATUSES

__all__ = ["endpoints", "source_health"]

M = TypeVar("M", bound=BaseModel)
_JSON: TypeAdapter[Any] = TypeAdapter(Any)

DRAIN_TIMEOUT_S = 600.0  # how long a replay/re-enable waits for this process's first delivery attempts
PULL_ERROR_WIDTH = 80  # characters of a failed pull's state in `crmhub sources health`'s table

json_option = click.option("--json", "as_json", is_flag=True, help="Print the JSON the API returns.")
endpoint_id_arg = click.argument("endpoint_id", metavar="ID", type=click.UUID)


def _hub() -> Hub:
    from hub.cli import hub_for_cli

    return hub_for_cli()


def _echo_json(data: Any) -> None:
    """Serialised as FastAPI serialises a route's answer (pydantic, JSON mode: nested times too): the API's JSON."""
    echo_json(_JSON.dump_python(data, mode="json"))


@contextmanager
def _running(hub: Hub) -> Iterator[Hub]:
    """Run the hub's tasks here, as `crmhub replay` does: queued deliveries go out before the command exits.

    With Celery the tasks went to the broker already; a delivery that fails waits for its retry in the database,
    where `crmhub serve` / `crmhub beat` pick it up.
    """
    hub.start()
    try:
        yield hub
        hub.runner.join(timeout=DRAIN_TIMEOUT_S)
    finally:
        hub.stop()


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> None:
    """A rich table on stdout; the id column never wraps, so it can be copied whole."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, highlight=False)
    for i, name in enumerate(columns):
        table.add_column(name, no_wrap=i == 0, overflow="fold")
    count = 0
    for row in rows:
        # Text: no markup in URLs like [::1]; terminal_safe: a receiver's or platform's error may hold an ESC
        table.add_row(*(Text("" if v is None else terminal_safe(str(v))) for v in row))
        count += 1
    if not count:
        click.echo(empty)
        return
    console = Console(highlight=False)
    if not console.is_terminal:  # piped: one row per line rather than folded to 80 columns
        console = Console(highlight=False, width=max(console.width, 200))
    console.print(table)


def _or_dash(value: Any) -> Any:
    """`-` for a value not known; 0 (a latency under a millisecond's rounding) is one."""
    return "-" if value is None else value


def _summary(pairs: Iterable[tuple[str, Any]]) -> None:
    for key, value in pairs:
        click.echo(f"  {key + ':':<24}{'-' if value is None else terminal_safe(str(value))}")


def _state(endpoint: dict[str, Any]) -> str:
    if endpoint["enabled"]:
        return "enabled"
    return f"disabled ({endpoint['disabled_reason']})" if endpoint.get("disabled_reason") else "disabled"


def _show(endpoint: dict[str, Any], headline: str) -> None:
    click.echo(headline)
    _summary([("id", endpoint["id"]), ("url", endpoint["url"]), ("event types", ", ".join(endpoint["event_types"])),
              ("description", endpoint["description"] or None), ("state", _state(endpoint)),
              ("rate limit (msg/s)", endpoint.get("rate_limit")), ("created", endpoint["created_at"])])
    if endpoint.get("secret"):
        click.echo(f"  {'secret:':<24}{endpoint['secret']}")
        click.echo("  (shown only now: store it where the receiver verifies signatures)")


def _answer(endpoint: dict[str, Any], as_json: bool, headline: str) -> None:
    """One endpoint as the API's JSON, or as a summary under `headline`."""
    if as_json:
        _echo_json(endpoint)
    else:
        _show(endpoint, headline)
        for warning in endpoint.get("warnings") or []:
            click.echo(f"warning: {warning['message']}", err=True)


@click.group()
def endpoints() -> None:
    """Outbound endpoints (the CRM core's webhook subscriptions): add, change, health, messages, replay."""


@endpoints.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Every endpoint, oldest first (secrets are never shown)."""
    data = api.list_endpoints(_hub())
    if as_json:
        _echo_json(data)
        return
    _table(["id", "url", "event types", "state", "description"],
           ([e["id"], e["url"], ", ".join(e["event_types"]), _state(e), e["description"]] for e in data["items"]),
           empty="no endpoints")


@endpoints.command("add")
@click.argument("url")
@click.option("--type", "event_types", multiple=True, metavar="TYPE",
              help="Event type to deliver (repeatable; default: every type, `*`).")
@click.option("--description", default="", help="What this endpoint is for.")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              help="At most this many messages per second (default: unthrottled).")
@json_option
def add(url: str, event_types: tuple[str, ...], description: str, rate_limit: float | None, as_json: bool) -> None:
    """Subscribe URL; prints its signing secret (`whsec_…`) — the only time it is shown."""
    body = request_body(api.EndpointCreate, url=url, event_types=list(event_types) or ["*"], description=description,
                 rate_limit=rate_limit)
    data = api.create_endpoint(body, _hub())
    _answer(data, as_json, f"created endpoint {data['id']}")


@endpoints.command("show")
@endpoint_id_arg
@json_option
def show(endpoint_id: uuid.UUID, as_json: bool) -> None:
    """One endpoint (without its secret)."""
    data = api.get_endpoint(endpoint_id, _hub())
    _answer(data, as_json, f"endpoint {data['id']}")


@endpoints.command("update")
@endpoint_id_arg
@click.option("--url", default=None, help="New URL (checked like a new endpoint's).")
@click.option("--type", "event_types", multiple=True, metavar="TYPE", help="Replace the event types (repeatable).")
@click.option("--description", default=None)
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), default=None, help="Messages per second.")
@click.option("--no-rate-limit", is_flag=True, help="Remove the rate limit (unthrottled).")
@click.option("--enable/--disable", "enabled", default=None, help="Re-enabling sends what waited, in order.")
@json_option
def update(endpoint_id: uuid.UUID, url: str | None, event_types: tuple[str, ...], description: str | None,
           rate_limit: float | None, no_rate_limit: bool, enabled: bool | None, as_json: bool) -> None:
    """Change an endpoint, as PATCH /v1/endpoints/{id} does."""
    if no_rate_limit and rate_limit is not None:
        raise click.UsageError("give --rate-limit or --no-rate-limit, not both")
    change: dict[str, Any] = {"url": url, "event_types": list(event_types) or None, "description": description,
                              "rate_limit": rate_limit, "enabled": enabled}
    change = {k: v for k, v in change.items() if v is not None}
    if no_rate_limit:
        change["rate_limit"] = None  # PATCH's null: unthrottled
    if not change:
        raise click.UsageError("nothing to change: give --url, --type, --description, --rate-limit, "
                               "--no-rate-limit, --enable or --disable")
    body = request_body(api.EndpointUpdate, **change)
    with _running(_hub()) as hub:
        data = api.patch_endpoint(endpoint_id, body, hub)
    _answer(data, as_json, f"updated endpoint {data['id']}")


@endpoints.command("delete")
@endpoint_id_arg
@json_option
def delete(endpoint_id: uuid.UUID, as_json: bool) -> None:
    """Delete an endpoint with its messages and attempts (DELETE answers 204; --json prints the id)."""
    api.delete_endpoint(endpoint_id, _hub())
    if as_json:
        _echo_json({"id": str(endpoint_id), "deleted": True})
    else:
        click.echo(f"deleted endpoint {endpoint_id}")


@endpoints.command("rotate-secret")
@endpoint_id_arg
@click.option("--overlap-hours", type=click.FloatRange(0, 24 * 30), default=api.DEFAULT_ROTATION_OVERLAP_H,
              show_default=True, help="How long the old secret keeps signing too (0: stop now).")
@click.option("--force", is_flag=True,
              help="Rotate even while an earlier rotation's overlap runs (its oldest secret stops at once).")
@json_option
def rotate_secret(endpoint_id: uuid.UUID, overlap_hours: float, force: bool, as_json: bool) -> None:
    """A new signing secret (shown once); deliveries carry both signatures during the overlap."""
    body = request_body(api.RotateSecret, overlap_hours=overlap_hours, force=force)
    data = api.rotate_secret(endpoint_id, _hub(), body)
    if as_json:
        _echo_json(data)
        return
    click.echo(f"new secret for endpoint {data['id']} (shown only now):\n  {data['secret']}")
    click.echo(f"the previous secret keeps signing until {data['previous_secret_expires_at']}")


@endpoints.command("health")
@endpoint_id_arg
@json_option
def health(endpoint_id: uuid.UUID, as_json: bool) -> None:
    """Status, last-hour success rate and latency, failure streak, pending and failed counts."""
    data = api.get_endpoint_health(endpoint_id, _hub())
    if as_json:
        _echo_json(data)
        return
    rate = data["success_rate_1h"]
    click.echo(f"endpoint {endpoint_id}: {data['status']}")
    _summary([("success rate (1 h)", None if rate is None else f"{rate_percent(rate)} of {data['attempts_1h']}"),
              ("latency p50 / p95 (ms)", f"{_or_dash(data['latency_p50_ms'])} / {_or_dash(data['latency_p95_ms'])}"),
              ("consecutive failures", data["consecutive_failures"]), ("last success", data["last_success_at"]),
              ("last failure", data["last_failure_at"]), ("pending", data["pending"]), ("failed", data["failed"]),
              ("disabled reason", data.get("disabled_reason"))])


def _last_attempt(message: dict[str, Any]) -> str:
    """The last attempt's outcome; from the message itself once retention has deleted its attempts."""
    if not message["attempts"] and message["last_status_code"] is None and not message["last_error"]:
        return ""
    last = message["attempts"][-1] if message["attempts"] else {
        "status_code": message["last_status_code"], "error": message["last_error"]}
    outcome = str(last["status_code"]) if last["status_code"] is not None else "no answer"
    return f"{outcome}: {last['error']}" if last["error"] else outcome


@click.command("health")
@json_option
def source_health(as_json: bool) -> None:
    """Every source's last hour, failing first: what GET /v1/health/sources answers, with each source's status."""
    items = api.get_source_health(_hub())["items"]
    if as_json:
        _echo_json(items)
        return
    items.sort(key=lambda item: (STATUS_ORDER.get(item["status"], 9), item["name"]))
    _table(["id", "status", "name", "connector", "received", "accepted", "duplicates", "rejected (auth)",
            "rejected (other)", "quarantined", "last received", "lag s", "pull"],
           ([i["source_id"], i["status"], i["name"], i["connector"], i["received_1h"], i["accepted_1h"],
             i["duplicates_1h"], i["rejected_auth_1h"], i["rejected_other_1h"], i["quarantined_1h"],
             table_time(i["last_received_at"], "never"),
             i["processing_lag_s"], _pull_state(i["pull"])] for i in items),
           empty="no sources (add one: crmhub sources add CONNECTOR NAME --config JSON)")


def _pull_state(pull: dict[str, Any] | None) -> str:
    if not pull:
        return "-"
    if pull.get("consecutive_failures"):
        # The table's cell, one line: a pull's error can be a long driver message (--json has it whole).
        return cut(f"failed {pull['consecutive_failures']}x: {pull.get('last_error') or ''}", PULL_ERROR_WIDTH)
    return f"ok {table_time(pull.get('last_success_at'), '')}"


@endpoints.command("messages")
@endpoint_id_arg
@click.option("--status", type=click.Choice(MESSAGE_STATUSES), default=None, help="Only messages in this state.")
@click.option("--limit", type=click.IntRange(1, api.MESSAGE_PAGE_MAX), default=100, show_default=True)
@click.option("--cursor", default=None, help="The next_cursor of the previous page: the page after it.")
@json_option
def messages(endpoint_id: uuid.UUID, status: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """Deliveries to this endpoint, newest first, with their attempts (--json shows every attempt)."""
    data = api.get_messages(endpoint_id, _hub(), status=status, limit=limit, cursor=cursor)
    if as_json:
        _echo_json(data)
        return
    _table(["webhook-id", "event type", "status", "attempts", "created", "last attempt"],
           ([m["webhook_id"], m["event_type"], m["status"], m["attempt_count"], table_time(m["created_at"]),
             _last_attempt(m)] for m in data["items"]),
           empty=f"no {status + ' ' if status else ''}messages")
    if data["next_cursor"]:
        click.echo(f"more: --cursor {data['next_cursor']}")


@endpoints.command("replay")
@endpoint_id_arg
@click.option("--since", type=TimeOption(),
              help="Re-send every finished message created since then (UTC unless an offset is given).")
@click.option("--status", type=click.Choice(["failed"]), default=None, help="Re-send every failed message.")
@json_option
def replay(endpoint_id: uuid.UUID, since: datetime | None, status: str | None, as_json: bool) -> None:
    """Re-send messages (each keeps its webhook-id, so receivers dedupe): give --since or --status failed."""
    if (since is None) == (status is None):
        raise click.UsageError("give exactly one of --since TIME or --status failed")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    body = request_body(api.Replay, since=since, status=status)
    with _running(_hub()) as hub:
        data = api.post_replay(endpoint_id, body, hub)
    if as_json:
        _echo_json(data)
    else:
        click.echo(f"queued {data['queued']} message(s) for endpoint {endpoint_id}")
