"""`crmhub endpoints …` (contract §2): the endpoints API from a shell, same rules, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from hub.runtime import Hub
from tests.helpers import ADMIN, client_for
from tests.webhooks.conftest import Receiver, draft, settle, store
from webhooks.models import MSG_FAILED, EndpointRow, MessageRow

UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[[Hub], click.Group]:
    """The root group with the webhooks plugin's commands, running against the test's hub (temporary SQLite)."""
    from hub.cli import cli as root
    from webhooks import register_commands

    register_commands(cli=root)

    def use(hub: Hub) -> click.Group:
        monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: hub)
        return root

    return use


def run(group: click.Group, *args: str) -> Result:
    return CliRunner().invoke(group, list(args))


def ok_json(group: click.Group, *args: str) -> Any:
    result = run(group, *args, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_add_list_show_update_delete(shub: Hub, receiver: Receiver, cli: Callable[[Hub], click.Group]) -> None:
    group = cli(shub)
    added = run(group, "endpoints", "add", receiver.url, "--type", "lead.submitted", "--type", "call.completed",
                "--description", "CRM [core]")
    assert added.exit_code == 0, added.output + added.stderr
    secret = next(line.split()[-1] for line in added.stdout.splitlines() if "secret:" in line)
    assert secret.startswith("whsec_") and "shown only now" in added.stdout
    with shub.sessions() as s:
        row = s.scalars(select(EndpointRow)).one()
    assert shub.box.open_str(row.secret_sealed) == secret  # the secret printed is the one that signs
    eid = str(row.id)
    assert row.event_types == ["lead.submitted", "call.completed"] and row.description == "CRM [core]"

    listed = run(group, "endpoints", "list")
    assert listed.exit_code == 0 and eid in listed.stdout and receiver.url in listed.stdout
    assert "CRM [core]" in listed.stdout and "whsec_" not in listed.stdout  # no rich markup eaten, no secret

    # --json is exactly what the API answers
    api_list = client_for(shub).get("/v1/endpoints", headers=ADMIN).json()
    assert ok_json(group, "endpoints", "list") == api_list
    assert ok_json(group, "endpoints", "show", eid) == client_for(shub).get(f"/v1/endpoints/{eid}",
                                                                             headers=ADMIN).json()
    shown = run(group, "endpoints", "show", eid)
    assert shown.exit_code == 0 and "lead.submitted, call.completed" in shown.stdout and "whsec_" not in shown.stdout

    changed = ok_json(group, "endpoints", "update", eid, "--disable", "--type", "*", "--url", receiver.url + "/v2")
    assert changed["enabled"] is False and changed["event_types"] == ["*"] and changed["url"].endswith("/v2")
    assert changed["disabled_reason"] == "disabled by an operator"
    assert "enabled" in run(group, "endpoints", "update", eid, "--enable").stdout

    deleted = run(group, "endpoints", "delete", eid)
    assert deleted.exit_code == 0 and f"deleted endpoint {eid}" in deleted.stdout
    assert ok_json(group, "endpoints", "list") == {"items": []}
    assert run(group, "endpoints", "list").stdout.strip() == "no endpoints"


def test_add_defaults_to_every_type_and_prints_the_secret_once(shub: Hub, receiver: Receiver,
                                                               cli: Callable[[Hub], click.Group]) -> None:
    group = cli(shub)
    created = ok_json(group, "endpoints", "add", receiver.url, "--rate-limit", "5")
    assert created["event_types"] == ["*"] and created["secret"].startswith("whsec_")
    assert created["rate_limit"] == 5.0 and created["enabled"] is True
    assert "secret" not in ok_json(group, "endpoints", "show", created["id"])
    rotated = ok_json(group, "endpoints", "rotate-secret", created["id"], "--overlap-hours", "0")
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert "previous_secret_expires_at" in rotated
    text = run(group, "endpoints", "rotate-secret", created["id"])
    assert text.exit_code == 0 and "whsec_" in text.stdout and "keeps signing until" in text.stdout
    unthrottled = ok_json(group, "endpoints", "update", created["id"], "--no-rate-limit")
    assert unthrottled["rate_limit"] is None
    refused = run(group, "endpoints", "rotate-secret", created["id"])  # the overlap just started
    assert refused.exit_code == 1 and "--force" in refused.stderr
    assert run(group, "endpoints", "rotate-secret", created["id"], "--force").exit_code == 0


def test_private_url_is_refused_exit_1_with_the_reason(hub_factory: Callable[..., Hub],
                                                       cli: Callable[[Hub], click.Group]) -> None:
    hub = hub_factory(allow_private_endpoints=False)
    group = cli(hub)
    refused = run(group, "endpoints", "add", "http://127.0.0.1:9/hook")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "loopback address 127.0.0.1" in refused.stderr and "CRMHUB_ALLOW_PRIVATE_ENDPOINTS=true" in refused.stderr
    assert ok_json(group, "endpoints", "list") == {"items": []}
    # the same rule on a URL change; a public literal address needs no DNS and nothing is sent to it
    created = ok_json(group, "endpoints", "add", "https://93.184.215.14/hook")
    moved = run(group, "endpoints", "update", created["id"], "--url", "http://10.1.2.3/x")
    assert moved.exit_code == 1 and "private address 10.1.2.3" in moved.stderr
    assert ok_json(group, "endpoints", "show", created["id"])["url"] == "https://93.184.215.14/hook"
    bad_scheme = run(group, "endpoints", "add", "ftp://203.0.113.9/x")
    assert bad_scheme.exit_code == 1 and "http:// or https://" in bad_scheme.stderr


@pytest.mark.parametrize("command", [["show"], ["update", "--disable"], ["delete"], ["rotate-secret"], ["health"],
                                     ["messages"], ["replay", "--status", "failed"]])
def test_unknown_id_is_exit_1_with_a_message(shub: Hub, cli: Callable[[Hub], click.Group], command: list[str]) -> None:
    result = run(cli(shub), "endpoints", command[0], UNKNOWN, *command[1:])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: no endpoint {UNKNOWN}"
    shub.start()  # update and replay stop the hub they were given; the fixture stops it again


@pytest.mark.parametrize("args", [
    ["endpoints", "add"],                                         # URL missing
    ["endpoints", "show", "not-a-uuid"],
    ["endpoints", "update", UNKNOWN],                             # nothing to change
    ["endpoints", "replay", UNKNOWN],                             # neither --since nor --status
    ["endpoints", "replay", UNKNOWN, "--status", "failed", "--since", "2026-01-01"],
    ["endpoints", "messages", UNKNOWN, "--status", "bogus"],
    ["endpoints", "add", "https://93.184.215.14/hook", "--rate-limit", "0"],
    ["endpoints", "add", "https://93.184.215.14/" + "x" * 2000],  # over the API's URL limit
    ["endpoints", "frobnicate"],
    ["endpoints", "replay", UNKNOWN, "--since", "0001-01-01T00:00:00+1400"],  # not a time in UTC: was a traceback
])
def test_usage_errors_exit_2(shub: Hub, cli: Callable[[Hub], click.Group], args: list[str]) -> None:
    result = run(cli(shub), *args)
    assert result.exit_code == 2, result.output + result.stderr
    assert "Usage:" in result.stderr or "Error:" in result.stderr
    with shub.sessions() as s:
        assert s.scalars(select(EndpointRow)).first() is None


def test_health_messages_and_replay(shub: Hub, receiver: Receiver, cli: Callable[[Hub], click.Group]) -> None:
    group = cli(shub)
    eid = ok_json(group, "endpoints", "add", receiver.url)["id"]
    store(shub, draft("e1"), draft("e2", phone="+8613900139000"))
    settle(shub)
    assert len(receiver.ok()) == 2

    health = ok_json(group, "endpoints", "health", eid)
    assert health == client_for(shub).get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert health["status"] == "healthy" and health["success_rate_1h"] == 1.0 and health["pending"] == 0
    text = run(group, "endpoints", "health", eid)
    assert text.exit_code == 0 and "healthy" in text.stdout and "100.0% of 2" in text.stdout

    with shub.transaction() as s:  # as if the first message had exhausted its retries
        first = s.scalars(select(MessageRow.id).order_by(MessageRow.occurred_at)).first()
        s.execute(update(MessageRow).where(MessageRow.id == first).values(status=MSG_FAILED))
    failed_id = str(first)
    failed = ok_json(group, "endpoints", "messages", eid, "--status", "failed")
    assert [m["id"] for m in failed["items"]] == [failed_id] and failed["items"][0]["attempts"][0]["status_code"] == 200
    assert failed == client_for(shub).get(f"/v1/endpoints/{eid}/messages?status=failed", headers=ADMIN).json()
    table = run(group, "endpoints", "messages", eid)
    assert table.exit_code == 0 and failed_id in table.stdout and "lead.submitted" in table.stdout
    newest_first = [m["id"] for m in ok_json(group, "endpoints", "messages", eid)["items"]]
    first_page = run(group, "endpoints", "messages", eid, "--limit", "1")
    more = first_page.stdout.strip().splitlines()[-1]
    assert newest_first[0] in first_page.stdout and more.startswith("more: --cursor "), first_page.stdout
    rest = ok_json(group, "endpoints", "messages", eid, "--limit", "1", "--cursor", more.split()[-1])
    assert [m["id"] for m in rest["items"]] == newest_first[1:] and rest["next_cursor"] is None

    replayed = run(group, "endpoints", "replay", eid, "--status", "failed")
    assert replayed.exit_code == 0 and "queued 1 message(s)" in replayed.stdout
    assert len(receiver.ok()) == 3  # sent by the command itself before it exited
    assert receiver.ok()[-1].headers["webhook-id"] == failed_id  # a replay keeps the webhook-id
    assert ok_json(group, "endpoints", "messages", eid, "--status", "failed") == {"items": [], "next_cursor": None}
    assert ok_json(group, "endpoints", "replay", eid, "--since", "2000-01-01") == {"queued": 2}
    assert len(receiver.ok()) == 5
    # `crmhub replay --endpoint ID` is the same operation (contract §2 names `crmhub replay …`; helper-28)
    again = run(group, "replay", "--endpoint", eid, "--since", "2000-01-01T08:00:00+0800")
    assert again.exit_code == 0 and "queued 2 message(s)" in again.stdout, again.output + again.stderr
    assert len(receiver.ok()) == 7
    assert run(group, "replay", "--endpoint", eid).stdout.strip().startswith("queued 0 message(s)")
    assert run(group, "replay", "--endpoint", eid, "--status", "quarantined").exit_code == 2
    shub.start()
    assert run(group, "endpoints", "messages", eid, "--status", "failed").stdout.strip() == "no failed messages"

    run(group, "endpoints", "update", eid, "--disable")
    refused = run(group, "endpoints", "replay", eid, "--status", "failed")
    assert refused.exit_code == 1 and "is disabled; enable it before replaying" in refused.stderr
    shub.start()


def test_sources_health_shows_each_sources_state_as_the_api_does(shub: Hub, cli: Callable[[Hub], click.Group]) -> None:
    """Source health had no command (contract §2: the CLI does what the API does) and the API no `status`: ops saw
    a source failing only on /ops. Never seen: healthy; only refused signatures: failing; disabled: disabled."""
    import uuid

    from hub.models import InboundRejection

    group = cli(shub)
    assert run(group, "sources", "health").stdout.startswith("no sources")
    client = client_for(shub)
    added = {name: client.post("/v1/sources", json={"connector": "web", "name": name,
                                                    "config": {"write_key": "write-key-123456"}},
                               headers=ADMIN).json()["id"] for name in ("quiet", "forged", "off")}
    with shub.transaction() as s:
        s.add(InboundRejection(source_id=uuid.UUID(added["forged"]), status_code=401, code="verification_failed"))
    assert client.patch(f"/v1/sources/{added['off']}", json={"enabled": False}, headers=ADMIN).status_code == 200

    items = ok_json(group, "sources", "health")
    assert items == client.get("/v1/health/sources", headers=ADMIN).json()["items"]
    assert {i["name"]: i["status"] for i in items} == {"quiet": "healthy", "forged": "failing", "off": "disabled"}
    table = run(group, "sources", "health")
    assert table.exit_code == 0, table.output + table.stderr
    lines = [line.split() for line in table.stdout.splitlines()[1:]]
    assert [(line[0], line[1]) for line in lines] == [(added["forged"], "failing"), (added["off"], "disabled"),
                                                      (added["quiet"], "healthy")]


def test_a_failed_pulls_long_error_is_cut_to_one_line_of_the_health_table() -> None:
    """A call-centre pull's network error wrapped over ~17 lines of `crmhub sources health`; --json keeps it whole."""
    from webhooks.cli import PULL_ERROR_WIDTH, _pull_state

    long = {"consecutive_failures": 3, "last_error": "ClientNetworkError: " + "connection refused; " * 40}
    shown = _pull_state(long)
    assert len(shown) == PULL_ERROR_WIDTH and shown.endswith("…") and shown.startswith("failed 3x: ClientNetworkError")
    assert _pull_state({"consecutive_failures": 1, "last_error": "HTTP 503"}) == "failed 1x: HTTP 503"


def test_untrusted_text_cannot_drive_the_operators_terminal(shub: Hub, cli: Callable[[Hub], click.Group]) -> None:
    """A pull's error comes from the platform's server: an ESC in it went to the terminal as it was (rich keeps
    ESC), so a remote server could set the operator's window title, colours or cursor. Controls are shown as
    U+FFFD in tables, summaries and error lines."""
    import uuid

    from hub.cli_output import terminal_safe
    from hub.pull import _record_outcome

    group = cli(shub)
    sid = client_for(shub).post("/v1/sources", json={"connector": "web", "name": "site", "config": {
        "write_key": "write-key-123456"}}, headers=ADMIN).json()["id"]
    _record_outcome(shub, uuid.UUID(sid), "HTTP 503 \x1b]0;owned\x07\x1b[2J\x9b31m from the ERP")
    table = run(group, "sources", "health")
    assert table.exit_code == 0 and "from the ERP" in table.stdout
    assert not set(table.stdout) & {"\x1b", "\x07", "\x9b"}, repr(table.stdout)
    assert terminal_safe("a\nb\x1b", lines=True) == "a\nb\ufffd" and terminal_safe("a\nb") == "a\ufffdb"


def test_a_latency_of_zero_is_shown_as_zero_not_as_unknown() -> None:
    """`or '-'` showed a p50 of 0.0 ms (a loopback receiver, rounded) as '-', the mark for no attempts."""
    from webhooks.cli import _or_dash

    assert (_or_dash(0.0), _or_dash(None), _or_dash(12.5)) == (0.0, "-", 12.5)


def test_table_times_keep_their_zone(shub: Hub, cli: Callable[[Hub], click.Group]) -> None:
    """Tables cut API times to 19 characters, dropping `+00:00`: an operator in China read UTC as local time."""
    import uuid

    from hub.pull import _record_outcome

    sid = client_for(shub).post("/v1/sources", json={"connector": "web", "name": "site", "config": {
        "write_key": "write-key-123456"}}, headers=ADMIN).json()["id"]
    _record_outcome(shub, uuid.UUID(sid), None)  # a pull that succeeded: its time is shown
    [line] = run(cli(shub), "sources", "health").stdout.splitlines()[1:]
    assert re.search(r"ok \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", line), line


def test_a_source_degraded_by_refused_bodies_shows_why_on_ops_and_in_the_cli(
        shub: Hub, cli: Callable[[Hub], click.Group]) -> None:
    """A request refused for something other than its credentials (an unreadable body: 400) made a source `degraded`
    while neither /ops nor `crmhub sources health` had a column saying why."""
    import time

    from tests.helpers import basic

    client = client_for(shub)
    key = "write-key-123456"
    sid = client.post("/v1/sources", json={"connector": "web", "name": "site", "config": {"write_key": key}},
                      headers=ADMIN).json()["id"]
    assert client.post(f"/hooks/{sid}/v1/track", content=b"{not json", headers=basic(key)).status_code == 400
    deadline = time.monotonic() + 5  # the rejection log is written off the request path
    while not (item := client.get("/v1/health/sources", headers=ADMIN).json()["items"][0])["rejected_other_1h"]:
        assert time.monotonic() < deadline, item
        time.sleep(0.05)
    assert (item["status"], item["received_1h"], item["rejected_auth_1h"], item["rejected_other_1h"]) == (
        "degraded", 1, 0, 1)
    page = client.get("/ops", headers=ADMIN).text
    assert "<th>Rejected (other)</th>" in page
    row = re.search(rf'data-source-id="{sid}".*?</tr>', page, re.S)
    assert row and re.findall(r"<td>(\d+)</td>", row.group(0))[:6] == ["1", "0", "0", "0", "1", "0"]
    table = run(cli(shub), "sources", "health")
    assert table.exit_code == 0, table.output + table.stderr
    assert "rejected (other)" in table.stdout.splitlines()[0]
    assert table.stdout.splitlines()[1].split()[4:10] == ["1", "0", "0", "0", "1", "0"]
