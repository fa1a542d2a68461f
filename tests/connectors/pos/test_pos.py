"""POS end to end over HTTP, plus mapping and amount-parser properties."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from hypothesis import given, strategies as st
from sqlalchemy import select

from connectors.pos import PosConnector
from hub.connector import ParseContext
from hub.models import EventRow
from hub.runtime import Hub
from hub.schemas import utcnow
from hub.values import amount_json, parse_amount
from tests.connectors.pos.acceptance import FIXTURES, SECRET, sign
from tests.connectors.test_acceptance import MemoryState
from tests.helpers import add_source, client_for, jbody, wait_processed


def _events(hub: Hub) -> list[dict[str, Any]]:
    with hub.sessions() as s:
        return [row.data for row in s.scalars(select(EventRow).order_by(EventRow.seq))]


def _post(client: Any, sid: str, body: bytes, secret: str = SECRET) -> Any:
    request = sign(body, {"secret": secret})
    return client.post(f"/hooks/{sid}", content=body, headers=dict(request.headers))


def test_signed_push_becomes_events_and_redelivery_is_a_duplicate(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "pos", "store", {"secret": SECRET})
    body = (FIXTURES / "batch_refund_member.json").read_bytes()
    first = _post(client, sid, body)
    assert first.status_code == 200 and first.json() == {"accepted": 2, "duplicates": 0}
    again = _post(client, sid, body)
    assert again.status_code == 200 and again.json() == {"accepted": 0, "duplicates": 2}
    wait_processed(hub)
    events = _events(hub)
    assert [e["type"] for e in events] == ["purchase.refunded", "contact.updated"]
    refund, member = events
    assert refund["source_event_id"] == "pos-evt-000102"
    assert refund["properties"]["amount"] == -68.0 and refund["properties"]["original_order_no"] == "POS-20260305-0042"
    assert refund["occurred_at"].endswith("+08:00")
    assert {"type": "phone", "value": "+8613800138000"} in member["identities"]
    assert {"type": "pos_member_id", "value": "M20260001"} in member["identities"]


def test_bad_or_missing_signature_is_401_and_nothing_is_stored(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "pos", "store", {"secret": SECRET})
    body = (FIXTURES / "purchase.json").read_bytes()
    wrong = _post(client, sid, body, secret="another-secret-0000000")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_signature"
    missing = client.post(f"/hooks/{sid}", content=body, headers={"content-type": "application/json"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_signature"
    wait_processed(hub)
    assert _events(hub) == []


def test_a_signature_header_with_non_ascii_bytes_is_401_not_500(hub: Hub) -> None:
    """A header byte above 0x7f arrives as a latin-1 character; comparing it as str raised TypeError (a 500)."""
    client = client_for(hub)
    sid = add_source(client, "pos", "store", {"secret": SECRET})
    body = (FIXTURES / "purchase.json").read_bytes()
    for value in ("sha256=\xe9" + "0" * 63, "sha256=caf\xe9"):
        resp = client.post(f"/hooks/{sid}", content=body, headers={"x-hub-signature-256": value.encode("latin-1")})
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "bad_signature"
    wait_processed(hub)
    assert _events(hub) == []


def test_a_formal_order_from_pos_is_stored_as_intent_with_an_issue(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "pos", "store", {"secret": SECRET})
    body = jbody({"event_id": "pos-formal-1", "type": "purchase", "member_card_no": "M20260001",
                  "order_no": "POS-X", "order_type": "formal", "amount": 100, "paid_at": "2026-03-05 12:00:00"})
    assert _post(client, sid, body).status_code == 200
    wait_processed(hub)
    (event,) = _events(hub)
    assert event["properties"]["order_type"] == "intent"
    assert "formal_order_not_from_erp" in {i["code"] for i in event["quality"]["issues"]}


def test_purchase_mapping_reads_amounts_items_and_local_time() -> None:
    connector = PosConnector()
    config = connector.validate_config({"secret": SECRET})
    request = sign((FIXTURES / "purchase.json").read_bytes(), {"secret": SECRET})
    ctx = ParseContext(uuid.uuid4(), "t", utcnow(), MemoryState())
    (draft,) = connector.parse(request, config, ctx)
    assert draft.type == "purchase.completed" and draft.source_event_id == "pos-evt-000101"
    assert draft.properties["amount"] == 12800.0 and draft.properties["items"][0]["price"] == 12800.0
    assert draft.occurred_at.isoformat() == "2026-03-05T12:03:41+08:00"
    assert connector.dedup_key(request, config) == "event:pos-evt-000101"


def test_an_invalid_item_is_quarantined_and_the_rest_kept() -> None:
    connector = PosConnector()
    config = connector.validate_config({"secret": SECRET})
    body = json.dumps([{"event_id": "ok-1", "type": "purchase", "amount": 1},
                       {"event_id": "bad-1", "type": "teleport"}]).encode()
    ctx = ParseContext(uuid.uuid4(), "t", utcnow(), MemoryState())
    drafts = connector.parse(sign(body, {"secret": SECRET}), config, ctx)
    assert [d.source_event_id for d in drafts] == ["ok-1"]
    assert [q[0] for q in ctx.quarantined] == ["invalid_pos_event"]


def test_a_barcode_sent_as_a_number_is_the_items_sku() -> None:
    """A numeric `sku` used to quarantine the whole purchase (`items.0.sku: Input should be a valid string`)."""
    connector = PosConnector()
    config = connector.validate_config({"secret": SECRET})
    body = json.dumps({"event_id": "e-1", "type": "purchase", "amount": 5,
                       "items": [{"sku": 6901234567892, "name": "矿泉水", "qty": 1, "price": 5}]}).encode()
    ctx = ParseContext(uuid.uuid4(), "t", utcnow(), MemoryState())
    (draft,) = connector.parse(sign(body, {"secret": SECRET}), config, ctx)
    assert draft.properties["items"][0]["sku"] == "6901234567892" and ctx.quarantined == []


cents = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=2, allow_nan=False)


@given(cents)
def test_amount_round_trips_through_its_text_forms(value: Decimal) -> None:
    text = f"{value:.2f}"
    assert parse_amount(text) == value
    assert parse_amount(f"¥{text}") == value
    assert parse_amount(f"{text}元") == value
    assert parse_amount(f"{value:,.2f}") == value
    assert amount_json(parse_amount(text)) == float(value)


@given(st.text(max_size=30))
def test_amount_parser_never_raises(text: str) -> None:
    result = parse_amount(text)
    assert result is None or result.is_finite()


def test_a_placeholder_time_is_a_quality_issue_and_the_batch_is_kept(hub: Hub) -> None:
    """A year-1 `paid_at` (ERP "no date" residue) used to overflow when stored and fail the whole batch."""
    client = client_for(hub)
    sid = add_source(client, "pos", "store", {"secret": SECRET})
    body = jbody([{"event_id": "pos-zero-1", "type": "purchase", "member_card_no": "M1", "amount": 10,
                   "paid_at": "0001-01-01 00:00:00"},
                  {"event_id": "pos-zero-2", "type": "purchase", "member_card_no": "M2", "amount": 20,
                   "paid_at": "9999-12-31T23:59:59-05:00"},
                  {"event_id": "pos-ok-3", "type": "purchase", "member_card_no": "M3", "amount": 30,
                   "paid_at": "2026-03-05 12:00:00"}])
    assert _post(client, sid, body).json() == {"accepted": 3, "duplicates": 0}
    wait_processed(hub)
    events = {e["source_event_id"]: e for e in _events(hub)}
    assert set(events) == {"pos-zero-1", "pos-zero-2", "pos-ok-3"}
    for key in ("pos-zero-1", "pos-zero-2"):
        issues = events[key]["quality"]["issues"]
        assert {"field": "paid_at", "code": "invalid_time"} in [{k: i[k] for k in ("field", "code")} for i in issues]
        assert events[key]["occurred_at"] == events[key]["received_at"]
    assert events["pos-ok-3"]["occurred_at"].startswith("2026-03-05T12:00:00")


@given(st.datetimes(timezones=st.timezones()))
def test_platform_times_parse_to_storable_instants_or_none(when: Any) -> None:
    """Whatever the text says, a parsed time converts to UTC (what the database stores) or is refused."""
    from hub.values import parse_platform_time

    for text in (when.isoformat(), when.replace(tzinfo=None).isoformat(sep=" ")):
        parsed = parse_platform_time(text)
        assert parsed is None or parsed.astimezone(__import__("datetime").UTC).year >= 1970


def test_an_item_that_is_not_an_object_is_quarantined_alone(hub: Hub) -> None:
    """pos.md: quarantine is per item; a stray `null` or string in the array must not sink its neighbours."""
    from hub.models import QuarantineRow

    client = client_for(hub)
    sid = add_source(client, "pos", "store", {"secret": SECRET})
    body = jbody([{"event_id": "pos-fine-1", "type": "purchase", "member_card_no": "M9", "amount": 5},
                  "pos-stray", None])
    assert _post(client, sid, body).status_code == 200
    wait_processed(hub)
    assert [e["source_event_id"] for e in _events(hub)] == ["pos-fine-1"]
    with hub.sessions() as s:
        rows = list(s.scalars(select(QuarantineRow).order_by(QuarantineRow.id)))
    assert [(r.reason, r.payload) for r in rows] == [("invalid_pos_event", {"item": "pos-stray"}),
                                                     ("invalid_pos_event", {"item": None})]
    assert "a JSON object is needed, not str" in rows[0].detail


def test_an_item_quarantined_in_a_handled_batch_can_be_replayed(hub: Hub, monkeypatch: Any) -> None:
    """A rule since fixed refused one item of a batch: replaying quarantined requests retries only that item."""
    from pydantic import field_validator

    from connectors.pos.payloads import PosEvent
    from hub.models import QuarantineRow, RawEvent
    from hub.pipeline import replay

    class NotYet(PosEvent):
        @field_validator("event_id")
        @classmethod
        def _refuse_late(cls, value: str) -> str:
            if value == "pos-late":
                raise ValueError("refused by a rule since fixed")
            return value

    client = client_for(hub)
    sid = add_source(client, "pos", "store", {"secret": SECRET})
    body = jbody([{"event_id": "pos-early", "type": "purchase", "member_card_no": "M5", "amount": 5},
                  {"event_id": "pos-late", "type": "purchase", "member_card_no": "M6", "amount": 6}])
    with monkeypatch.context() as patch:
        patch.setattr("connectors.pos.connector.PosEvent", NotYet)
        assert _post(client, sid, body).status_code == 200
        wait_processed(hub)
    assert [e["source_event_id"] for e in _events(hub)] == ["pos-early"]
    with hub.sessions() as s:
        assert s.scalars(select(RawEvent.status)).one() == "handled"
        assert s.scalars(select(QuarantineRow.reason)).all() == ["invalid_pos_event"]

    assert replay(hub, statuses=["quarantined"]) == 1
    wait_processed(hub)
    assert sorted(e["source_event_id"] for e in _events(hub)) == ["pos-early", "pos-late"]  # nothing twice
    with hub.sessions() as s:
        assert s.scalars(select(QuarantineRow)).all() == []
    assert replay(hub, statuses=["quarantined"]) == 0
