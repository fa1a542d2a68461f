"""Errors the hub raises, each carrying the HTTP status and snake_case code the API answers with.

HubError
├── NotFound (404)
├── Conflict (409)             valid, but collides with what exists (a taken name, a disabled endpoint)
├── InvalidRequest (422)       config or body fails validation
├── Unauthorized (401)         admin token missing or wrong
├── VerificationError (401)    a platform's signature/credentials do not verify
├── PayloadError (400)         an inbound body that cannot be read at all
│   └── BodyTimeout (408)      a body that stopped arriving midway
├── PayloadTooLarge (413)
├── QuarantineError            verified but cannot be normalised: kept with its reason, answered 2xx
├── RetryableError             a transient failure (deadlock, throttling, 5xx upstream): retry the step
└── ShuttingDown (503)         the hub is stopping and stores nothing more: the sender retries later
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class HubError(Exception):
    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class NotFound(HubError):
    status_code = 404
    code = "not_found"


class Conflict(HubError):
    status_code = 409
    code = "conflict"


class InvalidRequest(HubError):
    status_code = 422
    code = "validation_error"


class Unauthorized(HubError):
    status_code = 401
    code = "unauthorized"


class VerificationError(HubError):
    status_code = 401
    code = "verification_failed"


class PayloadError(HubError):
    """A body the connector cannot read as a platform message.

    Raised while a request is answered, after its signature verified, it means "readable, but not a message
    I can normalise": the edge stores the request anyway and the pipeline quarantines it with this code, so
    the platform gets 2xx and stops retrying (contract §3). Only `UnreadableBody` is answered 400.
    """

    status_code = 400
    code = "bad_payload"


class UnreadableBody(PayloadError):
    """400, nothing stored: the bytes are not the format at all (not JSON, XML or gzip), or the request breaks
    the platform's protocol (an unknown endpoint or method, a size or count limit)."""

    code = "unreadable_body"


class BodyTimeout(UnreadableBody):
    """408, nothing stored: the sender stopped sending mid-body (or announced more bytes than it sent)."""

    status_code = 408
    code = "body_timeout"


class PayloadTooLarge(HubError):
    status_code = 413
    code = "payload_too_large"


class QuarantineError(HubError):
    """Raised by `Connector.parse()` for a verified payload that cannot become events."""

    status_code = 200
    code = "quarantined"

    def __init__(self, reason: str, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message or reason, code="quarantined", details=details)
        self.reason = reason


class RetryableError(HubError):
    """`retry_after`: the seconds the upstream asked us to wait (its `Retry-After`), when it said; the task
    runners wait at least that long before the retry (hub.retry)."""

    status_code = 503
    code = "retryable"

    def __init__(
        self, message: str, *, code: str | None = None, details: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after


class ShuttingDown(HubError):
    """Refused because the hub is stopping: answered at once, so the sender retries elsewhere or later, rather
    than waiting on a writer that will never answer."""

    status_code = 503
    code = "shutting_down"


class SecretUnreadable(HubError):
    """A stored secret does not open with this hub's key: the key or the data dir is not the one it was sealed in."""

    status_code = 500
    code = "secret_unreadable"


def validation_message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message; a validator's own without the "Value error, " pydantic puts before it."""
    message = str(error["msg"])
    return message.removeprefix("Value error, ") if error.get("type") == "value_error" else message
