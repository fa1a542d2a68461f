"""WeCom XML: the encrypted outer envelope and the decrypted event (platforms.md §6.1-§6.2), private.

Why the DOCTYPE check: the body is parsed before its signature can be checked (the signed value is
inside it), so entity declarations are refused outright rather than trusting the XML parser.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET

from hub.errors import PayloadError, UnreadableBody

MAX_XML_BYTES = 256 * 1024
KEY_MAX = 300
_DECLARED_ENCODING = re.compile(r"""\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def parse_xml(raw: bytes) -> dict[str, str]:
    """`<xml><A>x</A>…</xml>` → {"A": "x"} (first level only; CDATA unwrapped)."""
    if len(raw) > MAX_XML_BYTES:
        raise UnreadableBody("XML body is too large", code="body_too_large")
    try:  # WeCom sends UTF-8; another encoding (UTF-16) would hide a DOCTYPE from the check below (helper-31)
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableBody("XML body is not UTF-8", code="invalid_xml") from exc
    declared = _DECLARED_ENCODING.match(text)
    if "\x00" in text or (declared and declared.group(1).lower().replace("-", "") != "utf8"):
        raise UnreadableBody("XML body must be UTF-8 (no other declared encoding)", code="invalid_xml")
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise UnreadableBody("XML with a DOCTYPE or ENTITY is refused", code="invalid_xml")
    try:
        root = ET.fromstring(raw)
    except (ET.ParseError, ValueError) as exc:
        raise UnreadableBody(f"body is not valid XML: {exc}", code="invalid_xml") from exc
    return {child.tag: (child.text or "").strip() for child in root}


def encrypted_field(raw: bytes) -> str:
    encrypted = parse_xml(raw).get("Encrypt", "")
    if not encrypted:
        raise PayloadError("the XML has no <Encrypt> element", code="missing_encrypt")
    return encrypted


def event_name(event: dict[str, str]) -> str:
    """`Event` (self-built app) or `InfoType` (third-party / ISV envelope)."""
    return event.get("Event") or event.get("InfoType") or event.get("MsgType") or "unknown"


def corp_of(event: dict[str, str]) -> str:
    return event.get("AuthCorpId") or event.get("ToUserName") or ""


def created_of(event: dict[str, str]) -> str:
    return event.get("CreateTime") or event.get("TimeStamp") or ""


def event_key(event: dict[str, str]) -> str:
    """Stable id for one WeCom event: corp, event, ChangeType, who, when (WeCom's events carry no message id).

    Then whichever of ChatId (a customer group), FromUserName (the sender of a message; `sys` for events)
    and MsgId are present: without them two group changes, or two employees' messages, in the same second
    would share one key and the second be dropped as a duplicate (platforms.md §6.1 dedupes on
    FromUserName + CreateTime). Appended only when present, so the keys of other events are unchanged.

    A key over KEY_MAX characters (it is also the event's id, VARCHAR(300)) becomes a digest of the whole key. It
    was cut instead, so two events differing only past the cut (their CreateTime, behind a long ExternalUserID)
    had one key: the second was answered 200 and dropped as a duplicate.
    """
    parts = [corp_of(event), event_name(event), event.get("ChangeType", ""),
             event.get("ExternalUserID", "") or event.get("Id", ""), event.get("UserID", ""), created_of(event)]
    if not any(parts[3:]) and not event.get("MsgId"):
        return "sha256:" + hashlib.sha256(repr(sorted(event.items())).encode()).hexdigest()
    sender = event.get("FromUserName", "")
    parts += [f"{name}={value}" for name, value in (("chat", event.get("ChatId", "")),
                                                     ("from", "" if sender == "sys" else sender),
                                                     ("msg", event.get("MsgId", ""))) if value]
    key = "|".join(parts)
    return key if len(key) <= KEY_MAX else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
