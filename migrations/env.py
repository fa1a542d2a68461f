"""Alembic environment: every package's tables live on the one `hub.db.Base.metadata`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

import enrichment.models  # noqa: F401
import hub.models  # noqa: F401
import identity.models  # noqa: F401
import webhooks.models  # noqa: F401
from hub.db import Base

config = context.config
target_metadata = Base.metadata


def _default_url() -> str:
    from hub.settings import Settings

    return Settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url") or _default_url(), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    section = dict(config.get_section(config.config_ini_section, {}))
    section.setdefault("sqlalchemy.url", _default_url())
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


def _run(connection: object) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":  # type: ignore[attr-defined]
            context.execute("SET LOCAL lock_timeout = '10s'")
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
