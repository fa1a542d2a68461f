"""ASR request building, engine choice, failure codes and the submission token bucket (no server)."""

from __future__ import annotations

import pytest

from enrichment.asr import AUDIO_FAILURES, SubmitRequest, TokenBucket, audio_failure_code
from enrichment.jobs import engine_for


def test_two_channel_telephony_request() -> None:
    params = SubmitRequest(url="https://rec.example.invalid/a.wav", callback_url="http://h/hooks/asr/t").params()
    assert params == {"EngineModelType": "8k_zh", "ChannelNum": 2, "ResTextFormat": 2, "SourceType": 0,
                      "Url": "https://rec.example.invalid/a.wav", "CallbackUrl": "http://h/hooks/asr/t"}


def test_mono_telephony_turns_on_diarization_and_polling_omits_callback() -> None:
    params = SubmitRequest(url="u", callback_url=None, engine="8k_zh", channel_num=1).params()
    assert params["SpeakerDiarization"] == 1 and params["SpeakerNumber"] == 2 and "CallbackUrl" not in params


@pytest.mark.parametrize(
    ("props", "expected"),
    [({}, ("8k_zh", 2)), ({"recording_channels": 1}, ("8k_zh", 1)), ({"sample_rate": 16000}, ("16k_zh", 1)),
     ({"asr_engine": "8k_zh_large", "recording_channels": 2}, ("8k_zh_large", 2)),
     ({"asr_engine": "16k_zh_en", "recording_channels": 2}, ("16k_zh_en", 1))],
)
def test_engine_choice(props: dict[str, object], expected: tuple[str, int]) -> None:
    assert engine_for(props) == expected


@pytest.mark.parametrize("code", sorted(AUDIO_FAILURES))
def test_callback_failure_codes(code: int) -> None:
    assert audio_failure_code(code, None) == code


def test_failure_code_from_describe_text() -> None:
    assert audio_failure_code(None, "Failed to download audio file!") == 10007
    assert audio_failure_code(None, "error code 10002: audio too short") == 10002
    assert audio_failure_code(0, "quota exhausted") is None


def test_token_bucket_holds_twenty_per_second() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(rate=20, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(60)]
    assert waits[:20] == [0.0] * 20  # the burst allowance
    assert now[0] == pytest.approx(2.0, abs=1e-6)  # 40 more tokens at 20/s
    assert all(w == pytest.approx(0.05, abs=1e-6) for w in waits[20:])


def test_plugin_wiring_registers_enrich_tasks_and_the_sweep() -> None:
    import enrichment
    from hub.tasks import TASKS

    scheduled: list[tuple[str, float]] = []
    enrichment.register_schedules(schedule=lambda name, every: scheduled.append((name, every)))
    assert scheduled == [("enrichment.jobs.sweep", 30.0)]
    for name in ("enrichment.jobs.submit_job", "enrichment.jobs.poll_job", "enrichment.jobs.sweep",
                 "enrichment.company.lookup_task"):
        assert TASKS[name].queue == "enrich"
    assert enrichment.__all__ == sorted(enrichment.__all__)
