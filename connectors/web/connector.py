"""WebConnector: HTTP Basic with the write key, Segment's limits and messageId dedup."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, Field, SecretStr

from hub import Connector, EventDraft, InboundRequest, ParseContext
from hub.connector import basic_credentials
from hub.errors import PayloadError, QuarantineError, UnreadableBody, VerificationError

from .mapping import message_to_draft
from .payloads import CALLS, decode_body, message_id, read_messages


class WebConfig(BaseModel):
    write_key: SecretStr = Field(min_length=8, description="Segment write key the site's SDK is configured with")


class WebConnector(Connector):
    name = "web"
    title = "Website & apps (Segment-compatible HTTP Tracking API)"
    config_model = WebConfig

    def verify(self, request: InboundRequest, config: WebConfig) -> None:
        user, _ = basic_credentials(request)  # the write key is the user name; the password is empty
        if not hmac.compare_digest(user.encode(), config.write_key.get_secret_value().encode()):
            raise VerificationError("wrong write key", code="bad_credentials")

    def _call(self, request: InboundRequest) -> str:
        path = request.path.strip("/")
        call = path.removeprefix("v1/") if path.startswith("v1/") else (path or "batch")
        if call not in (*CALLS, "batch"):
            raise UnreadableBody(
                f"unknown endpoint {path!r}; use /v1/identify, track, page, screen, group, alias or batch",
                code="unknown_endpoint",
            )
        if request.method != "POST":
            raise UnreadableBody("use POST", code="method_not_allowed")
        return call

    def _messages(self, request: InboundRequest) -> list[object]:
        if "messages" not in request.memo:
            body = decode_body(request.body, request.header("content-encoding"))
            request.memo["messages"] = read_messages(body, self._call(request))
        messages: list[object] = request.memo["messages"]
        return messages

    def dedup_key(self, request: InboundRequest, config: WebConfig) -> str:
        messages = self._messages(request)
        if len(messages) == 1:
            return "msg:" + message_id(messages[0])
        ids = "\n".join(sorted(message_id(m) for m in messages))
        return "batch:" + hashlib.sha256(ids.encode()).hexdigest()

    def event_count(self, request: InboundRequest, config: WebConfig) -> int:
        return len(self._messages(request))

    def parse(self, request: InboundRequest, config: WebConfig, ctx: ParseContext) -> list[EventDraft]:
        try:
            messages = self._messages(request)
        except PayloadError as exc:
            raise QuarantineError(exc.code, exc.message) from exc
        drafts = []
        for message in messages:
            try:
                drafts.append(message_to_draft(message, ctx.received_at))
            except QuarantineError as exc:
                ctx.quarantine(exc.reason, exc.message, message)
        return drafts
