"""PosConnector: the hub's own signed push (contract §9) for point-of-sale middleware."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, ValidationError

from hub import Connector, EventDraft, InboundRequest, ParseContext, push
from hub.errors import PayloadError, QuarantineError

from .mapping import to_draft
from .payloads import PosEvent


class PosConfig(BaseModel):
    secret: SecretStr = Field(min_length=16, description="HMAC-SHA256 key the POS middleware signs bodies with")


class PosConnector(Connector):
    name = "pos"
    title = "Point of sale (hub push format, HMAC-SHA256 signed)"
    config_model = PosConfig

    def verify(self, request: InboundRequest, config: PosConfig) -> None:
        push.verify_signature(request, config.secret.get_secret_value())

    def dedup_key(self, request: InboundRequest, config: PosConfig) -> str:
        return push.dedup_key(request.body, push.items_of(request))

    def event_count(self, request: InboundRequest, config: PosConfig) -> int:
        return len(push.items_of(request))

    def event_keys(self, request: InboundRequest, config: PosConfig) -> list[tuple[str, str]] | None:
        """Each event is stored under its `event_id` (mapping.to_draft), so the ids are known up front."""
        return push.event_keys(push.items_of(request))

    def parse(self, request: InboundRequest, config: PosConfig, ctx: ParseContext) -> list[EventDraft]:
        try:
            items = push.read_items(request.body)
        except PayloadError as exc:
            raise QuarantineError(exc.code, exc.message) from exc
        drafts = []
        for item in items:
            if push.as_object(item, ctx, "invalid_pos_event") is None:
                continue
            try:
                event = PosEvent.model_validate(item)
            except ValidationError as exc:
                ctx.quarantine("invalid_pos_event", _first_error(exc), item)
                continue
            drafts.append(to_draft(event, ctx.received_at))
        if not drafts and ctx.quarantined:
            reason, detail = ctx.quarantined[0].reason, ctx.quarantined[0].detail
            ctx.quarantined.clear()
            raise QuarantineError(reason, detail)
        return drafts


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
