"""Reconciliation spec scenarios: a warehouse per engine (DuckDB file, Postgres database `audit_b_<hex>`), the
ledger side inserted into the raw tables (what the extract writes), the channel side dropped as
real files into the landing zone and loaded by the loader, then the reconciliation models built
with dbt for a given recon_as_of."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest

from tests.dbt.conftest import (
    PG_ADMIN_DB,
    Warehouse,
    _duckdb_execute_many,
    _duckdb_query,
    _pg_conninfo,
    _pg_execute_many,
    _pg_query,
    require_postgres,
    run_dbt_build,
)

RECON_SELECT = ("--select", "+fct_reconciliation_breaks", "+rpt_reconciliation_daily",
                "--exclude", "test_type:singular")


class AuditWarehouse:
    """A warehouse plus a landing zone: insert ledger rows, drop files, load, build."""

    def __init__(self, warehouse: Warehouse, url: str, home: Path):
        from warehouse.settings import Settings

        self.wh = warehouse
        self.engine = warehouse.engine
        self.home = home
        self.settings = Settings(home=home, environment="test", warehouse_url=url)
        self.settings.ensure_dirs()
        self.outcomes = []

    def insert(self, table: str, rows: list[dict]) -> None:
        from tests.dbt.test_settlement import _insert

        _insert(self.wh, table, rows)

    def drop(self, source: str, name: str, data: bytes) -> Path:
        target = self.settings.landing_dir / source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def load(self):
        from ingest.files.loader import load_landing

        report = load_landing(self.settings)
        self.outcomes += report.files
        return report

    def build(self, as_of: str, work: Path, **more_vars) -> None:
        proc = run_dbt_build(self.wh, work, (*RECON_SELECT, "--vars",
                                             json.dumps({"recon_as_of": as_of, **more_vars})))
        assert proc.returncode == 0, self.wh.dbt_output[-8000:]

    def query(self, sql: str):
        return self.wh.query(sql)

    def snapshot(self) -> dict:
        def rows(model, *key):
            return sorted(self.query(f"select * from analytics.{model}"),
                          key=lambda r: tuple(str(r[k]) for k in key))

        return {"matches": rows("fct_reconciliation_matches", "match_id"),
                "breaks": rows("fct_reconciliation_breaks", "break_id"),
                "daily": rows("rpt_reconciliation_daily", "day", "channel", "currency")}


def _schema(execute, engine: str) -> None:
    from ingest.files.schema import create_statements as create_file_tables
    from ingest.raw_schema import create_statements

    for stmt in create_statements(engine) + create_file_tables(engine):
        execute(stmt, [])


@pytest.fixture(scope="module")
def audit_duckdb(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit_duck")
    path = root / "warehouse.duckdb"
    execute = _duckdb_execute_many(path)
    _schema(execute, "duckdb")
    env = {"CLEARHOUSE_DBT_TARGET": "duckdb", "CLEARHOUSE_DUCKDB_PATH": str(path)}
    wh = Warehouse("duckdb", env, _duckdb_query(path), execute)
    return AuditWarehouse(wh, f"duckdb:///{path}", root / "home")


@pytest.fixture(scope="module")
def audit_postgres(tmp_path_factory):
    require_postgres()
    import psycopg

    root = tmp_path_factory.mktemp("audit_pg")
    dbname = f"audit_b_{secrets.token_hex(5)}"
    with psycopg.connect(**_pg_conninfo(PG_ADMIN_DB), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        execute = _pg_execute_many(dbname)
        _schema(execute, "postgres")
        env = {"CLEARHOUSE_DBT_TARGET": "postgres", "CLEARHOUSE_PG_HOST": "127.0.0.1",
               "CLEARHOUSE_PG_PORT": "5432", "CLEARHOUSE_PG_USER": "postgres",
               "CLEARHOUSE_PG_PASSWORD": "", "CLEARHOUSE_PG_DBNAME": dbname}
        wh = Warehouse("postgres", env, _pg_query(dbname), execute)
        yield AuditWarehouse(wh, f"postgresql://postgres@127.0.0.1:5432/{dbname}", root / "home")
    finally:
        with psycopg.connect(**_pg_conninfo(PG_ADMIN_DB), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(root, ignore_errors=True)
