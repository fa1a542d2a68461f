"""`crmhub demo` end to end, as the README's first command runs it (a fresh directory, no servers), and the
local stand-ins it uses for the services the hub calls out to."""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from connectors.credit_registry import CompanyNotFound, CreditRegistryConnector, RegistryAuthError
from connectors.credit_registry.demo import TOKEN, tianyancha_stand_in
from enrichment.asr import AsrClient, AsrRejected, SubmitRequest
from enrichment.demo import asr_stand_in
from tests.conftest import make_settings

USCC = "9144030071526726XG"


def _demo(workdir: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env.update(CRMHUB_DATA_DIR=str(workdir / "data"), COLUMNS="120", **settings)
    return subprocess.run([sys.executable, "-m", "hub", "demo"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


# A platform's own payload, kept as it was sent: its names are the platform's.
VERBATIM = frozenset({"raw", "provider_result"})


def _field_names(value: object) -> list[str]:
    """Every JSON field name in an event, outside the platform payloads it keeps verbatim."""
    if isinstance(value, dict):
        return [n for k, v in value.items() if k not in VERBATIM for n in (k, *_field_names(v))]
    if isinstance(value, list):
        return [n for item in value for n in _field_names(item)]
    return []


def test_demo_feeds_every_platform_and_shows_the_customer_and_company(tmp_path: Path) -> None:
    """Every platform fed, the customer and company shown, and every field name of every stored event snake_case
    (contract: "JSON field names are snake_case"; Douyin's `objectId` and TCCC's `SeatUser` keys went through as
    sent)."""
    tmp_path = tmp_path / "my demo"  # a newcomer's folder may have a space: the command printed must still paste
    tmp_path.mkdir()
    run = _demo(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    # the last lines say what to run next, as one line that can be pasted as it is
    assert f"  cd {shlex.quote(str(tmp_path))} && crmhub serve\n" in run.stdout, run.stdout
    sent = re.search(r"Sent (\d+) requests from (\d+) sources \(1 more the hub calls out to\): (.*)", run.stdout)
    assert sent is not None, run.stdout
    assert int(sent.group(2)) == 7 and sent.group(3) == f"{sent.group(1)}× HTTP 200"  # every request accepted
    assert "(0 quarantined with a reason)" in run.stdout
    assert "account 腾讯科技（深圳）有限公司" in run.stdout and "registry: active (risk low)" in run.stdout
    with sqlite3.connect(tmp_path / "crmhub.db") as db:
        sources = {row[0] for row in db.execute("SELECT DISTINCT source FROM events")}
        profiles = db.execute("SELECT count(*) FROM events WHERE type = 'company.profile.updated'").fetchone()[0]
        summaries = [json.loads(row[0]) for row in
                     db.execute("SELECT data FROM events WHERE type = 'call.summarized'")]
    assert {"douyin", "xiaohongshu", "callcenter", "pos", "erp", "credit_registry"} <= sources
    assert profiles == 1
    # the call went through the ASR stand-in: the four facts are in the customer's journey
    (summary,) = [s["properties"]["summary"] for s in summaries]
    assert summary == {"course": "Python", "budget": {"min": 10000, "max": 15000, "currency": "CNY",
                                                      "text": "一万到一万五"},
                       "decision_role": "本人决策", "competitors": ["达内", "黑马程序员"]}
    assert "预算一万到一万五" in run.stdout
    with sqlite3.connect(tmp_path / "crmhub.db") as db:
        events = [json.loads(row[0]) for row in db.execute("SELECT data FROM events")]
    assert not [name for event in events for name in _field_names(event) if not re.fullmatch(r"[a-z0-9_]+", name)]
    # A second run re-points the registry source at the new stand-in; nothing doubles. The database the
    # environment names is an integrator's: the demo's made-up story never goes there.
    theirs = tmp_path / "theirs" / "production.db"
    theirs.parent.mkdir()
    again = _demo(tmp_path, CRMHUB_DATABASE_URL=f"sqlite:///{theirs}")
    assert again.returncode == 0 and "registry: active (risk low)" in again.stdout, again.stdout + again.stderr
    assert "CRMHUB_DATABASE_URL is set; the demo keeps its story in its own embedded database" in again.stdout
    # `crmhub serve` would read the same environment: the command printed leaves that database out too
    assert f"  cd {shlex.quote(str(tmp_path))} && env -u CRMHUB_DATABASE_URL crmhub serve\n" in again.stdout
    assert not theirs.exists()
    with sqlite3.connect(tmp_path / "crmhub.db") as db:
        assert db.execute("SELECT count(*) FROM events WHERE type = 'company.profile.updated'").fetchone()[0] == 1


def test_the_registry_stand_in_checks_what_tianyancha_checks() -> None:
    connector = CreditRegistryConnector()
    with tianyancha_stand_in() as overrides, httpx.Client(timeout=5) as http:
        good = connector.validate_config({"provider": "tianyancha", "token": TOKEN, **overrides})
        assert connector.lookup(good, USCC, http)["name"] == "腾讯科技（深圳）有限公司"
        wrong = connector.validate_config({"provider": "tianyancha", "token": "not-the-token", **overrides})
        with pytest.raises(RegistryAuthError, match="300009"):
            connector.lookup(wrong, USCC, http)
        with pytest.raises(CompanyNotFound):
            connector.lookup(good, "91110000802100433B", http)


def test_the_asr_stand_in_checks_what_tencent_checks(tmp_path: Path) -> None:
    """The real SDK client against the stand-in: signed requests work, a wrong key or a missing field fails."""
    with asr_stand_in() as overrides:
        settings = make_settings(tmp_path, **overrides)
        client = AsrClient(settings)
        request = SubmitRequest(url="https://ccc.example.cn/rec/a.mp3", callback_url=None)
        task_id = client.create_task(request)
        data = client.describe(task_id)
        assert data["Status"] == 2 and [s["SpeakerId"] for s in data["ResultDetail"]][:2] == [1, 0]
        forged = AsrClient(make_settings(tmp_path, **{**overrides, "tencentcloud_secret_key": "not-the-key"}))
        with pytest.raises(AsrRejected, match="AuthFailure.SignatureFailure"):
            forged.create_task(request)
        with pytest.raises(AsrRejected, match="MissingParameter"):
            client.create_task(SubmitRequest(url="", callback_url=None))
        with pytest.raises(AsrRejected, match="NoSuchTask"):
            client.describe(task_id + 1)


def test_a_demo_dir_that_cannot_be_made_is_one_line_and_exit_1(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hub.cli import cli

    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "a-file" / "demo")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot use {tmp_path / 'a-file' / 'demo'} for the demo")
