"""Fixtures for the audit scenarios: the dbt test fixtures (a throwaway DuckDB file, a
throwaway Postgres database audit_a_<hex>, `dbt build` as a subprocess), reused from
tests/dbt/conftest.py's helpers."""

from __future__ import annotations

import secrets

import pytest

from tests.dbt.conftest import (  # noqa: F401 - helpers, not fixtures
    PG_ADMIN_DB,
    PG_HOST,
    PG_PORT,
    PG_USER,
    Warehouse,
    _duckdb_execute_many,
    _duckdb_query,
    _pg_conninfo,
    _pg_execute_many,
    _pg_query,
    require_postgres,
    run_dbt_build,
)


@pytest.fixture(scope="module")
def audit_duckdb(tmp_path_factory) -> Warehouse:
    from ingest.files.schema import create_statements as create_file_tables
    from ingest.raw_schema import create_statements

    path = tmp_path_factory.mktemp("audit_duckdb") / "warehouse.duckdb"
    execute = _duckdb_execute_many(path)
    for stmt in create_statements("duckdb") + create_file_tables("duckdb"):
        execute(stmt, [])
    env = {"CLEARHOUSE_DBT_TARGET": "duckdb", "CLEARHOUSE_DUCKDB_PATH": str(path)}
    return Warehouse("duckdb", env, _duckdb_query(path), execute)


@pytest.fixture(scope="module")
def audit_postgres() -> Warehouse:
    require_postgres()
    import psycopg

    from ingest.files.schema import create_statements as create_file_tables
    from ingest.raw_schema import create_statements

    dbname = f"audit_a_{secrets.token_hex(5)}"
    with psycopg.connect(**_pg_conninfo(PG_ADMIN_DB), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        execute = _pg_execute_many(dbname)
        for stmt in create_statements("postgres") + create_file_tables("postgres"):
            execute(stmt, [])
        env = {
            "CLEARHOUSE_DBT_TARGET": "postgres",
            "CLEARHOUSE_PG_HOST": PG_HOST,
            "CLEARHOUSE_PG_PORT": str(PG_PORT),
            "CLEARHOUSE_PG_USER": PG_USER,
            "CLEARHOUSE_PG_PASSWORD": "",
            "CLEARHOUSE_PG_DBNAME": dbname,
        }
        yield Warehouse("postgres", env, _pg_query(dbname), execute)
    finally:
        with psycopg.connect(**_pg_conninfo(PG_ADMIN_DB), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
