"""Alembic environment: the URL comes from the caller (warehouse.migrate) or the settings."""

from __future__ import annotations

from alembic import context

from warehouse.connections import make_oltp_engine
from warehouse.models import Base
from warehouse.settings import get_settings

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().oltp_url
    engine = make_oltp_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
