"""A small warehouse per test, on DuckDB and on Postgres, with the raw tables and the two finance
marts' shape, and helpers to fill it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest.files.schema import create_statements as file_statements
from ingest.raw_schema import create_statements as raw_statements
from tests.conftest import create_pg_database, drop_pg_database, require_postgres
from warehouse.settings import Settings

MONEY = {"duckdb": "DECIMAL(38,0)", "postgres": "NUMERIC(38,0)"}


def mart_statements(engine: str) -> list[str]:
    m = MONEY[engine]
    return [
        "CREATE SCHEMA IF NOT EXISTS analytics",
        "CREATE TABLE analytics.fct_settlement_statements (statement_id VARCHAR, merchant_id "
        "VARCHAR, settlement_cycle VARCHAR, period_start DATE, period_end DATE, settles_on DATE, "
        f"status VARCHAR, currency VARCHAR, opening_balance_minor {m}, gross_minor {m}, "
        f"refunds_minor {m}, chargebacks_minor {m}, fees_minor {m}, adjustments_minor {m}, "
        f"net_activity_minor {m}, payouts_minor {m}, closing_balance_minor {m}, "
        "payment_count BIGINT)",
        "CREATE TABLE analytics.fct_platform_revenue (event_id VARCHAR, event_kind VARCHAR, "
        "payment_id VARCHAR, merchant_id VARCHAR, currency VARCHAR, occurred_at TIMESTAMP, "
        f"merchant_fee_minor {m}, channel_cost_minor {m}, agent_commission_minor {m}, "
        f"platform_net_minor {m}, negative_margin BOOLEAN)",
    ]


class Warehouse:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = settings.warehouse_engine

    def execute(self, *statements: str) -> None:
        if self.engine == "duckdb":
            import duckdb

            conn = duckdb.connect(str(self.settings.duckdb_path))
            try:
                for sql in statements:
                    conn.execute(sql)
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(self.settings.warehouse_target, autocommit=True) as conn:
                for sql in statements:
                    conn.execute(sql)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path) -> Iterator[Warehouse]:
    home = tmp_path / "home"
    if request.param == "duckdb":
        settings = Settings(home=home, environment="test")
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        made = None
    else:
        require_postgres()
        made = create_pg_database("ch_quality")
        settings = Settings(home=home, environment="test", warehouse_url=made)
    wh = Warehouse(settings)
    engine = settings.warehouse_engine
    wh.execute(*raw_statements(engine), *file_statements(engine), *mart_statements(engine))
    try:
        yield wh
    finally:
        if made:
            drop_pg_database(made)
