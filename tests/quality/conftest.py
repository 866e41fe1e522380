"""A small warehouse per test, on DuckDB and on Postgres, with the raw tables (ledger extract and
files), the finance marts' and the fraud scores' shape, and helpers to fill it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest.files.schema import create_statements as file_statements
from ingest.raw_schema import create_statements as raw_statements
from tests.conftest import create_pg_database, drop_pg_database, require_postgres
from warehouse.settings import Settings

MONEY = {"duckdb": "DECIMAL(38,0)", "postgres": "NUMERIC(38,0)"}
RATE = {"duckdb": "DECIMAL(28,12)", "postgres": "NUMERIC(28,12)"}


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
        "CREATE TABLE analytics.fct_settlement_statement_lines (line_id VARCHAR, statement_id "
        "VARCHAR, merchant_id VARCHAR, settlement_cycle VARCHAR, period_start DATE, period_end "
        "DATE, currency VARCHAR, line_type VARCHAR, item_type VARCHAR, is_late BOOLEAN, "
        "is_correction BOOLEAN DEFAULT false, item_id VARCHAR, natural_period_start DATE, payment_id VARCHAR, refund_id VARCHAR, payout_id VARCHAR, "
        "adjustment_id VARCHAR, psp_line_id VARCHAR, occurred_at TIMESTAMP, txn_currency "
        f"VARCHAR, txn_gross_minor {m}, txn_fee_minor {m}, fx_rate_id VARCHAR, fx_rate "
        f"{RATE[engine]}, fx_derivation VARCHAR, gross_minor {m}, fee_minor {m}, net_minor {m}, "
        "description VARCHAR, created_by VARCHAR, is_frozen BOOLEAN)",
        "CREATE TABLE analytics.fct_commissions (commission_id VARCHAR, event_id VARCHAR, "
        "event_kind VARCHAR, payment_id VARCHAR, merchant_id VARCHAR, beneficiary_id VARCHAR, "
        f"level INTEGER, model VARCHAR, rate_bps INTEGER, pct_bps INTEGER, fixed_minor {m}, "
        f"amount_minor {m}, currency VARCHAR, captured_at TIMESTAMP, occurred_at TIMESTAMP)",
        "CREATE TABLE analytics.fct_agent_commission_statements (statement_id VARCHAR, agent_id "
        "VARCHAR, currency VARCHAR, period_start DATE, period_end DATE, settlement_cycle "
        f"VARCHAR, opening_balance_minor {m}, earned_minor {m}, reversed_minor {m}, "
        f"net_minor {m}, closing_balance_minor {m}, payment_count BIGINT, refund_count BIGINT, "
        f"adjustments_minor {m}, adjustment_count BIGINT, status VARCHAR)",
        "CREATE TABLE analytics.fct_reconciliation_matches (match_id VARCHAR, match_type "
        "VARCHAR, channel VARCHAR, currency VARCHAR, payment_id VARCHAR, channel_reference "
        f"VARCHAR, statement_line_id VARCHAR, chain_tx_hash VARCHAR, amount_minor {m}, "
        "matched_on DATE, psp_line_id VARCHAR, refund_id VARCHAR)",
        "CREATE TABLE analytics.fct_reconciliation_breaks (break_id VARCHAR, break_type "
        "VARCHAR, channel VARCHAR, currency VARCHAR, payment_id VARCHAR, channel_reference "
        "VARCHAR, statement_line_id VARCHAR, chain_tx_hash VARCHAR, ledger_amount_minor "
        f"{m}, channel_amount_minor {m}, delta_minor {m}, first_seen DATE, age_days INTEGER, "
        "status VARCHAR, resolved_at DATE, resolved_by VARCHAR, candidates VARCHAR, refund_id "
        "VARCHAR)",
        # ml/warehouse.py SCORES_COLUMNS
        "CREATE TABLE analytics.fct_fraud_scores (payment_id VARCHAR, merchant_id VARCHAR, "
        "created_at TIMESTAMP, score INTEGER, decision VARCHAR, reasons VARCHAR, model_version "
        "VARCHAR, scored_at TIMESTAMP)",
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
