"""Settings, read lazily from the environment (prefix CLEARHOUSE_).

Call get_settings() where a value is needed, never at import time, so tests can switch
engines by changing the environment and calling get_settings.cache_clear().
"""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ENVIRONMENTS = ("development", "test")
# The URL schemes each database setting takes (psycopg 3 is the one Postgres driver installed).
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", *POSTGRES_SCHEMES)
WAREHOUSE_SCHEMES = ("duckdb", *POSTGRES_SCHEMES)


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _check_url(url: str | None, *, variable: str, schemes: tuple[str, ...],
               example: str) -> str | None:
    """An empty value means unset; anything else must be a URL of one of `schemes`. The
    message names the variable and the scheme only, never the URL (it may carry a password)."""
    if url is None or not url.strip():
        return None
    url = url.strip()
    scheme = _scheme(url)
    if scheme not in schemes:
        got = f"a {scheme!r} URL" if scheme else "a value that is not a URL"
        raise ValueError(f"{variable} must be {example}; got {got}")
    if scheme == "duckdb" and not url[len("duckdb://"):].strip("/"):
        raise ValueError(f"{variable}: duckdb:/// needs a file path, e.g. duckdb:///var/wh.duckdb")
    return url


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value may be a URL with its password, or the JWT secret
    model_config = SettingsConfigDict(env_prefix="CLEARHOUSE_", extra="ignore",
                                      hide_input_in_errors=True)
    # The published version one request reads (warehouse.published.pin); None: the current one.
    _published_snapshot: Path | None = PrivateAttr(default=None)

    environment: Literal["development", "test", "production"] = "development"
    home: Path = Field(default=Path("./var"), description="State folder")
    database_url: str | None = Field(default=None, description="The API's database (OLTP)")
    warehouse_url: str | None = Field(default=None, description="DuckDB file or Postgres URL")
    jwt_secret: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dagster_port: int = 3000  # `make dev` (dagster dev's web UI)
    idempotency_ttl_hours: int = 24
    rate_limit_per_key: float = 1000.0  # requests/s per API key
    rate_limit_per_ip: float = 1000.0  # requests/s per client IP
    rate_limit_per_customer: float = 10.0  # payments/s per paying customer (the design's limit)
    log_level: str = "INFO"
    # Postgres: create confirmed payments in four round trips (serving/services/fast_payments.py)
    payments_fast_path: bool = True
    # ml.registry: a challenger replaces the champion only if its holdout PR-AUC is this much higher
    ml_promotion_margin: float = Field(default=0.01, ge=0)
    # serving/fraud.py: the API scores each payment with the payments champion (0-99); review at
    # ml_review_score, reject at ml_block_score
    ml_live_scoring: bool = True
    ml_review_score: int = Field(default=65, ge=0, le=100)
    ml_block_score: int = Field(default=75, ge=0, le=100)
    # The embedded warehouse's memory cap for dbt and the ledger extract (DuckDB's memory_limit;
    # beyond it DuckDB spills to HOME's warehouse.duckdb.tmp). Its own default is 80 % of the
    # machine's memory, which a 10M-payment build fills.
    duckdb_memory_limit: str = "4GB"
    # How long an API request waits for a lock in its database (SQLite's write lock; a Postgres
    # row, key or advisory lock) before it gives up: the request's transaction is rolled back and
    # the caller gets 503 database_busy with Retry-After, instead of a request that hangs behind a
    # stuck transaction while every other request of that merchant or card queues behind it.
    db_lock_timeout_ms: int = Field(default=30_000, ge=1)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return _check_url(value, variable="CLEARHOUSE_DATABASE_URL", schemes=DATABASE_SCHEMES,
                          example="sqlite:///path or postgresql://user:password@host:port/db")

    @field_validator("warehouse_url")
    @classmethod
    def _warehouse_url(cls, value: str | None) -> str | None:
        return _check_url(value, variable="CLEARHOUSE_WAREHOUSE_URL", schemes=WAREHOUSE_SCHEMES,
                          example="duckdb:///path or postgresql://user:password@host:port/db")

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment == "production":
            if not self.jwt_secret or len(self.jwt_secret) < 32:
                raise ValueError("CLEARHOUSE_JWT_SECRET (>= 32 chars) is required in production")
            if self.database_url is None or self.database_url.startswith("sqlite"):
                raise ValueError("production needs CLEARHOUSE_DATABASE_URL pointing at Postgres")
        return self

    # Derived locations -------------------------------------------------------
    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def landing_dir(self) -> Path:
        return self.home_dir / "landing"

    @property
    def quarantine_dir(self) -> Path:
        return self.home_dir / "quarantine"

    @property
    def statements_dir(self) -> Path:
        return self.home_dir / "statements"

    @property
    def published_dir(self) -> Path:
        """Snapshots the API serves, so it never opens the live DuckDB warehouse file."""
        return self.home_dir / "published"

    @property
    def dagster_home(self) -> Path:
        return self.home_dir / "dagster"

    @property
    def oltp_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'clearhouse.sqlite'}"

    @property
    def warehouse_target(self) -> str:
        """URL of the warehouse: a duckdb:///path or a postgresql:// URL."""
        return self.warehouse_url or f"duckdb:///{self.home_dir / 'warehouse.duckdb'}"

    @property
    def warehouse_engine(self) -> Literal["duckdb", "postgres"]:
        return "postgres" if _scheme(self.warehouse_target) in POSTGRES_SCHEMES else "duckdb"

    @property
    def duckdb_path(self) -> Path:
        """The DuckDB file, absolute: a relative duckdb:///path is taken from the directory the
        command runs in (as CLEARHOUSE_HOME is), because dbt runs inside dbt_project/ and would
        otherwise open another file than the extract writes."""
        if self.warehouse_engine != "duckdb":
            raise ValueError("the warehouse is Postgres, not DuckDB")
        path = self.warehouse_target[len("duckdb://"):]
        path = path[1:] if path.startswith("/") else path  # duckdb:///rel, duckdb:////abs
        return Path(path).expanduser().resolve()

    def ensure_dirs(self) -> None:
        for path in (self.home_dir, self.landing_dir, self.quarantine_dir, self.statements_dir,
                     self.published_dir, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
        if self.warehouse_engine == "duckdb":
            self.duckdb_path.parent.mkdir(parents=True, exist_ok=True)

    def signing_secret(self) -> str:
        """JWT secret: configured, or (development only) generated once and kept under HOME."""
        if self.jwt_secret:
            return self.jwt_secret
        if self.environment not in DEV_ENVIRONMENTS:
            raise ValueError("CLEARHOUSE_JWT_SECRET is required outside development")
        path = self.home_dir / "jwt_secret"
        if not path.exists():
            _publish_once(path, secrets.token_urlsafe(48))
        secret = path.read_text().strip()
        if len(secret) < 32:
            raise ValueError(f"{path} holds no usable JWT secret (under 32 characters): "
                             "delete it to generate a new one, or set CLEARHOUSE_JWT_SECRET")
        return secret


def _publish_once(path: Path, content: str) -> None:
    """Create `path` holding `content` unless it exists, atomically: the content is written
    (0600, so never readable by others) to a private file first and then hard-linked into
    place, which fails if another process got there first. Two API workers starting on a fresh
    HOME thus read the same secret, never a half-written or empty file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first: its secret
            os.link(private, path)
    finally:
        private.unlink(missing_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
