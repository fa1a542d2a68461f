from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from hub.campaign import (
    CLICK_ID_NETWORKS,
    DEFAULT_RULES,
    UTM_FIELDS,
    CampaignRules,
    campaign_from_params,
    campaign_from_url,
    merge_campaign,
)
from hub.schemas import Campaign

ANY_TEXT = st.text(st.one_of(st.characters(codec=None), st.sampled_from(list("?#&=%_+/:[]"))), max_size=60)


def test_click_id_map_matches_the_contract_in_order() -> None:
    assert list(CLICK_ID_NETWORKS.items()) == [
        ("gclid", "google"),
        ("msclkid", "microsoft"),
        ("dclid", "doubleclick"),
        ("clickid", "oceanengine"),
        ("gdt_vid", "tencent_ads"),
        ("qz_gdt", "tencent_ads"),
        ("bd_vid", "baidu"),
        ("qhclickid", "qihoo360"),
    ]
    assert dict(UTM_FIELDS) == {
        "source": ("utm_source",),
        "medium": ("utm_medium",),
        "name": ("utm_campaign",),
        "term": ("utm_term",),
        "content": ("utm_content",),
    }


def test_utm_parameters_map_to_campaign_fields() -> None:
    campaign = campaign_from_params(
        {
            "utm_source": "douyin",
            "utm_medium": "live",
            "utm_campaign": "spring2026",
            "utm_term": "少儿编程",
            "utm_content": "banner-a",
        }
    )
    assert campaign == Campaign(source="douyin", medium="live", name="spring2026", term="少儿编程", content="banner-a")


@pytest.mark.parametrize(
    ("param", "network"),
    list(CLICK_ID_NETWORKS.items()),
)
def test_click_id_alone_infers_source_and_medium(param: str, network: str) -> None:
    url = f"https://example.com/lp?{param}=CLICK123"
    campaign = campaign_from_url(url)
    assert campaign == Campaign(
        source=network,
        medium="cpc",
        click_id="CLICK123",
        click_id_param=param,
        network=network,
        landing_url=url,
        inferred=["source", "medium"],
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("utm_source=baidu&utm_medium=sem&bd_vid=abc", {"source": "baidu", "medium": "sem", "inferred": []}),
        ("utm_source=partner&bd_vid=abc", {"source": "partner", "medium": "cpc", "inferred": ["medium"]}),
        ("utm_medium=display&gdt_vid=wx1", {"source": "tencent_ads", "medium": "display", "inferred": ["source"]}),
        ("gclid=g1&bd_vid=b1", {"click_id": "g1", "network": "google"}),  # first listed click param wins
        ("bd_vid=b1&gclid=g1", {"click_id": "g1", "network": "google"}),  # order of the map, not of the URL
        ("qz_gdt=q1&gdt_vid=g1", {"click_id": "g1", "click_id_param": "gdt_vid"}),
        ("utm_source=&utm_medium=email", {"source": None, "medium": "email"}),  # empty means absent
        ("utm_source=%20&utm_medium=email", {"source": None}),
        ("UTM_SOURCE=Douyin&utm_medium=Live", {"source": "Douyin", "medium": "Live"}),  # names any case, values kept
        ("utm_source=a&utm_source=b", {"source": "a"}),
        ("utm_campaign=%E6%98%A5%E5%AD%A3", {"name": "春季"}),
        ("utm_term=%E5%B0%91%E5%84%BF+%E7%BC%96%E7%A8%8B", {"term": "少儿 编程"}),
        ("utm_source=%E2%80%8Edouyin", {"source": "douyin"}),  # invisible characters removed
        ("clickid=__CLICKID__&utm_source=oe", {"click_id": None, "source": "oe", "medium": None}),  # macro
        ("utm_term={keyword}&utm_source=baidu", {"term": None}),
        (
            "clickid=B.abc&adid=1712&creativeid=1713&creativetype=5",
            {"network": "oceanengine", "ad_ids": {"adid": "1712", "creativeid": "1713", "creativetype": "5"}},
        ),
        ("adid=1712", {"source": None, "ad_ids": {"adid": "1712"}, "inferred": []}),
    ],
)
def test_campaign_from_url_table(query: str, expected: dict[str, Any]) -> None:
    url = f"https://www.example.cn/landing?{query}"
    campaign = campaign_from_url(url)
    assert campaign is not None
    assert campaign.landing_url == url
    for field, value in expected.items():
        assert getattr(campaign, field) == value, field


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "   ",
        "https://www.example.cn/landing",
        "https://www.example.cn/landing?page=2&ref=home",
        "https://www.example.cn/landing?utm_source=&gclid=",
        "https://www.example.cn/#/products",
        "http://[::1/#",  # malformed host
    ],
)
def test_campaign_from_url_none_when_nothing_found(url: str | None) -> None:
    assert campaign_from_url(url) is None


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("https://m.example.cn/#/lead?utm_source=xhs&utm_medium=feed", "xhs"),  # SPA hash route
        ("https://m.example.cn/page#utm_source=wechat", "wechat"),
        ("https://m.example.cn/?utm_source=query#/x?utm_source=fragment", "query"),  # the query wins
        ("http://[::1/lp?utm_source=broken_host", "broken_host"),  # urlsplit would raise here
        ("https://example.com:notaport/lp?utm_source=bad_port", "bad_port"),
        ("/relative/path?utm_source=relative", "relative"),
        ("?utm_source=bare", "bare"),
    ],
)
def test_campaign_from_url_query_sources(url: str, source: str) -> None:
    campaign = campaign_from_url(url)
    assert campaign is not None
    assert campaign.source == source
    assert campaign.landing_url == url


def test_landing_url_kept_whole_for_baidu_ocpc() -> None:
    url = "https://www.example.cn/lp?bd_vid=nHRkPHfzrjR1n1Dsg1T3rjR&utm_term=%E7%BC%96%E7%A8%8B#form"
    campaign = campaign_from_url(url)
    assert campaign is not None
    assert campaign.landing_url == url
    assert campaign.click_id == "nHRkPHfzrjR1n1Dsg1T3rjR"


@pytest.mark.parametrize(
    ("params", "expected_source"),
    [
        ({"utm_source": ["douyin", "x"]}, "douyin"),  # parse_qs style
        ({"utm_source": ["", "douyin"]}, "douyin"),
        ({"utm_source": 42}, "42"),
        ({"utm_source": None, "utm_medium": "m"}, None),
        ({"utm_source": {"nested": 1}, "utm_medium": "m"}, None),
        ({"utm_source": True, "utm_medium": "m"}, None),
        ({1: "x", "utm_medium": "m"}, None),
    ],
)
def test_campaign_from_params_tolerates_odd_values(params: dict[Any, Any], expected_source: str | None) -> None:
    campaign = campaign_from_params(params)
    assert campaign is not None
    assert campaign.source == expected_source


def test_campaign_from_params_none_and_landing_url() -> None:
    assert campaign_from_params({}) is None
    assert campaign_from_params({"page": "2"}, landing_url="https://x.cn/") is None
    campaign = campaign_from_params({"utm_source": "s"}, landing_url="https://x.cn/?a=1")
    assert campaign is not None and campaign.landing_url == "https://x.cn/?a=1"


def test_rules_fallback_lists_and_custom_click_ids() -> None:
    rules = DEFAULT_RULES.extended(
        fields={"source": ["utm_source", "source", "from"], "name": ["utm_campaign", "campaign_id"]},
        click_ids={"callback": "kuaishou", "gclid": "Google Ads"},
    )
    campaign = campaign_from_params({"from": "wx", "source": "", "campaign_id": "c9", "callback": "k1"}, rules=rules)
    assert campaign is not None
    assert (campaign.source, campaign.name, campaign.click_id, campaign.network) == ("wx", "c9", "k1", "kuaishou")
    assert campaign.inferred == ["medium"]
    overridden = campaign_from_params({"gclid": "g"}, rules=rules)
    assert overridden is not None and overridden.network == "Google Ads"
    assert DEFAULT_RULES.click_ids["gclid"] == "google"  # defaults untouched


def test_rules_inferred_medium_and_unknown_field() -> None:
    campaign = campaign_from_params({"clickid": "c"}, rules=CampaignRules(inferred_medium="paid"))
    assert campaign is not None and campaign.medium == "paid"
    with pytest.raises(ValueError, match="unknown campaign fields"):
        CampaignRules(fields={"campaign": ["utm_campaign"]})


# --- merge ------------------------------------------------------------------------------------------

DERIVED = Campaign(
    source="baidu",
    medium="cpc",
    name="spring",
    click_id="b1",
    click_id_param="bd_vid",
    network="baidu",
    landing_url="https://x.cn/?bd_vid=b1",
    ad_ids={"adid": "1", "unit": "u"},
    inferred=["source", "medium"],
)


@pytest.mark.parametrize(
    ("explicit", "derived", "expected"),
    [
        (None, None, None),
        (Campaign(), None, None),
        (None, DERIVED, DERIVED),
        (Campaign(source="douyin"), None, Campaign(source="douyin")),
        # Explicit values are never overwritten; derived only fills the gaps.
        (
            Campaign(source="douyin", medium="live", ad_ids={"adid": "9"}),
            DERIVED,
            Campaign(
                source="douyin",
                medium="live",
                name="spring",
                click_id="b1",
                click_id_param="bd_vid",
                network="baidu",
                landing_url="https://x.cn/?bd_vid=b1",
                ad_ids={"adid": "9", "unit": "u"},
                inferred=[],
            ),
        ),
        # An inferred value stays marked as inferred when it is kept.
        (
            Campaign(name="explicit-name"),
            DERIVED,
            DERIVED.model_copy(update={"name": "explicit-name"}),
        ),
        # The sender's click id wins together with its param and network; guesses from another network are dropped.
        (
            Campaign(click_id="g1", click_id_param="gclid", network="google"),
            DERIVED,
            Campaign(
                name="spring",
                click_id="g1",
                click_id_param="gclid",
                network="google",
                landing_url="https://x.cn/?bd_vid=b1",
                ad_ids={"adid": "1", "unit": "u"},
                inferred=[],
            ),
        ),
        # The same click id: network and param are completed from the derived campaign.
        (
            Campaign(click_id="b1", source="sem"),
            DERIVED,
            DERIVED.model_copy(update={"source": "sem", "inferred": ["medium"]}),
        ),
        # A value the explicit campaign only inferred gives way to a real derived value.
        (
            Campaign(source="baidu", medium="cpc", click_id="b1", network="baidu", inferred=["source", "medium"]),
            Campaign(source="newsletter", medium="email"),
            Campaign(source="newsletter", medium="email", click_id="b1", network="baidu", inferred=[]),
        ),
        # Empty strings count as empty.
        (Campaign(source="", medium="x"), Campaign(source="y"), Campaign(source="y", medium="x")),
    ],
)
def test_merge_campaign(explicit: Campaign | None, derived: Campaign | None, expected: Campaign | None) -> None:
    assert merge_campaign(explicit, derived) == expected


def test_merge_does_not_mutate_inputs() -> None:
    explicit = Campaign(source="douyin", ad_ids={"adid": "9"})
    before = (explicit.model_dump(), DERIVED.model_dump())
    merged = merge_campaign(explicit, DERIVED)
    assert merged is not None and merged is not explicit
    merged.ad_ids["x"] = "y"
    assert (explicit.model_dump(), DERIVED.model_dump()) == before


def test_merge_with_derived_from_url() -> None:
    explicit = Campaign(source="douyin", medium="live", name="spring2026")
    derived = campaign_from_url("https://lp.example.cn/?clickid=B.xyz&utm_campaign=other")
    merged = merge_campaign(explicit, derived)
    assert merged is not None
    assert (merged.source, merged.medium, merged.name) == ("douyin", "live", "spring2026")
    assert (merged.click_id, merged.click_id_param, merged.network) == ("B.xyz", "clickid", "oceanengine")
    assert merged.inferred == []


# --- properties -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(url=ANY_TEXT)
def test_campaign_from_url_never_raises(url: str) -> None:
    campaign = campaign_from_url(url)
    assert campaign is None or campaign.landing_url == url


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(
        st.one_of(st.sampled_from(["utm_source", "utm_medium", "gclid", "clickid", "bd_vid", "adid"]), ANY_TEXT),
        st.one_of(st.none(), st.integers(), st.floats(), st.booleans(), ANY_TEXT, st.lists(ANY_TEXT, max_size=3)),
        max_size=6,
    )
)
def test_campaign_from_params_never_raises_and_merge_keeps_explicit(params: dict[str, Any]) -> None:
    derived = campaign_from_params(params)
    explicit = Campaign(source="sender", medium="explicit")
    merged = merge_campaign(explicit, derived)
    assert merged is not None
    assert (merged.source, merged.medium) == ("sender", "explicit")
    assert merged.inferred == [] or derived is not None
    assert merge_campaign(derived, None) == (None if derived is None or derived.is_empty() else derived)
