"""Nightly reconcile: page through DescribeTelCdr (tencentcloud-sdk-python, ccc 2020-02-10) to catch missed pushes.

Pulled CDRs are stored by the kernel (hub.pull) under the same dedup key as a pushed CDR
(`cdr:<SessionId>`), so a session that was pushed is not stored twice. The cursor is
`{"since": <unix s>}` between runs and `{"since", "start", "end", "page"}` inside one; the
window ends `reconcile_lag_s` before now so calls still in progress are picked up next time.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hub.connector import header_safe
from hub.errors import HubError, RetryableError

if TYPE_CHECKING:
    from .connector import CallcenterConfig

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # DescribeTelCdr's maximum
MAX_SPAN_S = 89 * 86400  # the API allows at most 90 days per query
MAX_AGE_S = 179 * 86400  # and a start at most 180 days back (a day's margin for clock skew)
NETWORK_ERRORS = ("ClientNetworkError", "ServerNetworkError", "RequestLimitExceeded", "InternalError")


class CallcenterPullError(HubError):
    """DescribeTelCdr refused the request (bad credentials, wrong SdkAppId): retrying will not help."""

    status_code = 502
    code = "tccc_pull_failed"


def make_client(config: CallcenterConfig) -> Any:
    from tencentcloud.ccc.v20200210 import ccc_client
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    secret_key = config.secret_key.get_secret_value() if config.secret_key else ""
    http_profile = HttpProfile(protocol=config.protocol, endpoint=config.endpoint or None, reqTimeout=10)
    return ccc_client.CccClient(credential.Credential(config.secret_id, secret_key), config.region,
                                ClientProfile(httpProfile=http_profile))


def describe_page(config: CallcenterConfig, start: int, end: int, page: int) -> tuple[list[dict[str, Any]], int]:
    from tencentcloud.ccc.v20200210 import models
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    if not header_safe(config.secret_id or ""):
        raise CallcenterPullError("secret_id is not printable ASCII, so no header can carry it: set it again "
                                  "(crmhub sources update <source id> --config "
                                  "'{\"secret_id\": \"<SecretId>\", \"secret_key\": \"<SecretKey>\"}')",
                                  details={"code": "invalid_secret_id"})
    request = models.DescribeTelCdrRequest()
    request.from_json_string(json.dumps({"StartTimeStamp": start, "EndTimeStamp": end, "SdkAppId": config.sdk_app_id,
                                         "PageSize": PAGE_SIZE, "PageNumber": page}))
    try:
        response = make_client(config).DescribeTelCdr(request)
    except TencentCloudSDKException as exc:
        code = exc.get_code() or ""
        if code.startswith(NETWORK_ERRORS):
            raise RetryableError(f"DescribeTelCdr: {code}: {exc.get_message()}") from exc
        message = f"DescribeTelCdr failed: {code}: {exc.get_message()}"
        raise CallcenterPullError(message, details={"code": code}) from exc
    records = response.TelCdrs or response.TelCdrList or []
    return [json.loads(record.to_json_string()) for record in records], int(response.TotalCount or 0)


def pull_page(config: CallcenterConfig, cursor: Any, now: float | None = None) -> tuple[list[dict[str, Any]], Any]:
    now_s = int(time.time() if now is None else now)
    cursor = dict(cursor or {"since": now_s - int(config.reconcile_lookback_s)})
    start = int(cursor.get("start") or cursor["since"])
    if start < now_s - MAX_AGE_S:
        # Asking for more would be refused on every run, and the cursor would never move again.
        oldest = now_s - MAX_AGE_S
        log.warning("callcenter reconcile was %.0f days behind; DescribeTelCdr reaches back 180 days, so CDRs "
                    "from %s to %s cannot be reconciled", (now_s - start) / 86400, _iso(start), _iso(oldest))
        cursor, start = {"since": oldest}, oldest
    end = int(cursor.get("end") or min(now_s - int(config.reconcile_lag_s), start + MAX_SPAN_S))
    if end <= start:
        return [], {"since": start}
    page = int(cursor.get("page") or 0)
    items, total = describe_page(config, start, end, page)
    if items and (page + 1) * PAGE_SIZE < total:
        return items, {"since": start, "start": start, "end": end, "page": page + 1}
    return items, {"since": end}


def _iso(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat()
