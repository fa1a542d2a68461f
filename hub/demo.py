"""`crmhub demo`: the whole hub on the embedded default, fed through its real HTTP endpoints.

Each plugin contributes `DemoSource`s (config + correctly signed requests) via the
`demo_sources` hook; the demo starts `crmhub serve` in-process on a free port,
creates the sources over the admin API, sends every request over HTTP, waits for
processing and prints a 360° view of the customers the hub built.
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table

from hub.errors import HubError


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
    # A platform the hub calls out to (a credit registry) cannot be reached from the demo: `stand_in` starts a
    # local stand-in on 127.0.0.1 for the demo's duration and yields the config that points the source at it.
    stand_in: Callable[[], AbstractContextManager[dict[str, Any]]] | None = None


@contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free 127.0.0.1 port, in a thread, while the block runs; yields `http://127.0.0.1:PORT`.

    What the demo's stand-ins for the services the hub calls out to (and the tests' fakes) run on.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(workdir: str | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    if workdir:
        try:
            Path(workdir).mkdir(parents=True, exist_ok=True)
            os.chdir(workdir)
        except OSError as exc:  # the user's path: one line, not a traceback
            raise HubError(f"cannot use {workdir} for the demo: {exc.strerror or exc}", code="demo_dir_unusable") \
                from exc
    port = _free_port()
    os.environ.setdefault("CRMHUB_PUBLIC_URL", f"http://127.0.0.1:{port}")
    from hub.plugins import load_plugins, make_plugin_manager
    from hub.runtime import Hub
    from hub.settings import Settings

    settings = Settings()
    overridden = []  # settings of the environment the demo ignores: `crmhub serve` must ignore them too
    if settings.broker_url:
        overridden.append("CRMHUB_BROKER_URL")
        console.print("[yellow]CRMHUB_BROKER_URL is set; the demo uses the embedded in-process runtime.[/]")
        settings = settings.model_copy(update={"broker_url": ""})
    embedded = Settings.model_fields["database_url"].default  # a SQLite file in the demo's directory
    if settings.database_url != embedded:
        overridden.append("CRMHUB_DATABASE_URL")
        # The demo writes a made-up story; it must never land in the database an integrator configured.
        console.print(f"[yellow]CRMHUB_DATABASE_URL is set; the demo keeps its story in its own embedded database "
                      f"({Path('crmhub.db').resolve()}) and leaves {_redact(settings.database_url)} untouched.[/]")
        settings = settings.model_copy(update={"database_url": embedded})
    settings = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    pm = make_plugin_manager()
    load_plugins(pm, settings.load_plugins)
    with ExitStack() as stand_ins:
        # services the hub calls out to (ASR) are local stand-ins, whatever the environment configures
        for start in (f for group in pm.hook.demo_stand_ins() for f in (group or [])):
            settings = settings.model_copy(update=stand_ins.enter_context(start()))
        hub = Hub(settings, pm=pm)
        hub.migrate()
        report = _serve_and_feed(hub, port, console, stand_ins)
    _print_next_steps(console, settings, overridden)
    return report


def _print_next_steps(console: Console, settings: Any, overridden: list[str]) -> None:
    """Where the demo's data is and the one command that serves it, ready to paste (quoted, never wrapped)."""
    from rich.markup import escape

    serve = " ".join([*(["env", *(f"-u {name}" for name in overridden)] if overridden else []), "crmhub serve"])
    console.print(f"\nDatabase: [bold]{escape(str(Path('crmhub.db').resolve()))}[/]. To explore it through the API:",
                  soft_wrap=True)
    console.print(f"  [bold]cd {escape(shlex.quote(str(Path.cwd())))} && {serve}[/]", soft_wrap=True)
    console.print(f"then open http://127.0.0.1:8000/docs (admin token in "
                  f"{escape(str((settings.data_dir / 'admin.token').resolve()))}).", soft_wrap=True)


def _serve_and_feed(hub: Any, port: int, console: Console, stand_ins: ExitStack) -> dict[str, Any]:
    import uvicorn

    from hub.app import create_app

    token = hub.settings.resolved_admin_token()[0]
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base)
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
            report = _feed(hub, client, console, stand_ins)
            _settle(hub)
            _print_view(hub, client, console, report)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    return report


def _settle(hub: Any, rounds: int = 5) -> None:
    """Run the work the story started, including what waits on a timer (an ASR poll is due in 10 s)."""
    for _ in range(rounds):
        hub.runner.join(timeout=120)
        if not hub.runner.run_due_timers():
            return
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


def _feed(hub: Any, client: httpx.Client, console: Console, stand_ins: ExitStack) -> dict[str, Any]:
    demo_sources: list[DemoSource] = [s for group in hub.pm.hook.demo_sources() for s in (group or [])]
    planned: list[tuple[float, str, DemoRequest]] = []
    existing = {s["name"]: s for s in client.get("/v1/sources").json()["items"]}
    enabled = [demo for demo in demo_sources if demo.connector in hub.connectors]
    for demo in enabled:
        config = {**demo.config, **(stand_ins.enter_context(demo.stand_in()) if demo.stand_in else {})}
        if demo.name in existing:  # a second run: the stand-in has a new port
            source_id = existing[demo.name]["id"]
            if demo.stand_in:
                client.patch(f"/v1/sources/{source_id}", json={"config": config}).raise_for_status()
        else:
            resp = client.post("/v1/sources", json={"connector": demo.connector, "name": demo.name, "config": config})
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
    senders = len({source_id for _, source_id, _ in planned})
    called = len(enabled) - senders  # sources the hub calls out to (the credit registry) send nothing
    console.print(
        f"Sent {len(planned)} requests from {senders} sources"
        + (f" ({called} more the hub calls out to)" if called else "") + ": "
        + ", ".join(f"{n}× HTTP {code}" for code, n in sorted(statuses.items()))
    )
    return {"requests": len(planned), "statuses": dict(statuses)}


def _print_view(hub: Any, client: httpx.Client, console: Console, report: dict[str, Any]) -> None:
    """The 360° view, read through the public API (so merges and splits are honoured)."""
    from sqlalchemy import func, select

    from hub.models import EventRow, QuarantineRow

    with hub.sessions() as session:
        total_events = session.scalar(select(func.count()).select_from(EventRow)) or 0
        quarantined = session.scalar(select(func.count()).select_from(QuarantineRow)) or 0
        stored = select(EventRow.customer_id).where(EventRow.customer_id.is_not(None))
        raw_ids = {str(c) for c in session.scalars(stored)}
    survivors: dict[str, dict[str, Any]] = {}
    for customer_id in sorted(raw_ids):
        resp = client.get(f"/v1/customers/{customer_id}")
        if resp.status_code != 200:  # no identity plugin: show the ids as stored
            survivors.setdefault(customer_id, {"id": customer_id, "identities": []})
            continue
        customer = resp.json()
        survivors.setdefault(customer["id"], customer)
    journeys = {cid: _journey(client, cid) for cid in survivors}
    report.update(events=total_events, customers=len(survivors), quarantined=quarantined)
    console.print(f"The hub stored [bold]{total_events}[/] unified events for [bold]{len(survivors)}[/] customers "
                  f"([bold]{quarantined}[/] quarantined with a reason).\n")
    ranked = sorted(survivors, key=lambda c: (-len({e["source"] for e in journeys[c]}), -len(journeys[c])))
    for customer_id in ranked[:3]:
        events = journeys[customer_id]
        table = Table(show_header=True, header_style="bold", box=None)
        for column in ("when (UTC+8)", "source", "event", "detail"):
            table.add_column(column)
        for e in events:
            table.add_row(_local(e["occurred_at"]), e["source"], e["type"], _detail(e))
        idents = ", ".join(f"{i['type']}:{i['value']}" for i in survivors[customer_id].get("identities", []))
        n_sources = len({e["source"] for e in events})
        console.print(Panel(table, title=f"customer {customer_id} · {n_sources} sources", subtitle=idents[:160]))
    shown = dict.fromkeys(a["id"] for c in ranked[:3] for a in survivors[c].get("accounts") or [])
    report["accounts"] = [_print_account(client, console, account_id) for account_id in shown]


def _print_account(client: httpx.Client, console: Console, account_id: str) -> dict[str, Any]:
    """A company the customers above belong to, with what the credit registry said about it."""
    account = client.get(f"/v1/accounts/{account_id}").json()
    uscc = next((i["value"] for i in account.get("identities", []) if i["type"] == "uscc"), "—")
    profile = account.get("profile")
    lines = [f"USCC {uscc} · {len(account.get('members', []))} contact(s) in the hub"]
    if profile:
        capital = (profile.get("registered_capital") or {}).get("text") or "—"
        lines.append(f"registry: {profile.get('status')} (risk {profile.get('risk_level')}), legal representative "
                     f"{profile.get('legal_representative') or '—'}, registered capital {capital}, established "
                     f"{profile.get('established_on') or '—'}")
    else:
        lines.append("registry: no profile (no credit_registry source, or the lookup failed)")
    console.print(Panel("\n".join(lines), title=f"account {account.get('name') or account_id}"))
    return dict(account)


def _journey(client: httpx.Client, customer_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/v1/customers/{customer_id}/events", params={"limit": 500})
    return list(resp.json()["items"]) if resp.status_code == 200 else []


def _local(when: str) -> str:
    from datetime import datetime, timedelta, timezone

    return datetime.fromisoformat(when).astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")


def _detail(data: dict[str, Any]) -> str:
    """One human line per event: what a rep would want to see in the journey."""
    props = data.get("properties") or {}
    summary = props.get("summary")
    if data.get("type") == "call.summarized" and isinstance(summary, dict):  # contract §10: the four facts
        budget = (summary.get("budget") or {}).get("text")
        competitors = "、".join(summary.get("competitors") or [])
        facts = [summary.get("course"), budget and f"预算{budget}", summary.get("decision_role"),
                 competitors and f"比较过{competitors}"]
        return " · ".join(str(f) for f in facts if f)
    if data.get("type", "").startswith("call.") and props.get("duration_s") is not None:
        return f"{props.get('direction', '')} call, {props['duration_s']} s".strip()
    if data.get("type") == "call.recording_available" and props.get("participant"):
        return f"{props['participant']} leg recording"
    for key in ("text", "summary_line", "order_no", "event", "name"):
        value = props.get(key)
        if isinstance(value, str | int | float) and str(value).strip():
            return str(value)[:60]
    form = props.get("form")
    if isinstance(form, dict):
        return " · ".join(str(v) for v in form.values() if isinstance(v, str | int))[:60]
    campaign = data.get("campaign") or {}
    return str(campaign.get("name") or campaign.get("source") or "")[:60]
