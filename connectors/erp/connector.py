"""ErpConnector: the hub's signed order push (contract §9) plus an OAuth2 incremental pull."""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr, ValidationError

from hub import Connector, EventDraft, InboundRequest, ParseContext, push
from hub.connector import PULLED_METHOD
from hub.errors import PayloadError, QuarantineError

from .mapping import changes_between, is_older, to_draft, version_of
from .payloads import ErpOrder
from .pull import OrderPuller

PULLED_MARKER = "x-crmhub-pulled"


class ErpConfig(BaseModel):
    secret: SecretStr = Field(min_length=16, description="HMAC-SHA256 key the ERP middleware signs pushes with")
    base_url: str | None = Field(None, description="ERP API root for the incremental pull (GET {base_url}/orders)")
    client_id: str | None = Field(None, description="OAuth2 client-credentials id for the pull")
    client_secret: SecretStr | None = Field(None, description="OAuth2 client secret for the pull")
    token_url: str | None = Field(None, description="OAuth2 token endpoint for the pull")
    scope: str | None = None
    page_size: int = Field(100, ge=1, le=1000, description="orders per page requested from the ERP")
    rate_limit_per_s: float = Field(5.0, gt=0, le=1000, description="most ERP API requests per second")
    pull_interval_s: float = Field(300.0, ge=10, description="seconds between incremental pulls")
    pull_since: str = Field("1970-01-01T00:00:00+08:00", description="updated_since of the very first pull")

    def pull_enabled(self) -> bool:
        return bool(self.base_url and self.client_id and self.client_secret and self.token_url)


def pulled_event_id(item: dict[str, Any]) -> str:
    """A pulled order version's id: the same version pulled twice is one event."""
    return f"pull:{item.get('order_no')}:{item.get('updated_at')}"


class ErpConnector(Connector):
    name = "erp"
    title = "ERP orders (hub push format, HMAC-SHA256 signed; optional OAuth2 pull)"
    config_model = ErpConfig

    def __init__(self) -> None:
        self.puller = OrderPuller()

    # ------------------------------------------------------------- push
    def verify(self, request: InboundRequest, config: ErpConfig) -> None:
        push.verify_signature(request, config.secret.get_secret_value())

    def dedup_key(self, request: InboundRequest, config: ErpConfig) -> str:
        return push.dedup_key(request.body, push.items_of(request))

    def event_count(self, request: InboundRequest, config: ErpConfig) -> int:
        return len(push.items_of(request))

    def event_keys(self, request: InboundRequest, config: ErpConfig) -> list[tuple[str, str]] | None:
        """A pushed order is stored under its `event_id` (mapping.to_draft), so the ids are known up front.

        A request marked as pulled gets its ids from parse() (`pulled_event_id`): answered as a whole.
        """
        if request.hub_marker(PULLED_MARKER) is not None:
            return None
        return push.event_keys(push.items_of(request))

    # ------------------------------------------------------------- pipeline
    def parse(self, request: InboundRequest, config: ErpConfig, ctx: ParseContext) -> list[EventDraft]:
        try:
            items = push.read_items(request.body)
        except PayloadError as exc:
            raise QuarantineError(exc.code, exc.message) from exc
        pulled = request.hub_marker(PULLED_MARKER) is not None
        drafts = []
        for item in items:
            draft = self._one(item, pulled, ctx)
            if draft is not None:
                drafts.append(draft)
        if not drafts and ctx.quarantined and len(ctx.quarantined) == len(items):
            reason, detail = ctx.quarantined[0].reason, ctx.quarantined[0].detail
            ctx.quarantined.clear()
            raise QuarantineError(reason, detail)
        return drafts

    def _one(self, raw: Any, pulled: bool, ctx: ParseContext) -> EventDraft | None:
        item = push.as_object(raw, ctx, "invalid_erp_order")
        if item is None:
            return None
        key = f"order:{item.get('order_no')}"
        last = ctx.state.get(key) if item.get("order_no") else None
        if pulled:
            item = {**item, "event_id": pulled_event_id(item),
                    "type": "order.updated" if last else "order.created"}
        try:
            order = ErpOrder.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            ctx.quarantine("invalid_erp_order", f"{'.'.join(map(str, err['loc']))}: {err['msg']}", item)
            return None
        version = version_of(order)
        if pulled and last and {k: last.get(k) for k in version} == version:
            return None  # this version already arrived (pushed, or pulled before)
        if is_older(version, last):
            draft = to_draft(order, version, {}, ctx.received_at)
            draft.properties["stale"] = True  # an out-of-order older version: no changes, state kept
            return draft
        ctx.state.set(key, version)
        return to_draft(order, version, changes_between(last, version), ctx.received_at)

    # ------------------------------------------------------------- pull (driven by hub.pull)
    def pull_interval_s(self, config: ErpConfig) -> float | None:
        return config.pull_interval_s if config.pull_enabled() else None

    def pull(self, config: ErpConfig, http: httpx.Client, cursor: Any) -> tuple[list[dict[str, Any]], Any]:
        """One page of `GET {base_url}/orders?updated_since=…&page=…`; see OrderPuller."""
        return self.puller.page(config, http, cursor)

    def pulled_request(self, item: dict[str, Any]) -> tuple[bytes, str, dict[str, Any]]:
        """How hub.pull stores a pulled order: (raw body, dedup key, request record)."""
        body = json.dumps(item, ensure_ascii=False, sort_keys=True).encode()
        record = {"method": PULLED_METHOD, "headers": {PULLED_MARKER: "orders"}, "query": {}, "path": ""}
        return body, pulled_event_id(item), record
