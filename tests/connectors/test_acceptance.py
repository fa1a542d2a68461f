"""Every connector passes the same acceptance checks (see acceptance.py)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hub.connector import InboundRequest, ParseContext, Reply
from hub.errors import InvalidRequest, PayloadError, QuarantineError, VerificationError
from hub.schemas import EventDraft, utcnow
from tests.connectors.acceptance import AcceptanceCase, all_cases, take_in

CASES = all_cases()
NAMES = sorted(CASES)


class MemoryState:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def ctx() -> ParseContext:
    return ParseContext(uuid.uuid4(), "acceptance", utcnow(), MemoryState())


def _config(case: AcceptanceCase, raw: dict[str, Any]) -> Any:
    return case.connector().validate_config(raw)


@pytest.mark.parametrize("name", NAMES)
def test_config_schema_is_json_schema_and_rejects_bad_config(name: str) -> None:
    from jsonschema import Draft202012Validator

    case = CASES[name]
    connector = case.connector()
    schema = connector.config_schema()
    Draft202012Validator.check_schema(schema)
    connector.validate_config(case.good_config)
    with pytest.raises(InvalidRequest) as err:
        connector.validate_config(case.bad_config)
    assert err.value.status_code == 422 and err.value.details


@pytest.mark.parametrize("name", NAMES)
def test_verify_accepts_signed_and_rejects_tampered_or_wrong_secret(name: str) -> None:
    case = CASES[name]
    connector = case.connector()
    config = _config(case, case.good_config)
    for _fixture_name, body in case.fixture_bodies():
        request = case.sign(body, case.good_config)
        connector.verify(request, config)
        if case.signs_body:
            tampered = case.tamper(request) if case.tamper else replace(request, body=body + b" ")
            with pytest.raises(VerificationError):
                connector.verify(tampered, config)
        if case.wrong_config is not None:
            with pytest.raises(VerificationError):
                connector.verify(case.sign(body, case.wrong_config), config)


@pytest.mark.parametrize("name", NAMES)
def test_handshakes_are_answered_as_the_platform_expects(name: str) -> None:
    case = CASES[name]
    connector = case.connector()
    config = _config(case, case.good_config)
    for hs in case.handshakes:
        connector.verify(hs.request, config)
        reply = connector.handshake(hs.request, config)
        assert isinstance(reply, Reply)
        assert reply.status == hs.status
        expected = hs.body
        if isinstance(expected, dict | list):
            import json

            assert json.loads(reply.content()) == expected
        elif isinstance(expected, str):
            assert reply.content().decode() == expected
        else:
            assert reply.content() == expected


@pytest.mark.parametrize("name", NAMES)
def test_every_fixture_parses_into_valid_events(name: str) -> None:
    case = CASES[name]
    connector = case.connector()
    config = _config(case, case.good_config)
    assert case.fixture_bodies(), "a connector needs fixtures"
    for fixture_name, body in case.fixture_bodies():
        request = case.sign(body, case.good_config)
        connector.verify(request, config)
        if connector.handshake(request, config) is not None:
            continue
        drafts = connector.parse(request, config, ctx())
        assert len(drafts) >= case.min_events, fixture_name
        for draft in drafts:
            assert isinstance(draft, EventDraft)
            EventDraft.model_validate(draft.model_dump())
            assert draft.source_event_id and draft.occurred_at.tzinfo is not None, fixture_name


@pytest.mark.parametrize("name", NAMES)
def test_redelivery_has_the_same_dedup_key(name: str) -> None:
    case = CASES[name]
    connector = case.connector()
    config = _config(case, case.good_config)
    for _, body in case.fixture_bodies():
        first, again = case.sign(body, case.good_config), case.sign(body, case.good_config)
        if connector.handshake(first, config) is not None:
            continue
        assert connector.dedup_key(first, config) == connector.dedup_key(again, config)
        ids_first = [d.source_event_id for d in connector.parse(first, config, ctx())]
        ids_again = [d.source_event_id for d in connector.parse(again, config, ctx())]
        assert ids_first == ids_again


@pytest.mark.parametrize("name", NAMES)
def test_redelivery_over_http_gets_the_same_status_and_no_second_event(name: str, hub: Any) -> None:
    """Contract §3: a redelivered platform message gets the same status code and creates no second event."""
    from tests.helpers import add_source, client_for, count_events, wait_processed

    case = CASES[name]
    connector = case.connector()
    config = _config(case, case.good_config)
    client = client_for(hub)
    source_id = add_source(client, connector.name, f"acceptance-{name}", case.good_config)

    def send(request: InboundRequest) -> int:
        path = f"/hooks/{source_id}" + (f"/{request.path.lstrip('/')}" if request.path else "")
        resp = client.request(request.method, path, content=request.body, headers=dict(request.headers),
                              params=dict(request.query))
        return resp.status_code

    requests = [case.sign(body, case.good_config) for _, body in case.fixture_bodies()]
    requests = [r for r in requests if connector.handshake(r, config) is None]
    first = [send(r) for r in requests]
    assert all(200 <= code < 300 for code in first), first
    wait_processed(hub)
    stored = count_events(hub, source=connector.name)
    assert stored >= case.min_events
    again = [send(case.sign(body, case.good_config)) for _, body in case.fixture_bodies()
             if connector.handshake(case.sign(body, case.good_config), config) is None]
    assert again == first
    wait_processed(hub)
    assert count_events(hub, source=connector.name) == stored


ALLOWED = (VerificationError, PayloadError, QuarantineError)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.one_of(st.binary(max_size=2048), st.text(max_size=512).map(str.encode),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                   lambda c: st.lists(c, max_size=4)
                                   | st.dictionaries(st.text(max_size=8), c, max_size=4),
                                   max_leaves=12).map(lambda v: __import__("json").dumps(v).encode())))
def test_arbitrary_bytes_only_raise_hub_errors(name: str, junk: bytes) -> None:
    case = CASES[name]
    connector = case.connector()
    config = _config(case, case.good_config)
    request: InboundRequest = case.sign(junk, case.good_config)
    try:
        if not take_in(connector, request, config):
            return
    except ALLOWED:
        return
    try:
        connector.parse(request, config, ctx())
    except ALLOWED:
        return


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("body", [b'{"unexpected": 1}', b'{"event": "x", "data": {}, "batch": {}}'])
def test_a_verified_body_that_is_no_platform_message_is_kept_and_quarantined(name: str, body: bytes,
                                                                             hub: Any) -> None:
    """Contract §3: only an unparseable body is a 400. A verified JSON object without the platform's fields
    is stored and answered 2xx (so the platform stops retrying), then quarantined with the reason (or, where
    the connector keeps unknown messages, e.g. Douyin's `douyin.<event>`, stored as an event)."""
    from hub.models import QuarantineRow, RawEvent
    from tests.helpers import add_source, client_for, count_events, wait_processed

    case = CASES[name]
    connector = case.connector()
    config = _config(case, case.good_config)
    request = case.sign(body, case.good_config)
    try:
        connector.verify(request, config)
    except VerificationError:
        pytest.skip(f"{name} takes no pushes")
    if connector.handshake(request, config) is not None:
        pytest.skip(f"{name} answers this body as a handshake")
    client = client_for(hub)
    source_id = add_source(client, connector.name, f"odd-{name}", case.good_config)
    path = f"/hooks/{source_id}" + (f"/{request.path.lstrip('/')}" if request.path else "")
    resp = client.request(request.method, path, content=request.body, headers=dict(request.headers),
                          params=dict(request.query))
    assert 200 <= resp.status_code < 300, resp.text
    wait_processed(hub)
    with hub.sessions() as session:
        raws = session.query(RawEvent).filter(RawEvent.source_id == uuid.UUID(source_id)).all()
        reasons = [q.reason for q in session.query(QuarantineRow).filter(
            QuarantineRow.source_id == uuid.UUID(source_id))]
    assert len(raws) == 1 and raws[0].body == request.body  # kept, byte for byte
    events = count_events(hub, source_id=uuid.UUID(source_id))
    assert (events > 0) != bool(reasons), (events, reasons)  # it became events or a quarantine row: never nothing
