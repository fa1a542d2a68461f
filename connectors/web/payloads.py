"""Reading Segment HTTP Tracking API bodies (private to this connector)."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from typing import Any

from hub.errors import PayloadError, UnreadableBody

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_DECOMPRESSED_BYTES = 4 * 1024 * 1024
CALLS = ("identify", "track", "page", "screen", "group", "alias")
# analytics.js (analytics-next) posts each call to its first letter (`/v1/t`) and batches to `/v1/b`.
SHORT_CALLS = {"i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias", "b": "batch"}


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    if (content_encoding or "").lower().strip() != "gzip":
        return body
    try:
        data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, MAX_DECOMPRESSED_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise UnreadableBody(f"body is not valid gzip: {exc}", code="invalid_gzip") from exc
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise UnreadableBody("decompressed body is too large", code="batch_too_large")
    return data


def load_doc(raw: bytes) -> Any:
    """The (decoded) body as JSON; UnreadableBody (HTTP 400) when it is not."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableBody(f"body is not valid JSON: {exc}", code="invalid_json") from exc


def read_messages(raw: bytes, doc: Any, call: str) -> list[Any]:
    """The request's messages from its body `raw`, parsed as `doc` (each still untrusted). Raises PayloadError
    (HTTP 400) as Segment does."""
    if not isinstance(doc, dict):
        raise PayloadError("body must be a JSON object", code="invalid_body")
    if call == "batch":
        if len(raw) > MAX_BATCH_BYTES:
            raise UnreadableBody(f"batch of {len(raw)} bytes exceeds {MAX_BATCH_BYTES}", code="batch_too_large")
        batch = doc.get("batch")
        if not isinstance(batch, list):
            raise PayloadError("batch must be a list of messages", code="invalid_batch")
        context = doc.get("context") if isinstance(doc.get("context"), dict) else None
        messages = []
        for item in batch:
            # A batch no larger than one message's limit cannot hold an oversized message.
            size = _size(item) if len(raw) > MAX_EVENT_BYTES else 0
            if size > MAX_EVENT_BYTES:
                raise UnreadableBody(f"a message of {size} bytes exceeds {MAX_EVENT_BYTES}", code="message_too_large")
            if context and isinstance(item, dict):
                own = item.get("context")  # a message's own non-object context is the message's problem: kept as is
                item = {**item, "context": {**context, **own} if isinstance(own, dict) else own or context}
            messages.append(item)
        return messages
    if len(raw) > MAX_EVENT_BYTES:
        raise UnreadableBody(f"message of {len(raw)} bytes exceeds {MAX_EVENT_BYTES}", code="message_too_large")
    return [{**doc, "type": doc.get("type") or call}]


def _size(item: Any) -> int:
    """A message's size as UTF-8 JSON. surrogatepass: a lone surrogate (`"\\ud800"`) has no UTF-8 form, and
    encoding it failed the request with a 500."""
    return len(json.dumps(item, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))


def message_id(message: Any) -> str:
    """Segment's messageId, or a digest of the message when a sender omits it."""
    if isinstance(message, dict):
        mid = message.get("messageId")
        if isinstance(mid, str | int) and str(mid).strip():
            return str(mid).strip()[:250]
    digest = hashlib.sha256(json.dumps(message, sort_keys=True, default=str).encode()).hexdigest()
    return "sha256:" + digest


def body_write_key(doc: Any) -> str | None:
    """The `writeKey` a browser or mobile SDK puts in the body: top level, or the one every batch item carries.

    None when absent or ambiguous, or when the body is not a JSON object (verification then answers 401).
    """
    if not isinstance(doc, dict):
        return None
    key = doc.get("writeKey")
    if isinstance(key, str) and key:
        return key
    batch = doc.get("batch")
    if isinstance(batch, list) and batch:
        keys = {item.get("writeKey") if isinstance(item, dict) else None for item in batch}
        if len(keys) == 1 and isinstance(only := next(iter(keys)), str) and only:
            return only
    return None
