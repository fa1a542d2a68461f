"""Shared fixtures: a fresh hub per test on SQLite (default) or on a throw-away PostgreSQL database."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from hub.db import Base
from hub.plugins import load_plugins, make_plugin_manager
from hub.runtime import Hub, set_hub
from hub.settings import Settings

PG_ADMIN_URL = os.environ.get("CRMHUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CRMHUB_TEST_REDIS", "redis://127.0.0.1:6379/0")
ADMIN_TOKEN = "test-admin-token"

# `pytest --hypothesis-profile=fuzz`: many random examples for the fuzz tests that read it (test_structure_fuzz.py).
settings.register_profile("fuzz", max_examples=2000, deadline=None)

for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)


@pytest.fixture(autouse=True)
def _collector_settings_restored() -> Iterator[None]:
    """Commands under test call hub.gcpolicy.settle_gc(); the rest of the session keeps the defaults."""
    threshold = gc.get_threshold()
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
    gc.set_threshold(*threshold)


def _all_models() -> None:
    import enrichment.models  # noqa: F401
    import hub.models  # noqa: F401
    import identity.models  # noqa: F401
    import webhooks.models  # noqa: F401


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards (runs may overlap)."""
    name = f"crmhub_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - CI starts PostgreSQL
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_settings(tmp_path: Path, database_url: str | None = None, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url or f"sqlite:///{tmp_path / 'hub.db'}",
        "admin_token": ADMIN_TOKEN,
        "secret_key": "test-secret-key",
        "data_dir": tmp_path / "data",
        "public_url": "http://127.0.0.1:8000",
        "broker_url": "",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def make_hub(settings: Settings, *, plugins: str | None = None, runner: object = None) -> Hub:
    """A hub with built-in plugins registered directly (tests never load entry points)."""
    pm = make_plugin_manager()
    load_plugins(pm, plugins, entry_points=False)
    _all_models()
    hub = Hub(settings, pm=pm, runner=runner)
    Base.metadata.create_all(hub.engine)
    set_hub(hub)
    return hub


def running(h: Hub) -> Iterator[Hub]:
    """Start the hub's runner for the test, then stop it and release the database."""
    h.start()
    yield h
    h.stop()
    h.engine.dispose()
    set_hub(None)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    yield from running(make_hub(make_settings(tmp_path)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """The same test on SQLite and on PostgreSQL."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    yield from running(make_hub(make_settings(tmp_path, url)))


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_TOKEN}"}
