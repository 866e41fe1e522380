"""What finance and merchants see on a mart's materialization in the Dagster UI: its row count
and, for the marts they read every morning, a small markdown table of the figures (money in
minor units, summed exactly by the warehouse and shown as integers, never through float).

Read after `dbt build` has finished (the DuckDB file is free again), in one connection.
"""

from __future__ import annotations

import contextlib

import dagster as dg

from ingest.files.warehouse_io import open_files_writer
from warehouse.settings import Settings

SCHEMA = "analytics"

# mart -> (title, query returning a header row's worth of columns); each query is small.
SUMMARIES: dict[str, tuple[str, str]] = {
    "fct_settlement_statements": (
        "Statements by currency and status",
        "SELECT currency, status, count(*) AS statements, "
        "CAST(sum(gross_minor) AS VARCHAR(40)) AS gross_minor, "
        "CAST(sum(fees_minor) AS VARCHAR(40)) AS fees_minor, "
        "CAST(sum(adjustments_minor) AS VARCHAR(40)) AS adjustments_minor, "
        "CAST(sum(payouts_minor) AS VARCHAR(40)) AS payouts_minor "
        "FROM analytics.fct_settlement_statements GROUP BY currency, status "
        "ORDER BY currency, status"),
    "fct_platform_revenue": (
        "Where the fees went, by currency",
        "SELECT currency, CAST(sum(merchant_fee_minor) AS VARCHAR(40)) AS fees_minor, "
        "CAST(sum(channel_cost_minor) AS VARCHAR(40)) AS channel_cost_minor, "
        "CAST(sum(agent_commission_minor) AS VARCHAR(40)) AS agents_minor, "
        "CAST(sum(platform_net_minor) AS VARCHAR(40)) AS platform_net_minor "
        "FROM analytics.fct_platform_revenue GROUP BY currency ORDER BY currency"),
    "fct_reconciliation_breaks": (
        "Breaks by class and status",
        "SELECT break_type, status, count(*) AS breaks, "
        "CAST(sum(abs(coalesce(delta_minor, 0))) AS VARCHAR(40)) AS abs_delta_minor "
        "FROM analytics.fct_reconciliation_breaks GROUP BY break_type, status "
        "ORDER BY break_type, status"),
    "rpt_reconciliation_daily": (
        "Match rate per channel and currency, latest 7 days",
        "SELECT day, channel, currency, matched_count, match_rate "
        "FROM analytics.rpt_reconciliation_daily "
        "WHERE day > (SELECT max(day) FROM analytics.rpt_reconciliation_daily) - 7 "
        "ORDER BY day DESC, channel, currency LIMIT 40"),
    "rpt_merchant_daily": (
        "Captured per currency, latest 7 days (and in settlement currency)",
        "SELECT day, currency, settlement_currency, sum(payment_count) AS payments, "
        "sum(captured_count) AS captured, "
        "CAST(sum(captured_minor) AS VARCHAR(40)) AS captured_minor, "
        "CAST(sum(captured_settlement_minor) AS VARCHAR(40)) AS captured_settlement_minor, "
        "CAST(sum(refunded_settlement_minor) AS VARCHAR(40)) AS refunded_settlement_minor "
        "FROM analytics.rpt_merchant_daily "
        "WHERE day > (SELECT max(day) FROM analytics.rpt_merchant_daily) - 7 "
        "GROUP BY day, currency, settlement_currency "
        "ORDER BY day DESC, currency, settlement_currency LIMIT 40"),
    "fct_agent_commission_statements": (
        "Agent commissions by currency",
        "SELECT currency, count(*) AS statements, "
        "CAST(sum(earned_minor) AS VARCHAR(40)) AS earned_minor, "
        "CAST(sum(reversed_minor) AS VARCHAR(40)) AS reversed_minor "
        "FROM analytics.fct_agent_commission_statements GROUP BY currency ORDER BY currency"),
    "fct_payments": (
        "Payments by currency and status",
        "SELECT currency, status, count(*) AS payments, "
        "CAST(sum(amount_minor) AS VARCHAR(40)) AS amount_minor, "
        "CAST(sum(refunded_minor) AS VARCHAR(40)) AS refunded_minor, "
        "CAST(sum(fee_minor) AS VARCHAR(40)) AS fee_minor "
        "FROM analytics.fct_payments GROUP BY currency, status ORDER BY currency, status"),
    "fct_settlement_statement_lines": (
        "Statement lines by currency and type",
        "SELECT currency, line_type, count(*) AS lines, "
        "CAST(sum(gross_minor) AS VARCHAR(40)) AS gross_minor, "
        "CAST(sum(fee_minor) AS VARCHAR(40)) AS fee_minor, "
        "CAST(sum(net_minor) AS VARCHAR(40)) AS net_minor "
        "FROM analytics.fct_settlement_statement_lines GROUP BY currency, line_type "
        "ORDER BY currency, line_type"),
    "fct_commissions": (
        "Commissions by currency and model",
        "SELECT currency, model, event_kind, count(*) AS rows, "
        "CAST(sum(amount_minor) AS VARCHAR(40)) AS amount_minor "
        "FROM analytics.fct_commissions GROUP BY currency, model, event_kind "
        "ORDER BY currency, model, event_kind"),
    "fct_agent_commission_statement_lines": (
        "Agent statement lines by currency and type",
        "SELECT currency, line_type, count(*) AS lines, "
        "CAST(sum(earned_minor) AS VARCHAR(40)) AS earned_minor, "
        "CAST(sum(reversed_minor) AS VARCHAR(40)) AS reversed_minor, "
        "CAST(sum(net_minor) AS VARCHAR(40)) AS net_minor "
        "FROM analytics.fct_agent_commission_statement_lines GROUP BY currency, line_type "
        "ORDER BY currency, line_type"),
    "fct_reconciliation_matches": (
        "Matches by type and currency",
        "SELECT match_type, currency, count(*) AS matches "
        "FROM analytics.fct_reconciliation_matches GROUP BY match_type, currency "
        "ORDER BY match_type, currency"),
    "rpt_x402_endpoint_daily": (
        "x402 revenue per endpoint (all days)",
        "SELECT merchant_id, path_pattern, currency, sum(calls) AS calls, "
        "sum(paid_calls) AS paid_calls, "
        "CAST(sum(revenue_minor) AS VARCHAR(40)) AS revenue_minor, "
        "CAST(sum(net_revenue_minor) AS VARCHAR(40)) AS net_revenue_minor "
        "FROM analytics.rpt_x402_endpoint_daily GROUP BY merchant_id, path_pattern, currency "
        "ORDER BY merchant_id, path_pattern, currency LIMIT 40"),
    "rpt_agent_portfolio_daily": (
        "Agent portfolios, latest 7 days",
        "SELECT agent_id, currency, sum(payment_count) AS payments, "
        "CAST(sum(captured_minor) AS VARCHAR(40)) AS captured_minor, "
        "CAST(sum(commission_net_minor) AS VARCHAR(40)) AS commission_net_minor "
        "FROM analytics.rpt_agent_portfolio_daily "
        "WHERE day > (SELECT max(day) FROM analytics.rpt_agent_portfolio_daily) - 7 "
        "GROUP BY agent_id, currency ORDER BY agent_id, currency LIMIT 40"),
}


def markdown_table(columns: list[str], rows: list[tuple]) -> str:
    def cell(value) -> str:
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def mart_metadata(settings: Settings, models: list[str]) -> dict[str, dict[str, dg.MetadataValue]]:
    """Per model: row_count, and a markdown summary for the marts in SUMMARIES. A model whose
    query fails (not built in this run) gets nothing rather than failing the run."""
    out: dict[str, dict[str, dg.MetadataValue]] = {}
    if not models:
        return out
    writer = open_files_writer(settings)
    try:
        for model in models:
            try:
                [(count,)] = writer.fetchall(f"SELECT count(*) FROM {SCHEMA}.{model}")
                meta: dict[str, dg.MetadataValue] = {
                    "dagster/row_count": dg.MetadataValue.int(int(count))}
                if model in SUMMARIES:
                    title, sql = SUMMARIES[model]
                    columns, rows = _query_with_columns(writer, sql)
                    meta["summary"] = dg.MetadataValue.md(
                        f"**{title}**\n\n{markdown_table(columns, rows)}")
                out[model] = meta
            except Exception:  # noqa: BLE001 - metadata is a courtesy, never a failure
                _rollback(writer)
    finally:
        writer.close()
    return out


def _query_with_columns(writer, sql: str) -> tuple[list[str], list[tuple]]:
    cursor = writer.conn.execute(sql) if hasattr(writer.conn, "execute") else None
    if cursor is not None and getattr(cursor, "description", None):
        return [d[0] for d in cursor.description], cursor.fetchall()
    rows = writer.fetchall(sql)
    return [f"c{i}" for i in range(len(rows[0]) if rows else 0)], rows


def _rollback(writer) -> None:
    rollback = getattr(writer.conn, "rollback", None)
    if rollback is not None:
        with contextlib.suppress(Exception):
            rollback()
