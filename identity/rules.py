"""The configurable identity rules (contract §4): placeholders, shared lines, per-type limits and priority.

Pure functions only, so the resolver, the API and the benchmark's baseline apply exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hub.identifiers import is_placeholder, is_shared_line, parse_placeholders, phone_kind
from hub.schemas import ACCOUNT_IDENTITY_TYPES, PERSON_IDENTITY_TYPES, Identity
from hub.settings import Settings

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_LIMITS",
    "PRIORITY",
    "Rules",
    "is_weak_line",
    "parse_limits",
    "parse_placeholders",
    "rules_from_settings",
]

DEFAULT_LIMIT = 5
DEFAULT_LIMITS: dict[str, int] = {"web_user_id": 1}

# Highest first. When a match would break a limit (or re-join a split), the lowest-priority identifier
# of the incoming event is left out of matching, Segment-style, and the refusal recorded.
PRIORITY: tuple[str, ...] = (
    "web_user_id",
    "wechat_unionid",
    "douyin_union_id",
    "wecom_external_userid",
    "pos_member_id",
    "douyin_open_id",
    "xhs_user_id",
    "phone",
    "email",
    "web_anonymous_id",
)


@dataclass(frozen=True)
class Rules:
    placeholders: frozenset[str] = frozenset()
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))

    def limit(self, type: str) -> int:
        return self.limits.get(type, DEFAULT_LIMIT)

    def usable(self, ident: Identity) -> bool:
        """False for placeholders: they are never matched on nor attached."""
        return not is_placeholder(ident.type, ident.value, self.placeholders)

    def person(self, identities: Iterable[Identity]) -> list[Identity]:
        return [i for i in identities if i.type in PERSON_IDENTITY_TYPES and self.usable(i)]

    def account(self, identities: Iterable[Identity]) -> list[Identity]:
        return [i for i in identities if i.type in ACCOUNT_IDENTITY_TYPES and self.usable(i)]

    @staticmethod
    def weak(ident: Identity) -> bool:
        """A line several people may answer: 400/800 numbers and fixed lines.

        Weak identifiers never link an event that has a stronger identifier to a customer, which is
        what keeps two members of a household (one landline, two mobiles) two customers.
        """
        return is_weak_line(ident.type, ident.value)

    @staticmethod
    def always_shared(ident: Identity) -> bool:
        return ident.type == "phone" and is_shared_line(ident.value)

    @staticmethod
    def rank(ident: Identity) -> int:
        """Lower is higher priority; unknown types rank last."""
        return PRIORITY.index(ident.type) if ident.type in PRIORITY else len(PRIORITY)


def is_weak_line(type: str, value: str) -> bool:
    """`Rules.weak` for a (type, value) pair: identity.store counts rows with it (weak lines never count
    against the per-type limits)."""
    return type == "phone" and (is_shared_line(value) or phone_kind(value) == "fixed_line")


def parse_limits(text: str) -> dict[str, int]:
    limits = dict(DEFAULT_LIMITS)
    for part in text.split(","):
        name, sep, number = part.partition("=")
        if sep and name.strip() and number.strip().isdigit():
            limits[name.strip()] = max(1, int(number))
    return limits


def rules_from_settings(settings: Settings) -> Rules:
    return Rules(placeholders=parse_placeholders(settings.identity_placeholders),
                 limits=parse_limits(settings.identity_limits))
