"""WeCom server API for one self-built app: `gettoken`, then `externalcontact/get` (platforms.md §6.2).

Why here and not in enrichment/: the callback carries only ids, and what the detail call returns (unionid, the
phones the employee noted) is identity, which must be on the event before it is resolved. The token is cached per
process; WeCom hands out the same token while it is valid, so several workers fetching it do not end each other's
(unlike Douyin's). A token WeCom stops accepting early (40014, 42001) is fetched again once.

Error codes are WeCom's global list (developer.work.weixin.qq.com/document/path/90313): -1, 45009 and 45033 ask to
try again later; the rest are permanent for this request (a wrong secret, an IP not on the app's trusted list, no
客户联系 permission, a contact the employee no longer has).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from hub.errors import HubError, RetryableError
from hub.outbound import failure
from hub.retry import raise_if_throttled

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
TOKEN_PATH = "/cgi-bin/gettoken"
CONTACT_PATH = "/cgi-bin/externalcontact/get"
TIMEOUT_S = 5.0
LEEWAY_S = 300  # a token is used until this close to its end (see _kept_for)
MAX_PAGES = 20  # follow_user pages (500 employees each) read while looking for the event's employee
# No further page is asked for once reading one contact has taken this long: the fetch runs inside the processing of
# the callback, and 20 slow pages (5 s each) held the in-process ingest lane, every source's, for 100 s.
PAGING_BUDGET_S = 15.0
# After WeCom could not be reached, answered 5xx/429 or said busy/rate-limited (TRY_AGAIN, which it sends with HTTP
# 200), calls fail at once for this long: a backlog of contact events retried while WeCom is away costs one timeout
# (or one refused call) per pause, not one per event and retry.
PAUSE_S = 30.0
TOKEN_REJECTED = frozenset({40014, 42001})
TRY_AGAIN = frozenset({-1, 45009, 45033})
NO_RELATION = 84061  # 不存在外部联系人的关系: the contact was removed before the hub asked
# Answers about the source's configuration, the same for every contact until an admin changes it: an invalid secret or
# corp id, no secret, the app has no 客户联系 permission, the hub's IP is not on the app's trusted list.
CONFIGURATION = frozenset({40001, 40013, 41004, 48002, 60020})
SECRET_PARAMS = frozenset({"corpsecret", "access_token"})  # the query parameters no log line may show


class _RedactSecretParams(logging.Filter):
    """httpx logs every request's URL at INFO (`crmhub -v serve`, `crmhub worker`), and WeCom takes the secret and
    the token in the query: their values are replaced before any handler formats the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) if isinstance(arg, httpx.URL) else arg for arg in record.args)
        return True


def _redacted(url: httpx.URL) -> httpx.URL:
    if not SECRET_PARAMS & set(url.params.keys()):
        return url
    return url.copy_with(params=[(k, "redacted" if k in SECRET_PARAMS else v) for k, v in url.params.multi_items()])


logging.getLogger("httpx").addFilter(_RedactSecretParams())


class WeComAPIError(HubError):
    """WeCom answered with a business error (wrong secret 40001, untrusted IP 60020, no permission 48002 …)."""

    status_code = 502
    code = "wecom_api_error"

    @property
    def configuration(self) -> bool:
        """WeCom refused the source's configuration, not this contact: every call fails alike until it is fixed."""
        return _errcode(self) in CONFIGURATION


class WeComAPI:
    """The app's API client: caches its access_token, refreshes it 5 minutes before its end."""

    def __init__(self, http: httpx.Client, corp_id: str, secret: str, base_url: str = DEFAULT_BASE_URL) -> None:
        self.http = http
        self.corp_id = corp_id
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (token, monotonic time it stops being used)
        self._paused_until = 0.0

    def access_token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._token[1]:
                doc = self._get(TOKEN_PATH, {"corpid": self.corp_id, "corpsecret": self._secret}, what="gettoken")
                token, expires_in = doc.get("access_token"), doc.get("expires_in")
                if not isinstance(token, str) or not token:
                    raise WeComAPIError("gettoken answered without access_token")
                lifetime = expires_in if isinstance(expires_in, int) and expires_in > 0 else 7200
                self._token = (token, time.monotonic() + _kept_for(lifetime))
            return self._token[0]

    def drop_token(self, rejected: str) -> None:
        """Forget the cached token if it is still `rejected` (another thread may have fetched a new one)."""
        with self._lock:
            if self._token is not None and self._token[0] == rejected:
                self._token = None

    def get_contact(self, external_userid: str, employee: str | None = None) -> dict[str, Any] | None:
        """`externalcontact/get`: the contact and its `follow_user` entries, or None when WeCom says the corp has no
        relation with it any more (84061). Pages through `follow_user` until `employee`'s entry is read."""
        params: dict[str, str] = {"external_userid": external_userid}
        doc = self._with_token(params)
        if doc is None:
            return None
        started = time.monotonic()
        follow = _entries(doc)
        pages = 1
        while (doc.get("next_cursor") and pages < MAX_PAGES and time.monotonic() - started < PAGING_BUDGET_S
               and not any(f.get("userid") == employee for f in follow)):
            more = self._with_token({**params, "cursor": str(doc["next_cursor"])})
            if more is None:
                break
            follow.extend(_entries(more))
            doc, pages = more, pages + 1
        contact = doc.get("external_contact")
        return {"external_contact": contact if isinstance(contact, dict) else {}, "follow_user": follow}

    def _with_token(self, params: dict[str, str]) -> dict[str, Any] | None:
        token = self.access_token()
        try:
            return self._contact_page(params, token)
        except WeComAPIError as exc:
            if _errcode(exc) not in TOKEN_REJECTED:
                raise
            self.drop_token(token)
            return self._contact_page(params, self.access_token())

    def _contact_page(self, params: dict[str, str], token: str) -> dict[str, Any] | None:
        try:
            return self._get(CONTACT_PATH, {**params, "access_token": token}, what="externalcontact/get")
        except WeComAPIError as exc:
            if _errcode(exc) == NO_RELATION:
                return None
            raise

    def _get(self, path: str, params: dict[str, str], *, what: str) -> dict[str, Any]:
        wait = self._paused_until - time.monotonic()
        if wait > 0:
            raise RetryableError(f"WeCom {what} not called: the API failed less than {PAUSE_S:.0f} s ago",
                                 retry_after=wait)
        try:
            resp = self.http.get(self.base_url + path, params=params, timeout=TIMEOUT_S)
        except httpx.HTTPError as exc:  # the message names the URL: never print it, it holds the secret or token
            self._paused_until = time.monotonic() + PAUSE_S
            raise RetryableError(f"WeCom {what} unreachable: {failure(exc)}") from exc
        try:
            raise_if_throttled(resp, f"WeCom {what}")
        except RetryableError:
            self._paused_until = time.monotonic() + PAUSE_S
            raise
        try:
            doc = resp.json()
        except ValueError as exc:
            raise WeComAPIError(f"WeCom {what} answered HTTP {resp.status_code} without JSON") from exc
        if not isinstance(doc, dict):
            raise WeComAPIError(f"WeCom {what} answered a non-object")
        errcode = doc.get("errcode", 0)
        if errcode not in (0, None):
            message = f"WeCom {what} error {errcode}: {doc.get('errmsg') or ''}".strip()
            if errcode in TRY_AGAIN:
                self._paused_until = time.monotonic() + PAUSE_S
                raise RetryableError(message)
            raise WeComAPIError(message, details={"errcode": errcode, "errmsg": doc.get("errmsg")})
        return doc


def _entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A page's `follow_user` entries; anything but a list of objects reads as none (a TypeError failed the request)."""
    follow = doc.get("follow_user")
    return [f for f in follow if isinstance(f, dict)] if isinstance(follow, list) else []


def _kept_for(lifetime: float) -> float:
    """How long a token is used: to LEEWAY_S before its end, or half its life when less is left. WeCom hands out
    the same token while it is valid, with the time it has left: fetching again inside the leeway only gets it
    back, so a token kept for 0 s cost a gettoken before every call for its last 5 minutes (WeCom throttles
    frequent gettoken calls)."""
    return lifetime - LEEWAY_S if lifetime > 2 * LEEWAY_S else lifetime / 2


def _errcode(exc: HubError) -> Any:
    return exc.details.get("errcode") if isinstance(exc.details, dict) else None
