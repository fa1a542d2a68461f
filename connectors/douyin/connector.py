"""DouyinConnector: sha1(secret + body) signature, the verify_webhook challenge, Msg-Id dedup."""

from __future__ import annotations

import hashlib
import hmac
import threading

import httpx
from pydantic import BaseModel, Field, SecretStr

from hub import Connector, EventDraft, InboundRequest, ParseContext, Reply
from hub.errors import HubError, PayloadError, QuarantineError, VerificationError

from .mapping import envelope_to_draft
from .openapi import DEFAULT_BASE_URL, DouyinOpenAPI
from .payloads import Envelope, event_id, former_event_ids, message_id, read_envelope


class DouyinConfig(BaseModel):
    client_key: str = Field(min_length=1, max_length=128, description="The app's client_key (开发配置)")
    client_secret: SecretStr = Field(min_length=1, description="The app's client_secret; signs webhooks and tokens")
    webhook_secret: SecretStr | None = Field(
        default=None, description="Mini-app 'webhook 验签秘钥' when it differs from client_secret")
    api_base_url: str = Field(default=DEFAULT_BASE_URL, description="OpenAPI base URL (a fake in tests)")
    resolve_allied_id: bool = Field(
        default=False, description="Look up each customer's AlliedID (scope open.account.data) while processing")

    def signing_secret(self) -> bytes:
        secret = self.webhook_secret or self.client_secret
        return secret.get_secret_value().encode()


def signature(secret: bytes, body: bytes) -> str:
    """Douyin's X-Douyin-Signature: lowercase hex SHA-1 over secret bytes + raw body (plain SHA-1, not HMAC)."""
    return hashlib.sha1(secret + body).hexdigest()


class DouyinConnector(Connector):
    name = "douyin"
    title = "Douyin Open Platform (抖音开放平台) webhooks"
    config_model = DouyinConfig

    def __init__(self) -> None:
        self._apis: dict[tuple[str, str], DouyinOpenAPI] = {}
        self._lock = threading.Lock()

    def verify(self, request: InboundRequest, config: DouyinConfig) -> None:
        given = (request.header("x-douyin-signature") or "").strip().lower()
        if not given:
            raise VerificationError("X-Douyin-Signature header is missing", code="missing_signature")
        expected = signature(config.signing_secret(), request.body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise VerificationError("X-Douyin-Signature does not match", code="bad_signature")

    def handshake(self, request: InboundRequest, config: DouyinConfig) -> Reply | None:
        envelope = _envelope_or_none(request)
        if envelope is None or envelope.event != "verify_webhook":
            return None
        challenge = envelope.content.get("challenge")
        if isinstance(challenge, bool) or not isinstance(challenge, int | str) or str(challenge).strip() == "":
            raise PayloadError("verify_webhook without content.challenge", code="missing_challenge")
        return Reply(200, {"challenge": challenge})

    def dedup_key(self, request: InboundRequest, config: DouyinConfig) -> str:
        return message_id(request, read_envelope(request.body))

    def parse(self, request: InboundRequest, config: DouyinConfig, ctx: ParseContext) -> list[EventDraft]:
        try:
            envelope = read_envelope(request.body)
        except PayloadError as exc:
            raise QuarantineError(exc.code, exc.message) from exc
        draft = envelope_to_draft(envelope, event_id(request, envelope), ctx.received_at)
        draft.former_ids = former_event_ids(request, envelope)
        if config.resolve_allied_id and ctx.http is not None:
            self._add_allied_id(draft, config, ctx)
        return [draft]

    # ------------------------------------------------------------- OpenAPI
    def api(self, config: DouyinConfig, http: httpx.Client) -> DouyinOpenAPI:
        """The OpenAPI client of this app (its client_token is cached per client_key and base URL)."""
        key = (config.client_key, config.api_base_url)
        with self._lock:
            api = self._apis.get(key)
            if api is None or api.http is not http:
                api = DouyinOpenAPI(http, config.client_key, config.client_secret.get_secret_value(),
                                    config.api_base_url)
                self._apis[key] = api
            return api

    def _add_allied_id(self, draft: EventDraft, config: DouyinConfig, ctx: ParseContext) -> None:
        open_id = next((i.value for i in draft.identities if i.type == "douyin_open_id"), None)
        if not open_id or ctx.http is None:
            return
        try:
            draft.properties["allied_id"] = self.api(config, ctx.http).get_allied_id(open_id)
        except HubError as exc:  # enrichment only: the event is stored without it
            ctx.log.warning("douyin allied_id lookup failed for source %s: %s", ctx.source_name, exc.message)


def _envelope_or_none(request: InboundRequest) -> Envelope | None:
    try:
        return read_envelope(request.body)
    except PayloadError:
        return None
