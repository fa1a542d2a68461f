"""Pure TCCC CDR / recording → EventDraft mapping.

The customer is the outside party: the caller of an inbound call, the callee of an outbound one.
The company's own lines (the 400 number, configured `own_numbers`) never become an identity, and a
masked number (`ProtectedCaller`/`ProtectedCallee`) is kept in properties only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from hub import EventDraft, Identity, QualityIssue
from hub.identifiers import normalize_phone
from hub.values import parse_platform_time

from .payloads import TcccCdr, TcccRecord

# platforms.md §5 (TelCdrInfo.EndStatus); other codes map to "other", the vendor's text is kept.
END_STATUS = {1: "ok", 102: "ivr_give_up", 103: "waiting_give_up", 104: "ringing_give_up", 105: "no_seat_online",
              106: "not_work_time"}
OUTBOUND_CALL_TYPES = {1, 5}
INBOUND_CALL_TYPES = {2, 3}
INTERNAL_CALL_TYPE = 6
DEFAULT_CHANNEL_ROLES = {"inbound": ["customer", "agent"], "outbound": ["agent", "customer"]}


def direction_of(cdr: TcccCdr) -> str:
    """`inbound`, `outbound` or `internal`, from Direction (0/1) or, failing that, CallType."""
    if cdr.CallType == INTERNAL_CALL_TYPE:
        return "internal"
    if cdr.Direction in (0, 1):
        return "inbound" if cdr.Direction == 0 else "outbound"
    if cdr.CallType in OUTBOUND_CALL_TYPES:
        return "outbound"
    return "inbound"


def own_lines(numbers: Iterable[str]) -> set[str]:
    return {n.value for n in (normalize_phone(x) for x in numbers) if n.value}


def _time(value: int | None) -> datetime | None:
    return parse_platform_time(value) if value else None


def _iso(value: int | None) -> str | None:
    when = _time(value)
    return when.isoformat() if when else None


def customer_party(cdr: TcccCdr, direction: str) -> tuple[str | None, str | None]:
    """(visible number, masked value) of the outside party."""
    if direction == "outbound":
        return cdr.Callee or None, cdr.ProtectedCallee or None
    if direction == "inbound":
        return cdr.Caller or None, cdr.ProtectedCaller or None
    return None, None


def phone_identity(number: str | None, own: set[str]) -> list[Identity]:
    """The outside number as a phone identity, unless it is one of the company's own lines."""
    if not number:
        return []
    normalised = normalize_phone(number)
    if normalised.value and normalised.value in own:
        return []
    return [Identity(type="phone", value=number)]


def agent_of(seat: str | dict[str, Any] | None) -> str | None:
    """The agent's login (mail), else user id, staff number or name, from SeatUser (text or SeatUserInfo)."""
    if isinstance(seat, dict):
        for key in ("Mail", "UserId", "StaffNumber", "Name"):
            if isinstance(seat.get(key), str | int) and str(seat[key]).strip():
                return str(seat[key])
        return None
    return seat or None


def pick_recording(cdr: TcccCdr, recordings: list[dict[str, Any]]) -> str | None:
    """The CDR's own RecordURL, else the customer leg's recording, else any leg's."""
    if cdr.RecordURL:
        return cdr.RecordURL
    for participant in ("customer", "agent"):
        for rec in recordings:
            if rec.get("participant") == participant and rec.get("recording_url"):
                return str(rec["recording_url"])
    return None


def cdr_to_draft(cdr: TcccCdr, *, own: set[str], channel_roles: dict[str, list[str]] | None,
                 recordings: list[dict[str, Any]], received_at: datetime) -> EventDraft:
    direction = direction_of(cdr)
    number, masked = customer_party(cdr, direction)
    issues: list[QualityIssue] = []
    occurred = _time(cdr.StartTimestamp) or _time(cdr.Time) or _time(cdr.RingTimestamp)
    if occurred is None:
        issues.append(QualityIssue(field="StartTimestamp", code="invalid_time",
                                   detail="no call time; received time used"))
        occurred = received_at
    roles = (channel_roles or DEFAULT_CHANNEL_ROLES).get(direction) or DEFAULT_CHANNEL_ROLES.get(direction)
    properties: dict[str, Any] = {
        "vendor": "tccc", "session_id": cdr.SessionId, "direction": direction, "call_type": cdr.CallType,
        "caller": cdr.Caller or cdr.ProtectedCaller, "callee": cdr.Callee or cdr.ProtectedCallee,
        "customer_number": number, "customer_number_masked": masked if not number else None,
        "masked": bool(masked and not number),
        "started_at": _iso(cdr.StartTimestamp or cdr.Time), "ringing_at": _iso(cdr.RingTimestamp),
        "answered_at": _iso(cdr.AcceptTimestamp), "ended_at": _iso(cdr.EndedTimestamp),
        "duration_s": cdr.Duration, "ivr_duration_s": cdr.IVRDuration, "answered": bool(cdr.AcceptTimestamp),
        "end_status": END_STATUS.get(cdr.EndStatus or 0, "other") if cdr.EndStatus is not None else None,
        "end_status_code": cdr.EndStatus, "end_status_text": cdr.EndStatusString,
        "agent": agent_of(cdr.SeatUser),
        "agent_detail": snake_keys(cdr.SeatUser) if isinstance(cdr.SeatUser, dict) else None,
        "skill_group": cdr.SkillGroup, "hung_up_side": cdr.HungUpSide,
        "caller_location": cdr.CallerLocation, "recording_url": pick_recording(cdr, recordings),
        "custom_recording_url": cdr.CustomRecordURL, "recordings": recordings,
        "channel_roles": roles if direction != "internal" else None,
    }
    return EventDraft(type="call.completed", source_event_id=f"cdr:{cdr.SessionId}", occurred_at=occurred,
                      identities=phone_identity(number, own), properties=properties, quality={"issues": issues})


def recording_entry(record: TcccRecord) -> dict[str, Any]:
    user = record.EndpointUser or ""
    participant = "agent" if "@" in user else ("customer" if normalize_phone(user).value else "unknown")
    return {"record_id": record.RecordId, "participant": participant, "endpoint_user": record.EndpointUser,
            "recording_url": record.RecordURL, "custom_recording_url": record.CustomRecordURL,
            "recorded_at": _iso(record.Timestamp)}


def record_to_draft(record: TcccRecord, *, own: set[str], call: dict[str, Any] | None,
                    received_at: datetime) -> EventDraft:
    """`call.recording_available`, linked to its call by `session_id` / `call_source_event_id`."""
    entry = recording_entry(record)
    identities = phone_identity(record.EndpointUser, own) if entry["participant"] == "customer" else []
    if not identities and call and call.get("customer_number"):
        identities = phone_identity(call["customer_number"], own)
    occurred = _time(record.Timestamp) or received_at
    properties = {**entry, "vendor": "tccc", "session_id": record.SessionId,
                  "call_source_event_id": f"cdr:{record.SessionId}", "call_seen": call is not None,
                  "direction": (call or {}).get("direction"),
                  "channel_roles": (call or {}).get("channel_roles")}
    return EventDraft(type="call.recording_available", source_event_id=f"record:{record.RecordId}",
                      occurred_at=occurred, identities=identities, properties=properties)


_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_keys(detail: dict[str, Any]) -> dict[str, Any]:
    """TCCC's SeatUser (`StaffNumber`, `Mail`, `UserId`) with the contract's snake_case names (`staff_number`)."""
    return {_WORD_START.sub("_", str(key)).lower(): value for key, value in detail.items()}
