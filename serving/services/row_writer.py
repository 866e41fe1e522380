"""Write the rows domain code adds in one Postgres statement (the fast paths' last round trip).

Domain code runs against a `Collector` instead of a Session; `insert_ctes` turns the rows it
gathered into data-modifying CTEs, each table's rows passed as one JSON array
(json_populate_recordset). The SQL text depends only on which tables and columns are written,
so the driver caches it and the server prepares it (compiling a statement through SQLAlchemy
took longer than running it).
"""

from __future__ import annotations

import functools

from sqlalchemy import Engine
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from serving import jsonfast


class Collector:
    """Stands in for the Session the domain code writes through: keeps the rows it adds, and
    lends the lookups session for reads (cached merchant, price and channel settings). Given an
    Engine instead of a Session, it opens one on the first read only (a path whose domain code
    reads nothing, like an x402 settlement, then opens none) and closes it on `close`."""

    def __init__(self, lookups: Session | Engine):
        self._lookups = lookups
        self._opened: Session | None = None
        self.rows: list = []

    @property
    def lookups(self) -> Session:
        if isinstance(self._lookups, Session):
            return self._lookups
        if self._opened is None:
            self._opened = Session(self._lookups)
        return self._opened

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, obj) -> None:
        self.rows.append(obj)

    def add_all(self, objs) -> None:
        self.rows.extend(objs)

    def __getattr__(self, name):
        return getattr(self.lookups, name)


@functools.cache
def _columns(cls) -> tuple:
    """Per mapped class: (attribute key, column key, is a serial id, column default)."""
    return tuple((attr.key, attr.columns[0].key,
                  attr.columns[0].primary_key and attr.columns[0].autoincrement is True,
                  attr.columns[0].default)
                 for attr in sa_inspect(cls).column_attrs)


def row_values(obj) -> dict:
    """The column values of a pending ORM object, leaving out what the table fills itself
    (autoincrement ids) or defaults (created_at/updated_at when unset). A pending object holds
    what was set on it in its __dict__ (an attribute never set reads as None), which is read
    directly: going through the instrumented attributes cost more than the rest of the row."""
    state = obj.__dict__
    values = {}
    cls: type = type(obj)
    for key, column_key, serial, default in _columns(cls):
        value = state.get(key)
        if value is None:
            if serial:
                continue
            if default is not None:
                value = default.arg(None) if default.is_callable else default.arg
        values[column_key] = value
    return values


def insert_ctes(rows: list, *, when: str | None = None, name: str = "rows") -> tuple[str, list]:
    """`, <name>_<i> AS (INSERT ...)` for each table, and their parameters (driver-style %s).
    `when`, an SQL condition, guards every insert (e.g. that an earlier CTE updated a row)."""
    by_table: dict = {}
    for obj in rows:
        by_table.setdefault(obj.__table__, []).append(row_values(obj))
    sql, params = [], []
    guard = f" WHERE {when}" if when else ""
    for i, (table, values) in enumerate(by_table.items()):
        columns = ", ".join(dict.fromkeys(c for row in values for c in row))
        sql.append(f", {name}_{i} AS (INSERT INTO {table.name} ({columns}) SELECT {columns} "
                   f"FROM json_populate_recordset(NULL::{table.name}, %s){guard})")
        params.append(jsonfast.dumps(values))
    return "".join(sql), params
