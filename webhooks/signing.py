"""Standard Webhooks signing, wrapped so malformed input never escapes as ValueError/binascii.Error.

The `standardwebhooks` library decodes secrets and signatures with bare base64 and
`str.split`, so a bad secret or header raises whatever the stdlib raises. Every entry
point here turns that into `SigningError` (a 401-class `VerificationError`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError, WebhookVerificationError

from hub.errors import VerificationError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 16


class SigningError(VerificationError):
    code = "bad_signature_input"


def generate_secret() -> str:
    """A fresh `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _webhook(secret: str) -> Webhook:
    if not secret.startswith(SECRET_PREFIX):
        raise SigningError("an endpoint secret must start with whsec_")
    try:
        raw = secret[len(SECRET_PREFIX):]
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        if len(key) < MIN_SECRET_BYTES:
            raise SigningError(f"webhook secret too short: {len(key)} bytes, need at least {MIN_SECRET_BYTES}")
        return Webhook(secret)
    except SigningError:
        raise
    except (ValueError, binascii.Error, TypeError, EmptyWebhookSecretError, RuntimeError) as exc:
        raise SigningError(f"malformed webhook secret: {exc.__class__.__name__}") from exc


class Signer:
    """An endpoint's secrets parsed once, so each delivery pays only for the HMAC (delivery caches these)."""

    def __init__(self, secrets_: Iterable[str]) -> None:
        self._hooks = [_webhook(s) for s in secrets_]

    def sign(self, msg_id: str, timestamp: datetime, body: str) -> str:
        """`webhook-signature` value: one `v1,<base64>` per secret, space-separated (rotation sends two)."""
        if timestamp.tzinfo is None:
            raise SigningError("signing timestamp must be timezone-aware")
        # The library stamps the datetime as UTC without converting, so convert first.
        ts = timestamp.astimezone(UTC)
        try:
            return " ".join(hook.sign(msg_id=msg_id, timestamp=ts, data=body) for hook in self._hooks)
        except (ValueError, binascii.Error, TypeError, UnicodeError) as exc:
            raise SigningError(f"cannot sign: {exc.__class__.__name__}") from exc


def sign(secrets_: Iterable[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """`webhook-signature` value for `secrets_` (see `Signer.sign`)."""
    return Signer(secrets_).sign(msg_id, timestamp, body)


def verify(secret: str, body: bytes | str, headers: Mapping[str, str]) -> Any:
    """Verify a signed request (receivers, tests). Any malformed input → SigningError, never ValueError."""
    try:
        return _webhook(secret).verify(body, dict(headers))
    except SigningError:
        raise
    except WebhookVerificationError as exc:
        raise SigningError(str(exc), code="bad_signature") from exc
    except (ValueError, binascii.Error, TypeError, UnicodeError, IndexError) as exc:
        raise SigningError(f"malformed signature headers: {exc.__class__.__name__}", code="bad_signature") from exc
