"""ERP push end to end over HTTP, the formal-order rule, properties.changes and USCC checks."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from connectors.erp import ErpConnector
from connectors.erp.connector import PULLED_MARKER
from hub.connector import InboundRequest, ParseContext
from hub.models import EventRow
from hub.runtime import Hub
from hub.schemas import utcnow
from tests.connectors.erp.acceptance import FIXTURES, SECRET, sign
from tests.connectors.test_acceptance import MemoryState
from tests.helpers import add_source, client_for, jbody, wait_processed

ORDER = {"event_id": "e-1", "type": "order.created", "order_no": "SO-1", "order_type": "formal",
         "customer_code": "C-1", "customer_name": "腾讯科技（深圳）有限公司", "uscc": "9144030071526726XG",
         "contact_phone": "13800138000", "amount": "1000.00", "currency": "CNY", "contract_date": "2026-03-20",
         "updated_at": "2026-03-09 10:00:00"}


def _events(hub: Hub) -> list[dict[str, Any]]:
    with hub.sessions() as s:
        return [row.data for row in s.scalars(select(EventRow).order_by(EventRow.seq))]


def _post(client: Any, sid: str, body: bytes, secret: str = SECRET) -> Any:
    return client.post(f"/hooks/{sid}", content=body, headers=dict(sign(body, {"secret": secret}).headers))


def _parse(payload: Any, state: MemoryState | None = None) -> list[Any]:
    connector = ErpConnector()
    config = connector.validate_config({"secret": SECRET})
    ctx = ParseContext(uuid.uuid4(), "t", utcnow(), state or MemoryState())
    return connector.parse(sign(jbody(payload), {"secret": SECRET}), config, ctx)


def test_signed_orders_become_events_with_account_identities(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "erp", "erp", {"secret": SECRET})
    body = (FIXTURES / "order_created.json").read_bytes()
    assert _post(client, sid, body).json() == {"accepted": 1, "duplicates": 0}
    assert _post(client, sid, body).json() == {"accepted": 0, "duplicates": 1}
    bad = _post(client, sid, body, secret="not-the-erp-secret-00")
    assert bad.status_code == 401
    wait_processed(hub)
    (event,) = _events(hub)
    assert event["type"] == "order.created" and event["source_event_id"] == "erp-evt-9001"
    assert event["properties"]["order_type"] == "formal"  # the ERP may emit formal orders
    idents = {(i["type"], i["value"]) for i in event["identities"]}
    assert {("erp_customer_code", "C-SZ-0088"), ("uscc", "9144030071526726XG"), ("phone", "+8613800138000")} <= idents
    assert event["properties"]["contract_date"] == "2026-03-20" and event["properties"]["amount"] == 256000.0


def test_an_update_that_moves_the_contract_date_carries_changes(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "erp", "erp", {"secret": SECRET})
    updated = {**ORDER, "event_id": "e-2", "type": "order.updated", "contract_date": "2026-03-31",
               "amount": 900, "updated_at": "2026-03-12 16:40:00"}
    unchanged = {**updated, "event_id": "e-3", "updated_at": "2026-03-13 09:00:00"}
    for payload in (ORDER, [updated], unchanged):
        assert _post(client, sid, jbody(payload)).status_code == 200
    wait_processed(hub)
    created, moved, same = _events(hub)
    assert "changes" not in created["properties"]
    assert moved["properties"]["changes"] == {"contract_date": {"before": "2026-03-20", "after": "2026-03-31"},
                                              "amount": {"before": 1000.0, "after": 900.0}}
    assert same["properties"]["changes"] == {}


def test_an_older_version_arriving_late_reports_no_changes_and_keeps_state() -> None:
    state = MemoryState()
    newer = {**ORDER, "event_id": "e-9", "type": "order.updated", "order_type": "intent",
             "updated_at": "2026-03-15 10:00:00"}
    _parse(newer, state)
    (late,) = _parse({**ORDER, "event_id": "e-8", "type": "order.updated"}, state)
    assert late.properties["stale"] is True and late.properties["changes"] == {}
    assert state.get("order:SO-1")["order_type"] == "intent"


def test_an_invalid_uscc_is_left_out_with_a_quality_issue() -> None:
    (draft,) = _parse({**ORDER, "uscc": "9144030071526726XA"})
    assert "uscc" not in {i.type for i in draft.identities}
    assert [i.code for i in draft.quality.issues] == ["invalid_uscc"]


def test_an_array_dedupes_on_its_sorted_event_ids() -> None:
    connector = ErpConnector()
    config = connector.validate_config({"secret": SECRET})
    a, b = {**ORDER, "event_id": "x-1"}, {**ORDER, "event_id": "x-2", "order_no": "SO-2"}
    key_ab = connector.dedup_key(sign(jbody([a, b]), {"secret": SECRET}), config)
    key_ba = connector.dedup_key(sign(jbody([b, a]), {"secret": SECRET}), config)
    assert key_ab == key_ba and key_ab.startswith("events:")
    assert [d.source_event_id for d in _parse([a, b])] == ["x-1", "x-2"]


def test_a_batch_answers_per_event_and_stores_each_order_once(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "erp", "erp", {"secret": SECRET})
    a, b = {**ORDER, "event_id": "x-1"}, {**ORDER, "event_id": "x-2", "order_no": "SO-2"}
    assert _post(client, sid, jbody(a)).json() == {"accepted": 1, "duplicates": 0}
    wait_processed(hub)
    assert _post(client, sid, jbody([a, b])).json() == {"accepted": 1, "duplicates": 1}
    assert _post(client, sid, jbody([a, b])).json() == {"accepted": 0, "duplicates": 2}
    wait_processed(hub)
    assert sorted(e["source_event_id"] for e in _events(hub)) == ["x-1", "x-2"]


def test_event_keys_name_the_stored_ids_and_their_lone_dedup_keys() -> None:
    connector = ErpConnector()
    config = connector.validate_config({"secret": SECRET})
    body = jbody([{**ORDER, "event_id": 42}, {**ORDER, "event_id": "x-2"}])
    request = sign(body, {"secret": SECRET})
    assert connector.event_keys(request, config) == [("42", "event:42"), ("x-2", "event:x-2")]
    assert [d.source_event_id for d in _parse([{**ORDER, "event_id": 42}])] == ["42"]  # what parse() stores
    lone = sign(jbody({**ORDER, "event_id": "x-1"}), {"secret": SECRET})
    assert connector.event_keys(lone, config) == [("x-1", connector.dedup_key(lone, config))]
    no_id = sign(jbody([{**ORDER, "event_id": "x-1"}, {**ORDER, "event_id": None}]), {"secret": SECRET})
    assert connector.event_keys(no_id, config) is None  # answered as a whole, as before
    pulled = InboundRequest("PULL", body, {**request.headers, PULLED_MARKER: "orders"})
    assert connector.event_keys(pulled, config) is None  # parse() gives pulled orders other ids


def test_an_item_that_is_not_an_object_is_quarantined_alone() -> None:
    connector = ErpConnector()
    config = connector.validate_config({"secret": SECRET})
    ctx = ParseContext(uuid.uuid4(), "t", utcnow(), MemoryState())
    drafts = connector.parse(sign(jbody([ORDER, 7]), {"secret": SECRET}), config, ctx)
    assert [d.source_event_id for d in drafts] == ["e-1"]
    assert [(q.reason, q.detail) for q in ctx.quarantined] == [
        ("invalid_erp_order", "event: a JSON object is needed, not int")]


def test_a_pushed_request_cannot_pass_for_a_pulled_one_by_its_header(hub: Hub) -> None:
    """`x-crmhub-pulled` marks what hub.pull stored itself; a push carrying it was read as a pulled order (its own
    event_id replaced, and no per-event answer). Only a record with the method PULL, which no HTTP request to
    /hooks has, counts as pulled."""
    client = client_for(hub)
    sid = add_source(client, "erp", "erp", {"secret": SECRET})
    body = jbody(ORDER)
    headers = {**dict(sign(body, {"secret": SECRET}).headers), PULLED_MARKER: "orders"}
    assert client.post(f"/hooks/{sid}", content=body, headers=headers).json() == {"accepted": 1, "duplicates": 0}
    wait_processed(hub)
    (event,) = _events(hub)
    assert event["source_event_id"] == "e-1"
    pulled = InboundRequest.from_record({"method": "PULL", "headers": {PULLED_MARKER: "orders"}}, body)
    assert pulled.hub_marker(PULLED_MARKER) == "orders"
    assert InboundRequest(method="POST", body=body, headers={PULLED_MARKER: "orders"}).hub_marker(PULLED_MARKER) is None
