"""Reading the files' raw tables in tests: a writer opened for one call and closed after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ingest.files.warehouse_io import open_files_writer


def with_writer(settings, fn: Callable[[Any], Any]) -> Any:
    """fn(writer) on a files writer of `settings`' warehouse (DuckDB or Postgres)."""
    writer = open_files_writer(settings)
    try:
        return fn(writer)
    finally:
        writer.close()


def rows(settings, sql: str, params: tuple = ()) -> list[tuple]:
    return with_writer(settings, lambda writer: writer.fetchall(sql, params))
