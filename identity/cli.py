"""`crmhub silent-scan`: run the customer.silent scan now instead of waiting for `crmhub beat`."""

from __future__ import annotations

import click

__all__ = ["silent_scan"]


@click.command("silent-scan")
def silent_scan() -> None:
    """Emit customer.silent for customers quiet longer than CRMHUB_SILENT_DAYS (once per silence period)."""
    from hub.cli import hub_for_cli
    from identity.silence import scan_silent

    hub = hub_for_cli()
    hub.start()
    try:
        count = scan_silent(hub)
        hub.runner.join(timeout=600)
    finally:
        hub.stop()
    click.echo(f"{count} customer.silent event(s) emitted")
