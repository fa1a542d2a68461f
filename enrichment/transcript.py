"""ASR result → contract §5 transcript lines, with each channel mapped to agent or customer.

Contract §10: channel 0 (left) is the calling party, channel 1 the called party. So on an
inbound call channel 0 is the customer, on an outbound call channel 0 is the agent; a
callcenter source may override this with `channel_roles`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ROLES = ("agent", "customer")
_INBOUND = {"inbound", "in", "0", "incoming", "呼入", "callin"}
_OUTBOUND = {"outbound", "out", "1", "outgoing", "呼出", "callout"}
# "[0:0.000,0:2.260,0]  text" — start, end (m:s.mmm or h:m:s.mmm), speaker/channel id.
_RESULT_LINE = re.compile(r"^\[([\d:.]+),([\d:.]+)(?:,(\d+))?\]\s*(.*)$")


def normalise_direction(value: Any) -> str | None:
    """`inbound` / `outbound` from the many ways call centres spell it (TCCC: 0 inbound, 1 outbound)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in _INBOUND:
        return "inbound"
    if text in _OUTBOUND:
        return "outbound"
    return None


def channel_roles(direction: str | None, *overrides: Any) -> dict[int, str]:
    """SpeakerId → role. The first usable override wins: the call's own `channel_roles`
    (`["customer", "agent"]`), then the source config's (`{"inbound": [...], "outbound": [...]}`
    or `{"0": role, "1": role}`); otherwise contract §10's default for the direction.
    """
    for override in overrides:
        if isinstance(override, Mapping) and direction in override:
            override = override[direction]
        parsed = _parse_override(override)
        if parsed:
            return parsed
    if direction == "outbound":
        return {0: "agent", 1: "customer"}
    return {0: "customer", 1: "agent"}  # inbound, and the safer guess when unknown


def _parse_override(override: Any) -> dict[int, str]:
    items: list[tuple[Any, Any]]
    if isinstance(override, Mapping):
        items = list(override.items())
    elif isinstance(override, list | tuple):
        items = list(enumerate(override))
    else:
        return {}
    out: dict[int, str] = {}
    for key, role in items:
        try:
            channel = int(key)
        except (TypeError, ValueError):
            continue
        if role in ROLES:
            out[channel] = str(role)
    return out


def transcript_lines(data: Mapping[str, Any], roles: Mapping[int, str]) -> list[dict[str, Any]]:
    """Build `[{"speaker", "start_ms", "end_ms", "text"}]` from DescribeTaskStatus `Data`.

    `ResultDetail` (ResTextFormat ≥ 1) is preferred; the stamped `Result` text is the fallback.
    """
    detail = data.get("ResultDetail") or []
    lines = [_from_detail(item, roles) for item in detail if isinstance(item, Mapping)]
    if not lines:
        lines = [_from_result_line(row, roles) for row in str(data.get("Result") or "").splitlines()]
    out = [line for line in lines if line is not None and line["text"]]
    out.sort(key=lambda line: (line["start_ms"], line["end_ms"]))
    return out


def _role(speaker: Any, roles: Mapping[int, str]) -> str:
    try:
        channel = int(speaker)
    except (TypeError, ValueError):
        channel = 0
    return roles.get(channel, "customer" if channel % 2 == 0 else "agent")


def _from_detail(item: Mapping[str, Any], roles: Mapping[int, str]) -> dict[str, Any] | None:
    text = str(item.get("FinalSentence") or item.get("WrittenText") or "").strip()
    if not text:
        return None
    return {
        "speaker": _role(item.get("SpeakerId"), roles),
        "start_ms": int(item.get("StartMs") or 0),
        "end_ms": int(item.get("EndMs") or 0),
        "text": text,
    }


def _from_result_line(row: str, roles: Mapping[int, str]) -> dict[str, Any] | None:
    match = _RESULT_LINE.match(row.strip())
    if match is None:
        return None
    start, end, speaker, text = match.groups()
    return {
        "speaker": _role(speaker or 0, roles),
        "start_ms": _stamp_ms(start),
        "end_ms": _stamp_ms(end),
        "text": text.strip(),
    }


def _stamp_ms(stamp: str) -> int:
    seconds = 0.0
    for part in stamp.split(":"):
        seconds = seconds * 60 + float(part or 0)
    return int(round(seconds * 1000))
