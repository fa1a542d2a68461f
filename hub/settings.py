"""The one place that reads the environment (contract §1)."""

from __future__ import annotations

import difflib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.errors import HubError

DEFAULT_RETRY_SCHEDULE = "0,5,300,1800,7200,18000,36000,36000"
ENV_PREFIX = "CRMHUB_"
RAW_RETENTION_MIN_DAYS = 7  # CRMHUB_RAW_RETENTION_DAYS, when not 0
# Variables of this project's own tests, benchmarks and scripts/demo, not settings: never reported as unknown.
_NOT_SETTINGS = ("CRMHUB_TEST_", "CRMHUB_BENCH_", "CRMHUB_DEMO_DIR")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_LIMIT = re.compile(r"[a-z][a-z0-9_]*\s*=\s*\d+")

log = logging.getLogger(__name__)
SERVED_URL_FILE = "served.url"  # where `crmhub serve` last listened (Settings.public_base)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./crmhub.db"
    broker_url: str = ""
    admin_token: str = ""
    secret_key: str = ""
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    retry_schedule: str = DEFAULT_RETRY_SCHEDULE
    allow_private_endpoints: bool = False
    tencentcloud_secret_id: str = ""
    tencentcloud_secret_key: str = ""
    asr_region: str = "ap-shanghai"
    asr_endpoint: str = ""
    asr_protocol: str = "https"
    silent_days: int = Field(default=30, gt=0)
    metrics_public: bool = False
    # Additions beyond the contract's table.
    data_dir: Path = Field(default=Path(".crmhub"))
    load_plugins: str | None = None  # comma-separated plugin names; None = all
    inprocess_queue_size: int = Field(default=10_000, gt=0)
    inprocess_workers: int = Field(default=1, gt=0)
    ingest_batch_max: int = Field(default=256, gt=0)
    endpoint_disable_after_days: float = Field(default=5.0, gt=0)
    summary_extractor: str = "rules"  # or "hunyuan"
    hunyuan_endpoint: str = ""
    hunyuan_model: str = "hunyuan-turbos-latest"
    registry_cache_ttl_s: int = Field(default=30 * 86400, ge=0)
    identity_placeholders: str = ""  # extra placeholder values never used for matching, comma-separated
    identity_limits: str = ""  # per-type value limits, e.g. "web_user_id=1,email=3" (defaults: web_user_id 1, others 5)
    broker_visibility_timeout_s: float = Field(default=3600.0, gt=0)  # unacked tasks return to the queue after this
    broker_key_prefix: str = ""  # lets several hubs (or test runs) share one Redis
    requeue_after_s: float = Field(default=60.0, ge=0)  # pending raw rows older than this are re-enqueued by the sweep
    # A period of 0 or less ran the in-process sweep once and never again (a zero countdown skips the timer), and
    # made Celery beat send it on every tick.
    requeue_every_s: float = Field(default=60.0, gt=0)
    # Retention (docs/operations.md): days an operational log keeps its rows; 0 keeps them forever. Whole days, so a
    # window never reaches into the last hour that health reports count; at most a century, past which the cut-off
    # date is before year 1 and every prune would fail.
    attempts_retention_days: int = Field(default=30, ge=0, le=36_500)
    rejections_retention_days: int = Field(default=30, ge=0, le=36_500)
    # Handled raw requests are the record, not a log: kept for ever unless the operator sets a window. At least a
    # week when set: platforms redeliver within days, and a redelivery is answered as a duplicate by its raw row.
    raw_retention_days: int = Field(default=0, ge=0, le=36_500)

    @field_validator("raw_retention_days")
    @classmethod
    def _raw_window_is_off_or_a_week(cls, value: int) -> int:
        if 0 < value < RAW_RETENTION_MIN_DAYS:
            raise ValueError(f"0 (keep for ever) or at least {RAW_RETENTION_MIN_DAYS} days: a platform's redelivery "
                             "within days is answered as a duplicate only while its raw request is kept")
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _delays_are_seconds(cls, value: str) -> str:
        """Checked at startup: a bad schedule would otherwise fail every delivery, one at a time, much later."""
        items = [x.strip() for x in value.split(",") if x.strip()]
        bad = [x for x in items if not _NUMBER.fullmatch(x)]
        if bad:
            raise ValueError(f"comma-separated seconds, e.g. {DEFAULT_RETRY_SCHEDULE}; not a number: {', '.join(bad)}")
        return value

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        """Webhook URLs are built on it and must be absolute (contract §3): `notaurl/hooks/…` reaches nobody."""
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("an absolute http(s) URL, e.g. https://hub.example.com")
        return value.strip()

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        """Empty (tasks in-process) or a URL: `nonsense` made the worker retry amqp://guest@nonsense forever."""
        if value.strip() and "://" not in value:
            raise ValueError("empty (tasks run in-process) or a broker URL, e.g. redis://127.0.0.1:6379/0")
        return value.strip()

    @field_validator("asr_protocol")
    @classmethod
    def _http_or_https(cls, value: str) -> str:
        """The SDK takes anything but `http` as https: `HTTP` for a local endpoint failed every ASR call on TLS."""
        if value.strip().lower() not in ("http", "https"):
            raise ValueError("http or https")
        return value.strip().lower()

    @field_validator("asr_endpoint")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        """`host[:port]` (contract §1): the SDK puts its scheme before it, so `http://…` reached no host."""
        if "/" in value:
            raise ValueError("host[:port] with no scheme or path, e.g. 127.0.0.1:9000 (the scheme is "
                             "CRMHUB_ASR_PROTOCOL)")
        return value.strip()

    @field_validator("identity_limits")
    @classmethod
    def _limits_are_pairs(cls, value: str) -> str:
        bad = [p.strip() for p in value.split(",") if p.strip() and not _LIMIT.fullmatch(p.strip())]
        if bad:
            raise ValueError(f"comma-separated TYPE=N pairs, e.g. web_user_id=1,email=3; not one: {', '.join(bad)}")
        return value

    @property
    def retry_delays(self) -> list[float]:
        return [float(x) for x in self.retry_schedule.split(",") if x.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def public_base(self) -> str:
        """CRMHUB_PUBLIC_URL; unset, the URL `crmhub serve` last listened on with this data dir, else the default.

        So `crmhub sources list` prints the same `webhook_url` as the API of a server on another port.
        """
        if "public_url" not in self.model_fields_set:
            try:
                served = (self.data_dir / SERVED_URL_FILE).read_text(encoding="utf-8").strip()
            except OSError:
                served = ""
            if served:
                return served.rstrip("/")
        return self.public_url.rstrip("/")

    def remember_served_url(self) -> None:
        """Called by `crmhub serve` once it knows where it listens (see `public_base`)."""
        try:
            self._data_file(SERVED_URL_FILE).write_text(self.public_base() + "\n", encoding="utf-8")
        except OSError as exc:  # only the CLI's webhook_url depends on it
            log.warning("could not record the served URL in %s: %s", self.data_dir, exc)

    def _data_file(self, name: str, make: bool = True) -> Path:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # an operator's path, not a bug: one line, not a traceback
            raise HubError(f"cannot use CRMHUB_DATA_DIR={self.data_dir}: {exc.strerror or exc}",
                           code="data_dir_unusable") from exc
        return self.data_dir / name

    def secret_key_file(self) -> Path:
        return self.data_dir / "secret.key"

    def resolved_secret_key(self) -> str:
        """CRMHUB_SECRET_KEY, else a key generated once into the data dir (0600)."""
        if self.secret_key:
            return self.secret_key
        return _read_or_create(self._data_file(self.secret_key_file().name), lambda: secrets.token_urlsafe(32))

    def resolved_admin_token(self) -> tuple[str, bool]:
        """CRMHUB_ADMIN_TOKEN, else one generated into the data dir. Returns (token, newly_created)."""
        if self.admin_token:
            return self.admin_token, False
        path = self._data_file("admin.token")
        existed = path.exists()
        token = _read_or_create(path, lambda: "crmhub_" + secrets.token_urlsafe(24))
        return token, not existed


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The value in `path`, else a new one written there.

    The file is created 0600 (O_EXCL): written then chmod-ed, it was world-readable for a moment (helper-31).
    O_EXCL also makes two processes starting together (serve, worker, beat) agree on one value.
    """
    for _ in range(100):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.02)  # another process has created it and is writing
            continue
        value = str(make())
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
        return value
    raise HubError(f"{path} exists but is empty; delete it to have a new value generated", code="data_dir_unusable")


def unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    """`CRMHUB_*` variables that name no setting, each with the setting it was probably meant to be.

    pydantic-settings ignores them, so a misspelt CRMHUB_DATABSE_URL would silently leave the hub on SQLite.
    """
    known = [ENV_PREFIX + name.upper() for name in Settings.model_fields]
    out = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known and not upper.startswith(_NOT_SETTINGS):
            near = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
            out.append(f"{name} (did you mean {near[0]}?)" if near else name)
    return out


# The password of a URL's `user:password@`: a mistyped broker URL (`redis:/:pw@host`) is refused, and the message
# naming it goes to stderr and the service's log.
_URL_PASSWORD = re.compile(r"(?<=:)[^:@\s]+(?=@)")


def hide_url_password(value: str) -> str:
    """`value` with the password of every `user:password@` in it shown as `***`."""
    return _URL_PASSWORD.sub("***", value)


def describe_invalid(exc: ValidationError) -> str:
    """One line naming each bad setting by its environment variable, its value (a URL's password hidden) and what
    it should be."""
    parts = []
    for error in exc.errors():
        name = ENV_PREFIX + str(error["loc"][0]).upper() if error.get("loc") else "a setting"
        message = str(error["msg"]).removeprefix("Value error, ")
        given = error.get("input")
        shown = hide_url_password(given) if isinstance(given, str) else given
        parts.append(f"{name}={shown!r}: {message}")
    return "invalid setting " + "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; unknown CRMHUB_ variables (environment or `.env`) are logged once, as a typo."""
    settings = Settings()
    for name in unknown_env_names({**_dotenv_names(), **os.environ}):
        log.warning("ignoring unknown setting %s", name)
    return settings


def _dotenv_names(path: Path = Path(".env")) -> dict[str, str]:
    """The names a `.env` file sets (pydantic-settings reads it, and ignores a misspelt name there too)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    try:
        return {k: v or "" for k, v in dotenv_values(path).items()}
    except (OSError, UnicodeDecodeError):
        return {}
