"""Errors raised while summarising a call.

Hierarchy::

    SummaryError                 base of everything this package raises on purpose
     └── ExtractionError         an extractor could not produce a valid CallSummary
                                 (e.g. the LLM answered something that is not the JSON asked for)

Transport failures of the Tencent Cloud SDK are not wrapped: callers decide about retries from the
SDK's own `TencentCloudSDKException.code` (throttling, auth), which a wrapper would only hide.
"""

from __future__ import annotations


class SummaryError(Exception):
    """Base class for call-summary errors."""


class ExtractionError(SummaryError):
    """An extractor's output could not be turned into a `CallSummary`.

    `raw` holds the offending output (truncated) so operators can see what the model said.
    """

    def __init__(self, message: str, *, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw[:2000]
