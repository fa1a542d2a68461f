"""The contract's shapes (contract.md §3-§4), as pydantic v2 models.

These are the only types that cross package boundaries: connectors produce
`EventDraft`s, the pipeline turns them into `UnifiedEvent`s, identity/ and
webhooks/ read them. Field names are the public contract: add, never rename.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)

PERSON_IDENTITY_TYPES: frozenset[str] = frozenset(
    {
        "phone",
        "email",
        "douyin_open_id",
        "douyin_union_id",
        "xhs_user_id",
        "pos_member_id",
        "wecom_external_userid",
        "wechat_unionid",
        "web_user_id",
        "web_anonymous_id",
    }
)
ACCOUNT_IDENTITY_TYPES: frozenset[str] = frozenset({"uscc", "erp_customer_code"})
IDENTITY_TYPES: frozenset[str] = PERSON_IDENTITY_TYPES | ACCOUNT_IDENTITY_TYPES


def in_utc_range(value: datetime) -> datetime:
    """A time that still exists once moved to UTC: 0001-01-01T00:00+14:00 does not, and failed later as a 500."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("the time is out of range once converted to UTC") from exc
    return value


# A time a client asks about (`since`): any ISO 8601 form pydantic reads, but one that exists in UTC.
QueryTime = Annotated[datetime, AfterValidator(in_utc_range)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def whole_minute_offset(value: datetime) -> datetime:
    """`value`, moved to UTC when its offset is not a whole number of minutes (`+08:00:30`, local mean time).

    RFC 3339 offsets are hours and minutes: isoformat() wrote `+08:00:30`, which is not one, and pydantic refused to
    read it back, so one such event made every feed page holding it a 500 (contract §4: times are RFC 3339).
    """
    offset = value.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        return value.astimezone(UTC)
    return value


def rfc3339(value: datetime | None) -> str | None:
    """Times leave the hub as RFC 3339 with an explicit offset (never naive)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return whole_minute_offset(value).isoformat()


class Schema(BaseModel):
    """Base for every public shape: attribute access from ORM rows, RFC 3339 times."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    @field_serializer("*", when_used="json", check_fields=False)
    def _times(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return rfc3339(value)
        return value


class Identity(Schema):
    """An external identifier, already normalised (phone E.164, email lower-case, USCC upper-case)."""

    type: str
    value: str


class QualityIssue(Schema):
    """Something data-quality cleaning changed or found; `code` is a stable snake_case name."""

    field: str
    code: str
    detail: str | None = None


class Quality(Schema):
    issues: list[QualityIssue] = Field(default_factory=list)


class Campaign(Schema):
    """Marketing attribution: UTM fields plus an ad-platform click id (platforms.md §9)."""

    source: str | None = None
    medium: str | None = None
    name: str | None = None
    term: str | None = None
    content: str | None = None
    click_id: str | None = None
    click_id_param: str | None = None
    network: str | None = None
    landing_url: str | None = None
    # Added fields (the contract allows additions): platform ad ids and which fields were inferred.
    ad_ids: dict[str, str] = Field(default_factory=dict)
    inferred: list[str] = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not any(
            [self.source, self.medium, self.name, self.term, self.content, self.click_id, self.landing_url, self.ad_ids]
        )


class EventDraft(Schema):
    """What a connector's `parse()` returns: an event before identity resolution and storage.

    `source_event_id` must be stable for the same platform message so redelivery deduplicates.
    """

    type: str
    source_event_id: str
    occurred_at: datetime
    identities: list[Identity] = Field(default_factory=list)
    campaign: Campaign | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    quality: Quality = Field(default_factory=Quality)
    # For a hub-made event about a customer it cannot identify by identifiers (the summary of a call whose
    # number was masked): the customer of the event it was made from. Ignored on events from a source.
    customer_hint: uuid.UUID | None = None
    # False for an event about no person (a data-health report, a disabled endpoint, a WeCom tag-library
    # change): it gets no customer. Otherwise every event belongs to someone (contract §4).
    about_a_person: bool = True
    # Ids an earlier crmhub stored this same event under, before its connector changed the key (Douyin's
    # `msg:<Msg-Id>` before 2026-12-06): a stored event of the same source and type under one of them makes this
    # draft a duplicate, so a redelivery or replay across an upgrade is not stored and delivered twice.
    former_ids: list[str] = Field(default_factory=list)


class UnifiedEvent(Schema):
    """The one event shape every source becomes (contract §4)."""

    id: uuid.UUID
    type: str
    source: str
    source_id: uuid.UUID | None = None
    source_event_id: str
    occurred_at: datetime
    received_at: datetime
    customer_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    identities: list[Identity] = Field(default_factory=list)
    campaign: Campaign | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    quality: Quality = Field(default_factory=Quality)
    traits: dict[str, Any] = Field(default_factory=dict, exclude=True)
    about_a_person: bool = Field(default=True, exclude=True)  # EventDraft.about_a_person; not stored

    @field_validator("occurred_at", "received_at", mode="wrap")
    @classmethod
    def _stored_offset(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
        """Also read a time stored before `whole_minute_offset` (`…+08:00:30`): pydantic refuses that offset."""
        try:
            parsed: datetime = handler(value)
        except ValidationError:
            legacy = _iso_time(value)
            if legacy is None:
                raise
            parsed = handler(legacy)
        return parsed


def _iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# A source's name: shown in health, logs and `--source`; an empty one names nothing.
SourceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


# What no text column takes: PostgreSQL refuses NUL in text and jsonb, and a lone surrogate has no UTF-8 form on any
# database. JSON spells both (`\u0000`, `\ud800`: a client cutting a string inside an emoji); they were 500s.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_text(value: Any, path: str = "") -> str | None:
    """What is wrong with the first string (or key) in a JSON value that cannot be stored, and where; None if none."""
    if isinstance(value, str):
        found = _UNSTORABLE.search(value)
        if found is None:
            return None
        what = "NUL" if found.group() == "\x00" else "an unpaired surrogate"
        return f"{path + ': ' if path else ''}U+{ord(found.group()):04X} ({what}) cannot be stored; send plain text"
    if isinstance(value, dict):
        for key, item in value.items():
            shown = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(key))
            where = f"{path}.{shown}" if path else shown
            problem = unstorable_text(key, where) or unstorable_text(item, where)
            if problem:
                return problem
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = unstorable_text(item, f"{path}[{index}]")
            if problem:
                return problem
    return None


def storable_text(value: str) -> str:
    """`value` with each NUL and unpaired surrogate replaced by U+FFFD, for a text column filled from what another
    system sent (a receiver's answer): refusing it is not an option there, and PostgreSQL refuses the row."""
    return _UNSTORABLE.sub("\ufffd", value)


# Levels of objects and arrays an event's properties or traits may nest. The code after parsing (cleaning, pydantic's
# serialiser, json.dumps) recurses; from ~250 levels a value failed its whole request with a RecursionError, logging
# a traceback of thousands of lines for a 2 kB body that anyone holding the public web write key can send.
MAX_NESTING = 64


def nests_deeper(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether `value` holds objects or arrays more than `limit` levels deep (`value` itself is level 1).

    Iterative, so it can look at what the recursive code cannot.
    """
    stack = [(value, 1)] if isinstance(value, dict | list | tuple) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | tuple))
    return False


class RequestBody(Schema):
    """Base of the admin API's request bodies: text no database can store is a 422 naming its field."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        problem = unstorable_text(value)
        if problem:
            raise ValueError(problem)
        return value


class SourceCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, never silently dropped

    connector: str
    name: SourceName
    config: dict[str, Any] = Field(default_factory=dict)


class PatchBody(RequestBody):
    """A PATCH body. A field it does not know is a 422 (a typo must not be a PATCH that changes nothing), a null
    for a field in `not_null` is a 422 naming it, and the fields in `read_only` — what a GET shows but a PATCH
    cannot change — are dropped, so a client may send back what it read."""

    model_config = ConfigDict(extra="forbid")
    read_only: ClassVar[frozenset[str]] = frozenset()
    not_null: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and not cls.read_only.isdisjoint(data):
            data = {k: v for k, v in data.items() if k not in cls.read_only}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.not_null:
            raise ValueError(f"{info.field_name} cannot be null; leave it out to keep the current value")
        return value


class SourceUpdate(PatchBody):
    """What a source PATCH may change; `connector` may be sent back only unchanged."""

    read_only = frozenset({"id", "webhook_url", "created_at"})
    not_null = frozenset({"name", "enabled", "config"})

    name: SourceName | None = None
    enabled: bool | None = None
    config: dict[str, Any] | None = None
    replace_config: bool = Field(default=False, description="config replaces the stored one instead of merging")
    connector: str | None = None

    @model_validator(mode="after")
    def _replace_needs_config(self) -> SourceUpdate:
        if self.replace_config and self.config is None:
            raise ValueError("replace_config needs the whole new config")
        return self


class Source(Schema):
    """A source as the API shows it: never the config's secrets."""

    id: uuid.UUID
    connector: str
    name: str
    enabled: bool
    webhook_url: str
    created_at: datetime
    config: dict[str, Any] = Field(default_factory=dict)


class CustomerIdentity(Schema):
    type: str
    value: str
    source: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None


class AccountRef(Schema):
    id: uuid.UUID
    name: str | None = None
    uscc: str | None = None


class Customer(Schema):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    identities: list[CustomerIdentity] = Field(default_factory=list)
    traits: dict[str, Any] = Field(default_factory=dict)
    accounts: list[AccountRef] = Field(default_factory=list)
    merged_from: list[uuid.UUID] = Field(default_factory=list)
    last_activity_at: datetime | None = None


class ConnectorInfo(Schema):
    name: str
    title: str
    config_schema: dict[str, Any]


class ErrorBody(Schema):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(Schema):
    error: ErrorBody


HistoryAction = Literal["attach", "merge", "merge_refused", "split"]
