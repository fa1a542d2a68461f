"""The `Connector` base class plugin authors subclass, and the registry the kernel calls through.

A connector is pure: it never touches the database, FastAPI, Celery or SQLAlchemy.
The kernel gives it the raw request, its validated config, and (for parse) a
`ParseContext` with keyed state and an httpx client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, NamedTuple, Protocol

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from hub.errors import HubError, InvalidRequest, UnreadableBody, VerificationError, validation_message
from hub.schemas import MAX_NESTING, EventDraft, nests_deeper

log = logging.getLogger(__name__)


CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def _redacted(value: str) -> str:
    """`Basic dXNlcjpwYXNz` → `Basic [redacted]`: the scheme stays, so ops can still see how it was sent."""
    scheme, sep, _ = value.strip().partition(" ")
    return f"{scheme} [redacted]" if sep else "[redacted]"


PULLED_METHOD = "PULL"  # the method of a record the hub stored itself (hub.pull, enrichment's lookups)


@dataclass(frozen=True)
class InboundRequest:
    """An inbound HTTP request exactly as received; what the raw-event store keeps."""

    method: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    query: Mapping[str, str] = field(default_factory=dict)
    path: str = ""  # the part after /hooks/{source_id}/, e.g. "v1/batch"
    # Per-request scratch space so verify/dedup_key/event_count can share one parse of the body.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def hub_marker(self, name: str) -> str | None:
        """Header `name` of a record the hub stored itself (a pull, a lookup: method PULL), else None.

        A pushed request may carry any header its sender likes, `x-crmhub-pulled` included; it never has the method
        PULL, which the /hooks routes do not take.
        """
        return self.header(name) if self.method == PULLED_METHOD else None

    def json(self) -> Any:
        """The body as JSON, or PayloadError (HTTP 400) naming why it is unreadable."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnreadableBody(f"body is not valid JSON: {exc}", code="invalid_json") from exc

    def to_record(self) -> dict[str, Any]:
        """What the raw store keeps: everything but credentials (a TCCC password, a server SDK's write key), which
        were checked at the door, are never needed again, and must not sit in clear in the database."""
        headers = {k: _redacted(v) if k in CREDENTIAL_HEADERS else v for k, v in self.headers.items()}
        return {"method": self.method, "headers": headers, "query": dict(self.query), "path": self.path}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], body: bytes) -> InboundRequest:
        return cls(
            method=record.get("method", "POST"),
            body=body,
            headers=dict(record.get("headers") or {}),
            query=dict(record.get("query") or {}),
            path=record.get("path", ""),
        )


@dataclass
class Reply:
    """What a connector answers its platform with."""

    status: int = 200
    body: Any = None  # dict/list → JSON, str/bytes → as is
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        try:
            return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()
        except UnicodeEncodeError:  # a lone surrogate echoed back (a Douyin challenge "\ud800"): escaped, as it came
            return json.dumps(self.body, separators=(",", ":")).encode()


def header_safe(value: str) -> bool:
    """Whether an HTTP header can carry `value`: printable ASCII. httpx and requests refuse anything else (a
    pasted `…` placeholder, a full-width digit) with a bare UnicodeEncodeError, at the first call a source makes."""
    return value.isascii() and value.isprintable()


def basic_credentials(request: InboundRequest) -> tuple[str, str]:
    """(user, password) from `Authorization: Basic …`; VerificationError (401) when missing or malformed."""
    scheme, _, encoded = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise VerificationError("HTTP Basic credentials are required", code="missing_credentials")
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise VerificationError("malformed Basic credentials", code="bad_credentials") from exc
    return user, password


class KeyedState(Protocol):
    """Per-source durable key/value state (cursors, last-seen order versions) kept by the kernel."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


ITEM_KEY_MAX = 300  # quarantine.item_key's length


class SetAside(NamedTuple):
    """One item `ParseContext.quarantine()` set aside."""

    reason: str
    detail: str
    payload: Any
    key: str | None = None


@dataclass
class ParseContext:
    source_id: uuid.UUID
    source_name: str
    received_at: datetime
    state: KeyedState
    http: httpx.Client | None = None
    log: logging.Logger = log
    quarantined: list[SetAside] = field(default_factory=list)

    def quarantine(self, reason: str, detail: str, payload: Any = None, *, key: str | None = None) -> None:
        """Set one item of a multi-item request aside (kept with its reason); the rest goes on.

        `key`: the item's stable id (a spreadsheet row's content hash). An item already quarantined under the
        same key for this source is not added again when another request brings it back (a re-import whose
        batches shifted by one row); its quarantine row is brought up to date instead.
        """
        if nests_deeper(payload):  # kept whole in the raw request; stored here it would fail the request
            payload = {"too_deep": f"nests deeper than {MAX_NESTING} levels; the raw request holds it"}
        self.quarantined.append(SetAside(reason, detail, payload, key[:ITEM_KEY_MAX] if key else None))


class Connector:
    """Base class: override what your platform needs. Defaults suit a signed JSON push."""

    name: ClassVar[str]
    title: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]

    # ------------------------------------------------------------- config
    def validate_config(self, raw: Mapping[str, Any], *, allow_unknown: bool = False) -> BaseModel:
        """The typed config, or a 422 naming each bad field.

        A key the connector does not know (a typo such as `base_ur`) is refused when a source is created or
        updated; a stored config is read with `allow_unknown=True`, so removing a setting in a later version
        does not disable the sources that had it. The model sees `context={"stored": allow_unknown}`, so a rule
        tightened later can hold new configs to it without disabling a source stored before.
        """
        problems: list[dict[str, Any]] = []
        if not allow_unknown:
            known = self.config_keys()
            problems = [{"field": str(key), "message": "unknown config key"} for key in raw if key not in known]
        try:
            model = self.config_model.model_validate(dict(raw), context={"stored": allow_unknown})
        except ValidationError as exc:
            problems += [{"field": ".".join(str(p) for p in err["loc"]) or "config", "message": _config_message(err)}
                         for err in exc.errors()]
            model = None
        if problems:
            raise InvalidRequest(
                f"invalid config for connector {self.name!r}: {', '.join(p['field'] for p in problems)}",
                code="invalid_config", details=problems,
            )
        assert model is not None
        return model

    def config_keys(self) -> set[str]:
        """Every key the config accepts: field names and their aliases."""
        keys: set[str] = set()
        for name, info in self.config_model.model_fields.items():
            keys.add(name)
            keys.update(alias for alias in (info.alias, info.validation_alias) if isinstance(alias, str))
        return keys

    def config_schema(self) -> dict[str, Any]:
        return self.config_model.model_json_schema()

    def secret_fields(self) -> set[str]:
        return {
            name for name, info in self.config_model.model_fields.items() if _is_secret(info.annotation)
        }

    def destination_fields(self) -> set[str]:
        """Config keys that say where the hub sends requests, with the source's secrets (`*url`, `endpoint`).

        Changing one must come with the secrets again: otherwise a PATCH of the URL alone would have the hub
        hand its stored secrets to any server, and the API never shows them back (helper-31).
        """
        return {k for k in self.config_model.model_fields if k.endswith("url") or k in ("endpoint", "host")}

    # ------------------------------------------------------------- request path
    def verify(self, request: InboundRequest, config: Any) -> None:
        """Raise VerificationError unless the request is authentic. Runs on the raw bytes, first."""
        raise NotImplementedError

    def handshake(self, request: InboundRequest, config: Any) -> Reply | None:
        """Answer a platform's URL-verification request (nothing is stored), or None."""
        return None

    def dedup_key(self, request: InboundRequest, config: Any) -> str:
        """The platform's message id for this request; raise PayloadError if the body is unreadable."""
        return "sha256:" + hashlib.sha256(request.body).hexdigest()

    def event_count(self, request: InboundRequest, config: Any) -> int:
        return 1

    def event_keys(self, request: InboundRequest, config: Any) -> list[tuple[str, str]] | None:
        """Per event, in body order (repeats kept): (its `source_event_id`, its dedup key when sent alone).

        Lets the inbound edge answer `duplicates` per event, not per request: an event the hub
        already stored for this source, or still holds in a pending request of its own, counts as
        seen even inside a new batch. None (the default) when the ids are only known after parse():
        the whole request then counts as new or as a redelivery.
        """
        return None

    def ack(self, request: InboundRequest, config: Any, *, accepted: int, duplicates: int) -> Reply:
        return Reply(200, {"accepted": accepted, "duplicates": duplicates})

    def error_reply(self, request: InboundRequest | None, error: HubError) -> Reply:
        return Reply(error.status_code, error.to_body())

    # ------------------------------------------------------------- pipeline
    def parse(self, request: InboundRequest, config: Any, ctx: ParseContext) -> list[EventDraft]:
        """Normalise one stored request into events; raise QuarantineError when it cannot be."""
        raise NotImplementedError


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())


SECRET_MASK = "********"


def public_config(connector: Connector, config: Mapping[str, Any]) -> dict[str, Any]:
    """A config as the API may show it: a set secret is the mask, an unset one null; never the secret itself."""
    secrets_ = connector.secret_fields()
    return {k: ((SECRET_MASK if v else None) if k in secrets_ else v) for k, v in config.items()}


def keep_masked_secrets(connector: Connector, changes: Mapping[str, Any]) -> dict[str, Any]:
    """`changes` without secret fields that were sent back as the mask: a client that PATCHes what it was
    shown keeps the stored secret instead of replacing it with the mask (every webhook would then fail)."""
    secrets_ = connector.secret_fields()
    return {k: v for k, v in changes.items() if not (k in secrets_ and v == SECRET_MASK)}


def refuse_masked_secrets(connector: Connector, config: Mapping[str, Any]) -> None:
    """A new source has no stored secret for the mask to stand for: it is a copy-paste mistake, not a secret."""
    masked = [k for k in connector.secret_fields() if config.get(k) == SECRET_MASK]
    if masked:
        raise InvalidRequest(f"invalid config for connector {connector.name!r}: {', '.join(masked)}",
                             code="invalid_config",
                             details=[{"field": k, "message": f"{SECRET_MASK!r} is the mask the API shows; "
                                       "send the secret itself"} for k in masked])


def dump_config(model: BaseModel) -> dict[str, Any]:
    """A validated config as plain JSON (SecretStr revealed) — only ever stored encrypted."""
    data = model.model_dump(mode="python")
    for key, value in list(data.items()):
        if isinstance(value, SecretStr):
            data[key] = value.get_secret_value()
    return json.loads(json.dumps(data, default=str))


class ConnectorRegistry:
    """Every registered connector by name; per-connector failures are isolated and logged."""

    def __init__(self) -> None:
        self._by_name: dict[str, Connector] = {}

    def register(self, connector: Connector) -> None:
        if connector.name in self._by_name:
            raise ValueError(f"connector {connector.name!r} registered twice")
        self._by_name[connector.name] = connector

    def collect(self, call_hook: Callable[..., list[Any]]) -> None:
        for impl_result in call_hook(register=self._safe_register):
            del impl_result

    def _safe_register(self, connector: Connector) -> None:
        try:
            self.register(connector)
        except Exception:  # one broken connector must not take the others down
            log.exception("could not register connector %r", getattr(connector, "name", connector))

    def get(self, name: str) -> Connector:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidRequest(
                f"unknown connector {name!r}", code="unknown_connector",
                details=[{"field": "connector", "message": f"known: {', '.join(sorted(self._by_name))}"}],
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Connector]:
        return iter(sorted(self._by_name.values(), key=lambda c: c.name))


def _config_message(err: Any) -> str:
    """pydantic's message, except that a secret's length is in characters (SecretStr reports "items") and a
    validator's own message comes without pydantic's "Value error, " (as every other 422 detail)."""
    ctx = err.get("ctx") or {}
    if err.get("type") == "too_short" and isinstance(err.get("input"), (str, SecretStr)):
        return f"at least {ctx.get('min_length')} characters, not {ctx.get('actual_length')}"
    if err.get("type") == "too_long" and isinstance(err.get("input"), (str, SecretStr)):
        return f"at most {ctx.get('max_length')} characters, not {ctx.get('actual_length')}"
    return validation_message(err)
