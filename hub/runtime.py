"""The running hub: settings, database, plugins, connectors and the task runner, built once per process."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pluggy
from sqlalchemy import exc as sa_exc, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.connector import Connector, ConnectorRegistry
from hub.crypto import SecretBox
from hub.db import make_engine, make_sessionmaker, transaction
from hub.errors import NotFound, SecretUnreadable
from hub.models import SourceRow
from hub.outbound import outbound_client
from hub.plugins import load_plugins, make_plugin_manager
from hub.settings import Settings, get_settings

log = logging.getLogger(__name__)

SOURCE_CACHE_TTL_S = 5.0
QUALITY_REPORT_CHECK_S = 3600.0  # the daily data-health report: checked hourly, stored once per UTC day
PULL_SWEEP_EVERY_S = 60.0  # how often hub.pull.pull_due looks for sources whose pull interval passed


@dataclass(frozen=True)
class ActiveSource:
    """What the request path needs of a source, decrypted once and cached briefly."""

    id: uuid.UUID
    name: str
    connector: Connector
    config: Any  # the connector's validated config model
    enabled: bool


class Hub:
    def __init__(
        self,
        settings: Settings,
        *,
        pm: pluggy.PluginManager | None = None,
        runner: Any = None,
        engine: Engine | None = None,
    ) -> None:
        import hub.pipeline  # noqa: F401  (registers the kernel's tasks)
        import hub.pull  # noqa: F401  (registers the pull driver's tasks)
        import hub.quality_report  # noqa: F401  (registers the daily data-health report task)
        from hub.retention import PRUNE_EVERY_S, RAW_TASK, REJECTIONS_TASK

        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        if pm is None:
            pm = make_plugin_manager()
            load_plugins(pm, settings.load_plugins)
        self.pm = pm
        self.connectors = ConnectorRegistry()
        self.connectors.collect(pm.hook.register_connectors)
        self.box = self._secret_box()
        self.schedules: list[tuple[str, float]] = [
            ("hub.pipeline.requeue_pending", settings.requeue_every_s), ("hub.pull.pull_due", PULL_SWEEP_EVERY_S)
        ]
        self.schedules.append(("hub.quality_report.daily", QUALITY_REPORT_CHECK_S))
        self.schedules.append((REJECTIONS_TASK, PRUNE_EVERY_S))
        self.schedules.append((RAW_TASK, PRUNE_EVERY_S))  # does nothing while CRMHUB_RAW_RETENTION_DAYS is 0
        pm.hook.register_schedules(schedule=lambda name, every: self.schedules.append((name, float(every))))
        self.runner = runner if runner is not None else self._default_runner()
        self._source_cache: dict[uuid.UUID, tuple[float, ActiveSource | None]] = {}
        self._cache_lock = threading.Lock()
        self._writer: Any = None
        self._http: httpx.Client | None = None

    def _secret_box(self) -> SecretBox:
        """The key that seals connector and endpoint secrets: CRMHUB_SECRET_KEY, else the data dir's secret.key.

        A data dir without secret.key gets a new one, unless the database already holds sources: they were
        sealed with another key, and a second key would leave them unreadable (a CLI run from another
        directory, with the default relative data dir, did exactly that).
        """
        settings = self.settings
        if not settings.secret_key and not settings.secret_key_file().exists() and self._has_sources():
            raise SecretUnreadable(
                f"CRMHUB_DATA_DIR={settings.data_dir.resolve()} holds no secret.key, but the database's sources were "
                "sealed with one: point CRMHUB_DATA_DIR at the data dir used before, or set CRMHUB_SECRET_KEY",
                code="secret_key_missing")
        # The origin names a variable, never a path: an unreadable secret's message can reach an HTTP caller.
        return SecretBox(settings.resolved_secret_key(),
                         key_origin="CRMHUB_SECRET_KEY" if settings.secret_key else "secret.key in CRMHUB_DATA_DIR")

    def _has_sources(self) -> bool:
        try:
            with self.sessions() as session:
                return session.scalar(select(SourceRow.id).limit(1)) is not None
        except sa_exc.DBAPIError:  # no tables yet (not migrated) or no database: nothing sealed to protect
            return False

    def _default_runner(self) -> Any:
        if self.settings.broker_url:
            from hub.worker import CeleryRunner, make_celery

            return CeleryRunner(make_celery(self.settings, self.schedules))
        from hub.inprocess import InProcessRunner

        runner = InProcessRunner(workers=self.settings.inprocess_workers, maxsize=self.settings.inprocess_queue_size)
        for name, every in self.schedules:
            runner.schedule(name, every)
        return runner

    # ---------------------------------------------------------------- db
    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    def migrate(self) -> None:
        from hub.migrate import upgrade

        upgrade(self.engine)

    # ---------------------------------------------------------------- sources
    def active_source(self, source_id: uuid.UUID) -> ActiveSource:
        """The enabled source, from a short-lived cache; NotFound for unknown or disabled ones."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._source_cache.get(source_id)
        if hit is None or hit[0] < now:
            with self.sessions() as session:
                row = session.get(SourceRow, source_id)
                active = self._activate(row) if row is not None else None
            with self._cache_lock:
                self._source_cache[source_id] = (now + SOURCE_CACHE_TTL_S, active)
        else:
            active = hit[1]
        if active is None or not active.enabled:
            raise NotFound(f"no enabled source {source_id}", code="source_not_found")
        return active

    def load_source(self, row: SourceRow) -> ActiveSource:
        return self._activate(row)

    def _activate(self, row: SourceRow) -> ActiveSource:
        connector = self.connectors.get(row.connector)
        config = connector.validate_config(self.box.open(row.config_sealed), allow_unknown=True)
        return ActiveSource(row.id, row.name, connector, config, row.enabled)

    def forget_source(self, source_id: uuid.UUID) -> None:
        with self._cache_lock:
            self._source_cache.pop(source_id, None)

    @property
    def http(self) -> httpx.Client:
        """The one outbound HTTP client connectors get (answers bounded in time and size, no redirects)."""
        if self._http is None:
            self._http = outbound_client()
        return self._http

    # ---------------------------------------------------------------- lifecycle
    @property
    def writer(self) -> Any:
        if self._writer is None:
            from hub.ingest import RawWriter

            self._writer = RawWriter(self)
        return self._writer

    def start(self) -> None:
        if self._writer is not None and self._writer.closed:  # restarted: store requests again
            self._writer = None
        self.runner.start()

    def stop(self) -> None:
        """Store and answer what was submitted, then drain the runner. The stopped writer stays in place: a
        request arriving later is answered 503 (ShuttingDown) instead of starting a writer nobody stops."""
        self.writer.stop()  # made (and closed at once) if no request came: a late one must find it closed
        self.runner.stop()
        if self._http is not None:
            self._http.close()
            self._http = None


_current: Hub | None = None
_current_lock = threading.Lock()


def set_hub(hub: Hub | None) -> None:
    global _current
    _current = hub


def current_hub() -> Hub | None:
    return _current


def get_hub() -> Hub:
    """The process's hub; a Celery worker builds it from the environment on first use."""
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = Hub(get_settings())
    return _current
