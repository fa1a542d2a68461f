"""WeComConnector: msg_signature + AES callbacks (GET URL check, POST events), 200 with an empty body."""

from __future__ import annotations

import threading
import time

import httpx
from pydantic import BaseModel, Field, SecretStr, field_validator

from hub import Connector, EventDraft, InboundRequest, ParseContext, Reply
from hub.connector import KeyedState
from hub.errors import PayloadError, QuarantineError, UnreadableBody, VerificationError
from hub.identifiers import is_shared_line, normalize_identity, phone_kind
from hub.schemas import Identity

from .api import DEFAULT_BASE_URL, WeComAPI, WeComAPIError
from .crypto import aes_key, check_signature, decrypt
from .details import apply_details
from .mapping import event_to_draft
from .payloads import corp_of, encrypted_field, event_key, parse_xml

DETAIL_CHANGES = frozenset({"add_external_contact", "add_half_external_contact", "edit_external_contact"})


class WeComConfig(BaseModel):
    corp_id: str = Field(min_length=1, max_length=64, description="企业ID (CorpID): the receiveid of a self-built app")
    token: SecretStr = Field(min_length=1, max_length=64, description="The callback Token (接收事件服务器)")
    encoding_aes_key: SecretStr = Field(description="The 43-character EncodingAESKey")
    suite_id: str | None = Field(default=None, description="Third-party app SuiteID, also accepted as receiveid")
    max_clock_skew_s: int = Field(default=300, ge=0, description="Refuse timestamps further off than this (0: off)")
    contact_secret: SecretStr | None = Field(
        default=None, description="The 客户联系 Secret (or a self-built app's, listed under 可调用应用): with it, "
        "each added or edited contact's details are fetched (externalcontact/get)")
    link_remark_mobiles: bool = Field(
        default=True, description="Use the phones the employee noted on the contact (remark_mobiles) as its phones")
    api_base_url: str = Field(default=DEFAULT_BASE_URL, description="WeCom API base URL (a fake in tests)")

    @field_validator("encoding_aes_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        aes_key(value.get_secret_value())
        return value

    def key(self) -> bytes:
        return aes_key(self.encoding_aes_key.get_secret_value())

    def receive_ids(self) -> set[str]:
        return {self.corp_id} | ({self.suite_id} if self.suite_id else set())


def _self_built(event: dict[str, str], config: WeComConfig) -> bool:
    """A self-built app's callback for this corp: a third-party (ISV) app's external_userid is its own encoding,
    which a self-built app's token cannot look up (and an ISV token needs the suite flow, not implemented)."""
    return not event.get("SuiteId") and not event.get("InfoType") and corp_of(event) == config.corp_id


def _query(request: InboundRequest, name: str) -> str:
    value = request.query.get(name, "")
    if not value:
        raise VerificationError(f"query parameter {name} is missing", code="missing_signature")
    return value


class WeComConnector(Connector):
    name = "wecom"
    title = "WeCom customer contact (企业微信 客户联系) callbacks"
    config_model = WeComConfig

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apis: dict[tuple[str, str, str], WeComAPI] = {}

    def _encrypted(self, request: InboundRequest) -> str:
        if request.method == "GET":
            return _query(request, "echostr")
        try:
            return encrypted_field(request.body)
        except UnreadableBody:
            raise  # not XML at all: 400 (contract §3)
        except PayloadError as exc:  # XML without the signed <Encrypt>: nothing to verify
            raise VerificationError(exc.message, code=exc.code) from exc

    def verify(self, request: InboundRequest, config: WeComConfig) -> None:
        signature, timestamp = _query(request, "msg_signature"), _query(request, "timestamp")
        nonce = _query(request, "nonce")
        if config.max_clock_skew_s:
            try:  # integers throughout: a float of a 400-digit timestamp overflowed (a 500)
                skew = abs(int(time.time()) - int(timestamp))
            except ValueError as exc:
                raise VerificationError("timestamp is not a number", code="bad_timestamp") from exc
            if skew > config.max_clock_skew_s:
                raise VerificationError("timestamp is too far from now", code="stale_timestamp")
        check_signature(config.token.get_secret_value(), timestamp, nonce, self._encrypted(request), signature)

    def handshake(self, request: InboundRequest, config: WeComConfig) -> Reply | None:
        if request.method != "GET":
            return None
        plain = decrypt(config.key(), _query(request, "echostr"), config.receive_ids())
        return Reply(200, plain, media_type="text/plain")

    def _event(self, request: InboundRequest, config: WeComConfig) -> dict[str, str]:
        try:
            plain = decrypt(config.key(), self._encrypted(request), config.receive_ids())
        except VerificationError as exc:
            raise PayloadError(exc.message, code=exc.code) from exc
        try:
            return parse_xml(plain)
        except UnreadableBody as exc:  # the envelope verified: what it carries is quarantined, not refused
            raise PayloadError(f"the decrypted message {exc.message[0].lower()}{exc.message[1:]}",
                               code=exc.code) from exc

    def dedup_key(self, request: InboundRequest, config: WeComConfig) -> str:
        return event_key(self._event(request, config))

    def ack(self, request: InboundRequest, config: WeComConfig, *, accepted: int, duplicates: int) -> Reply:
        return Reply(200, b"", media_type="text/plain")

    def parse(self, request: InboundRequest, config: WeComConfig, ctx: ParseContext) -> list[EventDraft]:
        try:
            event = self._event(request, config)
        except (PayloadError, VerificationError) as exc:
            raise QuarantineError(exc.code, exc.message) from exc
        draft = event_to_draft(event, event_key(event), ctx.received_at)
        if (config.contact_secret is not None and ctx.http is not None and event.get("ChangeType") in DETAIL_CHANGES
                and event.get("ExternalUserID") and _self_built(event, config)):
            self._add_details(draft, event, config, ctx.http, ctx)
        return [draft]

    # ------------------------------------------------------------- server API
    def api(self, config: WeComConfig, http: httpx.Client) -> WeComAPI:
        """The app's API client; its access_token is cached per corp, secret and base URL."""
        secret = config.contact_secret.get_secret_value() if config.contact_secret else ""
        key = (config.corp_id, secret, config.api_base_url)
        with self._lock:
            api = self._apis.get(key)
            if api is None or api.http is not http:
                api = self._apis[key] = WeComAPI(http, config.corp_id, secret, config.api_base_url)
            return api

    def _add_details(self, draft: EventDraft, event: dict[str, str], config: WeComConfig, http: httpx.Client,
                     ctx: ParseContext) -> None:
        """The contact's details, from WeCom. A transient failure (RetryableError) is raised: the request is
        processed again later, so the contact is not left unlinked. So is a refused configuration (a wrong secret,
        an untrusted IP): the request fails, kept for `crmhub replay` once the source is fixed (a stored event cannot
        be given its details later). Any other refusal is logged and named on the event, stored without them."""
        try:
            detail = self.api(config, http).get_contact(event["ExternalUserID"], event.get("UserID"))
        except WeComAPIError as exc:
            if exc.configuration:
                raise WeComAPIError(
                    f"{exc.message}. The source's contact_secret or its app's settings are refused: fix them, then "
                    f"`crmhub replay --source {ctx.source_id} --status failed`", details=exc.details) from exc
            ctx.log.warning("wecom contact details for source %s not fetched: %s", ctx.source_name, exc.message)
            draft.properties["details_error"] = exc.message
            return
        if detail is None:
            draft.properties["details_error"] = "WeCom has no relation with this contact any more (84061)"
            return
        apply_details(draft, detail, event.get("UserID"), link_remark_mobiles=config.link_remark_mobiles)
        _keep_mobiles_of_one_contact(draft, event["ExternalUserID"], ctx.state)


def _keep_mobiles_of_one_contact(draft: EventDraft, external_userid: str, state: KeyedState) -> None:
    """A noted phone links only the first contact it was noted on. Employees type remark_mobiles, and one number on
    several contacts (the employee's own, the shop's mobile) is not their customer's: as a strong identifier it
    merged those WeChat users, each with its own external_userid and unionid, into one customer (up to the per-type
    limit). The number stays on the event as `remark_mobiles_not_linked`. Weak lines (a company's switchboard on all
    its people) never merge anybody, so they stay. Each phone identity here came from `remark_mobiles`: the
    callback carries none."""
    kept: list[Identity] = []
    refused: list[str] = []
    for ident in draft.identities:
        number = normalize_identity(ident.type, ident.value).value if ident.type == "phone" else None
        if number is None or is_shared_line(number) or phone_kind(number) == "fixed_line":
            kept.append(ident)
            continue
        key = f"remark_mobile:{number}"
        first = state.get(key)
        if first is None:
            state.set(key, external_userid)
        if first in (None, external_userid):
            kept.append(ident)
        else:
            refused.append(ident.value)
    draft.identities = kept
    if refused:
        draft.properties["remark_mobiles_not_linked"] = refused
