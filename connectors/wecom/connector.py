"""WeComConnector: msg_signature + AES callbacks (GET URL check, POST events), 200 with an empty body."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field, SecretStr, field_validator

from hub import Connector, EventDraft, InboundRequest, ParseContext, Reply
from hub.errors import PayloadError, QuarantineError, UnreadableBody, VerificationError

from .crypto import aes_key, check_signature, decrypt
from .mapping import event_to_draft
from .payloads import encrypted_field, event_key, parse_xml


class WeComConfig(BaseModel):
    corp_id: str = Field(min_length=1, max_length=64, description="企业ID (CorpID): the receiveid of a self-built app")
    token: SecretStr = Field(min_length=1, max_length=64, description="The callback Token (接收事件服务器)")
    encoding_aes_key: SecretStr = Field(description="The 43-character EncodingAESKey")
    suite_id: str | None = Field(default=None, description="Third-party app SuiteID, also accepted as receiveid")
    max_clock_skew_s: int = Field(default=300, ge=0, description="Refuse timestamps further off than this (0: off)")

    @field_validator("encoding_aes_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        aes_key(value.get_secret_value())
        return value

    def key(self) -> bytes:
        return aes_key(self.encoding_aes_key.get_secret_value())

    def receive_ids(self) -> set[str]:
        return {self.corp_id} | ({self.suite_id} if self.suite_id else set())


def _query(request: InboundRequest, name: str) -> str:
    value = request.query.get(name, "")
    if not value:
        raise VerificationError(f"query parameter {name} is missing", code="missing_signature")
    return value


class WeComConnector(Connector):
    name = "wecom"
    title = "WeCom customer contact (企业微信 客户联系) callbacks"
    config_model = WeComConfig

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
        return [event_to_draft(event, event_key(event), ctx.received_at)]
