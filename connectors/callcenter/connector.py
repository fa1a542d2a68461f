"""CallcenterConnector (vendor `tccc`): Tencent Cloud Contact Center data push, Basic auth, DescribeTelCdr reconcile."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from hub import Connector, EventDraft, InboundRequest, ParseContext, Reply
from hub.connector import PULLED_METHOD, basic_credentials, header_safe
from hub.errors import HubError, PayloadError, QuarantineError, VerificationError

from .mapping import cdr_to_draft, own_lines, record_to_draft, recording_entry
from .payloads import TcccCdr, TcccRecord, action_of, read_object, text_id
from .reconcile import MAX_AGE_S, pull_page

PUSH_UUID_HEADER = "x-tccc-push-uuid"
PULLED_MARKER = "x-crmhub-pulled"
Role = Literal["customer", "agent"]


class CallcenterConfig(BaseModel):
    vendor: Literal["tccc"] = Field("tccc", description="call-centre vendor; only Tencent Cloud Contact Center")
    username: str = Field(min_length=1, description="Basic-auth user name configured in TCCC 数据推送")
    password: SecretStr = Field(min_length=8, description="Basic-auth password configured in TCCC 数据推送")
    own_numbers: list[str] = Field(default_factory=list, description="the company's own lines (400 numbers …)")
    channel_roles: dict[Literal["inbound", "outbound"], list[Role]] | None = Field(
        None, description="recording channel 0/1 roles per direction; default: channel 0 is the calling party")
    secret_id: str | None = Field(None, description="Tencent Cloud SecretId for the DescribeTelCdr reconcile")
    secret_key: SecretStr | None = Field(None, description="Tencent Cloud SecretKey for the reconcile")
    sdk_app_id: int | None = Field(None, description="TCCC SdkAppId (application id) for the reconcile")
    region: str = "ap-guangzhou"
    endpoint: str | None = Field(None, description="host[:port] override for the CCC API (tests, private endpoints)")
    protocol: Literal["https", "http"] = "https"
    reconcile_interval_s: float = Field(86400.0, ge=60, description="seconds between reconciles (nightly)")
    # No upper bound: a stored config is validated again on every use, and a source saved with 180 days would
    # stop working. The reconcile asks for at most MAX_AGE_S back (reconcile.pull_page) and says so.
    reconcile_lookback_s: float = Field(2 * 86400.0, ge=3600,
                                        description="how far back the first reconcile looks (DescribeTelCdr keeps "
                                                    f"180 days: more is clamped to {MAX_AGE_S // 86400} days)")
    reconcile_lag_s: float = Field(3600.0, ge=0, description="leave the last hour for the next run")

    @field_validator("secret_id")
    @classmethod
    def _header_safe(cls, secret_id: str | None, info: ValidationInfo) -> str | None:
        """The SecretId goes out in the Authorization header: refuse what no header carries now, not at the first
        reconcile. A source stored before this check keeps loading (its reconcile fails naming the field)."""
        if secret_id and not (info.context and info.context.get("stored")) and not header_safe(secret_id):
            raise ValueError("printable ASCII only (it is sent in the Authorization header): paste the SecretId "
                             "as issued (AKID…)")
        return secret_id

    def reconcile_enabled(self) -> bool:
        return bool(self.secret_id and self.secret_key and self.sdk_app_id)


class CallcenterConnector(Connector):
    name = "callcenter"
    title = "Call centre (Tencent Cloud Contact Center CDR and recording push)"
    config_model = CallcenterConfig

    # ------------------------------------------------------------- request path
    def verify(self, request: InboundRequest, config: CallcenterConfig) -> None:
        user, password = basic_credentials(request)
        ok_user = hmac.compare_digest(user.encode(), config.username.encode())
        ok_pass = hmac.compare_digest(password.encode(), config.password.get_secret_value().encode())
        if not (ok_user and ok_pass):
            raise VerificationError("wrong Basic-auth user name or password", code="bad_credentials")

    def dedup_key(self, request: InboundRequest, config: CallcenterConfig) -> str:
        """`cdr:<SessionId>` / `record:<RecordId>` (shared with the reconcile); else the push UUID.

        A push of an action the hub does not read (TCCC's voicemail push, once enabled in its console) is stored and
        quarantined by `parse` (`unknown_action`, contract §3: verified but not normalisable). It was a 400, which
        TCCC retried and then dropped: the voicemails were lost, where `crmhub replay` can now take them once read.
        """
        data = read_object(request.body)
        try:
            action: str | None = action_of(request.query)
        except PayloadError:
            action = None
        ident = text_id(data, "SessionId" if action == "cdr" else "RecordId") if action else None
        if ident:
            return f"{action}:{ident}"
        push_uuid = (request.header(PUSH_UUID_HEADER) or "").strip()
        return f"push:{push_uuid}" if push_uuid else "sha256:" + hashlib.sha256(request.body).hexdigest()

    def ack(self, request: InboundRequest, config: CallcenterConfig, *, accepted: int, duplicates: int) -> Reply:
        return Reply(200, {"ErrCode": 0, "ErrMsg": "ok"})

    def error_reply(self, request: InboundRequest | None, error: HubError) -> Reply:
        """TCCC reads ErrCode/ErrMsg; the hub's own error object rides along for people reading logs."""
        return Reply(error.status_code, {"ErrCode": error.status_code, "ErrMsg": error.message, **error.to_body()})

    # ------------------------------------------------------------- pipeline
    def parse(self, request: InboundRequest, config: CallcenterConfig, ctx: ParseContext) -> list[EventDraft]:
        try:
            action = action_of(request.query)
            data = read_object(request.body)
            payload: TcccCdr | TcccRecord = (TcccCdr if action == "cdr" else TcccRecord).model_validate(data)
        except PayloadError as exc:
            raise QuarantineError(exc.code, exc.message) from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            raise QuarantineError(f"invalid_tccc_{action}", f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from exc
        own = own_lines(config.own_numbers)
        roles = {k: list(v) for k, v in config.channel_roles.items()} if config.channel_roles else None
        key = f"call:{payload.SessionId}"
        call = ctx.state.get(key) or {}
        if isinstance(payload, TcccCdr):
            draft = cdr_to_draft(payload, own=own, channel_roles=roles, recordings=call.get("recordings", []),
                                 received_at=ctx.received_at)
            props = draft.properties
            call.update(cdr=True, direction=props["direction"], customer_number=props["customer_number"],
                        channel_roles=props["channel_roles"], recording_url=props["recording_url"])
        else:
            draft = record_to_draft(payload, own=own, call=call if call.get("cdr") else None,
                                    received_at=ctx.received_at)
            recordings = [r for r in call.get("recordings", []) if r.get("record_id") != payload.RecordId]
            call["recordings"] = [*recordings, recording_entry(payload)]
        ctx.state.set(key, call)
        return [draft]

    # ------------------------------------------------------------- reconcile (driven by hub.pull)
    def pull_interval_s(self, config: CallcenterConfig) -> float | None:
        return config.reconcile_interval_s if config.reconcile_enabled() else None

    def pull(self, config: CallcenterConfig, http: httpx.Client, cursor: Any) -> tuple[list[dict[str, Any]], Any]:
        """One DescribeTelCdr page (the SDK does its own TC3-signed HTTP; `http` is unused)."""
        return pull_page(config, cursor)

    def pulled_request(self, item: dict[str, Any]) -> tuple[bytes, str, dict[str, Any]]:
        body = json.dumps(item, ensure_ascii=False, sort_keys=True).encode()
        session = text_id(item, "SessionId")
        key = f"cdr:{session}" if session else "sha256:" + hashlib.sha256(body).hexdigest()
        record = {"method": PULLED_METHOD, "headers": {PULLED_MARKER: "DescribeTelCdr"},
                  "query": {"action": "cdr", "version": "1"}, "path": ""}
        return body, key, record
