"""TCCC push payloads (platforms.md §5): the CDR (`?action=cdr`) and the per-participant recording (`?action=record`).

Field names are TCCC's own (PascalCase, matching the SDK's `TelCdrInfo`); unknown fields are kept.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from hub.errors import PayloadError, UnreadableBody

ACTIONS = ("cdr", "record")
# An id is part of a stored key (`cdr:<SessionId>`, the `call:<SessionId>` state, both VARCHAR(300)); an empty one
# would make every such push the same event. Outside these bounds the push is quarantined with the reason.
PushId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]


class _Tccc(BaseModel):
    # ids and phone numbers sometimes arrive as JSON numbers
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


class TcccCdr(_Tccc):
    """One call session's CDR (one record per whole session; `ServeParticipants` holds the legs)."""

    SessionId: PushId
    SdkAppId: int | None = None
    Caller: str | None = None
    Callee: str | None = None
    ProtectedCaller: str | None = None
    ProtectedCallee: str | None = None
    Direction: int | None = None  # 0 inbound, 1 outbound
    CallType: int | None = None  # 1 outbound, 2 inbound, 3 audio inbound, 5 predictive, 6 internal
    Time: int | None = None
    StartTimestamp: int | None = None
    RingTimestamp: int | None = None
    AcceptTimestamp: int | None = None
    EndedTimestamp: int | None = None
    QueuedTimestamp: int | None = None
    Duration: int | None = None
    IVRDuration: int | None = None
    EndStatus: int | None = None
    EndStatusString: str | None = None
    SeatUser: str | dict[str, Any] | None = None  # SeatUserInfo {Name, Mail, StaffNumber, UserId, …}
    SkillGroup: str | None = None
    HungUpSide: str | None = None
    CallerLocation: str | None = None
    RecordURL: str | None = None
    CustomRecordURL: str | None = None
    RecordId: str | None = None


class TcccRecord(_Tccc):
    """One participant's recording of a session; several per SessionId."""

    SessionId: PushId
    RecordId: PushId
    SdkAppId: int | None = None
    Timestamp: int | None = None
    EndpointUser: str | None = None  # a phone number for the customer's leg, an email for an agent's
    RecordURL: str | None = None
    CustomRecordURL: str | None = None


def action_of(query: Any) -> str:
    action = str(query.get("action") or "").lower()
    if action not in ACTIONS:
        raise UnreadableBody(f"unknown TCCC push action {action!r}; configure ?action=cdr or ?action=record",
                           code="unknown_action")
    return action


def read_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableBody(f"body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise PayloadError("a TCCC push body is one JSON object", code="invalid_event")
    return data


def text_id(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return None
    return str(value).strip()
