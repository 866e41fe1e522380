"""warehouse/settings.py: defaults, CLEARHOUSE_* overrides, production guards, the cache."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from warehouse import settings as settings_module
from warehouse.settings import Settings, get_settings

PG = "postgresql://clearhouse:pw@db.example:5432/clearhouse"
SECRET_32 = "s" * 32


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No CLEARHOUSE_* from the outer environment, cwd in a temp dir, a fresh settings cache."""
    for key in list(os.environ):
        if key.upper().startswith("CLEARHOUSE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults(tmp_path: Path) -> None:
    s = Settings()
    cwd = tmp_path.resolve()
    assert s.environment == "development"
    assert s.home == Path("var")
    assert s.home_dir == cwd / "var"
    assert s.database_url is None and s.warehouse_url is None and s.jwt_secret is None
    assert s.oltp_url == f"sqlite:///{cwd / 'var' / 'clearhouse.sqlite'}"
    assert s.warehouse_target == f"duckdb:///{cwd / 'var' / 'warehouse.duckdb'}"
    assert s.warehouse_engine == "duckdb"
    assert s.duckdb_path == cwd / "var" / "warehouse.duckdb"
    assert (s.api_host, s.api_port, s.idempotency_ttl_hours) == ("127.0.0.1", 8000, 24)


def test_derived_dirs_live_under_home_and_are_created(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h")
    home = (tmp_path / "h").resolve()
    expected = {home / n for n in ("landing", "quarantine", "statements", "published", "dagster")}
    assert {s.landing_dir, s.quarantine_dir, s.statements_dir, s.published_dir,
            s.dagster_home} == expected
    assert not home.exists()
    s.ensure_dirs()
    s.ensure_dirs()  # idempotent
    assert all(p.is_dir() for p in expected)


def test_home_env_override_moves_the_databases(monkeypatch, tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("CLEARHOUSE_HOME", str(home))
    s = Settings()
    assert s.home_dir == home.resolve()
    assert s.oltp_url == f"sqlite:///{home.resolve() / 'clearhouse.sqlite'}"
    assert s.duckdb_path == home.resolve() / "warehouse.duckdb"


def test_home_expands_user(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("CLEARHOUSE_HOME", "~/ch")
    assert Settings().home_dir == (tmp_path / "user" / "ch").resolve()


def test_database_url_env_override(monkeypatch) -> None:
    monkeypatch.setenv("CLEARHOUSE_DATABASE_URL", PG)
    s = Settings()
    assert s.database_url == PG
    assert s.oltp_url == PG
    assert s.warehouse_engine == "duckdb"  # the warehouse is configured separately


@pytest.mark.parametrize("url", [PG, "postgres://u@h/wh", "postgresql+psycopg://u@h/wh"])
def test_postgres_warehouse_url_env_override(monkeypatch, url: str) -> None:
    monkeypatch.setenv("CLEARHOUSE_WAREHOUSE_URL", url)
    s = Settings()
    assert s.warehouse_target == url
    assert s.warehouse_engine == "postgres"
    with pytest.raises(ValueError):
        _ = s.duckdb_path


def test_duckdb_warehouse_url_env_override(monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "wh" / "x.duckdb"
    monkeypatch.setenv("CLEARHOUSE_WAREHOUSE_URL", f"duckdb:///{path}")
    s = Settings()
    assert s.warehouse_engine == "duckdb"
    assert s.duckdb_path == path


def test_scalar_env_overrides_are_typed(monkeypatch) -> None:
    monkeypatch.setenv("CLEARHOUSE_API_PORT", "9123")
    monkeypatch.setenv("CLEARHOUSE_ENVIRONMENT", "test")
    s = Settings()
    assert s.api_port == 9123
    assert s.environment == "test"


def test_unknown_environment_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("CLEARHOUSE_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError):
        Settings()


# --- production guards ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "CLEARHOUSE_JWT_SECRET"),
        ({"CLEARHOUSE_DATABASE_URL": PG}, "CLEARHOUSE_JWT_SECRET"),
        ({"CLEARHOUSE_DATABASE_URL": PG, "CLEARHOUSE_JWT_SECRET": ""}, "CLEARHOUSE_JWT_SECRET"),
        ({"CLEARHOUSE_DATABASE_URL": PG, "CLEARHOUSE_JWT_SECRET": "s" * 31},
         "CLEARHOUSE_JWT_SECRET"),
        ({"CLEARHOUSE_JWT_SECRET": SECRET_32}, "CLEARHOUSE_DATABASE_URL"),
        ({"CLEARHOUSE_JWT_SECRET": SECRET_32, "CLEARHOUSE_DATABASE_URL": "sqlite:///x.db"},
         "CLEARHOUSE_DATABASE_URL"),
        ({"CLEARHOUSE_JWT_SECRET": SECRET_32,
          "CLEARHOUSE_DATABASE_URL": "sqlite+pysqlite:////srv/x.db"}, "CLEARHOUSE_DATABASE_URL"),
    ],
)
def test_production_refuses_unsafe_settings(monkeypatch, env: dict, needle: str) -> None:
    monkeypatch.setenv("CLEARHOUSE_ENVIRONMENT", "production")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert needle in str(info.value)
    get_settings.cache_clear()
    with pytest.raises(ValidationError):
        get_settings()


def test_production_with_secret_and_postgres_is_accepted(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLEARHOUSE_ENVIRONMENT", "production")
    monkeypatch.setenv("CLEARHOUSE_JWT_SECRET", SECRET_32)
    monkeypatch.setenv("CLEARHOUSE_DATABASE_URL", PG)
    monkeypatch.setenv("CLEARHOUSE_HOME", str(tmp_path / "prod"))
    s = Settings()
    assert s.oltp_url == PG
    assert s.signing_secret() == SECRET_32
    assert not (tmp_path / "prod" / "jwt_secret").exists()


def test_development_accepts_sqlite_and_no_secret() -> None:
    s = Settings(database_url="sqlite:///dev.db")
    assert s.oltp_url == "sqlite:///dev.db"


# --- get_settings cache -----------------------------------------------------------------------


def test_get_settings_is_cached_until_cache_clear(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLEARHOUSE_HOME", str(tmp_path / "one"))
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("CLEARHOUSE_HOME", str(tmp_path / "two"))
    monkeypatch.setenv("CLEARHOUSE_WAREHOUSE_URL", PG)
    assert get_settings() is first  # not re-read
    assert first.home_dir == (tmp_path / "one").resolve()
    assert first.warehouse_engine == "duckdb"
    get_settings.cache_clear()
    second = get_settings()
    assert second is not first
    assert second.home_dir == (tmp_path / "two").resolve()
    assert second.warehouse_engine == "postgres"


def test_settings_are_not_read_at_import_time() -> None:
    assert not any(isinstance(v, Settings) for v in vars(settings_module).values())


# --- development JWT secret -------------------------------------------------------------------


def test_dev_secret_is_created_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "devhome"
    s = Settings(home=home)
    path = home.resolve() / "jwt_secret"
    assert not path.exists()
    secret = s.signing_secret()
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) >= 32
    assert path.read_text().strip() == secret
    before = path.stat().st_mtime_ns

    assert s.signing_secret() == secret
    assert Settings(home=home).signing_secret() == secret  # another process, same HOME
    assert path.stat().st_mtime_ns == before  # not rewritten

    other = Settings(home=tmp_path / "otherhome").signing_secret()
    assert other != secret  # random per HOME, not a constant


def test_test_environment_also_generates_a_secret(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "t", environment="test")
    assert len(s.signing_secret()) >= 32
    assert (tmp_path / "t" / "jwt_secret").exists()


def test_configured_secret_wins_and_writes_no_file(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "c", jwt_secret="configured-secret")
    assert s.signing_secret() == "configured-secret"
    assert not (tmp_path / "c" / "jwt_secret").exists()


def test_dev_secret_is_never_readable_by_others(tmp_path: Path, monkeypatch) -> None:
    """The file must be born 0600 (not written, then chmod-ed), even under a permissive umask."""
    created: list[int] = []
    original = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT and "jwt_secret" in Path(path).name:
            created.append(mode)
        return original(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    old_umask = os.umask(0)
    try:
        Settings(home=tmp_path / "race").signing_secret()
    finally:
        os.umask(old_umask)
    assert created == [0o600]
    assert stat.S_IMODE(os.stat(tmp_path / "race" / "jwt_secret").st_mode) == 0o600



def _secret_after_barrier(home: str, barrier, results) -> None:
    barrier.wait()
    try:
        results.put(Settings(home=Path(home)).signing_secret())
    except Exception as exc:  # reported, so the test names what went wrong
        results.put(f"error: {exc!r}")


def test_workers_starting_together_on_a_fresh_home_share_one_secret(tmp_path: Path) -> None:
    """uvicorn's workers start at once: each must read the secret the first one wrote, not an
    empty file it has just created, and none may fail on the other's file."""
    context = multiprocessing.get_context("fork")
    workers = 6
    for attempt in range(4):
        home = tmp_path / f"fresh{attempt}"
        barrier, results = context.Barrier(workers), context.Queue()
        processes = [context.Process(target=_secret_after_barrier,
                                     args=(str(home), barrier, results))
                     for _ in range(workers)]
        for process in processes:
            process.start()
        secrets_read = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        assert len(set(secrets_read)) == 1, secrets_read
        assert len(secrets_read[0]) >= 32 and not secrets_read[0].startswith("error")
        assert secrets_read[0] == (home.resolve() / "jwt_secret").read_text().strip()
        assert [p.name for p in home.iterdir()] == ["jwt_secret"]  # no private files left


def test_a_process_losing_the_race_reads_the_winners_secret(tmp_path: Path,
                                                            monkeypatch) -> None:
    """The interleaving the workers' test can only hope to hit: this process found no secret,
    and another one published its own before this one could."""
    home = tmp_path / "lost"
    home.mkdir()
    winner = "w" * 48
    (home / "jwt_secret").write_text(winner)
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists",
                        lambda self: False if self.name == "jwt_secret" else real_exists(self))
    assert Settings(home=home).signing_secret() == winner
    assert [p.name for p in home.iterdir()] == ["jwt_secret"]


def test_an_empty_secret_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "emptyhome"
    home.mkdir()
    (home / "jwt_secret").write_text("\n")
    with pytest.raises(ValueError, match="delete it to generate a new one"):
        Settings(home=home).signing_secret()
