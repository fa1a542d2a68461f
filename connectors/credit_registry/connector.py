"""CreditRegistryConnector: company lookups by USCC at Tianyancha or Qichacha, normalised to contract §6.

Pull-only: the registry pushes nothing, so every inbound request is refused (401). The connector
does not cache (it has no database); enrichment/ caches profiles and decides when to look up.
A lookup result can enter the pipeline as a stored request (hub.ingest.ingest_pulled with the
`x-crmhub-pulled: lookup` header), which parse() turns into `company.profile.updated`.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from hub import Connector, EventDraft, InboundRequest, ParseContext
from hub.connector import PULLED_METHOD, header_safe
from hub.errors import InvalidRequest, QuarantineError, VerificationError
from hub.identifiers import normalize_uscc
from hub.schemas import utcnow

from . import providers
from .mapping import from_qichacha, from_tianyancha, profile_event, today_in_china

PULLED_MARKER = "x-crmhub-pulled"


class CreditRegistryConfig(BaseModel):
    provider: Literal["tianyancha", "qichacha"] = Field(description="which registry API to call")
    token: SecretStr | None = Field(None, description="Tianyancha API token (sent as the Authorization header)")
    app_key: str | None = Field(None, description="Qichacha AppKey")
    secret_key: SecretStr | None = Field(None, description="Qichacha SecretKey")
    base_url: str | None = Field(None, description="API root override (tests, proxies)")
    cache_ttl_s: float | None = Field(None, ge=0, description="how long enrichment may reuse a profile, in "
                                      "seconds; unset: CRMHUB_REGISTRY_CACHE_TTL_S (30 days)")

    @field_validator("token")
    @classmethod
    def _header_safe(cls, token: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """The token goes out as a header, which holds printable ASCII only: refuse it here, not at the first lookup.

        A source stored before this check keeps loading (its lookups fail naming the token, `providers.tianyancha`).
        """
        if info.context and info.context.get("stored"):
            return token
        if not header_safe(token.get_secret_value() if token else ""):
            raise ValueError("printable ASCII only (it is sent as the Authorization header): paste the token as issued")
        return token

    @model_validator(mode="after")
    def _credentials(self) -> CreditRegistryConfig:
        """Each credential the provider needs and lacks is an error of its own key: contract §3's 422 names the
        field (`secret_key`), not the config as a whole."""
        needed = PROVIDER_CREDENTIALS[self.provider]
        missing = [key for key in needed if not _given(getattr(self, key))]
        if missing:
            rule = PydanticCustomError("missing", "{provider} needs {keys}",
                                       {"provider": self.provider, "keys": " and ".join(f"`{k}`" for k in needed)})
            raise ValidationError.from_exception_data(type(self).__name__, [
                InitErrorDetails(type=rule, loc=(key,), input=None) for key in missing])
        return self


PROVIDER_CREDENTIALS: dict[str, tuple[str, ...]] = {"tianyancha": ("token",), "qichacha": ("app_key", "secret_key")}


def _given(value: str | SecretStr | None) -> bool:
    return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)


class CreditRegistryConnector(Connector):
    name = "credit_registry"
    title = "Company credit registry (Tianyancha / Qichacha lookups by USCC)"
    config_model = CreditRegistryConfig

    def lookup(self, config: CreditRegistryConfig, uscc: str, http: httpx.Client,
               today: date | None = None) -> dict[str, Any]:
        """One paid lookup → `company.profile.updated` properties. Raises InvalidRequest for a bad USCC,
        CompanyNotFound / RegistryAuthError / CreditRegistryError for provider errors, RetryableError
        for transient ones."""
        code = normalize_uscc(uscc)
        if code.value is None:
            raise InvalidRequest(f"{uscc!r} is not a valid USCC", code="invalid_uscc")
        today = today or today_in_china()
        if config.provider == "tianyancha":
            return from_tianyancha(code.value, providers.tianyancha(config, code.value, http), today)
        return from_qichacha(code.value, providers.qichacha(config, code.value, http), today)

    def profile_event(self, uscc: str, props: dict[str, Any]) -> EventDraft:
        return profile_event(uscc, props)

    # ------------------------------------------------------------- no pushes
    def verify(self, request: InboundRequest, config: CreditRegistryConfig) -> None:
        raise VerificationError("the credit registry pushes nothing; this source only makes lookups",
                                code="push_not_supported")

    def parse(self, request: InboundRequest, config: CreditRegistryConfig, ctx: ParseContext) -> list[EventDraft]:
        """A stored lookup result (`{"uscc", …properties}`) → company.profile.updated."""
        if request.hub_marker(PULLED_MARKER) != "lookup":
            raise QuarantineError("push_not_supported", "the credit registry only stores lookup results")
        try:
            props = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise QuarantineError("invalid_json", f"lookup result is not JSON: {exc}") from exc
        uscc = normalize_uscc(props.get("uscc") or "") if isinstance(props, dict) else None
        if uscc is None or uscc.value is None:
            raise QuarantineError("invalid_uscc", "lookup result without a valid uscc")
        return [profile_event(uscc.value, props, occurred_at=ctx.received_at or utcnow())]

    def lookup_request(self, props: dict[str, Any]) -> tuple[bytes, str, dict[str, Any]]:
        """How enrichment/ can store a lookup through hub.ingest.ingest_pulled: (body, dedup key, request)."""
        body = json.dumps(props, ensure_ascii=False, sort_keys=True).encode()
        key = profile_event(str(props.get("uscc")), props).source_event_id
        return body, key, {"method": PULLED_METHOD, "headers": {PULLED_MARKER: "lookup"}, "query": {}, "path": ""}
