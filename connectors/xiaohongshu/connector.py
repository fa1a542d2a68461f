"""XiaohongshuConnector: `X-Red-Signature: sha1=<hex HMAC-SHA1(token, raw body)>`, dedup on leads_id."""

from __future__ import annotations

import hashlib
import hmac
import logging

from pydantic import BaseModel, Field, SecretStr, field_validator

from hub import Connector, EventDraft, InboundRequest, ParseContext
from hub.errors import PayloadError, QuarantineError, VerificationError

from .mapping import push_to_draft
from .payloads import lead_id, read_push

log = logging.getLogger(__name__)
FIELDS = ("name", "phone", "email", "wechat", "company", "city", "gender", "address", "age", "title", "message")


class XiaohongshuConfig(BaseModel):
    token: SecretStr = Field(min_length=1, description="The landing page's 数据推送 token (signs every push)")
    label_map: dict[str, str] = Field(
        default_factory=dict,
        description=f"Form caption → field ({', '.join(FIELDS)}); extends and overrides the default Chinese map",
    )
    accept_plain_sha1: bool = Field(
        False, description="Also accept X-Red-Signature = sha1(token + body), the form one third-party source "
                           "describes (platforms.md §3.1); HMAC-SHA1 is always accepted",
    )

    @field_validator("label_map")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted({v for v in value.values() if v not in FIELDS})
        if unknown:
            raise ValueError(f"unknown fields {unknown}; use one of {list(FIELDS)}")
        return value


def signature(token: bytes, body: bytes) -> str:
    """The header value Xiaohongshu sends: `sha1=` + hex HMAC-SHA1 keyed by the token over the raw body."""
    return "sha1=" + hmac.new(token, body, hashlib.sha1).hexdigest()


class XiaohongshuConnector(Connector):
    name = "xiaohongshu"
    title = "Xiaohongshu 聚光 landing-page lead push (小红书)"
    config_model = XiaohongshuConfig

    def verify(self, request: InboundRequest, config: XiaohongshuConfig) -> None:
        given = (request.header("x-red-signature") or "").strip()
        if not given:
            raise VerificationError("X-Red-Signature header is missing", code="missing_signature")
        algo, sep, digest = given.partition("=")
        if not sep or algo.strip().lower() != "sha1":
            raise VerificationError("X-Red-Signature must look like sha1=<hex>", code="bad_signature")
        digest = digest.strip().lower()
        token = config.token.get_secret_value().encode()
        if hmac.compare_digest(digest.encode(), signature(token, request.body)[5:].encode()):
            return
        if hmac.compare_digest(digest.encode(), hashlib.sha1(token + request.body).hexdigest().encode()):
            # platforms.md §3.1: one source claims plain SHA1(token+body); the doc says implement HMAC-SHA1 and log
            # mismatches. The push still proves the token, so a source may opt in; the 联调 test push fails
            # (and this line says why) until it does, so no lead is lost unnoticed.
            if config.accept_plain_sha1:
                log.info("xiaohongshu push signed with plain sha1(token+body), accepted (accept_plain_sha1)")
                return
            log.warning("xiaohongshu push signed with plain sha1(token+body), not HMAC-SHA1: rejected; set "
                        "accept_plain_sha1 on the source to accept this form")
        raise VerificationError("X-Red-Signature does not match", code="bad_signature")

    def dedup_key(self, request: InboundRequest, config: XiaohongshuConfig) -> str:
        return lead_id(read_push(request.body), request.body)

    def parse(self, request: InboundRequest, config: XiaohongshuConfig, ctx: ParseContext) -> list[EventDraft]:
        try:
            push = read_push(request.body)
        except PayloadError as exc:
            raise QuarantineError(exc.code, exc.message) from exc
        return [push_to_draft(push, lead_id(push, request.body), ctx.received_at, config.label_map)]
