"""Credit-registry lookups against local fake providers (httpx.MockTransport) that check each provider's auth."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, strategies as st

from connectors.credit_registry import (
    CompanyNotFound,
    CreditRegistryConnector,
    RegistryAuthError,
    profile_event,
)
from connectors.credit_registry.normalise import parse_capital, parse_status, risk_level
from connectors.credit_registry.providers import QICHACHA_BASEINFO, TIANYANCHA_BASEINFO
from hub.connector import InboundRequest, ParseContext
from hub.errors import InvalidRequest, VerificationError
from hub.pipeline import prepare_event
from hub.schemas import utcnow
from tests.connectors.test_acceptance import MemoryState

USCC = "9144030071526726XG"
TODAY = date(2026, 3, 20)
TYC_TOKEN = "tyc-token-0001"
QCC_KEY, QCC_SECRET = "qcc-app-key", "qcc-secret-key"
QCC_CONFIG = {"provider": "qichacha", "app_key": QCC_KEY, "secret_key": QCC_SECRET}
TYC_RESULT = {"name": "腾讯科技（深圳）有限公司", "creditCode": USCC, "legalPersonName": "马化腾",
              "regStatus": "存续", "regCapital": "6500万美元", "actualCapital": "6500万美元",
              "socialStaffNum": 7322, "estiblishTime": 948297600000}
QCC_RESULT = {"Name": "腾讯科技（深圳）有限公司", "CreditCode": USCC, "OperName": "马化腾",
              "Status": "存续（在营、开业、在册）", "StartDate": "2000-02-24T00:00:00", "RegistCapi": "6500万美元"}


def _not_this_endpoint(request: httpx.Request, path: str) -> httpx.Response | None:
    """HTTP 404 for any other method or path, as the provider's gateway answers: a client calling the wrong
    endpoint must fail here too, not be answered as if it had called the right one."""
    if request.method != "GET" or request.url.path != path:
        return httpx.Response(404, text="Not Found")
    return None


def tianyancha(request: httpx.Request) -> httpx.Response:
    if (wrong := _not_this_endpoint(request, TIANYANCHA_BASEINFO)) is not None:
        return wrong
    if request.headers.get("authorization") != TYC_TOKEN:
        return httpx.Response(200, json={"error_code": 300009, "reason": "token 无效", "result": None})
    if request.url.params.get("keyword") != USCC:
        return httpx.Response(200, json={"error_code": 300000, "reason": "无数据", "result": None})
    return httpx.Response(200, json={"error_code": 0, "reason": "ok", "result": TYC_RESULT})


def qichacha(request: httpx.Request, result: dict[str, Any] | None = None) -> httpx.Response:
    """Endpoint 410 as platforms.md §8 documents it: Token over key + Timespan + secret, and `keyword`."""
    if (wrong := _not_this_endpoint(request, QICHACHA_BASEINFO)) is not None:
        return wrong
    span = request.headers.get("timespan", "")
    expected = hashlib.md5((QCC_KEY + span + QCC_SECRET).encode()).hexdigest().upper()  # noqa: S324
    fresh = span.isdigit() and abs(time.time() - int(span)) < 600
    if request.url.params.get("key") != QCC_KEY or request.headers.get("token") != expected or not fresh:
        return httpx.Response(200, json={"Status": "401", "Message": "Token 验证失败", "Result": None})
    if request.url.params.get("keyword") != USCC:
        return httpx.Response(200, json={"Status": "201", "Message": "查询无结果", "Result": None})
    return httpx.Response(200, json={"Status": "200", "Message": "查询成功", "Result": result or QCC_RESULT})


def _lookup(handler: Any, config: dict[str, Any], uscc: str = USCC) -> dict[str, Any]:
    connector = CreditRegistryConnector()
    with httpx.Client(transport=httpx.MockTransport(handler), timeout=5) as http:
        return connector.lookup(connector.validate_config(config), uscc, http, today=TODAY)


def test_tianyancha_lookup_is_normalised_to_the_contract() -> None:
    props = _lookup(tianyancha, {"provider": "tianyancha", "token": TYC_TOKEN})
    assert props["registered_capital"] == {"amount": 65_000_000, "currency": "USD", "text": "6500万美元"}
    assert props["status"] == "active" and props["insured_employees"] == 7322
    assert props["established_on"] == "2000-01-20" and props["legal_representative"] == "马化腾"
    assert props["risk_level"] == "low" and props["penalties"] is None and props["uscc"] == USCC


def test_qichacha_lookup_signs_with_md5_token_and_timespan() -> None:
    props = _lookup(qichacha, {"provider": "qichacha", "app_key": QCC_KEY, "secret_key": QCC_SECRET})
    assert props["name"] == "腾讯科技（深圳）有限公司" and props["status"] == "active"
    assert props["established_on"] == "2000-02-24" and props["insured_employees"] is None


@pytest.mark.parametrize(("paid_key", "insured_key"), [("RecCap", "InsuredCount"), ("RealCapi", "InsuredNum"),
                                                      ("PaidUpCapital", "SocialStaffNum")])
def test_qichachas_unconfirmed_field_names_are_read_in_each_plausible_form(paid_key: str, insured_key: str) -> None:
    result = {**QCC_RESULT, paid_key: "6500万美元", insured_key: "7322"}
    props = _lookup(lambda r: qichacha(r, result), QCC_CONFIG)
    assert props["paid_in_capital"] == {"amount": 65_000_000, "currency": "USD", "text": "6500万美元"}
    assert props["insured_employees"] == 7322


def test_a_qichacha_answer_without_them_is_logged_and_kept_whole(caplog: pytest.LogCaptureFixture) -> None:
    result = {**QCC_RESULT, "PaidCapitalUnknownName": "100万元"}
    props = _lookup(lambda r: qichacha(r, result), QCC_CONFIG)
    assert props["paid_in_capital"] is None and props["insured_employees"] is None
    assert props["provider_result"] == {"provider": "qichacha", "result": result}  # nothing the provider said is lost
    assert "has no 实缴资本" in caplog.text and "PaidCapitalUnknownName" in caplog.text
    # The provider's answer is kept but does not decide the event's id: only the profile's content does.
    assert profile_event(USCC, props).source_event_id == profile_event(
        USCC, {k: v for k, v in props.items() if k != "provider_result"}).source_event_id


def test_the_qichacha_fake_refuses_a_wrong_parameter_or_a_stale_timespan() -> None:
    config = {"provider": "qichacha", "app_key": QCC_KEY, "secret_key": QCC_SECRET}
    span = str(int(time.time()) - 3600)
    token = hashlib.md5((QCC_KEY + span + QCC_SECRET).encode()).hexdigest().upper()  # noqa: S324
    url = "https://api.qichacha.com" + QICHACHA_BASEINFO
    stale = httpx.Request("GET", url, params={"key": QCC_KEY, "keyword": USCC},
                          headers={"Token": token, "Timespan": span})
    assert qichacha(stale).json()["Status"] == "401"
    wrong = httpx.Request("GET", url, params={"key": QCC_KEY, "searchKey": USCC})
    assert qichacha(wrong).json()["Status"] == "401"  # no Timespan either
    fresh = str(int(time.time()))
    signed = {"Token": hashlib.md5((QCC_KEY + fresh + QCC_SECRET).encode()).hexdigest().upper(),  # noqa: S324
              "Timespan": fresh}
    elsewhere = httpx.Request("GET", "https://api.qichacha.com/FuzzySearch/GetList",
                              params={"key": QCC_KEY, "keyword": USCC}, headers=signed)
    assert qichacha(elsewhere).status_code == 404
    assert _lookup(qichacha, config)["name"] == "腾讯科技（深圳）有限公司"


def test_a_registry_without_capital_still_gives_the_contract_object() -> None:
    bare = {k: v for k, v in QCC_RESULT.items() if k != "RegistCapi"}

    def qichacha_bare(request: httpx.Request) -> httpx.Response:
        return qichacha(request, bare)  # same signature checks: a badly signed request gets their 401, not data

    props = _lookup(qichacha_bare, {"provider": "qichacha", "app_key": QCC_KEY, "secret_key": QCC_SECRET})
    assert props["registered_capital"] == {"amount": None, "currency": None, "text": None}
    assert props["paid_in_capital"] is None
    with pytest.raises(RegistryAuthError):  # the fake answered any request with data, signed or not
        _lookup(qichacha_bare, {**QCC_CONFIG, "secret_key": "wrong"})


def test_wrong_credentials_raise_a_clear_auth_error() -> None:
    with pytest.raises(RegistryAuthError, match="300009") as tyc:
        _lookup(tianyancha, {"provider": "tianyancha", "token": "wrong"})
    assert tyc.value.details == {"provider": "tianyancha", "provider_code": "300009"}
    with pytest.raises(RegistryAuthError, match="Token 验证失败"):
        _lookup(qichacha, {"provider": "qichacha", "app_key": QCC_KEY, "secret_key": "wrong"})


def test_unknown_company_and_invalid_uscc() -> None:
    with pytest.raises(CompanyNotFound):
        _lookup(tianyancha, {"provider": "tianyancha", "token": TYC_TOKEN}, uscc="914403001922038216")
    with pytest.raises(InvalidRequest, match="not a valid USCC"):
        _lookup(tianyancha, {"provider": "tianyancha", "token": TYC_TOKEN}, uscc="9144030071526726XA")


def test_config_needs_the_providers_credentials() -> None:
    connector = CreditRegistryConnector()
    with pytest.raises(InvalidRequest):
        connector.validate_config({"provider": "qichacha", "app_key": QCC_KEY})
    with pytest.raises(InvalidRequest):
        connector.validate_config({"provider": "tianyancha"})


@pytest.mark.parametrize("token", ["…", "tyc-token-０００１", "tyc-token\n"])
def test_a_token_no_header_can_carry_is_refused_on_create_and_fails_a_stored_sources_lookup_by_name(token: str) -> None:
    """The docs' placeholder `…` used to be stored, then every lookup died with a UnicodeEncodeError traceback."""
    connector = CreditRegistryConnector()
    with pytest.raises(InvalidRequest) as raised:
        connector.validate_config({"provider": "tianyancha", "token": token})
    assert raised.value.code == "invalid_config"
    assert [d["field"] for d in raised.value.details] == ["token"] and "ASCII" in raised.value.details[0]["message"]
    stored = connector.validate_config({"provider": "tianyancha", "token": token}, allow_unknown=True)
    with httpx.Client(transport=httpx.MockTransport(tianyancha), timeout=5) as http, \
            pytest.raises(RegistryAuthError, match="token is not printable ASCII"):
        connector.lookup(stored, USCC, http, today=TODAY)


def test_profile_event_and_stored_lookup_parse_to_the_same_event() -> None:
    props = _lookup(tianyancha, {"provider": "tianyancha", "token": TYC_TOKEN})
    draft = profile_event(USCC, props)
    assert draft.type == "company.profile.updated" and draft.identities[0].value == USCC
    connector = CreditRegistryConnector()
    config = connector.validate_config({"provider": "tianyancha", "token": TYC_TOKEN})
    body, key, record = connector.lookup_request(props)
    request = InboundRequest.from_record(record, body)
    (parsed,) = connector.parse(request, config, ParseContext(uuid.uuid4(), "t", utcnow(), MemoryState()))
    assert parsed.source_event_id == draft.source_event_id == key and parsed.properties == props
    with pytest.raises(VerificationError):
        connector.verify(InboundRequest("POST", body, {}), config)


def test_an_answer_with_a_lone_surrogate_still_makes_a_storable_profile_event() -> None:
    """The profile's digest encoded the answer as UTF-8: a lone surrogate failed the lookup (UnicodeEncodeError)."""
    answer = json.dumps({"error_code": 0, "reason": "ok", "result": {**TYC_RESULT, "legalPersonName": "马化腾\ud800"}})
    reply = httpx.Response(200, content=answer.encode(), headers={"content-type": "application/json"})
    props = _lookup(lambda _: reply, {"provider": "tianyancha", "token": TYC_TOKEN})
    draft = profile_event(USCC, props)
    assert draft.source_event_id.startswith(f"profile:{USCC}:")
    event = prepare_event(draft, source="credit_registry", source_id=None, received_at=utcnow())
    assert event.properties["legal_representative"] == "马化腾"
    event.model_dump_json().encode("utf-8")


@pytest.mark.parametrize(("text", "status"), [("存续", "active"), ("在业", "active"), ("吊销，未注销", "revoked"),
                                              ("注销", "cancelled"), ("迁出", "moved"), ("清算", "liquidating"),
                                              ("", "unknown")])
def test_status_text_maps_to_the_enum(text: str, status: str) -> None:
    assert parse_status(text) == status


def test_risk_rule() -> None:
    assert risk_level("revoked", None, "2000-01-01", 10, TODAY) == "high"
    assert risk_level("active", 3, "2000-01-01", 10, TODAY) == "high"
    assert risk_level("active", 1, "2000-01-01", 10, TODAY) == "medium"
    assert risk_level("active", None, "2025-12-01", 10, TODAY) == "medium"
    assert risk_level("active", None, "2000-01-01", 0, TODAY) == "medium"
    assert risk_level("active", 0, "2000-01-01", 10, TODAY) == "low"


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999999"), places=2),
       st.sampled_from([("万", 10**4), ("亿", 10**8), ("", 1)]),
       st.sampled_from([("人民币", "CNY"), ("元", "CNY"), ("美元", "USD"), ("港元", "HKD"), ("", "CNY")]))
def test_capital_strings_parse_to_amount_and_currency(value: Decimal, unit: tuple[str, int],
                                                       currency: tuple[str, str]) -> None:
    text = f"{value}{unit[0]}{currency[0]}"
    parsed = parse_capital(text)
    assert parsed is not None and parsed["text"] == text and parsed["currency"] == currency[1]
    assert Decimal(str(parsed["amount"])) == (value * unit[1]).quantize(Decimal("0.01"))


@given(st.text(max_size=40))
def test_capital_parser_never_raises(text: str) -> None:
    parsed = parse_capital(text)
    assert parsed is None or parsed["text"] == text.strip()


@pytest.mark.parametrize("text", ["1e400万", "1e5万人民币", "100-200万", "50 000万"])
def test_capital_that_is_not_one_plain_number_keeps_its_text_and_no_amount(text: str) -> None:
    """`1e400万` used to read as 1 yuan: the regex took the leading digit and ignored the rest."""
    assert parse_capital(text) == {"amount": None, "currency": "CNY", "text": text}


def test_a_record_for_another_company_is_refused_not_stored_as_this_one() -> None:
    """A loose keyword match returned someone else's record: its profile must not land on this account."""
    from connectors.credit_registry.providers import CompanyMismatch

    other = "91350100M000100Y43"

    def tianyancha_other(request: httpx.Request) -> httpx.Response:
        tianyancha(request)
        return httpx.Response(200, json={"error_code": 0, "reason": "ok",
                                         "result": {**TYC_RESULT, "creditCode": other}})

    with pytest.raises(CompanyMismatch, match=f"answered for {other}, not for {USCC}"):
        _lookup(tianyancha_other, {"provider": "tianyancha", "token": TYC_TOKEN})
    lower = {**QCC_RESULT, "CreditCode": USCC.lower()}  # the same code in another case is the same company

    def qichacha_lower(request: httpx.Request) -> httpx.Response:
        qichacha(request)
        return httpx.Response(200, json={"Status": "200", "Message": "查询成功", "Result": lower})

    props = _lookup(qichacha_lower, {"provider": "qichacha", "app_key": QCC_KEY, "secret_key": QCC_SECRET})
    assert props["uscc"] == USCC


@pytest.mark.parametrize("answer", [[{"error_code": 0}], "ok", 7])
def test_an_answer_that_is_not_an_object_names_what_came(answer: Any) -> None:
    from connectors.credit_registry.providers import CreditRegistryError

    def odd(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    with pytest.raises(CreditRegistryError, match=f"answered a JSON {type(answer).__name__}, not an object"):
        _lookup(odd, {"provider": "tianyancha", "token": TYC_TOKEN})


@pytest.mark.parametrize("text", ["100万加拿大元", "100万新加坡元", "5000万泰铢元"])
def test_capital_in_a_currency_the_table_does_not_know_is_unreadable_not_yuan(text: str) -> None:
    """The catch-all 元 read "100万加拿大元" as 1,000,000 CNY (helper-25)."""
    assert parse_capital(text) == {"amount": None, "currency": None, "text": text}
    assert parse_capital("100万澳门元")["currency"] == "MOP"  # type: ignore[index]
    assert parse_capital("100万元人民币") == {"amount": 1000000, "currency": "CNY", "text": "100万元人民币"}
