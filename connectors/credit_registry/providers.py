"""Provider clients: Tianyancha (`Authorization: <token>`) and Qichacha (`Token` = upper(md5(key+timespan+secret))).

Each returns the provider's raw result object for a USCC, or raises a `CreditRegistryError`
subclass naming the provider's own error code. platforms.md §8 marks several details UNCONFIRMED
(penalty endpoints, some Qichacha field names); they are noted where used.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import httpx

from hub.connector import header_safe
from hub.errors import HubError, RetryableError
from hub.outbound import failure
from hub.retry import raise_if_throttled

if TYPE_CHECKING:
    from .connector import CreditRegistryConfig

TIANYANCHA_URL = "http://open.api.tianyancha.com"
TIANYANCHA_BASEINFO = "/services/open/ic/baseinfoV2/2.0"
QICHACHA_URL = "https://api.qichacha.com"
QICHACHA_BASEINFO = "/ECIV4/GetBasicDetailsByName"
TIANYANCHA_NOT_FOUND = {300000}
TIANYANCHA_AUTH = {300002, 300003, 300009, 300011}  # 账号失效/过期/信息有误/IP 无权限 (UNCONFIRMED codes)
QICHACHA_NOT_FOUND = {"201", "404"}
QICHACHA_AUTH = {"101", "102", "401"}


class CreditRegistryError(HubError):
    """A registry lookup failed; `provider_code` is the provider's own error code."""

    status_code = 502
    code = "credit_registry_error"

    def __init__(self, message: str, *, provider: str, provider_code: str | None = None) -> None:
        super().__init__(message, details={"provider": provider, "provider_code": provider_code})
        self.provider = provider
        self.provider_code = provider_code


class RegistryAuthError(CreditRegistryError):
    code = "credit_registry_auth_failed"


class CompanyNotFound(CreditRegistryError):
    status_code = 404
    code = "company_not_found"


class CompanyMismatch(CreditRegistryError):
    """The registry answered with another company's record: its profile must not land on this account."""

    code = "company_mismatch"


def _same_company(provider: str, uscc: str, answered: Any) -> None:
    """Refuse a record whose credit code names another company (a keyword search can match loosely)."""
    if not isinstance(answered, str) or not answered.strip():
        return  # not every answer carries the code (platforms.md §8): nothing to compare
    if answered.strip().upper() != uscc:
        raise CompanyMismatch(f"{provider} answered for {answered.strip()[:40]}, not for {uscc}", provider=provider)


def _get(http: httpx.Client, provider: str, url: str, **kwargs: Any) -> Any:
    try:
        response = http.get(url, **kwargs)
    except httpx.HTTPError as exc:
        raise RetryableError(f"{provider} unreachable: {failure(exc)}") from exc
    if response.status_code in (401, 403):
        raise RegistryAuthError(f"{provider} refused the credentials (HTTP {response.status_code})",
                                provider=provider, provider_code=str(response.status_code))
    raise_if_throttled(response, provider)
    try:
        data = response.json()
    except ValueError as exc:
        raise CreditRegistryError(f"{provider} did not answer JSON (HTTP {response.status_code})",
                                  provider=provider) from exc
    if not isinstance(data, dict):
        raise CreditRegistryError(f"{provider} answered a JSON {type(data).__name__}, not an object "
                                  f"(HTTP {response.status_code})", provider=provider)
    return data


def tianyancha(config: CreditRegistryConfig, uscc: str, http: httpx.Client) -> dict[str, Any]:
    token = config.token.get_secret_value() if config.token else ""
    if not header_safe(token):
        raise RegistryAuthError("tianyancha token is not printable ASCII, so no header can carry it: set it again "
                                "(crmhub sources update <source id> --config '{\"token\": \"<token>\"}')",
                                provider="tianyancha")
    url = (config.base_url or TIANYANCHA_URL).rstrip("/") + TIANYANCHA_BASEINFO
    data = _get(http, "tianyancha", url, params={"keyword": uscc}, headers={"Authorization": token})
    code = data.get("error_code")
    if code not in (0, "0"):
        reason = str(data.get("reason") or "no reason given")
        kind = (CompanyNotFound if _int(code) in TIANYANCHA_NOT_FOUND
                else RegistryAuthError if _int(code) in TIANYANCHA_AUTH else CreditRegistryError)
        raise kind(f"tianyancha error {code}: {reason}", provider="tianyancha", provider_code=str(code))
    result = data.get("result")
    if not isinstance(result, dict):
        raise CompanyNotFound(f"tianyancha has no company {uscc}", provider="tianyancha")
    _same_company("tianyancha", uscc, result.get("creditCode"))
    return result


def qichacha_token(app_key: str, timespan: str, secret_key: str) -> str:
    return hashlib.md5((app_key + timespan + secret_key).encode()).hexdigest().upper()  # noqa: S324 (their scheme)


def qichacha(config: CreditRegistryConfig, uscc: str, http: httpx.Client, now: float | None = None) -> dict[str, Any]:
    timespan = str(int(time.time() if now is None else now))
    secret = config.secret_key.get_secret_value() if config.secret_key else ""
    headers = {"Token": qichacha_token(config.app_key or "", timespan, secret), "Timespan": timespan}
    url = (config.base_url or QICHACHA_URL).rstrip("/") + QICHACHA_BASEINFO
    data = _get(http, "qichacha", url, params={"key": config.app_key, "keyword": uscc}, headers=headers)
    status = str(data.get("Status"))
    if status != "200":
        message = str(data.get("Message") or "no message")
        kind = (CompanyNotFound if status in QICHACHA_NOT_FOUND
                else RegistryAuthError if status in QICHACHA_AUTH else CreditRegistryError)
        raise kind(f"qichacha status {status}: {message}", provider="qichacha", provider_code=status)
    result = data.get("Result")
    if not isinstance(result, dict):
        raise CompanyNotFound(f"qichacha has no company {uscc}", provider="qichacha")
    _same_company("qichacha", uscc, result.get("CreditCode"))
    return result


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
