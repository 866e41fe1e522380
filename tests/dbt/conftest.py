"""Fixtures for the dbt project tests: a throwaway DuckDB file and a throwaway Postgres database,
the raw schema created from ingest.raw_schema, and `dbt build` run as a subprocess (so each run
picks its target from env vars exactly as production does, through warehouse.connections.dbt_env's
variable names).

Postgres: the server at 127.0.0.1:5432 (trust auth, user postgres). When it is unreachable the
Postgres tests FAIL if CI=true and are skipped loudly otherwise. Self-contained on purpose (a
shared helper may later move to tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT_EXECUTABLE = Path(sys.executable).parent / "dbt"

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
PG_ADMIN_DB = "postgres"


# --- Postgres availability --------------------------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def postgres_unavailable_reason() -> str | None:
    """None when the Postgres server answers, else why not."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a project dependency
        return f"psycopg not importable: {exc}"
    try:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB,
                             connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def require_postgres() -> None:
    """Fail in CI, skip loudly elsewhere, when Postgres is not reachable."""
    reason = postgres_unavailable_reason()
    if reason is None:
        return
    message = (f"POSTGRES UNREACHABLE at {PG_USER}@{PG_HOST}:{PG_PORT} ({reason}); "
               "the Postgres half of the dbt tests did NOT run")
    if _in_ci():
        pytest.fail(message + " and CI=true, so this is a failure", pytrace=False)
    pytest.skip(message + " (set CI=true to make this a failure)")


# --- warehouses --------------------------------------------------------------------------------


@dataclass
class Warehouse:
    """A built warehouse: which engine, the env dbt ran with, and a way to query it."""

    engine: str
    env: dict[str, str]
    query: Callable[[str], list[dict[str, Any]]]
    execute_many: Callable[[str, list[tuple]], None]
    run_results: dict[str, Any] | None = None
    dbt_output: str = ""


def _duckdb_query(path: Path) -> Callable[[str], list[dict[str, Any]]]:
    import duckdb

    def query(sql: str) -> list[dict[str, Any]]:
        with duckdb.connect(str(path), read_only=True) as conn:
            cur = conn.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]

    return query


def _duckdb_execute_many(path: Path) -> Callable[[str, list[tuple]], None]:
    import duckdb

    def execute_many(sql: str, rows: list[tuple]) -> None:
        with duckdb.connect(str(path)) as conn:
            if rows:
                conn.executemany(sql, rows)
            else:
                conn.execute(sql)

    return execute_many


def _pg_conninfo(dbname: str) -> dict[str, Any]:
    return {"host": PG_HOST, "port": PG_PORT, "user": PG_USER, "dbname": dbname}


def _pg_query(dbname: str) -> Callable[[str], list[dict[str, Any]]]:
    import psycopg
    from psycopg.rows import dict_row

    def query(sql: str) -> list[dict[str, Any]]:
        with psycopg.connect(**_pg_conninfo(dbname), row_factory=dict_row) as conn:
            return list(conn.execute(sql).fetchall())

    return query


def _pg_execute_many(dbname: str) -> Callable[[str, list[tuple]], None]:
    import psycopg

    def execute_many(sql: str, rows: list[tuple]) -> None:
        with psycopg.connect(**_pg_conninfo(dbname)) as conn:
            with conn.cursor() as cur:
                if rows:
                    cur.executemany(sql.replace("?", "%s"), rows)
                else:
                    cur.execute(sql)
            conn.commit()

    return execute_many


def insert_raw(warehouse: Warehouse, table_name: str, rows: list[dict],
               extracted_at: datetime) -> None:
    """Rows into a raw table (the ledger extract's or the file loader's) as dicts by column;
    money columns as exact Decimals, `_extracted_at` (ledger tables) = `extracted_at`."""
    from ingest.files.schema import FILE_TABLES
    from ingest.raw_schema import RAW_SCHEMA, RAW_TABLES

    table = next(t for t in (*RAW_TABLES, *FILE_TABLES) if t.name == table_name)
    raw = table in RAW_TABLES
    cols = table.column_names + (["_extracted_at"] if raw else [])
    money = {c for c, kind in table.columns if kind == "money"}
    warehouse.execute_many(
        f"INSERT INTO {RAW_SCHEMA}.{table.name} ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' for _ in cols)})",
        [tuple(extracted_at if c == "_extracted_at" else
               Decimal(r[c]) if c in money and r.get(c) is not None else r.get(c)
               for c in cols) for r in rows])


@pytest.fixture(scope="module")
def duckdb_warehouse(tmp_path_factory) -> Warehouse:
    """A fresh DuckDB file with the raw schema (empty tables)."""
    from ingest.files.schema import create_statements as create_file_tables
    from ingest.raw_schema import create_statements

    path = tmp_path_factory.mktemp("duckdb") / "warehouse.duckdb"
    execute = _duckdb_execute_many(path)
    for stmt in create_statements("duckdb") + create_file_tables("duckdb"):
        execute(stmt, [])
    env = {"CLEARHOUSE_DBT_TARGET": "duckdb", "CLEARHOUSE_DUCKDB_PATH": str(path)}
    return Warehouse("duckdb", env, _duckdb_query(path), execute)


@pytest.fixture(scope="module")
def postgres_warehouse() -> Warehouse:
    """A fresh Postgres database ch_dbt_<hex> with the raw schema; dropped afterwards. The prefix
    may be set with CLEARHOUSE_TEST_PG_DB_PREFIX (an audit names its databases apart)."""
    require_postgres()
    import psycopg

    from ingest.files.schema import create_statements as create_file_tables
    from ingest.raw_schema import create_statements

    prefix = os.environ.get("CLEARHOUSE_TEST_PG_DB_PREFIX", "ch_dbt")
    dbname = f"{prefix}_{secrets.token_hex(6)}"
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


# --- dbt ----------------------------------------------------------------------------------------


def run_dbt_build(warehouse: Warehouse, work_dir: Path,
                  extra_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`dbt build` against the warehouse; target/ and logs/ go to work_dir, not the repo.
    extra_args: more dbt options, e.g. ("--vars", "{settlement_as_of: '2024-03-06'}")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARHOUSE_", "DBT_"))}
    env.update(warehouse.env)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    target_path = work_dir / "target"
    cmd = [
        str(DBT_EXECUTABLE), "build",
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--project-dir", str(DBT_PROJECT_DIR),
        "--threads", "2",
        "--target-path", str(target_path),
        "--log-path", str(work_dir / "logs"),
        "--no-use-colors",
        *extra_args,
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    warehouse.dbt_output = proc.stdout + proc.stderr
    results = target_path / "run_results.json"
    warehouse.run_results = json.loads(results.read_text()) if results.exists() else None
    return proc


@pytest.fixture(scope="session")
def dbt_build() -> Callable[[Warehouse, Path], subprocess.CompletedProcess]:
    """run_dbt_build as a fixture, so test modules never import this conftest by name."""
    return run_dbt_build


# --- one module's world, built on both engines -------------------------------------------------

DbtBuild = Callable[..., subprocess.CompletedProcess]


def built_on_both_engines(
    prefix: str,
    build: Callable[[Warehouse, pytest.TempPathFactory, DbtBuild], Any],
    *,
    name: str | None = None,
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """The fixtures that modules building one world on both engines would each repeat, so a
    module keeps only its build: `<prefix>_duckdb` and `<prefix>_postgres` run
    `build(warehouse, tmp_path_factory, dbt_build)` once per module on that engine, and `<name>`
    (default: prefix) is either, by engine, Postgres marked `postgres`. Assign the three at module
    level, where pytest collects fixtures."""

    @pytest.fixture(scope="module", name=f"{prefix}_duckdb")
    def on_duckdb(duckdb_warehouse, tmp_path_factory, dbt_build):
        return build(duckdb_warehouse, tmp_path_factory, dbt_build)

    @pytest.fixture(scope="module", name=f"{prefix}_postgres")
    def on_postgres(postgres_warehouse, tmp_path_factory, dbt_build):
        return build(postgres_warehouse, tmp_path_factory, dbt_build)

    @pytest.fixture(name=name or prefix,
                    params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
    def on_each_engine(request):
        return request.getfixturevalue(f"{prefix}_{request.param}")

    return on_duckdb, on_postgres, on_each_engine
