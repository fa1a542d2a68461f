"""Campaign attribution from UTM parameters and ad-platform click ids (platforms.md §9, contract §4).

Why: leads arrive from Douyin, Baidu, Tencent Ads … with the attribution only in the landing URL.
Rules follow Snowplow's campaign_attribution enrichment: each field has an ordered list of
parameters and the first present, non-empty one wins; the first click-id parameter present names the
network. The whole landing URL and the raw click id are kept because conversion feedback needs
them (Baidu's `logidUrl` is the full URL). Values guessed from a click id are listed in `inferred`.
A sender's explicit campaign is never overwritten. Pure and tolerant: odd input yields None, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from hub.identifiers import strip_invisible
from hub.schemas import Campaign

__all__ = [
    "AD_ID_PARAMS",
    "CLICK_ID_NETWORKS",
    "DEFAULT_RULES",
    "UTM_FIELDS",
    "CampaignRules",
    "campaign_from_params",
    "campaign_from_url",
    "merge_campaign",
]

# Ordered: when a URL carries several click ids, the first listed wins (Snowplow's defaults come first).
CLICK_ID_NETWORKS: Mapping[str, str] = MappingProxyType(
    {
        "gclid": "google",
        "msclkid": "microsoft",
        "dclid": "doubleclick",
        "clickid": "oceanengine",
        "gdt_vid": "tencent_ads",
        "qz_gdt": "tencent_ads",
        "bd_vid": "baidu",
        "qhclickid": "qihoo360",
    }
)
UTM_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "source": ("utm_source",),
        "medium": ("utm_medium",),
        "name": ("utm_campaign",),
        "term": ("utm_term",),
        "content": ("utm_content",),
    }
)
# Ocean Engine landing-page ad parameters (platforms.md §9; names UNCONFIRMED) → `Campaign.ad_ids`.
AD_ID_PARAMS: tuple[str, ...] = ("adid", "creativeid", "creativetype")

_SCALARS = ("source", "medium", "name", "term", "content", "landing_url")
# An ad platform's macro left unsubstituted (preview clicks): `__CLICKID__`, `{keyword}`, `${id}`.
_MACRO = re.compile(r"__[A-Z0-9_]+__|\$?\{[A-Za-z0-9_]*\}")


@dataclass(frozen=True)
class CampaignRules:
    """Which parameters fill which campaign field; configurable per source.

    `fields` maps a Campaign field (source, medium, name, term, content) to its ordered parameter list;
    `click_ids` maps a click-id parameter to its network, in priority order. Parameter names match
    case-insensitively.
    """

    fields: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in UTM_FIELDS.items()})
    click_ids: dict[str, str] = field(default_factory=lambda: dict(CLICK_ID_NETWORKS))
    ad_id_params: list[str] = field(default_factory=lambda: list(AD_ID_PARAMS))
    inferred_medium: str = "cpc"

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(UTM_FIELDS)
        if unknown:
            raise ValueError(f"unknown campaign fields: {sorted(unknown)}")

    def extended(
        self, fields: Mapping[str, list[str]] | None = None, click_ids: Mapping[str, str] | None = None
    ) -> CampaignRules:
        """A copy where `fields` replace those lists and `click_ids` are merged on top (Snowplow's rule)."""
        return CampaignRules(
            fields={**self.fields, **{k: list(v) for k, v in (fields or {}).items()}},
            click_ids={**self.click_ids, **(click_ids or {})},
            ad_id_params=list(self.ad_id_params),
            inferred_medium=self.inferred_medium,
        )


DEFAULT_RULES = CampaignRules()


def _text(raw: object) -> str | None:
    if isinstance(raw, list | tuple):
        return next((value for value in map(_text, raw) if value is not None), None)
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    value = strip_invisible(str(raw)).strip()
    return value if value and not _MACRO.fullmatch(value) else None


def _flatten(params: object) -> dict[str, str]:
    """Lower-cased parameter name → first usable value."""
    found: dict[str, str] = {}
    if not isinstance(params, Mapping):
        return found
    for key, raw in params.items():
        value = _text(raw)
        if value is not None and isinstance(key, str | int):
            found.setdefault(strip_invisible(str(key)).strip().lower(), value)
    return found


def _first(found: Mapping[str, str], names: list[str]) -> str | None:
    return next((found[n.lower()] for n in names if n.lower() in found), None)


def campaign_from_params(
    params: Mapping[str, str | list[str]],
    landing_url: str | None = None,
    rules: CampaignRules = DEFAULT_RULES,
) -> Campaign | None:
    """Build a Campaign from query parameters (values may be lists, as `parse_qs` gives); None if none found.

    With a click id but no `utm_source`/`utm_medium`, source becomes the network and medium
    `rules.inferred_medium` ("cpc"), both listed in `Campaign.inferred`.
    """
    found = _flatten(params)
    values: dict[str, str | None] = {name: _first(found, names) for name, names in rules.fields.items()}
    click = next(((p, net) for p, net in rules.click_ids.items() if p.lower() in found), None)
    ad_ids = {p: found[p.lower()] for p in rules.ad_id_params if p.lower() in found}
    if not any(values.values()) and click is None and not ad_ids:
        return None
    inferred: list[str] = []
    if click is not None:
        for name, guess in (("source", click[1]), ("medium", rules.inferred_medium)):
            if not values.get(name):
                values[name] = guess
                inferred.append(name)
    return Campaign.model_validate(
        {
            **values,
            "click_id": found[click[0].lower()] if click else None,
            "click_id_param": click[0] if click else None,
            "network": click[1] if click else None,
            "landing_url": landing_url if isinstance(landing_url, str) and landing_url.strip() else None,
            "ad_ids": ad_ids,
            "inferred": inferred,
        }
    )


def _query_strings(url: str) -> list[str]:
    """The query, then the fragment's query (`#/page?utm_source=x` or `#utm_source=x`).

    Split by hand, as urlsplit does, so a malformed host or port cannot make it raise.
    """
    before_fragment, _, fragment = url.partition("#")
    queries = [before_fragment.partition("?")[2]]
    if "?" in fragment:
        queries.append(fragment.partition("?")[2])
    elif "=" in fragment and "/" not in fragment:
        queries.append(fragment)
    return queries


def campaign_from_url(url: str | None, rules: CampaignRules = DEFAULT_RULES) -> Campaign | None:
    """Campaign from a landing URL's parameters (query first, then the fragment's).

    `landing_url` is the URL exactly as given; None when the URL carries no campaign parameter.
    """
    if not isinstance(url, str) or not url.strip():
        return None
    params: dict[str, str] = {}
    for query in _query_strings(url):
        for key, value in parse_qsl(query):
            if value.strip():
                params.setdefault(key, value)
    return campaign_from_params(params, landing_url=url, rules=rules)


def _real(campaign: Campaign, name: str) -> Any:
    """A field's value if it was given rather than inferred."""
    value = getattr(campaign, name)
    return value if value and name not in campaign.inferred else None


def merge_campaign(explicit: Campaign | None, derived: Campaign | None) -> Campaign | None:
    """Fill the empty fields of the sender's `explicit` campaign from one `derived` (e.g. from the URL).

    Given values in `explicit` are never overwritten; a value `explicit` only *inferred* yields to a given
    one in `derived`. The click id, its parameter and network travel together. `ad_ids` are merged with
    explicit winning; `inferred` lists only fields whose final value is a guess. Empty result → None.
    """
    if explicit is None or derived is None:
        only = explicit if explicit is not None else derived
        return None if only is None or only.is_empty() else only.model_copy(deep=True)
    click = explicit if explicit.click_id else derived
    param, network = click.click_id_param, click.network
    if click is explicit and derived.click_id == explicit.click_id:
        param, network = param or derived.click_id_param, network or derived.network
    values: dict[str, Any] = {}
    inferred: list[str] = []
    for name in _SCALARS:
        values[name] = _real(explicit, name) or _real(derived, name)
        if values[name] is None:
            guesses = (getattr(c, name) for c in (explicit, derived) if name in c.inferred and c.network == network)
            values[name] = next((g for g in guesses if g), None)
            if values[name] is not None:
                inferred.append(name)
    merged = Campaign.model_validate(
        {
            **values,
            "click_id": click.click_id,
            "click_id_param": param,
            "network": network,
            "ad_ids": {**derived.ad_ids, **explicit.ad_ids},
            "inferred": inferred,
        }
    )
    return None if merged.is_empty() else merged
