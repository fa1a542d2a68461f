"""TCCC push end to end over HTTP, the customer/own-line/masking rules, recordings, and the DescribeTelCdr reconcile."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from connectors.callcenter.connector import CallcenterConfig
from connectors.callcenter.reconcile import CallcenterPullError, describe_page, pull_page
from hub.models import EventRow, QuarantineRow
from hub.pull import run_pull
from hub.runtime import Hub
from tests.connectors.callcenter.acceptance import CONFIG, FIXTURES, sign
from tests.connectors.callcenter.fake_ccc import SECRET_ID, SECRET_KEY, FakeCcc
from tests.helpers import ADMIN, add_source, client_for, jbody, raw_rows, wait_processed


def _events(hub: Hub) -> list[dict[str, Any]]:
    with hub.sessions() as s:
        return [row.data for row in s.scalars(select(EventRow).order_by(EventRow.seq))]


def _push(client: Any, sid: str, body: bytes, config: dict[str, Any] = CONFIG, push_uuid: str = "u-1") -> Any:
    request = sign(body, config, push_uuid)
    return client.post(f"/hooks/{sid}", content=body, headers=dict(request.headers), params=dict(request.query))


def test_cdr_push_is_acked_the_tccc_way_and_maps_the_outside_party(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "callcenter", "tccc", CONFIG)
    body = (FIXTURES / "cdr_inbound.json").read_bytes()
    first = _push(client, sid, body)
    assert first.status_code == 200 and first.json() == {"ErrCode": 0, "ErrMsg": "ok"}
    again = _push(client, sid, body, push_uuid="u-1")
    assert again.status_code == 200 and again.json() == {"ErrCode": 0, "ErrMsg": "ok"}
    wrong = _push(client, sid, body, {**CONFIG, "password": "not-the-password"})
    assert wrong.status_code == 401 and wrong.json()["ErrCode"] == 401 and wrong.json()["ErrMsg"]
    wait_processed(hub)
    (call,) = _events(hub)
    props = call["properties"]
    assert call["type"] == "call.completed" and call["source_event_id"] == "cdr:fix-1111-2222-3333"
    assert call["identities"] == [{"type": "phone", "value": "+8613800138000"}]  # never the 400 line
    assert props["direction"] == "inbound" and props["agent"] == "li.na@edu.example.cn"
    assert props["started_at"] == "2026-03-03T10:05:00+08:00" and props["ended_at"] == "2026-03-03T10:11:40+08:00"
    assert props["duration_s"] == 384 and props["end_status"] == "ok"
    assert props["recording_url"] == "https://ccc.example.cn/rec/fix-1111.mp3"
    assert props["channel_roles"] == ["customer", "agent"]
    assert call["occurred_at"] == "2026-03-03T10:05:00+08:00"


def test_outbound_masked_callee_gives_no_phone_identity(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "callcenter", "tccc", CONFIG)
    assert _push(client, sid, (FIXTURES / "cdr_outbound_masked.json").read_bytes()).status_code == 200
    wait_processed(hub)
    (call,) = _events(hub)
    assert call["identities"] == []
    assert call["properties"]["masked"] is True and call["properties"]["customer_number_masked"] == "139****0000"
    assert call["properties"]["direction"] == "outbound"
    assert call["properties"]["channel_roles"] == ["agent", "customer"]


def test_own_numbers_are_never_identities_even_as_the_outside_party(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "callcenter", "tccc", {**CONFIG, "own_numbers": ["4008001234", "13900000001"]})
    cdr = json.loads((FIXTURES / "cdr_inbound.json").read_text())
    cdr.update(SessionId="s-own", Caller="139 0000 0001")  # a colleague's mobile calling the 400 line
    assert _push(client, sid, jbody(cdr)).status_code == 200
    wait_processed(hub)
    assert _events(hub)[0]["identities"] == []


def test_a_recording_that_arrives_first_is_carried_by_the_call(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "callcenter", "tccc", CONFIG)
    cdr = json.loads((FIXTURES / "cdr_inbound.json").read_text())
    cdr.pop("RecordURL")
    assert _push(client, sid, (FIXTURES / "record_customer_leg.json").read_bytes(), push_uuid="r-1").status_code == 200
    wait_processed(hub)
    assert _push(client, sid, jbody(cdr), push_uuid="c-1").status_code == 200
    wait_processed(hub)
    recording, call = _events(hub)
    assert recording["type"] == "call.recording_available" and recording["properties"]["call_seen"] is False
    assert recording["properties"]["participant"] == "customer"
    assert recording["identities"] == [{"type": "phone", "value": "+8613800138000"}]
    assert call["properties"]["recording_url"] == "https://ccc.example.cn/rec/fix-1111-user.mp3"
    assert call["properties"]["recordings"][0]["record_id"] == "rec-fix-01"


def test_a_push_whose_id_is_empty_or_too_long_is_quarantined_not_merged_or_stuck(hub: Hub) -> None:
    """An empty SessionId made every such CDR the one event `cdr:`; one over 300 characters could not be stored
    (VARCHAR(300) on PostgreSQL: retried, never handled). Both are kept in quarantine with the reason."""
    from hub.models import QuarantineRow

    client = client_for(hub)
    sid = add_source(client, "callcenter", "tccc", CONFIG)
    cdr = json.loads((FIXTURES / "cdr_inbound.json").read_text())
    for n, session in enumerate(("", " ", "s" * 400)):
        assert _push(client, sid, jbody({**cdr, "SessionId": session}), push_uuid=f"p-{n}").status_code == 200
    wait_processed(hub)
    assert _events(hub) == []
    with hub.sessions() as s:
        reasons = [q.reason for q in s.scalars(select(QuarantineRow))]
    assert reasons == ["invalid_tccc_cdr"] * 3


def test_a_push_of_an_unknown_action_is_kept_and_quarantined_naming_the_action(hub: Hub) -> None:
    """TCCC can also push voicemails (platforms.md §5). A 400 made TCCC retry, then drop them; a verified push
    the hub cannot read is kept and quarantined instead (contract §3), and acknowledged so TCCC stops."""
    client = client_for(hub)
    sid = add_source(client, "callcenter", "tccc", CONFIG)
    body = jbody({"SessionId": "vm-1", "VoicemailRecordURL": "https://example.cn/vm-1.mp3"})
    request = sign(body, CONFIG)
    resp = client.post(f"/hooks/{sid}", content=body, headers=dict(request.headers), params={"action": "voicemail"})
    assert resp.status_code == 200 and resp.json() == {"ErrCode": 0, "ErrMsg": "ok"}
    wait_processed(hub)
    with hub.sessions() as s:
        [row] = s.scalars(select(QuarantineRow)).all()
    assert row.reason == "unknown_action" and "'voicemail'" in row.detail
    assert b"vm-1.mp3" in raw_rows(hub)[0].body
    again = client.post(f"/hooks/{sid}", content=body, headers=dict(request.headers), params={"action": "voicemail"})
    assert again.status_code == 200 and len(raw_rows(hub)) == 1  # TCCC's redelivery: the same push


def _reconcile_config(fake: FakeCcc, **extra: Any) -> dict[str, Any]:
    return {**CONFIG, "secret_id": SECRET_ID, "secret_key": SECRET_KEY, "sdk_app_id": 1400000001,
            "endpoint": fake.endpoint, "protocol": "http", "reconcile_lag_s": 0, **extra}


def test_reconcile_pulls_missed_cdrs_through_the_sdk_and_dedupes_pushed_ones(hub: Hub) -> None:
    now = int(time.time())
    base = json.loads((FIXTURES / "cdr_inbound.json").read_text())
    fake = FakeCcc()
    fake.cdrs = [{**base, "SessionId": f"rc-{i:03d}", "StartTimestamp": now - 3600 + i, "Time": now - 3600 + i}
                 for i in range(130)]
    with fake.running():
        client = client_for(hub)
        sid = add_source(client, "callcenter", "tccc-rc", _reconcile_config(fake))
        pushed = jbody(fake.cdrs[0])
        assert _push(client, sid, pushed).status_code == 200  # one of them was pushed already
        result = run_pull(hub, uuid.UUID(sid))
        assert result.items == 130 and result.new == 129
        first, second, *later = fake.requests
        assert (first["PageNumber"], second["PageNumber"]) == (0, 1)  # 130 CDRs at 100 a page
        assert all(r["StartTimeStamp"] >= first["EndTimeStamp"] for r in later)  # then only newer windows
        wait_processed(hub)
    events = _events(hub)
    assert len(events) == 130 and len({e["source_event_id"] for e in events}) == 130
    assert all(e["identities"] == [{"type": "phone", "value": "+8613800138000"}] for e in events)


def test_reconcile_with_a_wrong_secret_key_raises_the_providers_error(hub: Hub) -> None:
    fake = FakeCcc()
    with fake.running():
        config = _reconcile_config(fake, secret_key="wrong-key-0001")
        sid = add_source(client_for(hub), "callcenter", "tccc-bad", config)
        with pytest.raises(CallcenterPullError, match="AuthFailure.SignatureFailure"):
            run_pull(hub, uuid.UUID(sid))


def test_a_secret_id_no_header_can_carry_is_refused_on_create_and_named_by_a_stored_sources_pull(hub: Hub) -> None:
    """The docs' `"secret_id": "AKID…"` used to be stored; every reconcile then failed as a *network* error (the SDK's
    latin-1 header encoding), retried 5 times a run, naming no setting."""
    fake = FakeCcc()
    with fake.running():
        config = _reconcile_config(fake, secret_id="AKID…")
        answer = client_for(hub).post("/v1/sources", headers=ADMIN, json={
            "connector": "callcenter", "name": "tccc-placeholder", "config": config})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_config"
        assert [d["field"] for d in answer.json()["error"]["details"]] == ["secret_id"]
        stored = hub.connectors.get("callcenter").validate_config(config, allow_unknown=True)
        with pytest.raises(CallcenterPullError, match="secret_id is not printable ASCII"):
            describe_page(stored, int(time.time()) - 3600, int(time.time()), 1)
    assert fake.requests == []


def test_reconcile_far_behind_asks_only_for_what_describetelcdr_still_keeps(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """A cursor left 365 days behind would be refused on every run; the pull starts 179 days back instead."""
    now = int(time.time())
    base = json.loads((FIXTURES / "cdr_inbound.json").read_text())
    fake = FakeCcc()
    fake.cdrs = [{**base, "SessionId": "recent", "StartTimestamp": now - 3600, "Time": now - 3600}]
    with fake.running():
        config = _reconcile_config(fake)
        items, cursor = pull_page(CallcenterConfig.model_validate(config), {"since": now - 365 * 86400}, now=now)
        assert fake.requests and fake.requests[0]["StartTimeStamp"] >= now - 180 * 86400
        while cursor.get("since", 0) < now - 1 and len(fake.requests) < 5:
            more, cursor = pull_page(CallcenterConfig.model_validate(config), cursor, now=now)
            items += more
    assert [i["SessionId"] for i in items] == ["recent"]
    assert "cannot be reconciled" in caplog.text


def test_the_fake_refuses_what_describetelcdr_refuses() -> None:
    """The fake is only a check if a wrong request fails: a start over 180 days back, a page over 100."""
    now = int(time.time())
    fake = FakeCcc()
    with fake.running():
        config = CallcenterConfig.model_validate(_reconcile_config(fake))
        with pytest.raises(CallcenterPullError, match="InvalidParameterValue"):
            describe_page(config, now - 200 * 86400, now - 199 * 86400, 0)
        with pytest.raises(CallcenterPullError, match="InvalidParameterValue"):
            describe_page(config, now - 100 * 86400, now, 0)  # a span of 90 days or more


def test_a_lookback_beyond_what_the_api_keeps_is_accepted_and_clamped(hub: Hub) -> None:
    """A refusal would also break sources saved with 180 days: stored configs are validated on every use."""
    config = {**CONFIG, "reconcile_lookback_s": 365 * 86400}
    assert client_for(hub).post("/v1/sources", headers=ADMIN, json={
        "connector": "callcenter", "name": "tccc-far", "config": config}).status_code == 201
    fake = FakeCcc()
    with fake.running():
        now = int(time.time())
        pull_page(CallcenterConfig.model_validate(_reconcile_config(fake, reconcile_lookback_s=365 * 86400)), None,
                  now=now)
    assert fake.requests[0]["StartTimeStamp"] >= now - 180 * 86400
