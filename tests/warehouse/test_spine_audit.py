"""Spine audit: Settings as an operator sets them (CLEARHOUSE_* variables)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from warehouse.connections import dbt_env
from warehouse.settings import Settings, get_settings


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.upper().startswith("CLEARHOUSE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


# --- Settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "value"), [
    ("CLEARHOUSE_WAREHOUSE_URL", "mysql://u:hunter2@h/wh"),
    ("CLEARHOUSE_WAREHOUSE_URL", "postgresq://u:hunter2@h/wh"),  # a typo, not a DuckDB file
    ("CLEARHOUSE_WAREHOUSE_URL", "/srv/wh.duckdb"),
    ("CLEARHOUSE_WAREHOUSE_URL", "duckdb:///"),
    ("CLEARHOUSE_DATABASE_URL", "mysql://u:hunter2@h/api"),
    ("CLEARHOUSE_DATABASE_URL", "not a url"),
])
def test_an_unusable_url_is_refused_naming_the_variable_not_the_password(
        clean_env, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert variable in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["sqlite:///x.db", "sqlite+pysqlite:////srv/x.db",
                                 "postgresql://u@h/db", "postgres://u@h/db",
                                 "postgresql+psycopg://u@h/db"])
def test_the_documented_database_urls_are_accepted(clean_env, monkeypatch, url):
    monkeypatch.setenv("CLEARHOUSE_DATABASE_URL", url)
    assert Settings().oltp_url == url


def test_an_empty_url_means_the_default(clean_env, monkeypatch):
    monkeypatch.setenv("CLEARHOUSE_DATABASE_URL", "")
    monkeypatch.setenv("CLEARHOUSE_WAREHOUSE_URL", "")
    s = Settings()
    assert s.oltp_url.endswith("var/clearhouse.sqlite") and s.warehouse_engine == "duckdb"


def test_a_relative_duckdb_url_is_one_file_for_the_extract_and_dbt(clean_env, monkeypatch):
    """dbt runs inside dbt_project/: a relative path handed to it would be another file."""
    monkeypatch.setenv("CLEARHOUSE_WAREHOUSE_URL", "duckdb:///wh/x.duckdb")
    s = get_settings()
    assert s.duckdb_path == clean_env.resolve() / "wh" / "x.duckdb"
    assert Path(dbt_env(s)["CLEARHOUSE_DUCKDB_PATH"]).is_absolute()
    s.ensure_dirs()
    assert (clean_env / "wh").is_dir()


def test_settings_follow_the_environment_after_cache_clear(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CLEARHOUSE_HOME", "rel/home")
    first = get_settings()
    assert first.home_dir == tmp_path.resolve() / "rel" / "home"
    first.ensure_dirs()
    assert {p.name for p in first.home_dir.iterdir()} >= {"landing", "quarantine", "statements"}
    monkeypatch.setenv("CLEARHOUSE_WAREHOUSE_URL", "postgresql://u@h/wh")
    get_settings.cache_clear()
    assert get_settings().warehouse_engine == "postgres"
