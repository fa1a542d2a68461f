"""Douyin OpenAPI calls with an app-level client_token (platforms.md §1.6-§1.7).

Why a subclass of authlib's protocol client: Douyin's `client_credential` grant takes a JSON body with
`client_key`/`client_secret` (not RFC 6749 form fields) and wraps the token in `data` with its own error
codes. authlib still does the token bookkeeping (`expires_at`, `is_expired`); we only swap the request
(`_fetch_token`) and unwrap the answer in an `access_token_response` compliance hook. The httpx client
is injected, so tests point it at a local fake and production at https://open.douyin.com.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
from authlib.oauth2.client import OAuth2Client  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749 import OAuth2Error  # type: ignore[import-untyped]

from hub.errors import HubError, RetryableError
from hub.retry import raise_if_throttled

DEFAULT_BASE_URL = "https://open.douyin.com"
TOKEN_PATH = "/oauth/client_token/"
RELATED_ID_PATH = "/api/douyin/v1/auth/get_related_id/"
GRANT_TYPE = "client_credential"
TIMEOUT_S = 5.0
# Douyin's status-code table (open-douyin "状态码排查"): the token is invalid or expired → fetch a new one;
# "请求重试" and rate limiting → try again later. Codes other than these stay permanent errors.
TOKEN_REJECTED = frozenset({28001003, 28001008})
TRY_AGAIN = frozenset({28001005, 28001006, 28003018})


class DouyinAPIError(HubError):
    """Douyin answered with a business error (wrong key/secret 10013, missing scope …)."""

    status_code = 502
    code = "douyin_api_error"


def unwrap_token_response(response: httpx.Response) -> httpx.Response:
    """Compliance hook: `{"data": {"access_token", "expires_in", "error_code"}}` → an RFC 6749 token body."""
    try:
        doc = response.json()
    except ValueError:
        return response
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        return response
    code = data.get("error_code", 0)
    if code not in (0, "0", None):
        # authlib refuses non-ASCII error descriptions; Douyin's are Chinese, so they travel in `douyin_description`.
        body: dict[str, Any] = {"error": str(code), "douyin_description": data.get("description") or doc.get("message")}
    else:
        body = {"access_token": data.get("access_token"), "expires_in": data.get("expires_in"), "token_type": "Bearer"}
    return httpx.Response(response.status_code, json=body, request=response.request)


def _description(response: httpx.Response) -> str | None:
    try:
        doc = response.json()
    except ValueError:
        return None
    return doc.get("douyin_description") if isinstance(doc, dict) else None


class DouyinOAuth2Client(OAuth2Client):  # type: ignore[misc]
    """authlib's OAuth 2 client speaking Douyin's client_token dialect over an httpx.Client session."""

    def __init__(self, session: httpx.Client, client_key: str, client_secret: str, token_url: str) -> None:
        super().__init__(session, client_id=client_key, client_secret=client_secret,
                         token_endpoint=token_url, grant_type=GRANT_TYPE, leeway=300)
        self.register_compliance_hook("access_token_response", unwrap_token_response)
        self.last_error_description: str | None = None

    def _fetch_token(self, url: str, body: str = "", headers: Any = None, auth: Any = None, method: str = "POST",
                     **kwargs: Any) -> Any:
        payload = {"client_key": self.client_id, "client_secret": self.client_secret, "grant_type": GRANT_TYPE}
        resp = self.session.post(url, json=payload, timeout=TIMEOUT_S)
        for hook in self.compliance_hook["access_token_response"]:
            resp = hook(resp)
        self.last_error_description = _description(resp)
        return self.parse_response_token(resp)

    def __del__(self) -> None:  # authlib deletes `session`; the injected client belongs to the caller
        pass


class DouyinOpenAPI:
    """Douyin OpenAPI for one app: caches its client_token and refreshes it 5 minutes before expiry."""

    def __init__(self, http: httpx.Client, client_key: str, client_secret: str,
                 base_url: str = DEFAULT_BASE_URL) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.oauth = DouyinOAuth2Client(http, client_key, client_secret, self.base_url + TOKEN_PATH)
        self._lock = threading.Lock()

    def client_token(self) -> str:
        """A valid client_token (`clt.…`), fetched when missing or about to expire."""
        with self._lock:
            token = self.oauth.token
            if not token or token.is_expired(leeway=self.oauth.leeway):
                token = self._fetch()
            return str(token["access_token"])

    def _fetch(self) -> Any:
        try:
            token = self.oauth.fetch_token()
        except OAuth2Error as exc:
            description = self.oauth.last_error_description
            raise DouyinAPIError(f"client_token refused: error {exc.error} {description or ''}".strip(),
                                 details={"error_code": exc.error, "description": description}) from exc
        except httpx.HTTPError as exc:
            raise RetryableError(f"Douyin token endpoint unreachable: {exc}") from exc
        except ValueError as exc:
            raise RetryableError(f"Douyin token endpoint answered garbage: {exc}") from exc
        if not token.get("access_token"):
            raise DouyinAPIError("client_token response has no access_token")
        return token

    def get_allied_id(self, open_id: str) -> str:
        """OpenID → AlliedID (same across all apps of one verified company), scope `open.account.data`."""
        doc = self._post(RELATED_ID_PATH, {"open_id": open_id})
        allied = (doc.get("data") or {}).get("allied_id") if isinstance(doc.get("data"), dict) else None
        if not allied:
            raise DouyinAPIError("get_related_id answered without allied_id", details=doc)
        return str(allied)

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with the cached client_token; one that Douyin no longer accepts is dropped and fetched anew once.

        Tokens are cached per process and a newer fetch elsewhere (another worker, another tool using the same
        app) ends an older token's life early, so "token invalid" is an everyday answer, not a failure.
        """
        token = self.client_token()
        try:
            return self._post_once(path, payload, token)
        except DouyinAPIError as exc:
            if _err_no(exc.details) not in TOKEN_REJECTED:
                raise
            self.drop_token(token)
            return self._post_once(path, payload, self.client_token())

    def drop_token(self, rejected: str | None = None) -> None:
        """Forget the cached token; with `rejected`, only if it is still that one (a thread sharing this client
        may have fetched a new one meanwhile, and dropping that would only end another token early)."""
        with self._lock:
            current = self.oauth.token
            if rejected is None or (current and current.get("access_token") == rejected):
                self.oauth.token = None

    def _post_once(self, path: str, payload: dict[str, Any], token: str) -> dict[str, Any]:
        try:
            resp = self.http.post(self.base_url + path, json=payload, timeout=TIMEOUT_S,
                                  headers={"access-token": token})
        except httpx.HTTPError as exc:
            raise RetryableError(f"Douyin API unreachable: {exc}") from exc
        raise_if_throttled(resp, "Douyin API")
        try:
            doc = resp.json()
        except ValueError as exc:
            raise DouyinAPIError(f"Douyin API answered HTTP {resp.status_code} without JSON") from exc
        if not isinstance(doc, dict):
            raise DouyinAPIError("Douyin API answered a non-object")
        err_no = doc.get("err_no", (doc.get("extra") or {}).get("error_code", 0) if isinstance(doc.get("extra"), dict)
                         else 0)
        if err_no not in (0, "0", None):
            if _err_no({"err_no": err_no}) in TRY_AGAIN:
                raise RetryableError(f"Douyin API asks to retry later: {err_no} {doc.get('err_msg') or ''}".strip())
            raise DouyinAPIError(f"Douyin API error {err_no}: {doc.get('err_msg') or ''}".strip(),
                                 details={"err_no": err_no, "log_id": doc.get("log_id")})
        return doc


def _err_no(details: Any) -> int | None:
    try:
        return int(details.get("err_no")) if isinstance(details, dict) else None
    except (TypeError, ValueError):
        return None
