"""Channel → agent/customer mapping (contract §10) and ASR result parsing."""

from __future__ import annotations

import pytest

from enrichment.transcript import channel_roles, normalise_direction, transcript_lines


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("inbound", "inbound"), ("OUTBOUND", "outbound"), (0, "inbound"), (1, "outbound"), ("呼入", "inbound"),
     ("out", "outbound"), (None, None), ("sideways", None)],
)
def test_direction_spellings(raw: object, expected: str | None) -> None:
    assert normalise_direction(raw) == expected


def test_channel_zero_is_the_calling_party() -> None:
    assert channel_roles("inbound") == {0: "customer", 1: "agent"}
    assert channel_roles("outbound") == {0: "agent", 1: "customer"}


def test_source_override_wins_in_both_shapes() -> None:
    assert channel_roles("inbound", ["agent", "customer"]) == {0: "agent", 1: "customer"}
    assert channel_roles("outbound", {"0": "customer", "1": "agent"}) == {0: "customer", 1: "agent"}
    assert channel_roles("outbound", {"0": "robot"}) == {0: "agent", 1: "customer"}  # invalid role ignored


def test_result_detail_is_mapped_and_ordered() -> None:
    data = {
        "ResultDetail": [
            {"FinalSentence": "我想了解一下Python课程。", "StartMs": 2300, "EndMs": 5200, "SpeakerId": 0},
            {"FinalSentence": "您好，这里是课程顾问。", "StartMs": 0, "EndMs": 2100, "SpeakerId": 1},
            {"FinalSentence": "  ", "StartMs": 5300, "EndMs": 5400, "SpeakerId": 1},
        ]
    }
    lines = transcript_lines(data, channel_roles("inbound"))
    assert lines == [
        {"speaker": "agent", "start_ms": 0, "end_ms": 2100, "text": "您好，这里是课程顾问。"},
        {"speaker": "customer", "start_ms": 2300, "end_ms": 5200, "text": "我想了解一下Python课程。"},
    ]


def test_stamped_result_text_is_the_fallback() -> None:
    data = {"ResultDetail": [], "Result": "[0:0.000,0:2.260,0]  您好，我是小王。\n[0:2.500,1:03.120,1]  预算两三万。\n"}
    lines = transcript_lines(data, channel_roles("outbound"))
    assert lines == [
        {"speaker": "agent", "start_ms": 0, "end_ms": 2260, "text": "您好，我是小王。"},
        {"speaker": "customer", "start_ms": 2500, "end_ms": 63120, "text": "预算两三万。"},
    ]
