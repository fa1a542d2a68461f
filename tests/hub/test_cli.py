"""`crmhub sources …` (contract §2) and how the CLI reports errors: exit 1 with a message, 2 for usage."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hub.cli import build_cli, cli
from hub.errors import HubError
from hub.models import SourceRow
from hub.runtime import Hub, current_hub, set_hub
from hub.settings import get_settings, unknown_env_names
from tests.conftest import make_settings
from tests.helpers import ADMIN, add_source, client_for

KEY = "write-key-0123456789"
UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def run(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Invoke `crmhub …` against the test's hub (temporary SQLite)."""
    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: hub)
    return lambda *args: CliRunner().invoke(cli, list(args))


def ok_json(run: Callable[..., Result], *args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_show_enable_disable_update_delete(hub: Hub, run: Callable[..., Result]) -> None:
    client = client_for(hub)
    sid = add_source(client, "web", "site", {"write_key": KEY})

    assert ok_json(run, "sources", "show", sid) == client.get(f"/v1/sources/{sid}", headers=ADMIN).json()
    shown = run("sources", "show", sid)
    assert shown.exit_code == 0 and f"/hooks/{sid}" in shown.stdout and "site" in shown.stdout
    assert KEY not in shown.stdout and "********" in shown.stdout  # secrets masked, as in the API

    assert run("sources", "disable", sid).stdout.strip() == "disabled site"  # unchanged behaviour
    assert client.get(f"/v1/sources/{sid}", headers=ADMIN).json()["enabled"] is False
    enabled = ok_json(run, "sources", "enable", sid)
    assert enabled == client.get(f"/v1/sources/{sid}", headers=ADMIN).json() and enabled["enabled"] is True
    assert run("sources", "enable", sid).stdout.strip() == "enabled site"

    updated = run("sources", "update", sid, "--config", json.dumps({"write_key": "another-key-98765"}))
    assert updated.exit_code == 0 and "updated site" in updated.stdout
    with hub.sessions() as session:
        stored = hub.box.open(session.get(SourceRow, uuid.UUID(sid)).config_sealed)
    assert stored["write_key"] == "another-key-98765"  # merged, validated and sealed as PATCH does

    renamed = run("sources", "update", sid, "--name", "shop")
    assert renamed.exit_code == 0 and "updated shop" in renamed.stdout
    run("sources", "add", "web", "blog", "--config", json.dumps({"write_key": KEY}))
    taken = run("sources", "update", sid, "--name", "blog")  # names are unique: a 409 naming it, not a 500
    assert taken.exit_code == 1 and "a source named 'blog' exists" in taken.stderr
    assert run("sources", "update", sid).exit_code == 2

    deleted = run("sources", "delete", sid)
    assert deleted.exit_code == 0 and f"deleted shop ({sid})" in deleted.stdout
    assert client.get(f"/v1/sources/{sid}", headers=ADMIN).status_code == 404


def test_add_and_list_json(hub: Hub, run: Callable[..., Result]) -> None:
    empty = run("sources", "list")  # it printed nothing at all
    assert empty.exit_code == 0 and empty.stdout.startswith("no sources") and ok_json(run, "sources", "list") == []
    created = ok_json(run, "sources", "add", "web", "site", "--config", json.dumps({"write_key": KEY}))
    assert created["connector"] == "web" and created["webhook_url"].endswith(f"/hooks/{created['id']}")
    text = run("sources", "add", "web", "shop", "--config", json.dumps({"write_key": KEY}))
    assert text.exit_code == 0 and text.stdout.startswith("created web source shop")
    assert [s["name"] for s in ok_json(run, "sources", "list")] == ["site", "shop"]


def test_invalid_config_is_exit_1_naming_the_field(hub: Hub, run: Callable[..., Result]) -> None:
    sid = add_source(client_for(hub), "web", "site", {"write_key": KEY})
    bad = run("sources", "update", sid, "--config", '{"write_key": "short"}')
    assert bad.exit_code == 1 and bad.stdout == ""
    assert "error: invalid config for connector 'web': write_key" in bad.stderr
    assert "  write_key: " in bad.stderr  # the API's details, one per line
    unknown = run("sources", "add", "nosuch", "x")
    assert unknown.exit_code == 1 and "unknown connector 'nosuch'" in unknown.stderr


@pytest.mark.parametrize("command", ["show", "enable", "disable", "delete"])
def test_unknown_id_is_exit_1(run: Callable[..., Result], command: str) -> None:
    result = run("sources", command, UNKNOWN)
    assert result.exit_code == 1 and result.stderr.strip() == f"error: no source {UNKNOWN}"


def test_unknown_id_on_update_is_exit_1(run: Callable[..., Result]) -> None:
    result = run("sources", "update", UNKNOWN, "--config", "{}")
    assert result.exit_code == 1 and f"no source {UNKNOWN}" in result.stderr


@pytest.mark.parametrize("args", [
    ["sources", "show"],
    ["sources", "show", "not-a-uuid"],
    ["sources", "update", UNKNOWN],                       # --config is required
    ["sources", "update", UNKNOWN, "--config", "{nope"],
    ["sources", "update", UNKNOWN, "--config", "[1, 2]"],  # not an object
    ["sources", "add", "web", "x", "--config", '"text"'],
    ["sources", "frobnicate"],
    ["quality", "report", "--limit", "-1"],  # was a traceback on PostgreSQL (LIMIT must not be negative)
])
def test_usage_errors_exit_2(run: Callable[..., Result], args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output + result.stderr
    assert "Error:" in result.stderr


def test_text_a_database_cannot_store_is_a_usage_error_naming_it(run: Callable[..., Result]) -> None:
    result = run("sources", "add", "pos", "till", "--config", '{"secret": "0123456789abcdef\\u0000"}')
    assert result.exit_code == 2, result.output + result.stderr
    assert "Error: config: secret: U+0000 (NUL) cannot be stored" in result.stderr  # no pydantic "Value error, "


# ---------------------------------------------------------------- an unreachable or unusable database


@pytest.fixture
def env_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point the real `hub_for_cli()` at a database URL through the environment, as an operator would."""
    previous = current_hub()
    set_hub(None)

    def use(url: str) -> None:
        monkeypatch.setenv("CRMHUB_DATABASE_URL", url)
        monkeypatch.setenv("CRMHUB_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("CRMHUB_BROKER_URL", "")
        get_settings.cache_clear()

    yield use
    made = current_hub()
    if made is not None:
        made.engine.dispose()
    set_hub(previous)
    get_settings.cache_clear()


@pytest.mark.parametrize(("url", "shown", "reason"), [
    ("sqlite:///{tmp}/missing-dir/hub.db", "sqlite:///{tmp}/missing-dir/hub.db", "unable to open database file"),
    ("postgresql+psycopg://crm:s3cret@127.0.0.1:1/crm", "postgresql+psycopg://crm:***@127.0.0.1:1/crm",
     "Connection refused"),
    ("nosuchdb://x", "nosuchdb://x", "Can't load plugin"),
    ("mysql://crm:s3cret@127.0.0.1:1/crm", "mysql://crm:***@127.0.0.1:1/crm", "no database driver installed"),
    ("not a url", "(the configured URL)", "Could not parse"),
])
def test_unusable_database_is_one_line_and_exit_1(env_db: Callable[[str], None], tmp_path: Path, url: str,
                                                  shown: str, reason: str) -> None:
    env_db(url.format(tmp=tmp_path))
    for args in (["sources", "list"], ["quality", "report"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"error: database {shown.format(tmp=tmp_path)} is unreachable or unusable: ")
        assert reason in lines[0] and "s3cret" not in lines[0]


def test_corrupt_database_file_and_verbose_traceback(env_db: Callable[[str], None], tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    db.write_bytes(b"this is not a database, just some bytes" * 100)
    env_db(f"sqlite:///{db}")
    quiet = CliRunner().invoke(cli, ["sources", "list"])
    assert quiet.exit_code == 1 and quiet.stderr.strip().endswith("file is not a database")
    verbose = CliRunner().invoke(cli, ["--verbose", "sources", "list"])
    assert verbose.exit_code == 1 and "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("error: database ")


def test_a_genuine_bug_keeps_its_traceback(run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("hub.api.get_source", broken)
    result = run("sources", "show", UNKNOWN)
    assert isinstance(result.exception, RuntimeError) and result.exit_code == 1


# ---------------------------------------------------------------- settings an operator got wrong


@pytest.mark.parametrize(("name", "value", "says"), [
    ("CRMHUB_ALLOW_PRIVATE_ENDPOINTS", "yes-please", "valid boolean"),
    ("CRMHUB_MAX_BODY_BYTES", "1MB", "valid integer"),
    ("CRMHUB_RETRY_SCHEDULE", "0,5,abc", "not a number: abc"),
    ("CRMHUB_IDENTITY_LIMITS", "email:3", "TYPE=N pairs"),
    # These passed the start-up check and failed later (helper-21): every request a 413, a relative webhook
    # URL, a worker retrying amqp://guest@nonsense forever.
    ("CRMHUB_MAX_BODY_BYTES", "-5", "greater than 0"),
    ("CRMHUB_PUBLIC_URL", "notaurl", "absolute http(s) URL"),
    ("CRMHUB_BROKER_URL", "nonsense", "broker URL"),
    # The SDK took anything but `http` as https, and put its scheme before the endpoint: every ASR call failed.
    ("CRMHUB_ASR_PROTOCOL", "ftp", "http or https"),
    ("CRMHUB_ASR_ENDPOINT", "http://127.0.0.1:9000", "host[:port]"),
    # Accepted, though the README says a bad value stops every command: a sweep period of 0 ran the in-process
    # recovery sweep once and never again (and Celery beat sent it on every tick); a negative streak, cache age
    # or visibility timeout made no sense either.
    ("CRMHUB_REQUEUE_EVERY_S", "0", "greater than 0"),
    ("CRMHUB_REQUEUE_AFTER_S", "-1", "greater than or equal to 0"),
    ("CRMHUB_BROKER_VISIBILITY_TIMEOUT_S", "0", "greater than 0"),
    ("CRMHUB_ENDPOINT_DISABLE_AFTER_DAYS", "-1", "greater than 0"),
    ("CRMHUB_REGISTRY_CACHE_TTL_S", "-5", "greater than or equal to 0"),
])
def test_an_invalid_setting_is_one_line_and_exit_1(env_db: Callable[[str], None], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                   says: str) -> None:
    env_db(f"sqlite:///{tmp_path}/hub.db")
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["sources", "list"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: invalid setting {name}={value!r}: ") and says in line
    with pytest.raises(SystemExit) as exited:  # the same when the settings are first read to load plugins
        build_cli()
    assert exited.value.code == 1


def test_an_invalid_broker_url_is_named_without_its_password(env_db: Callable[[str], None], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`redis:/:s3cret@host` (one slash short) was refused with the whole value, password and all, on stderr."""
    env_db(f"sqlite:///{tmp_path}/hub.db")
    monkeypatch.setenv("CRMHUB_BROKER_URL", "redis:/:s3cret@127.0.0.1:6379/0")
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["sources", "list"])
    assert result.exit_code == 1 and "s3cret" not in result.output, result.output
    assert "invalid setting CRMHUB_BROKER_URL='redis:/:***@127.0.0.1:6379/0': " in result.stderr


@pytest.mark.parametrize("args", [["worker"], ["beat"], ["worker", "--metrics-port", "9100"]])
def test_worker_and_beat_without_a_broker_are_exit_1_naming_the_setting(
    env_db: Callable[[str], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Contract §2 keeps exit 2 for usage errors; nothing is wrong with `crmhub worker` as typed. A missing setting
    was a click usage error (2, with the usage text) while an invalid one was 1: both are the operator's setting."""
    env_db(f"sqlite:///{tmp_path}/hub.db")
    monkeypatch.setattr("hub.worker_metrics.restart_in_multiprocess_mode",
                        lambda argv: pytest.fail("restarted for metrics before checking the broker"))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: CRMHUB_BROKER_URL is not set; ") and "Usage:" not in result.stderr


def test_the_asr_protocol_is_read_in_any_case(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, asr_protocol="HTTP", asr_endpoint="[::1]:9000")
    assert (settings.asr_protocol, settings.asr_endpoint) == ("http", "[::1]:9000")


def test_a_misspelt_setting_is_reported_with_a_suggestion(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    assert unknown_env_names({"CRMHUB_DATABSE_URL": "x", "CRMHUB_TEST_PG": "1", "CRMHUB_NOPE": "1", "PATH": "/"}) \
        == ["CRMHUB_DATABSE_URL (did you mean CRMHUB_DATABASE_URL?)", "CRMHUB_NOPE"]
    monkeypatch.setenv("CRMHUB_PUBLIK_URL", "http://127.0.0.1:9000")
    assert "ignoring unknown setting CRMHUB_PUBLIK_URL (did you mean CRMHUB_PUBLIC_URL?)" in _settings_log(caplog)


def _settings_log(caplog: pytest.LogCaptureFixture) -> str:
    """What reading the settings afresh logs."""
    get_settings.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="hub.settings"):
            get_settings()
    finally:
        get_settings.cache_clear()
    return caplog.text


def test_a_misspelt_setting_in_dot_env_is_reported_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """README: a `.env` is read; its typos were ignored silently and the hub stayed on the default database."""
    (tmp_path / ".env").write_text("CRMHUB_DATABSE_URL=sqlite:///./other.db\n")
    monkeypatch.chdir(tmp_path)
    assert "ignoring unknown setting CRMHUB_DATABSE_URL (did you mean CRMHUB_DATABASE_URL?)" in _settings_log(caplog)


def test_a_misspelt_plugin_name_is_refused_naming_it(env_db: Callable[[str], None], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """CRMHUB_LOAD_PLUGINS=identity,webhook loaded no webhooks plugin, silently: /hooks/* answered 404."""
    from hub.plugins import load_plugins, make_plugin_manager

    with pytest.raises(HubError) as err:
        load_plugins(make_plugin_manager(), "identity,webhook,enrichment", entry_points=False)
    assert "'webhook' (did you mean 'webhooks'?)" in err.value.message


def test_a_wrong_data_dir_or_key_is_one_line_and_no_second_key_is_made(env_db: Callable[[str], None],
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A second data dir must not get a fresh secret.key: the sources already stored could never be read."""
    env_db(f"sqlite:///{tmp_path}/hub.db")
    added = CliRunner().invoke(cli, ["sources", "add", "pos", "till", "--config",
                                     json.dumps({"secret": "s" * 32}), "--json"])
    assert added.exit_code == 0, added.output
    source_id = json.loads(added.stdout)["id"]

    def fresh_cli(data_dir: Path) -> Result:
        made = current_hub()
        if made is not None:
            made.engine.dispose()
        set_hub(None)
        monkeypatch.setenv("CRMHUB_DATA_DIR", str(data_dir))
        get_settings.cache_clear()
        return CliRunner().invoke(cli, ["sources", "update", source_id, "--config", json.dumps({"secret": "t" * 32})])

    elsewhere = tmp_path / "another-data-dir"
    result = fresh_cli(elsewhere)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: CRMHUB_DATA_DIR={elsewhere} holds no secret.key") and "used before" in line
    assert not (elsewhere / "secret.key").exists()

    elsewhere.mkdir()
    (elsewhere / "secret.key").write_text("some-other-key\n")
    result = fresh_cli(elsewhere)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot decrypt a stored secret") and "CRMHUB_DATA_DIR" in line


@pytest.mark.parametrize(("args", "public_url"), [
    (["--port", "9123"], "http://127.0.0.1:9123"),
    (["--host", "0.0.0.0", "--port", "9124"], "http://127.0.0.1:9124"),
    (["--host", "::1", "--port", "9125"], "http://[::1]:9125"),
])
def test_serve_defaults_public_url_to_where_it_listens(env_db: Callable[[str], None], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                       public_url: str) -> None:
    """Webhook and ASR callback URLs must reach this server when CRMHUB_PUBLIC_URL is not set."""
    env_db(f"sqlite:///{tmp_path}/hub.db")
    monkeypatch.delenv("CRMHUB_PUBLIC_URL", raising=False)
    get_settings.cache_clear()
    seen: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(kw, url=current_hub().settings.public_base()))
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == 0, result.output
    assert seen["url"] == public_url and seen["port"] == int(args[-1])


def test_the_cli_shows_the_webhook_url_of_the_server_it_shares_a_data_dir_with(
    env_db: Callable[[str], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """helper-28: the API said :9127 (serve's port), `crmhub sources list` the default :8000."""
    env_db(f"sqlite:///{tmp_path}/hub.db")
    monkeypatch.delenv("CRMHUB_PUBLIC_URL", raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: None)
    assert CliRunner().invoke(cli, ["serve", "--port", "9127"]).exit_code == 0
    set_hub(None)
    get_settings.cache_clear()
    assert get_settings().public_base() == "http://127.0.0.1:9127"
    monkeypatch.setenv("CRMHUB_PUBLIC_URL", "https://hub.example.com/")  # an explicit setting still wins
    get_settings.cache_clear()
    assert get_settings().public_base() == "https://hub.example.com"


@pytest.mark.parametrize(("broker", "shown"), [
    ("redis://:s3cret@127.0.0.1:6399/0", "Celery via redis://:***@127.0.0.1:6399/0"),
    ("sentinel://:s3cret@127.0.0.1:26379;sentinel://:s3cret@127.0.0.2:26379",
     "Celery via sentinel://:***@127.0.0.1:26379;sentinel://:***@127.0.0.2:26379"),
])
def test_serve_prints_the_broker_url_without_its_password(env_db: Callable[[str], None], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, broker: str,
                                                          shown: str) -> None:
    """The database URL's password was hidden on serve's start-up line, the broker's printed in clear beside it."""
    env_db(f"sqlite:///{tmp_path}/hub.db")
    monkeypatch.setenv("CRMHUB_BROKER_URL", broker)
    get_settings.cache_clear()
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: None)
    result = CliRunner().invoke(cli, ["serve", "--port", "9128"])
    assert result.exit_code == 0, result.output
    assert shown in result.output and "s3cret" not in result.output


def test_serve_keeps_an_explicit_public_url(env_db: Callable[[str], None], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    env_db(f"sqlite:///{tmp_path}/hub.db")
    monkeypatch.setenv("CRMHUB_PUBLIC_URL", "https://hub.example.com")
    get_settings.cache_clear()
    seen: dict[str, str] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(url=current_hub().settings.public_base()))
    assert CliRunner().invoke(cli, ["serve", "--port", "9126"]).exit_code == 0
    assert seen["url"] == "https://hub.example.com"


def test_serve_refuses_a_port_out_of_range_or_taken(env_db: Callable[[str], None], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    env_db(f"sqlite:///{tmp_path}/hub.db")
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: pytest.fail("must not start"))
    assert CliRunner().invoke(cli, ["serve", "--port", "99999"]).exit_code == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_an_unusable_data_dir_is_one_line(env_db: Callable[[str], None], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    env_db(f"sqlite:///{tmp_path}/hub.db")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CRMHUB_DATA_DIR", str(blocker / "data"))
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["sources", "list"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot use CRMHUB_DATA_DIR={blocker / 'data'}: ")


def test_sources_add_help_lists_the_connectors_and_their_required_keys() -> None:
    shown = CliRunner().invoke(build_cli(), ["sources", "add", "--help"])
    assert shown.exit_code == 0
    lines = {line.split()[0]: line.split(None, 1)[1] for line in shown.output.splitlines()[-12:]
             if line.startswith("    ")}
    assert lines["pos"] == "secret" and lines["wecom"] == "corp_id, token, encoding_aes_key"


@pytest.mark.filterwarnings("ignore:You're running the worker with superuser")  # CI runs as root
def test_a_worker_that_celery_stops_on_an_error_exits_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-25: a worker killed by Celery's "Unrecoverable error" exited 0, so Restart=on-failure left it dead.
    A real Celery app and command line; only the worker's start is replaced by what that error leaves behind."""
    import celery.worker
    from celery import Celery

    def unrecoverable(self: Any) -> None:
        self.exitcode = 1  # what WorkController.start sets after logging "Unrecoverable error"

    monkeypatch.setattr(celery.worker.WorkController, "start", unrecoverable)
    monkeypatch.setattr("hub.cli._celery_app", lambda: Celery("exit-code-test", broker="memory://"))
    result = CliRunner().invoke(cli, ["worker", "--pool", "solo", "--concurrency", "1"])
    assert result.exit_code == 1, result.output
    assert "exit code 1" in result.stderr
    monkeypatch.setattr(celery.worker.WorkController, "start", lambda self: None)  # a clean stop
    assert CliRunner().invoke(cli, ["worker", "--pool", "solo", "--concurrency", "1"]).exit_code == 0


def test_generated_key_files_are_never_readable_by_others_and_processes_agree(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-31: secret.key and admin.token were written 0644, then chmod-ed: readable by anyone for a moment."""
    import os
    import stat
    import threading

    from hub.settings import Settings

    seen_modes: list[int] = []
    real_fdopen = os.fdopen

    def watching_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        seen_modes.append(stat.S_IMODE(os.fstat(fd).st_mode))  # the mode while the value is being written
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", watching_fdopen)
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(settings.resolved_secret_key())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    token, created = settings.resolved_admin_token()
    assert created and token.startswith("crmhub_")
    assert len(set(keys)) == 1  # eight "processes" starting at once agree on one key
    assert seen_modes and set(seen_modes) == {0o600}
    for name in ("secret.key", "admin.token"):
        assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600
