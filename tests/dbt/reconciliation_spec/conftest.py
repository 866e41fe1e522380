"""Reconciliation spec scenarios: a warehouse per engine (tests/dbt/conftest.py's), the
ledger side inserted into the raw tables (what the extract writes), the channel side dropped as
real files into the landing zone and loaded by the loader, then the reconciliation models built
with dbt for a given recon_as_of."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dbt.conftest import Warehouse, run_dbt_build

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
        from tests.dbt.reconciliation_spec.phases import recon_snapshot

        return recon_snapshot(self.query)


@pytest.fixture(scope="module")
def audit_duckdb(duckdb_warehouse, tmp_path_factory):
    path = duckdb_warehouse.env["CLEARHOUSE_DUCKDB_PATH"]
    return AuditWarehouse(duckdb_warehouse, f"duckdb:///{path}",
                          tmp_path_factory.mktemp("recon_spec_duck") / "home")


@pytest.fixture(scope="module")
def audit_postgres(postgres_warehouse, tmp_path_factory):
    env = postgres_warehouse.env
    url = (f"postgresql://{env['CLEARHOUSE_PG_USER']}@{env['CLEARHOUSE_PG_HOST']}:"
           f"{env['CLEARHOUSE_PG_PORT']}/{env['CLEARHOUSE_PG_DBNAME']}")
    return AuditWarehouse(postgres_warehouse, url,
                          tmp_path_factory.mktemp("recon_spec_pg") / "home")
