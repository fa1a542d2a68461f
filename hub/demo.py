"""`crmhub demo`: the whole hub on the embedded default, fed through its real HTTP endpoints.

Each plugin contributes `DemoSource`s (config + correctly signed requests) via the
`demo_sources` hook; the demo starts `crmhub serve` in-process on a free port,
creates the sources over the admin API, sends every request over HTTP, waits for
processing and prints a 360° view of the customers the hub built.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table


@dataclass
class DemoRequest:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = ""  # appended to /hooks/{source_id}
    query: dict[str, str] = field(default_factory=dict)
    order: float = 0.0  # requests of all sources are sent sorted by this (the story's timeline)


@dataclass
class DemoSource:
    connector: str
    name: str
    config: dict[str, Any]
    requests: Callable[[], list[DemoRequest]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(workdir: str | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    if workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        os.chdir(workdir)
    port = _free_port()
    os.environ.setdefault("CRMHUB_PUBLIC_URL", f"http://127.0.0.1:{port}")
    import uvicorn

    from hub.app import create_app
    from hub.runtime import Hub
    from hub.settings import Settings

    settings = Settings()
    if settings.broker_url:
        console.print("[yellow]CRMHUB_BROKER_URL is set; the demo uses the embedded in-process runtime.[/]")
        settings = settings.model_copy(update={"broker_url": ""})
    settings = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    hub = Hub(settings)
    hub.migrate()
    token = settings.resolved_admin_token()[0]
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base)
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
            report = _feed(hub, client, console)
            hub.runner.join(timeout=120)
            _print_view(hub, console, report)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    console.print(
        f"\nDatabase: [bold]{_redact(settings.database_url)}[/]. Run [bold]crmhub serve[/] to explore the API "
        f"(admin token in {settings.data_dir / 'admin.token'})."
    )
    return report


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _wait_up(base: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the demo server did not start")


def _feed(hub: Any, client: httpx.Client, console: Console) -> dict[str, Any]:
    demo_sources: list[DemoSource] = [s for group in hub.pm.hook.demo_sources() for s in (group or [])]
    planned: list[tuple[float, str, DemoRequest]] = []
    existing = {s["name"]: s for s in client.get("/v1/sources").json()["items"]}
    for demo in demo_sources:
        if demo.connector not in hub.connectors:
            continue
        if demo.name in existing:
            source_id = existing[demo.name]["id"]
        else:
            resp = client.post(
                "/v1/sources", json={"connector": demo.connector, "name": demo.name, "config": demo.config}
            )
            resp.raise_for_status()
            source_id = resp.json()["id"]
        for req in demo.requests():
            planned.append((req.order, source_id, req))
    planned.sort(key=lambda item: item[0])
    statuses: dict[int, int] = defaultdict(int)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Sending platform events over HTTP", total=len(planned))
        for _, source_id, req in planned:
            path = f"/hooks/{source_id}" + (f"/{req.path.lstrip('/')}" if req.path else "")
            resp = client.request(req.method, path, content=req.body, headers=req.headers, params=req.query)
            statuses[resp.status_code] += 1
            progress.advance(task)
    console.print(
        f"Sent {len(planned)} requests from {len(demo_sources)} sources: "
        + ", ".join(f"{n}× HTTP {code}" for code, n in sorted(statuses.items()))
    )
    return {"requests": len(planned), "statuses": dict(statuses)}


def _print_view(hub: Any, console: Console, report: dict[str, Any]) -> None:
    from sqlalchemy import func, select

    from hub.models import EventRow, QuarantineRow

    with hub.sessions() as session:
        rows = session.execute(
            select(EventRow.customer_id, func.count(func.distinct(EventRow.source)).label("n"))
            .where(EventRow.customer_id.is_not(None))
            .group_by(EventRow.customer_id)
            .order_by(func.count(func.distinct(EventRow.source)).desc(), func.count().desc())
            .limit(3)
        ).all()
        total_events = session.scalar(select(func.count()).select_from(EventRow)) or 0
        customers = session.scalar(select(func.count(func.distinct(EventRow.customer_id)))) or 0
        quarantined = session.scalar(select(func.count()).select_from(QuarantineRow)) or 0
        report.update(events=total_events, customers=customers, quarantined=quarantined)
        console.print(
            f"The hub stored [bold]{total_events}[/] unified events for [bold]{customers}[/] customers "
            f"([bold]{quarantined}[/] quarantined with a reason).\n"
        )
        for customer_id, n_sources in rows:
            events = session.scalars(
                select(EventRow).where(EventRow.customer_id == customer_id).order_by(EventRow.occurred_at)
            ).all()
            idents = sorted({(i["type"], i["value"]) for e in events for i in e.data.get("identities", [])})
            table = Table(show_header=True, header_style="bold", box=None)
            table.add_column("when (UTC+8)")
            table.add_column("source")
            table.add_column("event")
            table.add_column("detail")
            for e in events:
                table.add_row(_local(e.occurred_at), e.source, e.type, _detail(e.data))
            ids = ", ".join(f"{t}:{v}" for t, v in idents)
            console.print(Panel(table, title=f"customer {customer_id} · {n_sources} sources", subtitle=ids[:160]))


def _local(when: Any) -> str:
    from datetime import timedelta, timezone

    return str(when.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M"))


def _detail(data: dict[str, Any]) -> str:
    props = data.get("properties") or {}
    for key in ("text", "summary_line", "event", "name", "order_no", "duration_s", "form"):
        value = props.get(key)
        if value:
            return str(value)[:60]
    campaign = data.get("campaign") or {}
    return str(campaign.get("name") or campaign.get("source") or "")[:60]
