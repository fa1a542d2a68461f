"""Incremental order pull: `GET {base_url}/orders?updated_since=…&page=…&page_size=…` with OAuth2 client credentials.

Keyset paging, not offset paging: an order edited while we page moves to the end of the ERP's
`updated_at` order, which would shift every later row back by one and make an offset skip one.
So after every page the next request starts again at page 1 from the page's largest `updated_at`
(`updated_since` is inclusive; orders on that boundary are fetched again and dedupe on
(order_no, updated_at)). Only when a whole page shares one `updated_at` — no later time to move
to — does the next request go to the next page of that same `updated_since`. The last of those pages sends
the cursor back to page 1, a cursor this run already read, which is where the kernel stops; the next pull
reads the orders at `updated_since` again from the start, so an order deleted in the ERP (which shifts the
pages back) cannot make it skip one.

The cursor is opaque to the kernel, which stores it after every page:
`{"updated_since": <time>, "page": <n>}`.
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from authlib.integrations.base_client import OAuthError

with warnings.catch_warnings():  # authlib ≥1.7 nags to move to httpx2; this project standardises on httpx
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

from hub.errors import HubError, RetryableError
from hub.outbound import outbound_client_options
from hub.retry import raise_if_throttled
from hub.values import parse_platform_time

if TYPE_CHECKING:
    from .connector import ErpConfig


class ErpPullError(HubError):
    """The ERP API refused the pull for a reason retrying will not fix (bad credentials, bad URL)."""

    status_code = 502
    code = "erp_pull_failed"


class OrderPuller:
    """Holds one OAuth2 session per ERP (tokens are reused until they expire) and a request throttle."""

    def __init__(self) -> None:
        self._sessions: dict[str, OAuth2Client] = {}
        self._last_request: dict[str, float] = {}
        self._lock = threading.Lock()

    def page(self, config: ErpConfig, http: httpx.Client, cursor: Any) -> tuple[list[dict[str, Any]], Any]:
        cursor = dict(cursor or {"updated_since": config.pull_since, "page": 1})
        since, page = cursor["updated_since"], int(cursor.get("page") or 1)
        params = {"updated_since": since, "page": page, "page_size": config.page_size}
        response = self._get(config, http, f"{str(config.base_url).rstrip('/')}/orders", params)
        items = _items(response)
        latest = _latest([since, *(item.get("updated_at") for item in items)])
        if latest is not None and _moves_forward(latest, since):
            return items, {"updated_since": latest, "page": 1}
        if len(items) >= config.page_size:  # a full page all at `since`: only an offset gets past it
            return items, {"updated_since": since, "page": page + 1}
        return items, {"updated_since": since, "page": 1}

    def _get(self, config: ErpConfig, http: httpx.Client, url: str, params: dict[str, Any]) -> httpx.Response:
        key = self._key(config)
        self._throttle(key, config.rate_limit_per_s)
        session = self._session(key, config, http)
        try:
            response = session.get(url, params=params)
        except OAuthError as exc:
            self._sessions.pop(key, None)
            raise ErpPullError(f"ERP token request failed: {exc}") from exc
        if response.status_code == 401:  # token revoked early: start a new session next time
            self._sessions.pop(key, None)
            raise RetryableError("ERP API answered 401; the token will be renewed")
        raise_if_throttled(response, "ERP API")
        if response.status_code >= 400:
            raise ErpPullError(f"ERP API answered {response.status_code}: {response.text[:200]}")
        return response

    def _key(self, config: ErpConfig) -> str:
        secret = config.client_secret.get_secret_value() if config.client_secret else ""
        raw = f"{config.token_url}\n{config.base_url}\n{config.client_id}\n{secret}\n{config.scope or ''}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def _session(self, key: str, config: ErpConfig, http: httpx.Client) -> OAuth2Client:
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = OAuth2Client(
                    client_id=config.client_id,
                    client_secret=config.client_secret.get_secret_value() if config.client_secret else None,
                    token_endpoint=config.token_url, grant_type="client_credentials", scope=config.scope,
                    **outbound_client_options(http.timeout),
                )
                self._sessions[key] = session
        if not session.token:
            try:
                session.fetch_token()
            except OAuthError as exc:
                self._sessions.pop(key, None)
                raise ErpPullError(f"ERP token request failed: {exc}") from exc
            except httpx.HTTPError:
                self._sessions.pop(key, None)
                raise
        return session

    def _throttle(self, key: str, per_second: float) -> None:
        with self._lock:
            wait = self._last_request.get(key, 0.0) + 1.0 / per_second - time.monotonic()
            self._last_request[key] = time.monotonic() + max(wait, 0.0)
        if wait > 0:
            time.sleep(wait)


def _items(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        data = response.json()
    except ValueError as exc:
        raise ErpPullError("ERP API did not answer JSON") from exc
    items = data.get("items", data.get("data")) if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ErpPullError("ERP API answer has no list of orders under `items`")
    return items


def _moves_forward(latest: Any, since: Any) -> bool:
    """True when `latest` is a later instant than `since` (a since the ERP cannot parse counts as earliest)."""
    after, before = parse_platform_time(latest), parse_platform_time(since)
    return after is not None and (before is None or after > before)


def _latest(values: list[Any]) -> Any:
    best: tuple[datetime, Any] | None = None
    for value in values:
        when = parse_platform_time(value)
        if when is not None and (best is None or when > best[0]):
            best = (when, value)
    return None if best is None else best[1]
