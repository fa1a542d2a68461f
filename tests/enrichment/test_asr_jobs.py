"""ASR jobs against the local fake Tencent Cloud (TC3-verified): callback, polling, failures, throttling."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update

from enrichment.jobs import submit, sweep_due
from enrichment.models import AsrJob
from hub.models import EventRow, QuarantineRow
from hub.runtime import Hub, set_hub
from hub.schemas import utcnow
from tests.enrichment.conftest import build_hub, call_draft, store_call
from tests.fakes.tencent_cloud import (
    SECRET_ID,
    SECRET_KEY,
    AsrFake,
    FakeTencentCloud,
    clear_proxy_env,
    sentences_for,
)
from tests.helpers import client_for


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTencentCloud]:
    clear_proxy_env(monkeypatch)
    with FakeTencentCloud("asr") as fake:
        yield fake


def asr_settings(cloud: FakeTencentCloud, **extra: Any) -> dict[str, Any]:
    return {"tencentcloud_secret_id": SECRET_ID, "tencentcloud_secret_key": SECRET_KEY,
            "asr_endpoint": cloud.endpoint, "asr_protocol": "http", **extra}


@pytest.fixture
def ahub(tmp_path: Path, cloud: FakeTencentCloud) -> Iterator[Hub]:
    hub = build_hub(tmp_path, **asr_settings(cloud))
    hub.start()
    yield hub
    hub.stop()
    hub.engine.dispose()
    set_hub(None)


def jobs(hub: Hub) -> list[AsrJob]:
    with hub.sessions() as s:
        return list(s.scalars(select(AsrJob).order_by(AsrJob.created_at)))


def skip_waits(hub: Hub) -> None:
    """Run delayed tasks now, and make the retries they carry due (submit refuses a retry before its time)."""
    with hub.transaction() as s:
        s.execute(update(AsrJob).where(AsrJob.state == "queued", AsrJob.attempts > 0).values(next_poll_at=utcnow()))
    hub.runner.run_due_timers()


def drive(hub: Hub, until: str, rounds: int = 12) -> AsrJob:
    """Run queued and delayed tasks (skipping the waits) until the only job reaches `until`."""
    for _ in range(rounds):
        hub.runner.join(10)
        [job] = jobs(hub)
        if job.state == until:
            return job
        skip_waits(hub)
    hub.runner.join(10)
    [job] = jobs(hub)
    assert job.state == until, (job.state, job.error)
    return job


def summaries(hub: Hub) -> list[EventRow]:
    with hub.sessions() as s:
        return list(s.scalars(select(EventRow).where(EventRow.type == "call.summarized")))


def call_event(hub: Hub) -> EventRow:
    with hub.sessions() as s:
        return s.scalars(select(EventRow).where(EventRow.type == "call.completed")).one()


def test_submit_request_matches_the_contract(ahub: Hub, cloud: FakeTencentCloud) -> None:
    asr = AsrFake(cloud, statuses=("waiting",))
    store_call(ahub, call_draft(recording_url="https://rec.example.invalid/c1.wav"))
    job = drive(ahub, "submitted")
    [req] = cloud.requests_for("CreateRecTask")
    assert req.error_code is None  # the SDK's TC3 signature verified
    assert req.params == {
        "EngineModelType": "8k_zh", "ChannelNum": 2, "ResTextFormat": 2, "SourceType": 0,
        "Url": "https://rec.example.invalid/c1.wav",
        "CallbackUrl": f"http://127.0.0.1:8000/hooks/asr/{job.callback_token}",
    }
    assert len(job.callback_token) >= 40 and job.task_id in asr.tasks
    assert job.submitted_on == utcnow().date() and job.attempts == 1
    assert job.call_event_id == call_event(ahub).id and job.direction == "inbound"


INBOUND_CALL = [
    {"speaker": "agent", "start_ms": 0, "end_ms": 2260, "text": "您好，这里是极客职训，请问有什么可以帮您？"},
    {"speaker": "customer", "start_ms": 2900, "end_ms": 6100, "text": "你好，我想了解一下Python课程，预算两三万。"},
]


def test_callback_path_end_to_end(ahub: Hub, cloud: FakeTencentCloud) -> None:
    # Inbound: the customer called, so the customer is channel 0 (contract §10).
    asr = AsrFake(cloud, statuses=("success",), sentences=sentences_for(INBOUND_CALL, "inbound"))
    assert [s["SpeakerId"] for s in asr.sentences] == [1, 0]
    store_call(ahub, call_draft(direction="inbound"))
    job = drive(ahub, "submitted")
    assert job.task_id is not None
    client = client_for(ahub)
    resp = asr.post_callback(job.task_id, url=f"/hooks/asr/{job.callback_token}", client=client)
    assert resp.status_code == 200 and resp.json() == {"code": 0, "message": "success"}
    ahub.runner.join(10)  # the callback only queued a confirming DescribeTaskStatus; no timer skipped
    [job] = jobs(ahub)
    assert job.state == "done" and job.callback_at is not None
    assert len(cloud.requests_for("DescribeTaskStatus")) == 1
    [summary] = summaries(ahub)
    call = call_event(ahub)
    props = summary.data["properties"]
    assert props["call_event_id"] == str(call.id) and props["asr_task_id"] == job.task_id
    assert props["transcript"] == INBOUND_CALL
    assert props["summary"]["course"] == "Python"
    assert props["summary"]["budget"]["min"] == 20000 and props["summary"]["budget"]["max"] == 30000
    assert props["summary"]["budget"]["currency"] == "CNY"
    assert set(props["summary"]) == {"course", "budget", "decision_role", "competitors"}
    assert summary.source == "enrichment" and summary.source_event_id == f"asr:{job.id}"
    assert summary.customer_id is not None and summary.customer_id == call.customer_id
    assert job.summary_event_id == summary.id
    # Tencent tries a callback up to twice: a repeat changes nothing.
    again = asr.post_callback(job.task_id, url=f"/hooks/asr/{job.callback_token}", client=client)
    ahub.runner.join(10)
    assert again.json() == {"code": 0, "message": "success"} and len(summaries(ahub)) == 1


def test_an_oversized_callback_is_413_before_it_is_read(ahub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The callback is unauthenticated but for its URL token: its size must not be the sender's choice."""
    monkeypatch.setattr("enrichment.routes.MAX_CALLBACK_BYTES", 1000)
    client = client_for(ahub)
    declared = client.post("/hooks/asr/any-token", content=b"code=0&requestId=1&" + b"x" * 2000,
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
        for _ in range(5):
            yield b"x" * 400

    streamed = client.post("/hooks/asr/any-token", content=chunks())
    assert streamed.status_code == 413 and "1000-byte limit" in streamed.json()["error"]["message"]
    small = client.post("/hooks/asr/any-token", content=b"code=0&requestId=1")
    assert small.status_code == 404 and small.json()["error"]["code"] == "asr_job_not_found"


def test_summary_of_a_masked_call_belongs_to_the_calls_customer(ahub: Hub, cloud: FakeTencentCloud) -> None:
    """A masked number leaves the call without identities; its summary still lands on the call's customer."""
    asr = AsrFake(cloud, statuses=("success",), sentences=sentences_for(INBOUND_CALL, "inbound"))
    masked = call_draft(direction="inbound").model_copy(update={"identities": []})
    store_call(ahub, masked)
    job = drive(ahub, "submitted")
    asr.post_callback(job.task_id, url=f"/hooks/asr/{job.callback_token}", client=client_for(ahub))
    drive(ahub, "done")
    [summary] = summaries(ahub)
    call = call_event(ahub)
    assert call.customer_id is not None and summary.customer_id == call.customer_id
    assert summary.data["identities"] == []


def test_polling_path_with_backoff(ahub: Hub, cloud: FakeTencentCloud) -> None:
    asr = AsrFake(cloud, statuses=("waiting", "doing", "doing", "success"))
    store_call(ahub, call_draft(direction="outbound"))
    job = drive(ahub, "done")
    assert asr.tasks[job.task_id].polls == 4 and job.polls == 3  # type: ignore[index]
    transcript = summaries(ahub)[0].data["properties"]["transcript"]
    assert [line["speaker"] for line in transcript] == ["agent", "customer"]  # outbound: channel 0 is the agent


def test_poll_backoff_grows(ahub: Hub, cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("waiting",))
    store_call(ahub, call_draft())
    drive(ahub, "submitted")
    gaps = []
    for _ in range(4):
        ahub.runner.run_due_timers()
        ahub.runner.join(10)
        [job] = jobs(ahub)
        assert job.next_poll_at is not None
        gaps.append((job.next_poll_at - utcnow()).total_seconds())
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0] * 2


@pytest.mark.parametrize("code", [10000, 10001, 10002, 10003, 10004, 10005, 10006, 10007])
def test_audio_failure_codes_quarantine_the_job(ahub: Hub, cloud: FakeTencentCloud, code: int) -> None:
    asr = AsrFake(cloud, statuses=("failed",), failure_code=code, error_msg=f"audio error {code}")
    store_call(ahub, call_draft())
    job = drive(ahub, "submitted")
    resp = asr.post_callback(job.task_id, url=f"/hooks/asr/{job.callback_token}", client=client_for(ahub))
    assert resp.json() == {"code": 0, "message": "success"}
    ahub.runner.join(10)
    [job] = jobs(ahub)
    assert job.state == "quarantined" and job.failure_code == code
    with ahub.sessions() as s:
        [row] = s.scalars(select(QuarantineRow)).all()
    assert row.reason.startswith("asr_") and str(code) in (row.detail or "")
    assert row.payload is not None and row.payload["asr_job_id"] == str(job.id)
    assert summaries(ahub) == []


def test_polled_download_failure_is_quarantined_without_a_callback(ahub: Hub, cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("doing", "failed"), error_msg="Failed to download audio file!")
    store_call(ahub, call_draft())
    job = drive(ahub, "quarantined")
    assert job.failure_code == 10007 and "audio_download_failed" in (job.error or "")


def test_a_submission_refused_for_the_download_is_quarantined_like_a_task_that_fails_it(
    ahub: Hub, cloud: FakeTencentCloud
) -> None:
    """CreateRecTask may refuse at once (FailedOperation.ErrorDownFile): same cause as code 10007, same outcome."""
    AsrFake(cloud)
    cloud.fail_next("FailedOperation.ErrorDownFile", "download audio file failed", action="CreateRecTask")
    store_call(ahub, call_draft())
    job = drive(ahub, "quarantined")
    assert job.failure_code == 10007 and job.attempts == 1 and "audio_download_failed" in (job.error or "")
    with ahub.sessions() as s:
        [row] = s.scalars(select(QuarantineRow)).all()
    assert row.reason == "asr_audio_download_failed" and row.payload["recording_url"] == job.recording_url


def test_unrecognised_failure_fails_the_job(ahub: Hub, cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("failed",), error_msg="account arrears")
    store_call(ahub, call_draft())
    job = drive(ahub, "failed")
    assert "account arrears" in (job.error or "")


@pytest.mark.postgres
def test_a_failure_message_holding_a_nul_fails_the_job_on_postgres(
    tmp_path: Path, cloud: FakeTencentCloud, pg_url: str
) -> None:
    """Tencent's ErrorMsg is kept on the job, and PostgreSQL refuses a NUL in text: the failure was never recorded,
    the job stayed `submitted`, and every sweep asked Tencent again for 24 hours."""
    AsrFake(cloud, statuses=("failed",), error_msg="account\x00arrears")
    hub = build_hub(tmp_path, database_url=pg_url, **asr_settings(cloud))
    hub.start()
    try:
        store_call(hub, call_draft())
        job = drive(hub, "failed")
        assert job.error == "asr_failed: account\ufffdarrears"
    finally:
        hub.stop()
        hub.engine.dispose()
        set_hub(None)


def test_forged_failure_callback_is_not_trusted(ahub: Hub, cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("success",))
    store_call(ahub, call_draft())
    job = drive(ahub, "submitted")
    form = {"code": "10004", "message": "invalid file", "requestId": str(job.task_id), "text": "伪造"}
    resp = client_for(ahub).post(f"/hooks/asr/{job.callback_token}", data=form)
    assert resp.json() == {"code": 0, "message": "success"}
    ahub.runner.join(10)
    [job] = jobs(ahub)
    assert job.state == "done"  # DescribeTaskStatus said success, so the callback's code was ignored
    assert "伪造" not in str(summaries(ahub)[0].data)


def test_throttling_and_5xx_are_retried(ahub: Hub, cloud: FakeTencentCloud) -> None:
    asr = AsrFake(cloud, statuses=("success",))
    asr.throttle(2, action="CreateRecTask")
    cloud.fail_http(502, times=1)
    store_call(ahub, call_draft())
    job = drive(ahub, "done")
    codes = [r.error_code for r in cloud.requests_for("CreateRecTask")]
    assert codes == ["RequestLimitExceeded", "RequestLimitExceeded", None]  # the 502 never reached a handler
    assert job.attempts == 4 and job.error is None


def test_an_unreadable_answer_is_retried_not_taken_for_a_refusal(ahub: Hub, cloud: FakeTencentCloud) -> None:
    """A proxy's error page answered with 200 reaches the SDK as JSONDecodeError: it failed the job for good as if
    Tencent had refused it, on submission and on a status check alike (there losing a transcript paid for)."""
    AsrFake(cloud, statuses=("waiting", "success"))
    cloud.fail_http(200, times=1, body="<html><body>502 Bad Gateway</body></html>")
    store_call(ahub, call_draft())
    ahub.runner.join(10)
    [job] = jobs(ahub)
    assert job.state == "queued" and "unreadable" in (job.error or "") and "JSONDecodeError" in (job.error or "")
    skip_waits(ahub)
    sweep_due(ahub)
    ahub.runner.join(10)
    assert jobs(ahub)[0].state == "submitted"
    cloud.fail_http(200, times=1, body="[]")  # JSON, but not the object the SDK reads (TypeError)
    assert drive(ahub, "done").state == "done"


def test_rejected_submission_fails_without_retry(tmp_path: Path, cloud: FakeTencentCloud) -> None:
    AsrFake(cloud)
    hub = build_hub(tmp_path, **asr_settings(cloud, tencentcloud_secret_key="wrong-key"))
    hub.start()
    try:
        store_call(hub, call_draft())
        job = drive(hub, "failed")
        assert "AuthFailure.SignatureFailure" in (job.error or "") and job.attempts == 1
        assert len(cloud.requests) == 1
    finally:
        hub.stop()
        hub.engine.dispose()
        set_hub(None)


def test_no_recording_or_no_credentials(tmp_path: Path, cloud: FakeTencentCloud) -> None:
    hub = build_hub(tmp_path, asr_endpoint=cloud.endpoint, asr_protocol="http")
    hub.start()
    try:
        store_call(hub, call_draft(recording_url=None))
        hub.runner.join(10)
        assert jobs(hub) == []
        store_call(hub, call_draft())
        job = drive(hub, "failed")
        assert job.error is not None and job.error.startswith("asr_not_configured") and cloud.requests == []
    finally:
        hub.stop()
        hub.engine.dispose()
        set_hub(None)


def test_callback_route_beats_the_inbound_catch_all(ahub: Hub) -> None:
    client = client_for(ahub)
    resp = client.post("/hooks/asr/not-a-token", data={"code": "0", "requestId": "1"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "asr_job_not_found"
    assert client.post(f"/hooks/{uuid.uuid4()}", content=b"{}").json()["error"]["code"] == "source_not_found"


@pytest.mark.postgres
def test_a_callback_token_no_job_can_have_is_a_404_on_postgres(tmp_path: Path, pg_url: str) -> None:
    """The callback route is unauthenticated, and its token is looked up as sent: `%00` in it was a 500 with a
    traceback on PostgreSQL, which refuses a NUL even in a comparison (SQLite answered 404)."""
    hub = build_hub(tmp_path, database_url=pg_url)
    try:
        for token in ("ab%00cd", "%ED%A0%80", "x" * 65):
            resp = client_for(hub).post(f"/hooks/asr/{token}", data={"code": "0"})
            assert (resp.status_code, resp.json()["error"]["code"]) == (404, "asr_job_not_found"), token
    finally:
        hub.engine.dispose()
        set_hub(None)


def test_sweep_requeues_due_jobs(ahub: Hub, cloud: FakeTencentCloud) -> None:
    asr = AsrFake(cloud, statuses=("waiting", "success"))
    store_call(ahub, call_draft())
    job = drive(ahub, "submitted")
    with ahub.transaction() as s:
        s.execute(update(AsrJob).values(next_poll_at=utcnow()))
    time.sleep(0.01)
    assert sweep_due(ahub) == 1
    ahub.runner.join(10)
    assert sweep_due(ahub) == 0  # waiting: the next poll is in the future again
    assert asr.tasks[job.task_id].polls == 1  # type: ignore[index]


@pytest.mark.postgres
def test_end_to_end_on_postgres(tmp_path: Path, cloud: FakeTencentCloud, pg_url: str) -> None:
    asr = AsrFake(cloud, statuses=("waiting", "success"))
    asr.next_task_id = 9_223_372_036_854_775_000  # near BIGINT's top: TaskId needs 64 bits
    hub = build_hub(tmp_path, database_url=pg_url, **asr_settings(cloud))
    hub.start()
    try:
        store_call(hub, call_draft(direction="outbound"))
        job = drive(hub, "done")
        assert job.task_id == 9_223_372_036_854_775_000
        [summary] = summaries(hub)
        assert summary.data["properties"]["asr_task_id"] == job.task_id
        assert summary.data["properties"]["summary"]["course"] == "Python"
    finally:
        hub.stop()
        hub.engine.dispose()
        set_hub(None)


def test_a_recording_that_arrives_after_its_call_gets_a_job(ahub: Hub, cloud: FakeTencentCloud) -> None:
    """Only call.completed started a job: a recording pushed after the CDR was never summarised (helper-25)."""
    from datetime import UTC, datetime

    from hub.schemas import EventDraft, Identity

    AsrFake(cloud, statuses=("success",))
    cdr = call_draft(recording_url=None)
    store_call(ahub, cdr)
    ahub.runner.join(10)
    assert jobs(ahub) == []
    store_call(ahub, EventDraft(
        type="call.recording_available", source_event_id="record:r1", occurred_at=datetime(2026, 1, 25, 6, 30,
                                                                                           tzinfo=UTC),
        identities=[Identity(type="phone", value="+8613800138000")],
        properties={"recording_url": "https://rec.example.invalid/late.wav",
                    "call_source_event_id": cdr.source_event_id, "direction": "inbound"}))
    job = drive(ahub, "done")
    assert job.call_event_id == call_event(ahub).id and len(summaries(ahub)) == 1


def test_an_agent_only_leg_does_not_take_the_calls_job(ahub: Hub, cloud: FakeTencentCloud) -> None:
    """TCCC sends one recording per leg; the first to arrive got the call's only job (helper-26)."""
    from datetime import UTC, datetime

    from hub.schemas import EventDraft, Identity

    AsrFake(cloud, statuses=("success",))
    cdr = call_draft(recording_url=None)
    store_call(ahub, cdr)
    for n, participant in enumerate(("agent", "customer")):
        store_call(ahub, EventDraft(
            type="call.recording_available", source_event_id=f"record:leg{n}",
            occurred_at=datetime(2026, 1, 25, 6, 30, tzinfo=UTC),
            identities=[Identity(type="phone", value="+8613800138000")],
            properties={"recording_url": f"https://rec.example.invalid/{participant}.wav", "participant": participant,
                        "call_source_event_id": cdr.source_event_id, "direction": "inbound"}))
    job = drive(ahub, "done")
    assert job.recording_url.endswith("/customer.wav")


def test_a_submit_outage_is_backed_off_on_the_job_not_spent_in_seconds(ahub: Hub, cloud: FakeTencentCloud) -> None:
    """The runner's retries (0.2 s, 0.4 s …) spent all attempts in ~26 s of outage and failed the job for good."""
    AsrFake(cloud, statuses=("success",))
    cloud.fail_http(502, times=10_000)
    store_call(ahub, call_draft())
    ahub.runner.join(10)
    time.sleep(1.0)  # the runner's own retries would have run several times by now
    [job] = jobs(ahub)
    assert job.state == "queued" and job.attempts == 1 and "Bad Gateway" in (job.error or "")
    assert job.next_poll_at is not None and (job.next_poll_at - utcnow()).total_seconds() > 2  # backed off
    ahub.runner.run_due_timers()  # a retry's timer firing early (or a second trigger) does not call Tencent
    ahub.runner.join(10)
    assert jobs(ahub)[0].attempts == 1
    delays = []
    for expected in range(2, 5):  # each due retry waits longer, and runs once though two triggers fire
        skip_waits(ahub)
        sweep_due(ahub)  # the sweep finds it due too (the early timer above was spent)
        ahub.runner.join(10)
        [job] = jobs(ahub)
        assert job.state == "queued" and job.attempts == expected and job.next_poll_at is not None
        delays.append((job.next_poll_at - utcnow()).total_seconds())
    assert delays == sorted(delays) and delays[0] > 4
    cloud._http_errors.clear()  # the outage ends: the next attempt goes through
    assert drive(ahub, "done").state == "done"


def test_a_status_check_outage_backs_off_and_an_expired_job_fails(ahub: Hub, cloud: FakeTencentCloud) -> None:
    """DescribeTaskStatus down: the runner retried 6 times per sweep, noted nothing and never expired the job."""
    AsrFake(cloud, statuses=("waiting",))
    store_call(ahub, call_draft())
    drive(ahub, "submitted")
    cloud.fail_http(503, times=10_000)
    with ahub.transaction() as s:
        s.execute(update(AsrJob).values(next_poll_at=utcnow()))
    calls_before = len(cloud._http_errors)
    sweep_due(ahub)
    ahub.runner.join(10)
    [job] = jobs(ahub)
    assert calls_before - len(cloud._http_errors) == 1  # one status check, not six
    assert job.state == "submitted" and "status check failed" in (job.error or "")
    assert job.next_poll_at is not None and job.next_poll_at > utcnow()
    with ahub.transaction() as s:  # submitted 30 h ago: Tencent no longer holds the result
        s.execute(update(AsrJob).values(submitted_at=utcnow() - timedelta(hours=30), next_poll_at=utcnow()))
    sweep_due(ahub)
    ahub.runner.join(10)
    [job] = jobs(ahub)
    assert job.state == "failed" and (job.error or "").startswith("asr_result_expired")


def test_a_16k_mono_recording_asks_for_speaker_separation(ahub: Hub, cloud: FakeTencentCloud) -> None:
    """Only 8k engines asked for it, so a 16 kHz call came back with every line as one speaker (helper-25)."""
    AsrFake(cloud, statuses=("waiting",))
    store_call(ahub, call_draft(sample_rate=16000))
    drive(ahub, "submitted")
    [req] = cloud.requests_for("CreateRecTask")
    assert req.error_code is None
    assert (req.params["EngineModelType"], req.params["ChannelNum"]) == ("16k_zh", 1)
    assert (req.params["SpeakerDiarization"], req.params["SpeakerNumber"]) == (1, 0)  # 16k: automatic count


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_engine_name_longer_than_any_engines_is_not_a_lost_call(
    tmp_path: Path, cloud: FakeTencentCloud, db: str, request: pytest.FixtureRequest
) -> None:
    """`asr_engine` comes with the call: one longer than asr_jobs.engine (VARCHAR(40)) failed the call's whole request
    on PostgreSQL, so the call itself was never stored. No engine has such a name: the call's default is asked for."""
    AsrFake(cloud, statuses=("waiting",))
    url = request.getfixturevalue("pg_url") if db == "postgres" else None
    hub = build_hub(tmp_path, database_url=url, **asr_settings(cloud))
    hub.start()
    try:
        store_call(hub, call_draft(asr_engine="8k_zh_" + "x" * 60))
        assert call_event(hub).data["properties"]["asr_engine"] == "8k_zh_" + "x" * 60
        drive(hub, "submitted")
        [req] = cloud.requests_for("CreateRecTask")
        assert (req.error_code, req.params["EngineModelType"], req.params["ChannelNum"]) == (None, "8k_zh", 2)
    finally:
        hub.stop()
        hub.engine.dispose()
        set_hub(None)


def test_ops_see_stuck_asr_jobs_and_registry_retries_in_the_queue_depths(ahub: Hub) -> None:
    """After ASR failed, /metrics, health and /ops had nothing about it (helper-25): the queue_depths hook
    reports it, and /metrics sets crmhub_queue_depth from it."""
    from enrichment.models import CompanyProfile

    with ahub.transaction() as s:
        s.add(AsrJob(id=uuid.uuid4(), call_event_id=uuid.uuid4(), recording_url="https://r.example/a.wav",
                     state="failed", engine="8k_zh", channel_num=2, error="gave up"))
        s.add(CompanyProfile(uscc="91350100M000100Y43", lookup_failures=2))
    with ahub.sessions() as s:
        depths = {k: v for d in ahub.pm.hook.queue_depths(session=s) if d for k, v in d.items()}
    assert depths["asr_failed"] == 1 and depths["registry_retrying"] == 1 and depths["registry_gave_up"] == 0


def test_a_result_that_cannot_be_stored_fails_the_job_instead_of_polling_for_a_day(
    ahub: Hub, cloud: FakeTencentCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import enrichment.finish

    def broken(*args: Any) -> list[dict[str, Any]]:
        raise ValueError("unreadable ResultDetail")

    monkeypatch.setattr(enrichment.finish, "transcript_lines", broken)
    AsrFake(cloud, statuses=("success",))
    store_call(ahub, call_draft())
    job = drive(ahub, "failed")
    assert job.error is not None and job.error.startswith("result_not_stored: ValueError: unreadable ResultDetail")
    asked = len(cloud.requests_for("DescribeTaskStatus"))
    assert sweep_due(ahub) == 0  # nothing left due: no DescribeTaskStatus every 30 s until the result expires
    ahub.runner.join(10)
    assert len(cloud.requests_for("DescribeTaskStatus")) == asked and summaries(ahub) == []


def test_a_sweep_that_finds_a_poll_overdue_does_not_start_a_second_poll_chain(
    ahub: Hub, cloud: FakeTencentCloud
) -> None:
    AsrFake(cloud, statuses=("waiting",))  # a long recording: many polls before the result
    store_call(ahub, call_draft())
    drive(ahub, "submitted")  # the first poll waits on its timer
    with ahub.transaction() as s:  # a busy worker: the timer has not fired when the sweep finds the poll due
        s.execute(update(AsrJob).values(next_poll_at=utcnow()))
    assert sweep_due(ahub) == 1
    ahub.runner.join(10)
    for _ in range(3):
        ahub.runner.run_due_timers()
        ahub.runner.join(10)
    # One poll per round, not one per chain: each chain rescheduled itself, so every such sweep added one more
    # for the rest of the job's day (the backlog that delays the timers is what makes the sweep find them due).
    assert len(cloud.requests_for("DescribeTaskStatus")) == 1 + 3
    [job] = jobs(ahub)
    assert job.state == "submitted" and job.polls == 1 + 3


@pytest.mark.postgres
def test_a_connection_lost_while_recording_the_task_id_does_not_submit_the_call_again(
    tmp_path: Path, cloud: FakeTencentCloud, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's connection is terminated (pg_terminate_backend) right after Tencent accepted the task. The
    submit failed with the TaskId unwritten, the job stayed `queued`, and the sweep submitted it again once the
    claim ran out: a second billed task, the first one's result never read."""
    import enrichment.jobs as jobs_module

    asr = AsrFake(cloud, statuses=("waiting", "success"))
    hub = build_hub(tmp_path, database_url=pg_url, **asr_settings(cloud))  # not started: the test runs each step
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    real_lock, dropped = jobs_module._lock, []

    def lock_then_lose_the_connection(session: Any, job_id: uuid.UUID) -> Any:
        row = real_lock(session, job_id)
        if asr.tasks and not dropped:  # the transaction that records the TaskId
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with admin.connect() as conn:
                dropped.append(conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar())
        return row

    monkeypatch.setattr(jobs_module, "_lock", lock_then_lose_the_connection)
    try:
        store_call(hub, call_draft())
        [job] = jobs(hub)
        assert submit(hub, job.id) == "submitted"
        assert dropped == [True]
        [job] = jobs(hub)
        assert job.state == "submitted" and list(asr.tasks) == [job.task_id]
        assert submit(hub, job.id) == "submitted"  # a second submit (the sweep's) finds it sent
        assert len(asr.tasks) == 1
    finally:
        hub.stop()
        hub.engine.dispose()
        admin.dispose()
        set_hub(None)


def test_a_first_submit_in_flight_is_not_sent_again_by_a_second_trigger(
    tmp_path: Path, cloud: FakeTencentCloud
) -> None:
    """A job's first submit waited past the sweep's grace (a backlog on the enrich queue), so the sweep queued a
    second one, and two worker processes ran them together. The claim on the job was only honoured for a retry
    (`attempts` > 0): the second submit called Tencent while the first was still waiting for its answer, a second
    billed task whose result was never read."""
    import threading

    from enrichment.asr import AsrClient, SubmitRequest

    asr = AsrFake(cloud, statuses=("waiting", "success"))
    hub = build_hub(tmp_path, **asr_settings(cloud))  # not started: the test runs both submits itself
    second_done = threading.Event()

    class Slow(AsrClient):
        """Tencent answering the first submit only once the second has run."""

        def create_task(self, request: SubmitRequest) -> int:
            second_done.wait(10)
            return super().create_task(request)

    try:
        store_call(hub, call_draft())
        [job] = jobs(hub)
        with hub.transaction() as s:  # the grace is over: the sweep's copy is due as well
            s.execute(update(AsrJob).values(next_poll_at=utcnow() - timedelta(seconds=1)))
        first: list[str] = []
        thread = threading.Thread(target=lambda: first.append(submit(hub, job.id, Slow(hub.settings))))
        thread.start()
        deadline = time.monotonic() + 10
        while jobs(hub)[0].next_poll_at <= utcnow() and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.01)  # until the first has claimed the job
        second = submit(hub, job.id)
        second_done.set()
        thread.join(15)
        assert (first, second) == (["submitted"], "queued")
        assert len(asr.tasks) == 1 and jobs(hub)[0].task_id in asr.tasks
    finally:
        second_done.set()
        hub.stop()
        hub.engine.dispose()
        set_hub(None)
