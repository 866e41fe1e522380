"""Spine audit: the operator commands as a shell sees them (a real `clearhouse` process).

stdout carries exactly one JSON document (nothing else); a refusal is one line on stderr, a
non-zero exit and no traceback; an operator's writes from the command line are audit-logged
like the same writes through the API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from warehouse.models import AuditLogEntry, User

CLI = [sys.executable, "-m", "clearhouse.cli"]


def clearhouse(home: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLEARHOUSE_")}
    environ |= {"CLEARHOUSE_HOME": str(home), "CLEARHOUSE_ENVIRONMENT": "test", **env}
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, env=environ,
                          timeout=120, cwd=home.parent)


def ok_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


def refused(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr, result.stderr
    assert needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


def audit_entries(home: Path) -> list[AuditLogEntry]:
    engine = create_engine(f"sqlite:///{home / 'clearhouse.sqlite'}")
    try:
        with Session(engine) as session:
            return list(session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id)))
    finally:
        engine.dispose()


def test_bootstrap_and_create_print_only_json_twice_in_a_row(home):
    first = ok_json(clearhouse(home, "admin", "bootstrap"))
    second = ok_json(clearhouse(home, "admin", "bootstrap"))
    assert first["user_id"] == second["user_id"] and first["role"] == "platform_admin"
    assert first["token"].count(".") == 2
    name = 'Café "Zürich" \\ 東京 \'quoted\''
    one = ok_json(clearhouse(home, "merchants", "create", name))
    two = ok_json(clearhouse(home, "merchants", "create", name))
    assert one["name"] == two["name"] == name
    assert one["id"] != two["id"] and one["api_key"] != two["api_key"]
    assert one["id"].startswith("mer_") and one["api_key"].startswith("sk_test_")


def test_cli_writes_are_audit_logged_like_the_api(home):
    admin = ok_json(clearhouse(home, "admin", "bootstrap", "--email", "ops@example.com"))
    merchant = ok_json(clearhouse(home, "merchants", "create", "Corner Shop"))
    again = ok_json(clearhouse(home, "admin", "bootstrap", "--email", "ops@example.com"))
    assert again["user_id"] == admin["user_id"]
    entries = audit_entries(home)
    assert [(e.action, e.resource_id) for e in entries] == [
        ("user.created", admin["user_id"]), ("merchant.created", merchant["id"])]
    assert all(e.actor.startswith("cli") for e in entries)
    assert merchant["api_key"] not in " ".join(e.details for e in entries)
    verified = ok_json(clearhouse(home, "audit", "verify"))
    assert verified == {"ok": True, "entries": 2, "head": entries[-1].hash}


@pytest.mark.parametrize("days", ["0", "-5", "366", "x"])
def test_bootstrap_refuses_a_token_lifetime_outside_1_to_365_days(home, days):
    refused(clearhouse(home, "admin", "bootstrap", "--days", days), "--days")


def test_bootstrap_checks_and_normalises_the_email(home):
    refused(clearhouse(home, "admin", "bootstrap", "--email", "not-an-email"), "e-mail")
    first = ok_json(clearhouse(home, "admin", "bootstrap", "--email", " Ops@Example.COM "))
    assert first["email"] == "ops@example.com"
    same = ok_json(clearhouse(home, "admin", "bootstrap", "--email", "ops@example.com"))
    assert same["user_id"] == first["user_id"]


@pytest.mark.parametrize(("role", "status"), [("finance", "active"),
                                              ("platform_admin", "disabled")])
def test_bootstrap_never_hands_out_a_token_that_is_not_an_active_admin(home, role, status):
    ok_json(clearhouse(home, "admin", "bootstrap"))  # migrates the database
    engine = create_engine(f"sqlite:///{home / 'clearhouse.sqlite'}")
    with Session(engine) as session, session.begin():
        session.add(User(id="usr_existing", email="someone@example.com", role=role,
                         status=status))
    engine.dispose()
    refused(clearhouse(home, "admin", "bootstrap", "--email", "someone@example.com"),
            "someone@example.com")


@pytest.mark.parametrize(("argv", "needle"), [
    (["merchants", "create", ""], "name"),
    (["merchants", "create", "X", "--settlement-currency", "XYZ"], "XYZ"),
    (["merchants", "create", "X", "--agent", "agt_nope"], "agt_nope"),
])
def test_merchant_create_refusals_are_one_line(home, argv, needle):
    refused(clearhouse(home, *argv), needle)


@pytest.mark.parametrize("url", ["mysql://u:secret@h/db", "not a url",
                                 "postgresql://u:secret@127.0.0.1:1/nope"])
def test_a_bad_database_url_is_a_clear_refusal_without_the_password(home, url):
    result = clearhouse(home, "merchants", "create", "X", CLEARHOUSE_DATABASE_URL=url)
    refused(result, "CLEARHOUSE_DATABASE_URL")
    assert "secret" not in result.stderr


def test_a_bad_warehouse_url_is_a_clear_refusal(home):
    result = clearhouse(home, "db", "upgrade", CLEARHOUSE_WAREHOUSE_URL="postgresq://u@h/wh")
    refused(result, "CLEARHOUSE_WAREHOUSE_URL")


def test_help_is_quick_and_imports_neither_dagster_nor_the_orm(tmp_path):
    code = ("import sys\nfrom clearhouse.cli import build_parser\nbuild_parser()\n"
            "heavy = [m for m in ('dagster', 'great_expectations', 'sqlalchemy.orm', 'fastapi',"
            " 'dbt') if m in sys.modules]\nprint(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
    for argv in (["--help"], ["admin", "bootstrap", "--help"], ["merchants", "create", "--help"],
                 ["dev", "--help"], ["serve", "--help"], ["db", "upgrade", "--help"]):
        result = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stdout.startswith("usage: clearhouse")
