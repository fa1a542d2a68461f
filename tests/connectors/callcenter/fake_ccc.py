"""A local fake of ccc.tencentcloudapi.com's DescribeTelCdr (platforms.md §4.5), on the shared Tencent fake.

The shared fake (tests/fakes/tencent_cloud.py) checks what every Tencent Cloud API 3.0 call needs: the
TC3-HMAC-SHA256 signature, the credential scope and date, the 5-minute clock skew, X-TC-Action and
X-TC-Version. This module adds DescribeTelCdr's own rules, as the SDK's request model documents them
(tencentcloud-sdk-python ccc 2020-02-10, `DescribeTelCdrRequest`): SdkAppId, StartTimeStamp,
EndTimeStamp, PageSize and PageNumber are required integers; PageSize is at most 100; the start
reaches back at most 180 days and one query spans less than 90 days.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.fakes.tencent_cloud import SECRET_ID, SECRET_KEY, FakeApiError, FakeTencentCloud

__all__ = ["SECRET_ID", "SECRET_KEY", "FakeCcc"]

MAX_PAGE_SIZE = 100
MAX_AGE_S = 180 * 86400
MAX_SPAN_S = 90 * 86400
REQUIRED = ("SdkAppId", "StartTimeStamp", "EndTimeStamp", "PageSize", "PageNumber")


class FakeCcc:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.cdrs: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # the accepted DescribeTelCdr parameters, in order
        self.clock = clock
        self.cloud = FakeTencentCloud("ccc", clock=clock)
        self.cloud.handle("DescribeTelCdr", self._describe_tel_cdr)

    @property
    def endpoint(self) -> str:
        return self.cloud.endpoint

    def _describe_tel_cdr(self, params: dict[str, Any]) -> dict[str, Any]:
        for name in REQUIRED:
            if name not in params:
                raise FakeApiError("MissingParameter", f"the request is missing the required parameter `{name}`")
            if not isinstance(params[name], int) or isinstance(params[name], bool):
                raise FakeApiError("InvalidParameter", f"`{name}` must be an integer")
        start, end, size, page = (params[n] for n in ("StartTimeStamp", "EndTimeStamp", "PageSize", "PageNumber"))
        if not 0 < size <= MAX_PAGE_SIZE or page < 0:
            raise FakeApiError("InvalidParameterValue", f"PageSize must be 1..{MAX_PAGE_SIZE}, PageNumber >= 0")
        if start < self.clock() - MAX_AGE_S:
            raise FakeApiError("InvalidParameterValue", "StartTimeStamp reaches back at most 180 days")
        if not 0 <= end - start < MAX_SPAN_S:
            raise FakeApiError("InvalidParameterValue", "EndTimeStamp must follow StartTimeStamp by less than 90 days")
        self.requests.append(params)
        rows = [c for c in self.cdrs if start <= c["StartTimestamp"] < end]
        return {"TotalCount": len(rows), "TelCdrs": rows[page * size:(page + 1) * size]}

    @contextmanager
    def running(self) -> Iterator[FakeCcc]:
        with self.cloud:
            yield self
