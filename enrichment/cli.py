"""`crmhub company lookup USCC`: fetch (or show the cached) registry profile of one company."""

from __future__ import annotations

import json

import click

from enrichment.company import lookup_company
from hub.runtime import Hub


def _hub() -> Hub:
    from hub.cli import hub_for_cli

    return hub_for_cli()


@click.group()
def company() -> None:
    """Company profiles from the credit registry (天眼查 / 企查查)."""


@company.command("lookup")
@click.argument("uscc")
@click.option("--force", is_flag=True, help="Ask the registry even if a fresh cached profile exists.")
def lookup(uscc: str, force: bool) -> None:
    """Print the profile of the company with this unified social credit code, as JSON."""
    hub = _hub()
    hub.start()  # the profile event's follow-up work (deliveries) runs before we exit
    try:
        props, outcome = lookup_company(hub, uscc, force=force)
        hub.runner.join(timeout=60)
    finally:
        hub.stop()
    click.echo(json.dumps(props, ensure_ascii=False, indent=2, default=str))
    click.echo(f"({outcome})", err=True)
