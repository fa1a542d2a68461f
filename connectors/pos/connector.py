"""PosConnector: the hub's own signed push (contract §9) for point-of-sale middleware."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, Field, SecretStr, ValidationError

from hub import Connector, EventDraft, InboundRequest, ParseContext
from hub.errors import PayloadError, QuarantineError, VerificationError

from .mapping import to_draft
from .payloads import PosEvent, event_id_of, read_items

SIGNATURE_HEADER = "x-hub-signature-256"


class PosConfig(BaseModel):
    secret: SecretStr = Field(min_length=16, description="HMAC-SHA256 key the POS middleware signs bodies with")


def verify_hub_signature(request: InboundRequest, secret: str) -> None:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, compared in constant time."""
    header = (request.header(SIGNATURE_HEADER) or "").strip()
    if not header:
        raise VerificationError("X-Hub-Signature-256 header is missing", code="missing_signature")
    scheme, _, given = header.partition("=")
    if scheme.lower() != "sha256" or not given:
        raise VerificationError("X-Hub-Signature-256 must be sha256=<hex>", code="malformed_signature")
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.strip().lower()):
        raise VerificationError("X-Hub-Signature-256 does not match the body", code="bad_signature")


def batch_dedup_key(body: bytes) -> str:
    """`event:<id>` for one event, `events:<sha256 of sorted ids>` for an array; body hash without ids."""
    items = read_items(body)
    ids = [event_id_of(item) for item in items]
    if any(i is None for i in ids):
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if len(ids) == 1:
        return f"event:{ids[0]}"
    return "events:" + hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()


class PosConnector(Connector):
    name = "pos"
    title = "Point of sale (hub push format, HMAC-SHA256 signed)"
    config_model = PosConfig

    def verify(self, request: InboundRequest, config: PosConfig) -> None:
        verify_hub_signature(request, config.secret.get_secret_value())

    def dedup_key(self, request: InboundRequest, config: PosConfig) -> str:
        return batch_dedup_key(request.body)

    def event_count(self, request: InboundRequest, config: PosConfig) -> int:
        return len(read_items(request.body))

    def parse(self, request: InboundRequest, config: PosConfig, ctx: ParseContext) -> list[EventDraft]:
        try:
            items = read_items(request.body)
        except PayloadError as exc:
            raise QuarantineError(exc.code, exc.message) from exc
        drafts = []
        for item in items:
            try:
                event = PosEvent.model_validate(item)
            except ValidationError as exc:
                ctx.quarantine("invalid_pos_event", _first_error(exc), item)
                continue
            drafts.append(to_draft(event, ctx.received_at))
        if not drafts and ctx.quarantined:
            reason, detail, _ = ctx.quarantined[0]
            ctx.quarantined.clear()
            raise QuarantineError(reason, detail)
        return drafts


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
