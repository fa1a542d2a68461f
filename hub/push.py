"""The push format the hub itself defines for POS and ERP middleware (contract §9).

`POST /hooks/{source_id}`, JSON (one event or an array), header
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, dedup on `event_id`.
Kept in the kernel because several connectors speak it and connectors never import
each other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hub.connector import InboundRequest, ParseContext
from hub.errors import UnreadableBody, VerificationError

SIGNATURE_HEADER = "x-hub-signature-256"
MAX_EVENTS = 500


def sign(body: bytes, secret: str) -> str:
    """The header value a sender puts on `body` (used by demos and tests)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(request: InboundRequest, secret: str) -> None:
    """Check `X-Hub-Signature-256` against the raw body, in constant time."""
    header = (request.header(SIGNATURE_HEADER) or "").strip()
    if not header:
        raise VerificationError("X-Hub-Signature-256 header is missing", code="missing_signature")
    scheme, _, given = header.partition("=")
    if scheme.lower() != "sha256" or not given:
        raise VerificationError("X-Hub-Signature-256 must be sha256=<hex>", code="malformed_signature")
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest raises TypeError on a non-ASCII str (a header byte > 0x7f), which was a 500.
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise VerificationError("X-Hub-Signature-256 does not match the body", code="bad_signature")


def read_items(body: bytes, max_events: int = MAX_EVENTS) -> list[Any]:
    """The body as a list of raw events; UnreadableBody (400) if it is not JSON or holds 0 or too many.

    An item that is not an object stays in the list: `parse()` quarantines it alone, and the rest of the
    batch goes on (one bad row of a till's export must not hold back the others).
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableBody(f"body is not valid JSON: {exc}", code="invalid_json") from exc
    items = data if isinstance(data, list) else [data]
    if not items or len(items) > max_events:
        raise UnreadableBody(f"send 1 to {max_events} events", code="bad_event_count")
    return items


def as_object(item: Any, ctx: ParseContext, reason: str) -> dict[str, Any] | None:
    """`item` if it is a JSON object; otherwise quarantined alone with `reason`, and None."""
    if isinstance(item, dict):
        return item
    ctx.quarantine(reason, f"event: a JSON object is needed, not {type(item).__name__}", item)
    return None


def items_of(request: InboundRequest) -> list[Any]:
    """`read_items` once per request: dedup_key, event_count and event_keys share one JSON parse."""
    items: list[Any] | None = request.memo.get("push_items")
    if items is None:
        items = request.memo["push_items"] = read_items(request.body)
    return items


def event_id_of(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    value = item.get("event_id")
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return None
    return str(value).strip()


def dedup_key(body: bytes, items: list[Any] | None = None) -> str:
    """`event:<id>` for one event, `events:<sha256 of sorted ids>` for an array; a body hash without ids."""
    ids = [event_id_of(item) for item in (read_items(body) if items is None else items)]
    if any(i is None for i in ids):
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if len(ids) == 1:
        return f"event:{ids[0]}"
    # surrogatepass: an id sent as `"a\ud800"` has no UTF-8 form, and encoding it failed the request with a 500.
    joined = "\n".join(sorted(str(i) for i in ids))
    return "events:" + hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()


def event_keys(items: list[Any]) -> list[tuple[str, str]] | None:
    """(source_event_id, `event:<id>`) per item — see `Connector.event_keys`; None if an item has no usable id.

    The source_event_id is `event_id` as the payload models read it (an integer as text, a string
    as is), while the dedup key strips it, exactly as `dedup_key` does for a lone event.
    """
    keys = []
    for item in items:
        lone = event_id_of(item)
        if lone is None:
            return None  # such an item is quarantined by parse(); the request answers as a whole
        keys.append((str(item["event_id"]), f"event:{lone}"))
    return keys
