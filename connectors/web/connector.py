"""WebConnector: HTTP Basic with the write key, Segment's limits and messageId dedup."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from hub import Connector, EventDraft, InboundRequest, ParseContext
from hub.connector import Reply, basic_credentials
from hub.errors import PayloadError, QuarantineError, UnreadableBody, VerificationError

from .mapping import message_to_draft
from .payloads import CALLS, SHORT_CALLS, body_write_key, decode_body, load_doc, message_id, read_messages


class WebConfig(BaseModel):
    write_key: SecretStr = Field(min_length=8, description="Segment write key the site's SDK is configured with")


class WebConnector(Connector):
    name = "web"
    title = "Website & apps (Segment-compatible HTTP Tracking API)"
    config_model = WebConfig

    def verify(self, request: InboundRequest, config: WebConfig) -> None:
        """HTTP Basic with the write key as user (server SDKs), or — with no Authorization header — the
        `writeKey` in the body, as Segment's browser and mobile SDKs send it (analytics.js, text/plain)."""
        if request.header("authorization") is not None:
            given, _ = basic_credentials(request)  # the write key is the user name; the password is empty
        else:
            given = self._body_write_key(request)
        if not hmac.compare_digest(given.encode(), config.write_key.get_secret_value().encode()):
            raise VerificationError("wrong write key", code="bad_credentials")

    def _body_write_key(self, request: InboundRequest) -> str:
        self._call(request)  # an unknown path is named before credentials are looked for
        try:
            key = body_write_key(self._doc(request)[1])
        except UnreadableBody:  # no credentials to be found in it: a 401, as for any request without them
            key = None
        if not key:
            raise VerificationError("HTTP Basic credentials, or a writeKey in the body, are required",
                                    code="missing_credentials")
        return key

    def ack(self, request: InboundRequest, config: WebConfig, *, accepted: int, duplicates: int) -> Reply:
        """Any origin may read the answer: a site's analytics.js posts from the visitor's browser."""
        reply = super().ack(request, config, accepted=accepted, duplicates=duplicates)
        reply.headers["access-control-allow-origin"] = "*"
        return reply

    def _call(self, request: InboundRequest) -> str:
        path = request.path.strip("/")
        call = path.removeprefix("v1/") if path.startswith("v1/") else (path or "batch")
        call = SHORT_CALLS.get(call, call)
        if call not in (*CALLS, "batch"):
            raise UnreadableBody(
                f"unknown endpoint {path!r}; use /v1/identify, track, page, screen, group, alias or batch",
                code="unknown_endpoint",
            )
        if request.method != "POST":
            raise UnreadableBody("use POST", code="method_not_allowed")
        return call

    def _doc(self, request: InboundRequest) -> tuple[bytes, Any]:
        """(decoded body, its JSON), parsed once per request: verify may need the writeKey, then the messages."""
        if "doc" not in request.memo:
            body = decode_body(request.body, request.header("content-encoding"))
            request.memo["doc"] = (body, load_doc(body))
        doc: tuple[bytes, Any] = request.memo["doc"]
        return doc

    def _messages(self, request: InboundRequest) -> list[object]:
        if "messages" not in request.memo:
            call = self._call(request)  # a wrong path or method is named before the body is read
            body, doc = self._doc(request)
            request.memo["messages"] = read_messages(body, doc, call)
        messages: list[object] = request.memo["messages"]
        return messages

    def dedup_key(self, request: InboundRequest, config: WebConfig) -> str:
        messages = self._messages(request)
        if len(messages) == 1:
            return "msg:" + message_id(messages[0])
        ids = "\n".join(sorted(message_id(m) for m in messages))
        # surrogatepass: a messageId sent as `"a\ud800"` has no UTF-8 form; encoding it failed the request (a 500).
        return "batch:" + hashlib.sha256(ids.encode("utf-8", "surrogatepass")).hexdigest()

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
