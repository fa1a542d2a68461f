"""The contact's details from WeCom's server API (`gettoken`, `externalcontact/get`), against the local stand-in."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import select

from connectors.wecom import WeComConnector
from connectors.wecom.api import WeComAPI, WeComAPIError
from connectors.wecom.details import apply_details
from connectors.wecom.stand_in import WeComStandIn, serve
from hub.connector import ParseContext
from hub.errors import RetryableError
from hub.models import EventRow, RawEvent
from hub.pipeline import process_raw, replay
from hub.runtime import Hub
from hub.schemas import EventDraft, Identity, utcnow
from tests.connectors.wecom.acceptance import CONFIG, CORP_ID, FIXTURES, sign
from tests.helpers import add_source, basic, client_for, raw_rows, wait_processed

SECRET = "contact-secret-0123456789"
EXTERNAL = "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"  # the fixtures' ExternalUserID; their employee is zhangsan


def contact(*follow: dict[str, Any], unionid: str | None = "ozynqsulJFCZ2z1aYeS8h-nuasdAAA") -> dict[str, Any]:
    return {"external_contact": {"external_userid": EXTERNAL, "name": "李四", "position": "采购经理", "type": 1,
                                 "gender": 1, "unionid": unionid, "corp_name": "腾讯",
                                 "corp_full_name": "腾讯科技有限公司"},
            "follow_user": list(follow)}


ZHANGSAN = {"userid": "zhangsan", "remark": "李部长", "description": "对接采购", "createtime": 1772505000,
            "remark_corp_name": "腾讯科技", "remark_mobiles": ["13800138000", " "],
            "tags": [{"group_name": "客户等级", "tag_name": "重点", "tag_id": "etTag1", "type": 1}]}


@pytest.fixture
def stand_in() -> Iterator[WeComStandIn]:
    with serve(WeComStandIn(CORP_ID, SECRET, contacts={EXTERNAL: contact(ZHANGSAN)})) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


def _api(stand_in: WeComStandIn, http: httpx.Client, secret: str = SECRET) -> WeComAPI:
    return WeComAPI(http, CORP_ID, secret, stand_in.base_url)


# ---------------------------------------------------------------- the API client


def test_the_token_is_fetched_with_the_corp_and_secret_and_reused(stand_in: WeComStandIn, http: httpx.Client) -> None:
    api = _api(stand_in, http)
    assert api.get_contact(EXTERNAL, "zhangsan") == contact(ZHANGSAN)
    assert api.get_contact(EXTERNAL, "zhangsan") is not None
    paths = [path for path, _ in stand_in.requests]
    assert paths == ["/cgi-bin/gettoken", "/cgi-bin/externalcontact/get", "/cgi-bin/externalcontact/get"]
    assert stand_in.requests[0][1] == {"corpid": CORP_ID, "corpsecret": SECRET}
    assert stand_in.requests[1][1]["external_userid"] == EXTERNAL
    assert stand_in.requests[1][1]["access_token"] in stand_in.tokens


def test_an_expired_token_is_fetched_again_once(stand_in: WeComStandIn, http: httpx.Client) -> None:
    api = _api(stand_in, http)
    api.access_token()
    stand_in.expire_tokens()  # WeCom ends it (42001) before the hub's clock says so
    assert api.get_contact(EXTERNAL, "zhangsan") is not None
    assert [path for path, _ in stand_in.requests] == ["/cgi-bin/gettoken", "/cgi-bin/externalcontact/get",
                                                        "/cgi-bin/gettoken", "/cgi-bin/externalcontact/get"]


def test_a_token_near_its_end_is_used_for_half_of_what_it_has_left(stand_in: WeComStandIn,
                                                                     http: httpx.Client) -> None:
    """WeCom answers gettoken with the same token while it is valid: asking again inside the 5-minute leeway only
    gets it back, so a token kept for 0 s cost a gettoken before every call for its last 5 minutes."""
    import time

    stand_in.expires_in = 200  # inside the 5-minute leeway
    api = _api(stand_in, http)
    first = api.access_token()
    assert api.access_token() == first
    assert [path for path, _ in stand_in.requests] == ["/cgi-bin/gettoken"]
    assert api._token is not None and 90 < api._token[1] - time.monotonic() <= 100
    api._token = (first, time.monotonic())  # that half is over: asked again
    api.access_token()
    assert [path for path, _ in stand_in.requests] == ["/cgi-bin/gettoken", "/cgi-bin/gettoken"]


def test_a_wrong_secret_is_a_permanent_error_that_does_not_show_the_secret(
        stand_in: WeComStandIn, http: httpx.Client) -> None:
    with pytest.raises(WeComAPIError) as caught:
        _api(stand_in, http, secret="wrong-secret-value").get_contact(EXTERNAL, "zhangsan")
    assert caught.value.details["errcode"] == 40001
    assert "wrong-secret-value" not in str(caught.value) and "wrong-secret-value" not in repr(caught.value.details)


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_busy_and_rate_limited_answers_are_retryable(stand_in: WeComStandIn, http: httpx.Client,
                                                     errcode: int) -> None:
    stand_in.errors.append(errcode)
    with pytest.raises(RetryableError):
        _api(stand_in, http).get_contact(EXTERNAL, "zhangsan")


def test_a_5xx_and_an_unreachable_api_are_retryable_and_name_no_secret(
        stand_in: WeComStandIn, http: httpx.Client) -> None:
    stand_in.status_errors.append(503)
    with pytest.raises(RetryableError, match="HTTP 503"):
        _api(stand_in, http).get_contact(EXTERNAL, "zhangsan")
    closed = WeComAPI(http, CORP_ID, SECRET, "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(RetryableError) as caught:
        closed.get_contact(EXTERNAL, "zhangsan")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("errcode", "meaning"), [(48002, "no permission"), (60020, "untrusted IP")])
def test_configuration_errors_are_permanent(stand_in: WeComStandIn, http: httpx.Client, errcode: int,
                                            meaning: str) -> None:
    stand_in.errors.append(errcode)
    with pytest.raises(WeComAPIError) as caught:
        _api(stand_in, http).get_contact(EXTERNAL, "zhangsan")
    assert caught.value.details["errcode"] == errcode, meaning


def test_a_contact_the_corp_no_longer_has_is_none(stand_in: WeComStandIn, http: httpx.Client) -> None:
    stand_in.contacts[EXTERNAL] = contact()  # no employee follows it any more: 84061
    assert _api(stand_in, http).get_contact(EXTERNAL, "zhangsan") is None


def test_follow_user_pages_are_read_until_the_events_employee(stand_in: WeComStandIn, http: httpx.Client) -> None:
    others = [{"userid": f"employee{i}", "remark_mobiles": [f"1390000{i:04d}"]} for i in range(5)]
    stand_in.contacts[EXTERNAL] = contact(*others, ZHANGSAN, {"userid": "later"})
    stand_in.page_size = 2
    detail = _api(stand_in, http).get_contact(EXTERNAL, "zhangsan")
    assert detail is not None and ZHANGSAN in detail["follow_user"]
    assert len(detail["follow_user"]) == 6  # three pages; the fourth is not read
    assert [q.get("cursor") for p, q in stand_in.requests if p.endswith("/get")] == [None, "2", "4"]


# ---------------------------------------------------------------- the connector


class _State:
    def get(self, key: str) -> None:
        return None

    def set(self, key: str, value: object) -> None:
        pass


def _parse(stand_in: WeComStandIn, http: httpx.Client, fixture: str = "add_external_contact.xml",
           **config: Any) -> EventDraft:
    connector = WeComConnector()
    live = {**CONFIG, "contact_secret": SECRET, "api_base_url": stand_in.base_url, **config}
    ctx = ParseContext(uuid.uuid4(), "wecom", utcnow(), _State(), http=http)
    [draft] = connector.parse(sign((FIXTURES / fixture).read_bytes(), live), connector.validate_config(live), ctx)
    return draft


def test_an_added_contact_gets_its_unionid_phones_traits_and_tags(stand_in: WeComStandIn, http: httpx.Client) -> None:
    draft = _parse(stand_in, http)
    assert [(i.type, i.value) for i in draft.identities] == [
        ("wecom_external_userid", EXTERNAL), ("wechat_unionid", "ozynqsulJFCZ2z1aYeS8h-nuasdAAA"),
        ("phone", "13800138000")]
    # a WeChat user's (type 1) name is a nickname: kept apart, not over another source's real name
    assert draft.traits == {"wechat_nickname": "李四", "gender": "male", "company": "腾讯科技有限公司",
                            "title": "采购经理"}
    assert draft.properties["contact_type"] == "wechat"
    assert draft.properties["remark"] == "李部长" and draft.properties["remark_corp_name"] == "腾讯科技"
    assert draft.properties["tags"] == [{"group": "客户等级", "name": "重点", "id": "etTag1"}]
    assert draft.properties["details_fetched"] is True


def test_a_wecom_users_name_is_their_real_name(stand_in: WeComStandIn, http: httpx.Client) -> None:
    stand_in.contacts[EXTERNAL]["external_contact"]["type"] = 2
    draft = _parse(stand_in, http)
    assert draft.traits["name"] == "李四" and "wechat_nickname" not in draft.traits
    assert draft.properties["contact_type"] == "wecom"


def test_remark_mobiles_can_be_left_out_of_identity(stand_in: WeComStandIn, http: httpx.Client) -> None:
    draft = _parse(stand_in, http, link_remark_mobiles=False)
    assert "phone" not in {i.type for i in draft.identities}


@pytest.mark.parametrize("fixture", ["edit_external_contact.xml", "add_half_external_contact.xml"])
def test_edits_and_half_adds_fetch_details_too(stand_in: WeComStandIn, http: httpx.Client, fixture: str) -> None:
    assert _parse(stand_in, http, fixture).properties["details_fetched"] is True


@pytest.mark.parametrize("fixture", ["del_external_contact.xml", "del_follow_user.xml", "transfer_fail.xml",
                                     "change_external_tag_create.xml", "third_party_add_external_contact.xml"])
def test_removals_tag_changes_and_other_corps_call_nothing(stand_in: WeComStandIn, http: httpx.Client,
                                                           fixture: str) -> None:
    draft = _parse(stand_in, http, fixture)
    assert "details_fetched" not in draft.properties and stand_in.requests == []


def test_without_a_contact_secret_nothing_is_fetched(stand_in: WeComStandIn, http: httpx.Client) -> None:
    draft = _parse(stand_in, http, contact_secret=None)
    assert [i.type for i in draft.identities] == ["wecom_external_userid"] and stand_in.requests == []


def test_a_refusal_about_this_contact_is_logged_and_named_on_the_event(stand_in: WeComStandIn, http: httpx.Client,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    stand_in.errors.append(40096)  # 不合法的外部联系人userid
    with caplog.at_level(logging.WARNING):
        draft = _parse(stand_in, http)
    assert draft.properties["details_error"].startswith("WeCom externalcontact/get error 40096")
    assert [i.type for i in draft.identities] == ["wecom_external_userid"]
    assert "error 40096" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("errcode", [40001, 48002, 60020])
def test_a_refused_configuration_fails_the_request_naming_the_fix(stand_in: WeComStandIn, http: httpx.Client,
                                                                  errcode: int) -> None:
    """Every contact would be stored without its details until an admin fixes the source, and a stored event cannot
    be given them later: the request fails instead, kept for `crmhub replay`."""
    stand_in.errors.append(errcode)
    with pytest.raises(WeComAPIError, match=f"error {errcode}.*crmhub replay --source .* --status failed"):
        _parse(stand_in, http)


def test_a_request_failed_on_a_wrong_secret_gets_its_details_when_replayed_after_the_fix(
        hub: Hub, stand_in: WeComStandIn) -> None:
    client = client_for(hub)
    live = {**CONFIG, "max_clock_skew_s": 300, "contact_secret": "a-wrong-secret", "api_base_url": stand_in.base_url}
    wecom = add_source(client, "wecom", "brand-wecom", live)
    _post(client, wecom, "add_external_contact.xml", live)
    wait_processed(hub)
    [raw] = raw_rows(hub)
    assert raw.status == "failed" and "error 40001" in (raw.error or "") and "a-wrong-secret" not in raw.error
    fixed = client.patch(f"/v1/sources/{wecom}", json={"config": {**live, "contact_secret": SECRET}},
                         headers={"authorization": "Bearer test-admin-token"})
    assert fixed.status_code == 200, fixed.text
    assert replay(hub, source_id=uuid.UUID(wecom), statuses=["failed"]) == 1
    wait_processed(hub)
    with hub.sessions() as session:
        [event] = session.scalars(select(EventRow)).all()
    assert event.data["properties"]["details_fetched"] is True


def test_a_transient_error_is_raised_so_the_request_is_processed_again(stand_in: WeComStandIn,
                                                                       http: httpx.Client) -> None:
    stand_in.errors.append(45009)
    with pytest.raises(RetryableError):
        _parse(stand_in, http)


# ---------------------------------------------------------------- end to end


def _post(client: Any, source_id: str, fixture: str, config: dict[str, Any]) -> None:
    request = sign((FIXTURES / fixture).read_bytes(), config)
    resp = client.post(f"/hooks/{source_id}", content=request.body, params=dict(request.query),
                       headers={"content-type": "text/xml"})
    assert resp.status_code == 200 and resp.content == b""


def test_the_wecom_contact_joins_the_customer_who_gave_the_same_phone_elsewhere(
        hub: Hub, stand_in: WeComStandIn) -> None:
    client = client_for(hub)
    web = add_source(client, "web", "site", {"write_key": "write-key-wecom-details"})
    identify = {"type": "identify", "userId": "site-user-7", "messageId": "m-7", "traits": {"phone": "13800138000"}}
    assert client.post(f"/hooks/{web}/v1/identify", json=identify, headers=basic("write-key-wecom-details")).is_success
    live = {**CONFIG, "max_clock_skew_s": 300, "contact_secret": SECRET, "api_base_url": stand_in.base_url}
    wecom = add_source(client, "wecom", "brand-wecom", live)
    _post(client, wecom, "add_external_contact.xml", live)
    wait_processed(hub)
    with hub.sessions() as session:
        customers = {row.source: row.customer_id for row in session.scalars(select(EventRow))}
    assert customers["wecom"] == customers["web"] is not None
    profile = client.get(f"/v1/customers/{customers['wecom']}", headers={"authorization": "Bearer test-admin-token"})
    assert {(i["type"], i["value"]) for i in profile.json()["identities"]} >= {
        ("wechat_unionid", "ozynqsulJFCZ2z1aYeS8h-nuasdAAA"), ("wecom_external_userid", EXTERNAL),
        ("phone", "+8613800138000")}
    assert profile.json()["traits"]["wechat_nickname"] == "李四"
    shown = client.get(f"/v1/sources/{wecom}", headers={"authorization": "Bearer test-admin-token"}).json()
    assert shown["config"]["contact_secret"] == "********" and SECRET not in str(shown)


def test_a_request_whose_details_were_busy_is_stored_with_them_on_the_next_try(
        hub: Hub, stand_in: WeComStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing lost: WeCom got its 200 at once; the hub keeps the request and processes it again."""
    import connectors.wecom.api as api_module

    monkeypatch.setattr(api_module, "PAUSE_S", 0.0)  # the busy answer's pause is over by the next try
    client = client_for(hub)
    live = {**CONFIG, "max_clock_skew_s": 300, "contact_secret": SECRET, "api_base_url": stand_in.base_url}
    wecom = add_source(client, "wecom", "brand-wecom", live)
    hub.runner.stop()  # processed by hand below
    _post(client, wecom, "add_external_contact.xml", live)
    with hub.sessions() as session:
        raw_id = session.scalars(select(RawEvent.id)).one()
    stand_in.errors.append(-1)
    with pytest.raises(RetryableError):
        process_raw(raw_id)
    with hub.sessions() as session:
        assert session.get(RawEvent, raw_id).status == "pending"  # type: ignore[union-attr]
        assert session.scalars(select(EventRow)).all() == []
    assert process_raw(raw_id) == "handled"
    with hub.sessions() as session:
        [event] = session.scalars(select(EventRow)).all()
    assert {"type": "wechat_unionid", "value": "ozynqsulJFCZ2z1aYeS8h-nuasdAAA"} in event.data["identities"]


def test_after_an_outage_the_api_is_not_called_again_for_a_while(stand_in: WeComStandIn, http: httpx.Client) -> None:
    """A backlog retried while WeCom is away costs one timeout per pause, not one per event."""
    import connectors.wecom.api as api_module

    api = _api(stand_in, http)
    api.access_token()
    stand_in.status_errors.append(503)
    with pytest.raises(RetryableError, match="HTTP 503"):
        api.get_contact(EXTERNAL, "zhangsan")
    calls = len(stand_in.requests)
    for _ in range(3):
        with pytest.raises(RetryableError, match="not called") as caught:
            api.get_contact(EXTERNAL, "zhangsan")
        assert 0 < caught.value.retry_after <= api_module.PAUSE_S
    assert len(stand_in.requests) == calls
    api._paused_until -= api_module.PAUSE_S  # the pause is over
    assert api.get_contact(EXTERNAL, "zhangsan") is not None


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                  max_size=3), max_leaves=12)
_field = st.sampled_from(["unionid", "name", "gender", "type", "corp_name", "corp_full_name", "position",
                          "userid", "remark_mobiles", "tags", "remark", "description", "remark_corp_name"])


@settings(deadline=None)  # a busy CI machine: hypothesis's 200 ms default failed a run
@given(detail=st.dictionaries(st.sampled_from(["external_contact", "follow_user", "next_cursor"]),
                              _json | st.lists(st.dictionaries(_field, _json, max_size=6), max_size=3)
                              | st.dictionaries(_field, _json, max_size=6), max_size=3))
def test_any_shape_of_answer_adds_only_well_typed_details_and_never_raises(detail: dict[str, Any]) -> None:
    draft = EventDraft(type="contact.added", source_event_id="e", occurred_at=utcnow(),
                       identities=[Identity(type="wecom_external_userid", value=EXTERNAL)])
    apply_details(draft, detail, "zhangsan", link_remark_mobiles=True)
    assert all(isinstance(i.value, str) and i.value.strip() for i in draft.identities)
    assert all(isinstance(v, str) for v in draft.traits.values())
    assert draft.properties["details_fetched"] is True


def test_a_string_where_a_list_belongs_is_not_read_as_its_characters() -> None:
    draft = EventDraft(type="contact.added", source_event_id="e", occurred_at=utcnow())
    apply_details(draft, {"follow_user": [{"userid": "zhangsan", "remark_mobiles": "13800138000", "tags": "x"}],
                          "external_contact": {"gender": True, "type": [1]}}, "zhangsan", link_remark_mobiles=True)
    assert draft.identities == [] and "gender" not in draft.traits and "contact_type" not in draft.properties


# ---------------------------------------------------------------- review (wecom details)


def test_neither_the_secret_nor_the_token_reaches_a_log_line_at_info(
        stand_in: WeComStandIn, http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    """`crmhub -v serve` and `crmhub worker` log at INFO, where httpx writes every request's full URL: gettoken
    carries the secret and externalcontact/get the token in its query."""
    with caplog.at_level(logging.INFO):
        _parse(stand_in, http)
    tokens = list(stand_in.tokens)
    assert "/cgi-bin/gettoken" in caplog.text  # the request is still logged, without its secret
    assert SECRET not in caplog.text and tokens and not any(token in caplog.text for token in tokens)


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_a_busy_or_rate_limited_answer_pauses_the_api_too(stand_in: WeComStandIn, http: httpx.Client,
                                                           errcode: int) -> None:
    """WeCom says "rate limited" with HTTP 200 and an errcode, not 429: a backlog retried at 0.2 s, 0.4 s … against
    45009 called WeCom once per event per retry, where a 429 would have paused the API."""
    api = _api(stand_in, http)
    stand_in.errors.append(errcode)
    with pytest.raises(RetryableError):
        api.get_contact(EXTERNAL, "zhangsan")
    calls = len(stand_in.requests)
    with pytest.raises(RetryableError, match="not called") as caught:
        api.get_contact(EXTERNAL, "zhangsan")
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert len(stand_in.requests) == calls


def test_one_number_noted_on_two_contacts_does_not_make_them_one_customer(any_hub: Hub,
                                                                          stand_in: WeComStandIn) -> None:
    """An employee who notes the same mobile (their own, the shop's) on several contacts: each contact is its own
    WeChat user (own external_userid and unionid), but the noted phone, a strong identifier, merged them all."""
    other, noted = "wmOtherContact000000000000000001", "13912345678"
    stand_in.contacts[EXTERNAL] = contact({**ZHANGSAN, "remark_mobiles": [noted]})
    stand_in.contacts[other] = contact({**ZHANGSAN, "remark_mobiles": [noted]}, unionid="oOtherUnionid000000000001")
    hub = any_hub
    client = client_for(hub)
    live = {**CONFIG, "max_clock_skew_s": 300, "contact_secret": SECRET, "api_base_url": stand_in.base_url}
    wecom = add_source(client, "wecom", "brand-wecom", live)
    added, edited = (FIXTURES / "add_external_contact.xml").read_bytes(), (FIXTURES / "edit_external_contact.xml")
    for body in (added, added.replace(EXTERNAL.encode(), other.encode()), edited.read_bytes()):
        request = sign(body, live)
        resp = client.post(f"/hooks/{wecom}", content=request.body, params=dict(request.query),
                           headers={"content-type": "text/xml"})
        assert resp.status_code == 200
        wait_processed(hub)
    with hub.sessions() as session:
        rows = session.scalars(select(EventRow).where(EventRow.source == "wecom").order_by(EventRow.seq)).all()
        events = {next(i["value"] for i in row.data["identities"] if i["type"] == "wecom_external_userid"): row
                  for row in rows}  # the edit (last) stands for EXTERNAL: the contact that had it first keeps it
    assert len(rows) == 3 and set(events) == {EXTERNAL, other}
    assert rows[0].customer_id == rows[2].customer_id != rows[1].customer_id
    assert {"type": "phone", "value": "+8613912345678"} in events[EXTERNAL].data["identities"]
    assert "phone" not in {i["type"] for i in events[other].data["identities"]}
    assert events[other].data["properties"]["remark_mobiles_not_linked"] == [noted]


class _DictState(dict[str, Any]):
    def set(self, key: str, value: Any) -> None:
        self[key] = value


def test_a_noted_mobile_is_refused_on_a_second_contact_but_a_switchboard_is_kept(
        stand_in: WeComStandIn, http: httpx.Client) -> None:
    other, mobile, switchboard = "wmOtherContact000000000000000001", "139 1234 5678", "010-62345678"
    for external in (EXTERNAL, other):
        stand_in.contacts[external] = contact({**ZHANGSAN, "remark_mobiles": [mobile, switchboard]})
    connector, state = WeComConnector(), _DictState()
    live = connector.validate_config({**CONFIG, "contact_secret": SECRET, "api_base_url": stand_in.base_url})
    added = (FIXTURES / "add_external_contact.xml").read_bytes()
    phones = []
    for body in (added, added.replace(EXTERNAL.encode(), other.encode()), added):
        ctx = ParseContext(uuid.uuid4(), "wecom", utcnow(), state, http=http)
        [draft] = connector.parse(sign(body, {**CONFIG, "contact_secret": SECRET}), live, ctx)
        phones.append(([i.value for i in draft.identities if i.type == "phone"],
                       draft.properties.get("remark_mobiles_not_linked")))
    assert phones == [([mobile, switchboard], None), ([switchboard], [mobile]), ([mobile, switchboard], None)]


def test_no_page_is_asked_for_once_the_paging_budget_is_spent(stand_in: WeComStandIn, http: httpx.Client,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading one contact must not hold the ingest lane for 20 slow pages."""
    import connectors.wecom.api as api_module

    stand_in.contacts[EXTERNAL] = contact(*({"userid": f"employee{i}"} for i in range(6)), ZHANGSAN)
    stand_in.page_size = 2
    monkeypatch.setattr(api_module, "PAGING_BUDGET_S", 0.0)
    detail = _api(stand_in, http).get_contact(EXTERNAL, "zhangsan")
    assert detail is not None and len(detail["follow_user"]) == 2
    assert [p for p, _ in stand_in.requests].count("/cgi-bin/externalcontact/get") == 1


def test_follow_user_of_another_shape_reads_as_no_entries() -> None:
    from connectors.wecom.api import _entries

    assert _entries({"follow_user": "[]"}) == [] and _entries({"follow_user": {"userid": "x"}}) == []
    assert _entries({"follow_user": [1, None, {"userid": "x"}]}) == [{"userid": "x"}]
    assert _entries({}) == []


def test_a_refused_configuration_fails_the_request_without_a_traceback(
        hub: Hub, stand_in: WeComStandIn, caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(hub)
    live = {**CONFIG, "max_clock_skew_s": 300, "contact_secret": "a-wrong-secret", "api_base_url": stand_in.base_url}
    wecom = add_source(client, "wecom", "brand-wecom", live)
    with caplog.at_level(logging.ERROR, logger="hub.pipeline"):
        _post(client, wecom, "add_external_contact.xml", live)
        wait_processed(hub)
    [record] = [r for r in caplog.records if r.name == "hub.pipeline"]
    assert "error 40001" in record.getMessage() and record.exc_info is None
