"""Structure-aware fuzzing of every connector, from parse() to the stored rows (mutations.py makes the bodies).

Each body is a valid fixture with its structure broken, signed with the connector's real rule, so it passes
verification and reaches normalisation and the pipeline. The rule checked (contract §3): bad input gets a 4xx
naming the problem or a quarantine row with a reason; accepted input is never lost; never a 500.

CI runs a small, derandomized set. To hunt, run many random examples:
`python -m pytest tests/connectors/test_structure_fuzz.py --hypothesis-profile=fuzz` (profile in tests/conftest.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from hub.connector import InboundRequest, ParseContext
from hub.errors import PayloadError, QuarantineError, UnreadableBody
from hub.ingest import storable_key
from hub.models import RAW_HANDLED, RAW_QUARANTINED, QuarantineRow, RawEvent
from hub.pipeline import _set_aside_unstorable_drafts, prepare_event
from hub.runtime import Hub
from hub.schemas import utcnow
from tests.connectors.acceptance import AcceptanceCase, all_cases, take_in
from tests.connectors.mutations import mutated_json_bodies, mutated_xml_bodies
from tests.connectors.test_acceptance import MemoryState
from tests.helpers import add_source, client_for, wait_processed
from webhooks.inbound import _request_keys

CASES = all_cases()
NAMES = sorted(CASES)


def fuzz_settings(ci_examples: int) -> Callable[[Any], Any]:
    """A few fixed examples in CI; the `fuzz` profile's many random ones when hunting."""
    common: dict[str, Any] = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
    if settings.get_current_profile_name() == "fuzz":
        return settings(**common)
    return settings(max_examples=ci_examples, derandomize=True, database=None, **common)


def bodies(case: AcceptanceCase) -> st.SearchStrategy[bytes]:
    fixtures = [body for _, body in case.fixture_bodies()]
    return mutated_xml_bodies(fixtures) if case.raw_fixtures else mutated_json_bodies(fixtures)


def parse_ctx() -> ParseContext:
    return ParseContext(uuid.uuid4(), "fuzz", utcnow(), MemoryState())


@pytest.mark.parametrize("name", NAMES)
def test_mutated_fixtures_raise_only_hub_errors_and_make_storable_events(name: str) -> None:
    """Every step a verified request goes through raises only the hub's own errors, and what parse() returns
    becomes events the pipeline can write (text no database refuses)."""
    case = CASES[name]
    connector = case.connector()
    config = connector.validate_config(case.good_config)

    @fuzz_settings(200)
    @given(body=bodies(case))
    def check(body: bytes) -> None:
        request = case.sign(body, case.good_config)
        try:
            if not take_in(connector, request, config):
                return
        except UnreadableBody:
            return  # answered 400, nothing stored
        except PayloadError:
            pass  # stored as is, then quarantined by parse()
        ctx = parse_ctx()
        try:
            drafts = connector.parse(request, config, ctx)
        except (QuarantineError, PayloadError):
            return
        for draft in _set_aside_unstorable_drafts(drafts, ctx):
            event = prepare_event(draft, source=connector.name, source_id=uuid.uuid4(), received_at=utcnow())
            event.model_dump_json().encode("utf-8")

    check()


def _send(client: Any, source_id: str, request: InboundRequest) -> Any:
    path = f"/hooks/{source_id}" + (f"/{request.path.lstrip('/')}" if request.path else "")
    return client.request(request.method, path, content=request.body, headers=dict(request.headers),
                          params=dict(request.query))


def _assert_error_body(resp: Any) -> None:
    """Contract §3: a 4xx names the problem as `{"error": {"code", "message", "details"}}`."""
    error = resp.json()["error"]
    assert error["code"] and error["message"], resp.text


def _assert_kept(hub: Hub, source_id: uuid.UUID, key: str) -> None:
    """The acknowledged request (or the earlier one with its key) ended handled or quarantined with a reason."""
    with hub.sessions() as session:
        raw = session.scalars(select(RawEvent).where(RawEvent.source_id == source_id,
                                                     RawEvent.dedup_key == key)).one()
        reasons = list(session.scalars(select(QuarantineRow.reason).where(QuarantineRow.raw_event_id == raw.id)))
        stuck = session.scalar(select(func.count()).select_from(RawEvent).where(
            RawEvent.source_id == source_id, RawEvent.status.not_in((RAW_HANDLED, RAW_QUARANTINED))))
    assert raw.status in (RAW_HANDLED, RAW_QUARANTINED), (raw.status, raw.error)
    assert not stuck
    assert all(reasons), reasons
    if raw.status == RAW_QUARANTINED:
        assert reasons
    elif raw.event_count:
        assert raw.events_stored + raw.events_duplicate + len(reasons) >= 1, "accepted, but nothing came of it"


@pytest.mark.parametrize("name", NAMES)
def test_mutated_fixtures_over_http_are_answered_and_kept(name: str, any_hub: Hub) -> None:
    """Over `/hooks/{source_id}`: a 2xx or a 4xx with the contract's error body, never a 5xx; and every 2xx
    request is stored and ends handled or quarantined with a reason, never pending or failed."""
    case = CASES[name]
    connector = case.connector()
    config = connector.validate_config(case.good_config)
    client = client_for(any_hub)
    source_id = add_source(client, connector.name, f"fuzz-{name}", case.good_config)

    @fuzz_settings(12)
    @given(body=bodies(case))
    def check(body: bytes) -> None:
        request = case.sign(body, case.good_config)
        resp = _send(client, source_id, request)
        assert resp.status_code < 500, resp.text
        assert resp.status_code != 401, resp.text  # signed with the platform's own rule: it must verify
        if resp.status_code >= 400:
            _assert_error_body(resp)
            return
        if connector.handshake(request, config) is not None:
            return  # answered as the platform's URL check: nothing to store
        wait_processed(any_hub)
        key, _, _ = _request_keys(connector, request, config)
        _assert_kept(any_hub, uuid.UUID(source_id), storable_key(key))

    check()


# ------------------------------------------------------------------ what the fuzzing found, one minimal body each

SURROGATE, NUL = "\\ud800", "\\u0000"  # as JSON spells them
LONG_ID = "x" * 301  # one more than the identity columns hold
POS = '{"event_id": "%s", "type": "purchase", "member_card_no": "M1"}'
ERP = '{"event_id": "%s", "type": "order.created", "order_no": "%s", "customer_code": "C1"}'
TRACK = '{"type": "track", "userId": "u1", "messageId": "%s", "properties": {"p": "%s"}}'
XHS = '{"data": {"leads_id": "L1", "%s": "%s", "data": [{"label": "电话", "value": "13800138000"}]}}'
WECOM = ("<xml><ToUserName>wwtestcorp000001</ToUserName><CreateTime>1772505000</CreateTime><Event>"
         "change_external_contact</Event><ChangeType>add_external_contact</ChangeType><ExternalUserID>%s"
         "</ExternalUserID></xml>")

FOUND: dict[str, tuple[str, str, int]] = {
    # (connector, body, events the request must still store). Before the fix each was a 500 or a request left
    # "failed" (on PostgreSQL, or everywhere).
    "push-array-with-a-surrogate-event-id": ("pos", f"[{POS % ('a' + SURROGATE)}, {POS % 'b'}]", 1),
    "erp-array-with-a-surrogate-event-id": ("erp", f"[{ERP % ('a' + SURROGATE, 'SO-1')}, {ERP % ('b', 'SO-2')}]", 1),
    "web-batch-with-a-surrogate-message-id": (
        "web", f'{{"batch": [{TRACK % ("a" + SURROGATE, "x")}, {TRACK % ("b", "x")}]}}', 1),
    "web-batch-over-32kb-with-a-surrogate": (
        "web", f'{{"batch": [{TRACK % ("a", "y" * 20_000 + SURROGATE)}, {TRACK % ("b", "y" * 20_000)}]}}', 2),
    "web-campaign-url-with-a-surrogate": (
        "web", '{"batch": [{"type": "page", "userId": "u1", "messageId": "p1", "context": {"page": {"url": '
               f'"https://edu.example.cn/?utm_source=a{SURROGATE}"}}}}}}]}}', 1),
    "douyin-user-info-with-a-surrogate-key": (
        "douyin", f'{{"event": "im_receive_msg", "from_user_id": "o1", "content": {{"user_infos": '
                  f'[{{"open_id": "o1", "{SURROGATE}": 1}}]}}}}', 1),
    "douyin-event-name-with-a-surrogate": ("douyin", f'{{"event": "x{SURROGATE}", "from_user_id": "o1"}}', 0),
    "douyin-event-name-with-a-nul": ("douyin", f'{{"event": "x{NUL}", "from_user_id": "o1"}}', 0),
    "douyin-open-id-too-long": ("douyin", f'{{"event": "authorize", "from_user_id": "{LONG_ID}"}}', 1),
    "xiaohongshu-ad-id-with-a-surrogate": ("xiaohongshu", XHS % ("account_id", SURROGATE), 1),
    "erp-order-no-with-a-nul": ("erp", ERP % ("e1", "SO" + NUL), 1),
    "erp-customer-code-too-long": ("erp", ERP.replace('"C1"', f'"{LONG_ID}"') % ("e1", "SO-1"), 1),
    "erp-company-name-too-long": (
        "erp", ERP.replace('"C1"', '"C1", "customer_name": "' + "名" * 301 + '"') % ("e1", "SO-1"), 1),
    "callcenter-session-id-with-a-nul": (
        "callcenter", f'{{"SessionId": "s{NUL}", "Caller": "13800138000", "Direction": 0}}', 0),
    "push-array-with-infinity": ("pos", f"[1e999, {POS % 'p1'}]", 1),
    "pos-trait-nan": ("pos", POS.replace('"M1"', '"M1", "level": NaN') % "p1", 1),
    "pos-member-card-too-long": ("pos", POS.replace('"M1"', f'"{LONG_ID}"') % "p1", 1),
    "wecom-external-user-id-too-long": ("wecom", WECOM % LONG_ID, 1),
}


@pytest.mark.parametrize("found", sorted(FOUND))
def test_what_the_fuzzing_found_is_answered_and_kept(found: str, any_hub: Hub) -> None:
    name, body, events = FOUND[found]
    case = CASES[name]
    connector = case.connector()
    config = connector.validate_config(case.good_config)
    client = client_for(any_hub)
    source_id = add_source(client, connector.name, f"found-{name}", case.good_config)
    request = case.sign(body.encode(), case.good_config)
    resp = _send(client, source_id, request)
    assert 200 <= resp.status_code < 300, resp.text
    wait_processed(any_hub)
    key, _, _ = _request_keys(connector, request, config)
    _assert_kept(any_hub, uuid.UUID(source_id), storable_key(key))
    with any_hub.sessions() as session:
        stored = session.scalar(select(func.sum(RawEvent.events_stored)).where(
            RawEvent.source_id == uuid.UUID(source_id)))
    assert (stored or 0) >= events


def test_a_douyin_challenge_with_a_lone_surrogate_is_echoed_not_a_500(hub: Hub) -> None:
    """The verify_webhook answer echoes the challenge: a lone surrogate had no UTF-8 form and the reply was a 500."""
    case = CASES["douyin"]
    client = client_for(hub)
    source_id = add_source(client, "douyin", "challenge", case.good_config)
    body = f'{{"event": "verify_webhook", "content": {{"challenge": "a{SURROGATE}"}}}}'.encode()
    resp = _send(client, source_id, case.sign(body, case.good_config))
    assert resp.status_code == 200 and json.loads(resp.content) == {"challenge": "a\ud800"}


def test_a_batch_with_an_unstorable_id_still_counts_the_events_seen_before(any_hub: Hub) -> None:
    """The per-event lookup sent a NUL id to PostgreSQL, which refused the query: the answer fell back to "all new"
    (the event seen before counted as accepted) with a traceback in the log."""
    case = CASES["pos"]
    client = client_for(any_hub)
    source_id = add_source(client, "pos", "seen", case.good_config)
    assert _send(client, source_id, case.sign((POS % "b").encode(), case.good_config)).status_code == 200
    wait_processed(any_hub)
    resp = _send(client, source_id, case.sign(f"[{POS % ('a' + NUL)}, {POS % 'b'}]".encode(), case.good_config))
    assert resp.json() == {"accepted": 1, "duplicates": 1}
