"""The raw tables that files from outside land in, the same shape on DuckDB and Postgres.

`landed_files` is the registry: one row per distinct file (by SHA-256 of its bytes), in exactly one
state, `loaded` or `quarantined`. The data tables carry the `file_id` they came from; a statement
or PSP bill re-sent with corrections supersedes the earlier one (`superseded_by` set on the old
rows, the pair recorded in `file_supersessions`), so staging models read `superseded_by IS NULL`.
Fraud reports supersede per report_id rather than per file.
"""

from __future__ import annotations

from ingest.raw_schema import RawTable, raw_table, table_statements


def _t(name: str, key: str, *cols: str) -> RawTable:
    return raw_table(name, key, "", *cols)  # no cursor: files are loaded whole


LANDED_FILES = _t(
    "landed_files", "file_id",
    "file_id:text", "source:text", "format:text", "kind:text", "original_name:text",
    "stored_path:text", "size_bytes:int", "status:text", "reason:text", "location:text",
    "message:text", "row_count:int", "totals:json", "warnings:json", "landed_at:ts",
    "processed_at:ts",
)
FILE_SUPERSESSIONS = _t(
    "file_supersessions", "superseded_file_id",
    "superseded_file_id:text", "superseding_file_id:text", "supersession_key:text",
    "superseded_at:ts",
)
BANK_STATEMENTS = _t(
    "bank_statements", "statement_uid",
    "statement_uid:text", "file_id:text", "statement_index:int", "supersession_key:text",
    "format:text", "message_type:text", "account_id:text", "statement_id:text",
    "sequence_number:text", "currency:text", "servicer_bic:text", "account_name:text",
    "created_at:ts", "from_date:date", "to_date:date", "opening_balance_minor:money",
    "opening_date:date", "closing_balance_minor:money", "closing_date:date",
    "control_total_minor:money", "control_count:int", "balance_check:text", "line_count:int",
    "lines_total_minor:money", "superseded_by:text", "opening_currency:text",
    "closing_currency:text",
)
BANK_STATEMENT_LINES = _t(
    "bank_statement_lines", "statement_line_id",
    "statement_line_id:text", "statement_uid:text", "file_id:text", "statement_index:int",
    "line_number:int", "account_id:text", "booking_date:date", "value_date:date",
    "amount_minor:money", "currency:text", "status:text", "bank_reference:text",
    "customer_reference:text", "end_to_end_id:text", "remittance:text",
    "counterparty_name:text", "counterparty_account:text", "transaction_code:text",
    "entry_reference:text", "superseded_by:text",
)
PSP_LINES = _t(
    "psp_lines", "psp_line_id",
    "psp_line_id:text", "file_id:text", "format:text", "line_number:int",
    "supersession_key:text", "settlement_date:date", "record_type:text", "channel:text",
    "channel_reference:text", "merchant_reference:text", "transaction_at:ts", "currency:text",
    "gross_minor:money", "fee_minor:money", "net_minor:money", "payout_id:text",
    "payout_date:date", "status:text", "description:text", "superseded_by:text",
)
CHAIN_LOGS = _t(
    "chain_logs", "chain_log_id",
    "chain_log_id:text", "file_id:text", "network:text", "block_number:int", "block_hash:text",
    "block_timestamp:ts", "transaction_hash:text", "log_index:int", "token_address:text",
    "from_address:text", "to_address:text", "value_text:text", "value_minor:money",
    "removed:bool",
)
CHAIN_HEADS = _t(
    "chain_heads", "file_id",
    "file_id:text", "network:text", "latest_block:int", "seen_at:ts",
)
FX_RATES = _t(
    "fx_rates", "fx_rate_id",
    "fx_rate_id:text", "file_id:text", "source:text", "rate_date:date", "base_currency:text",
    "quote_currency:text", "rate_text:text", "rate:rate",
)

# Late fraud labels (ingest/files/formats/fraud_reports.py): one row per report line; a later
# file repeating a report_id sets superseded_by on the earlier row (one current row per report).
FRAUD_REPORTS = _t(
    "fraud_reports", "fraud_report_line_id",
    "fraud_report_line_id:text", "file_id:text", "line_number:int", "report_id:text",
    "payment_id:text", "merchant_id:text", "kind:text", "source:text", "reported_at:ts",
    "amount_minor:money", "currency:text", "superseded_by:text",
)

FILE_TABLES: tuple[RawTable, ...] = (
    LANDED_FILES, FILE_SUPERSESSIONS, BANK_STATEMENTS, BANK_STATEMENT_LINES, PSP_LINES,
    CHAIN_LOGS, CHAIN_HEADS, FX_RATES, FRAUD_REPORTS,
)


def create_statements(engine: str) -> list[str]:
    return table_statements(FILE_TABLES, engine, "_loaded_at")
