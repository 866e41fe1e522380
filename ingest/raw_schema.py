"""The raw tables the ledger extract fills: one per table of the API's database.

Column types are logical: 'text', 'int', 'money' (DECIMAL(38,0)/NUMERIC(38,0)), 'ts' (timestamp,
UTC, without zone), 'json' (text), 'date', 'bool' and 'rate' (DECIMAL(28,12), FX rates). The same shape is created on DuckDB and Postgres, so the dbt
sources are identical on both engines.
"""

from __future__ import annotations

from dataclasses import dataclass

PHYSICAL = {
    "duckdb": {"text": "VARCHAR", "int": "BIGINT", "money": "DECIMAL(38,0)", "ts": "TIMESTAMP",
               "json": "VARCHAR", "date": "DATE", "bool": "BOOLEAN", "rate": "DECIMAL(28,12)"},
    "postgres": {"text": "TEXT", "int": "BIGINT", "money": "NUMERIC(38,0)", "ts": "TIMESTAMP",
                 "json": "TEXT", "date": "DATE", "bool": "BOOLEAN", "rate": "NUMERIC(28,12)"},
}


@dataclass(frozen=True)
class RawTable:
    name: str
    key: str
    cursor: str  # the monotonic-ish column the extract pages by
    columns: tuple[tuple[str, str], ...]

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]


def raw_table(name: str, key: str, cursor: str, *cols: str) -> RawTable:
    """A table from "column:type" strings."""
    return RawTable(name, key, cursor, tuple((c.split(":")[0], c.split(":")[1]) for c in cols))


_t = raw_table


RAW_TABLES: tuple[RawTable, ...] = (
    _t("merchants", "id", "updated_at", "id:text", "name:text", "status:text", "agent_id:text",
       "settlement_currency:text", "settlement_cycle:text", "settlement_delay_days:int",
       "created_at:ts", "updated_at:ts"),
    _t("agents", "id", "updated_at", "id:text", "name:text", "status:text", "created_at:ts",
       "updated_at:ts", "statement_cycle:text"),
    _t("agent_parents", "id", "updated_at", "id:int", "agent_id:text", "parent_id:text",
       "valid_from:ts", "valid_to:ts", "created_at:ts", "updated_at:ts"),
    _t("channels", "id", "updated_at", "id:text", "name:text", "channel_type:text", "status:text",
       "settlement_window_days:int", "created_at:ts", "updated_at:ts"),
    _t("prices", "id", "updated_at", "id:text", "subject_type:text", "subject_id:text",
       "currency:text", "rate_bps:int", "fixed_minor:money", "valid_from:ts", "valid_to:ts",
       "created_at:ts", "updated_at:ts"),
    _t("payments", "id", "updated_at", "id:text", "merchant_id:text", "merchant_reference:text",
       "amount_minor:money", "currency:text", "status:text", "payment_method_type:text",
       "channel_id:text", "channel_reference:text", "failure_code:text", "risk_decision:text",
       "customer_id:text", "refunded_minor:money", "captured_at:ts", "created_at:ts",
       "updated_at:ts", "card_fingerprint:text", "customer_ip:text", "device_id:text",
       "customer_geo:text", "risk_score:int", "failed_at:ts"),
    _t("refunds", "id", "updated_at", "id:text", "payment_id:text", "merchant_id:text",
       "amount_minor:money", "currency:text", "status:text", "reason:text", "channel_reference:text", "succeeded_at:ts",
       "created_at:ts", "updated_at:ts"),
    _t("ledger_entries", "id", "created_at", "id:int", "transaction_id:text", "kind:text",
       "payment_id:text", "refund_id:text", "merchant_id:text", "account:text", "currency:text",
       "amount_minor:money", "effective_at:ts", "created_at:ts"),
    _t("commission_models", "id", "updated_at", "id:text", "agent_id:text", "currency:text",
       "model:text", "pct_bps:int", "fixed_minor:money", "valid_from:ts", "valid_to:ts",
       "created_at:ts", "updated_at:ts"),
    # x402: what merchants price per call and every paid call (revenue per endpoint).
    _t("x402_pricing_rules", "id", "updated_at", "id:text", "merchant_id:text",
       "path_pattern:text", "http_method:text", "amount_atomic:money", "asset:text",
       "network:text", "pay_to:text", "billing_mode:text", "status:text", "created_at:ts",
       "updated_at:ts"),
    _t("x402_usage", "id", "updated_at", "id:text", "merchant_id:text", "rule_id:text",
       "http_method:text", "path:text", "scheme:text", "x402_version:int", "network:text",
       "asset:text", "amount_atomic:money", "pay_to:text", "payer:text", "token_id:text",
       "status:text", "upstream_status:int", "tx_hash:text", "payment_id:text",
       "error_reason:text", "settled_at:ts", "created_at:ts", "updated_at:ts"),
    # Statement items that are not payments or refunds: manual adjustments and payouts.
    _t("settlement_adjustments", "id", "updated_at", "id:text", "merchant_id:text",
       "amount_minor:money", "currency:text", "reason:text", "created_by:text",
       "effective_at:ts", "created_at:ts", "updated_at:ts"),
    _t("withdrawals", "id", "updated_at", "id:text", "owner_type:text", "owner_id:text",
       "amount_minor:money", "currency:text", "status:text", "decided_by:text",
       "decided_at:ts", "reason:text", "created_at:ts", "updated_at:ts", "paid_at:ts"),
)

# Raw columns computed from the API's database rather than copied: the fraud features need the
# customer's geo, which the payments table keeps inside its `customer` JSON.
DERIVED = {"customer_geo": {"sqlite": "json_extract(customer, '$.geo')",
                            "postgres": "(customer::json ->> 'geo')"}}

RAW_SCHEMA = "raw"
WATERMARK_TABLE = "_extract_watermarks"


def table_statements(tables: tuple[RawTable, ...], engine: str, stamp_column: str) -> list[str]:
    """CREATE SCHEMA/TABLE IF NOT EXISTS for `tables`, each with a load-time `stamp_column`, and
    ADD COLUMN IF NOT EXISTS for every column, so a warehouse made before a column was added
    gets it now."""
    types = PHYSICAL[engine]
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}"]
    for table in tables:
        cols = ", ".join(f"{c} {types[t]}" for c, t in table.columns)
        stmts.append(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{table.name} ({cols}, "
                     f"{stamp_column} TIMESTAMP)")
        stmts += [f"ALTER TABLE {RAW_SCHEMA}.{table.name} ADD COLUMN IF NOT EXISTS {c} {types[t]}"
                  for c, t in table.columns]
    return stmts


def create_statements(engine: str) -> list[str]:
    types = PHYSICAL[engine]
    return table_statements(RAW_TABLES, engine, "_extracted_at") + [
        f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{WATERMARK_TABLE} (table_name {types['text']} "
        f"PRIMARY KEY, high_water {types['ts']}, rows_last_run BIGINT, extracted_at TIMESTAMP)"
    ]
