"""Connections to the API's database (SQLAlchemy) and to the warehouse (DuckDB or Postgres).

SQLite is opened in WAL mode with a busy timeout so concurrent API requests queue instead of
failing with 'database is locked'; Postgres sessions get the same bound as `lock_timeout`
(Settings.db_lock_timeout_ms): past it a request fails (serving/errors.py answers 503
database_busy) rather than waiting without end.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote, urlparse

from sqlalchemy import Engine, create_engine, event

from warehouse.settings import Settings, get_settings

DEFAULT_LOCK_TIMEOUT_MS = 30_000


def pg_session_options(lock_timeout_ms: int) -> str:
    """libpq `options` for the API's Postgres sessions."""
    return f"-c lock_timeout={int(lock_timeout_ms)}"


def make_oltp_engine(url: str, *, pool_size: int = 16,
                     lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": lock_timeout_ms / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(lock_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        # BEGIN IMMEDIATE: a writing transaction takes the write lock at the start, so two
        # writers never deadlock upgrading read locks (pysqlite's deferred BEGIN would). Reads
        # (an engine from read_only(engine)) keep a plain BEGIN, so WAL serves them concurrently.
        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):  # pragma: no cover - trivial
            read = conn.get_execution_options().get(READ_ONLY_OPTION)
            conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

        return engine
    url = to_sqlalchemy_pg_url(url)
    # Sized for a worker's concurrent requests: an overflow connection is closed on return, and
    # a new Postgres backend per request costs more than the request. No pre-ping (a round trip
    # per checkout): a connection found dead fails its request and invalidates the pool, which
    # then reconnects; connections are recycled every 30 minutes.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size // 2,
                         pool_recycle=1800, pool_use_lifo=True,
                         connect_args={"options": pg_session_options(lock_timeout_ms)})


READ_ONLY_OPTION = "clearhouse_read_only"


def read_only(engine: Engine) -> Engine:
    """The same engine (and pool) for transactions that only read."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def to_sqlalchemy_pg_url(url: str) -> str:
    """postgresql://... -> postgresql+psycopg://... (psycopg 3)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def to_libpq_url(url: str) -> str:
    """Any postgres URL -> postgresql://... as libpq, psycopg and ADBC take it."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


@lru_cache(maxsize=4)
def _engine_for(url: str) -> Engine:
    return make_oltp_engine(url)


def oltp_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    if settings.oltp_url.startswith("sqlite"):
        settings.home_dir.mkdir(parents=True, exist_ok=True)
    return _engine_for(settings.oltp_url)


def dbt_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment variables dbt_project/profiles.yml reads to reach the configured warehouse."""
    settings = settings or get_settings()
    if settings.warehouse_engine == "duckdb":
        return {"CLEARHOUSE_DBT_TARGET": "duckdb",
                "CLEARHOUSE_DUCKDB_PATH": str(settings.duckdb_path),
                "CLEARHOUSE_DUCKDB_MEMORY_LIMIT": settings.duckdb_memory_limit}
    parts = urlparse(to_libpq_url(settings.warehouse_target))
    return {
        "CLEARHOUSE_DBT_TARGET": "postgres",
        "CLEARHOUSE_PG_HOST": parts.hostname or "127.0.0.1",
        "CLEARHOUSE_PG_PORT": str(parts.port or 5432),
        "CLEARHOUSE_PG_USER": unquote(parts.username or "postgres"),
        "CLEARHOUSE_PG_PASSWORD": unquote(parts.password or ""),
        "CLEARHOUSE_PG_DBNAME": (parts.path or "/postgres").lstrip("/") or "postgres",
    }
