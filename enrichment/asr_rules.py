"""CreateRecTask's documented parameter rules, for the two local stand-ins of Tencent ASR.

The demo's stand-in (enrichment/demo.py) and the tests' fake (tests/fakes/tencent_cloud.py) must refuse what
Tencent refuses, or a wrong request from the hub would pass both. The rules, from the SDK's
`CreateRecTaskRequest` docstrings (tencentcloud-sdk-python asr 2019-06-14, platforms.md §4.1): the four
required integers and strings, an `8k_`/`16k_` engine, two channels only on 8k engines, ResTextFormat 0–5,
SourceType 0 with `Url` or 1 with `Data` and `DataLen`, speaker diarization only on mono audio, and no fixed
speaker count on 16k engines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["rec_task_problem"]

_ENGINE = re.compile(r"(8k|16k)_[A-Za-z0-9_-]+")  # 16k_zh-PY too


def rec_task_problem(params: Mapping[str, Any]) -> tuple[str, str] | None:
    """(Tencent error code, message) for a CreateRecTask request Tencent would refuse, else None."""
    for name in ("EngineModelType", "ChannelNum", "ResTextFormat", "SourceType"):
        if name not in params:
            return "MissingParameter", f"the request is missing a required parameter `{name}`."
    engine = params["EngineModelType"]
    if not isinstance(engine, str) or not _ENGINE.fullmatch(engine):
        return "InvalidParameterValue", f"EngineModelType {engine!r} is not a known engine"
    for name in ("ChannelNum", "ResTextFormat", "SourceType"):
        if not isinstance(params[name], int) or isinstance(params[name], bool):
            return "InvalidParameter", f"{name} must be an integer"
    if params["ChannelNum"] not in (1, 2):
        return "InvalidParameterValue", "ChannelNum must be 1 or 2"
    if params["ChannelNum"] == 2 and not engine.startswith("8k_"):
        return "InvalidParameterValue", "ChannelNum=2 is only supported by 8k engines"
    if not 0 <= params["ResTextFormat"] <= 5:
        return "InvalidParameterValue", "ResTextFormat must be between 0 and 5"
    if params["SourceType"] not in (0, 1):
        return "InvalidParameterValue", "SourceType must be 0 (Url) or 1 (Data)"
    speakers = _speaker_problem(params, engine)
    if speakers is not None:
        return speakers
    if params["SourceType"] == 0 and not params.get("Url"):
        return "MissingParameter", "SourceType=0 requires `Url`."
    if params["SourceType"] == 1 and not (params.get("Data") and params.get("DataLen")):
        return "MissingParameter", "SourceType=1 requires `Data` and `DataLen`."
    return None


def _speaker_problem(params: Mapping[str, Any], engine: str) -> tuple[str, str] | None:
    """SpeakerDiarization 0, 1 or 3, and only on mono audio; SpeakerNumber 0 (automatic) or 1–10, and 0 on 16k."""
    diarization, number = params.get("SpeakerDiarization", 0), params.get("SpeakerNumber", 0)
    for name, value in (("SpeakerDiarization", diarization), ("SpeakerNumber", number)):
        if not isinstance(value, int) or isinstance(value, bool):
            return "InvalidParameter", f"{name} must be an integer"
    if diarization not in (0, 1, 3):
        return "InvalidParameterValue", "SpeakerDiarization must be 0, 1 or 3"
    if diarization and params["ChannelNum"] != 1:
        return "InvalidParameterValue", "SpeakerDiarization is only supported with ChannelNum=1"
    if not 0 <= number <= 10:
        return "InvalidParameterValue", "SpeakerNumber must be between 0 and 10"
    if number and engine.startswith("16k_"):
        return "InvalidParameterValue", "16k engines do not take a fixed SpeakerNumber; use 0"
    return None
