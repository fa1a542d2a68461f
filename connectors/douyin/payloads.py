"""Douyin Open Platform webhook bodies (platforms.md §1), private to this connector.

Why lenient: the same envelope arrives with `content` as an object (private-message page) or as a
JSON-encoded string (im_enter_direct_msg, local-life); numbers arrive as numbers or strings.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.connector import InboundRequest
from hub.errors import PayloadError, UnreadableBody, validation_message


def _as_object(value: Any) -> dict[str, Any]:
    """An object, or a JSON string holding one; anything else becomes {}."""
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _as_text(value: Any) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


class UserInfo(BaseModel):
    # Only the three fields are read (the raw content keeps the rest). Kept as extras, a key pydantic cannot read (a
    # lone surrogate, `"\ud800"` in JSON) failed the whole request with a ValidationError, left "failed".
    model_config = ConfigDict(extra="ignore")

    open_id: str = ""
    nick_name: str = ""
    avatar: str = ""

    @field_validator("open_id", "nick_name", "avatar", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return _as_text(value)


class Envelope(BaseModel):
    """`{"event", "from_user_id", "to_user_id", "client_key", "log_id", "content"}`."""

    model_config = ConfigDict(extra="allow")

    event: str
    from_user_id: str = ""
    to_user_id: str = ""
    client_key: str = ""
    log_id: str = ""
    content: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event", mode="before")
    @classmethod
    def _event(cls, value: Any) -> str:
        text = _as_text(value)
        if not text:
            raise ValueError("event is required")
        return text

    @field_validator("from_user_id", "to_user_id", "client_key", "log_id", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> str:
        return _as_text(value)

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> dict[str, Any]:
        return _as_object(value)

    def content_text(self, key: str) -> str:
        return _as_text(self.content.get(key))

    def user_infos(self) -> list[UserInfo]:
        raw = self.content.get("user_infos")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = []
        if not isinstance(raw, list):
            return []
        return [UserInfo.model_validate(item) for item in raw if isinstance(item, dict)]

    def ad_info(self) -> dict[str, Any]:
        return _as_object(self.content.get("ad_info"))


def read_envelope(body: bytes) -> Envelope:
    """The envelope, or PayloadError (HTTP 400) when the body is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableBody(f"body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(doc, dict):
        raise PayloadError("body must be a JSON object", code="invalid_body")
    try:
        return Envelope.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "a field name"  # () is an extra key pydantic cannot read
        raise PayloadError(f"not a Douyin webhook envelope: {where}: {validation_message(err)}",
                           code="invalid_envelope") from exc


def event_id(request: InboundRequest, envelope: Envelope) -> str:
    """The stored event's id: from the signed body when it names the message (server_message_id, log_id).

    `Msg-Id` is not covered by the signature, so keying events on it let one captured request be stored again
    under each new header value (helper-31). The request itself is still deduplicated on `Msg-Id`, as
    platforms.md says (`message_id`); a replay with a forged one is stored as a request but makes no new event.
    """
    if smid := _server_message_key(envelope):
        return smid
    if envelope.log_id:
        return "log:" + envelope.log_id[:200]
    return message_id(request, envelope)


def former_event_ids(request: InboundRequest, envelope: Envelope) -> list[str]:
    """The ids crmhub stored this event under before 2026-12-06: `msg:<Msg-Id>`, else `smid:<server_message_id>`
    (without the event name; also the key of every event with one for half an hour that day).

    A push without Msg-Id that crmhub received before an upgrade and Douyin redelivered after it got a new
    request key and a new event key, so it was stored and delivered twice.
    """
    header = _as_text(request.header("msg-id"))
    server_id = envelope.content_text("server_message_id")
    ids = (["msg:" + header[:200]] if header else []) + (["smid:" + server_id[:200]] if server_id else [])
    current = event_id(request, envelope)
    return [i for i in ids if i != current]


def _server_message_key(envelope: Envelope) -> str | None:
    """`smid:<event>:<server_message_id>`: with the event, as an enter-conversation push and a lead card may name
    the same message; both parts bounded, so the key fits the 300-character id columns."""
    server_id = envelope.content_text("server_message_id")
    return f"smid:{envelope.event[:64]}:{server_id[:200]}" if server_id else None


def message_id(request: InboundRequest, envelope: Envelope) -> str:
    """Douyin's message id: the `Msg-Id` header, else event + server_message_id, else log_id, else a body digest."""
    header = _as_text(request.header("msg-id"))
    if header:
        return "msg:" + header[:200]
    if smid := _server_message_key(envelope):  # keyed like the event, or the second of two such pushes was lost
        return smid
    if envelope.log_id:
        return "log:" + envelope.log_id[:200]
    return "sha256:" + hashlib.sha256(request.body).hexdigest()
