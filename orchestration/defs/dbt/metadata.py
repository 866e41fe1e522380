"""What finance and merchants see on a mart's materialization in the Dagster UI: its row count
and, for the marts they read every morning, a small markdown table of the figures. Money is
summed exactly by the warehouse per currency (never across currencies) and shown in major units
of the row's currency by the money core (`1234.56 USD`), never through float.

Read after `dbt build` has finished (the DuckDB file is free again), in one connection.
"""

from __future__ import annotations

import contextlib

import dagster as dg

from ingest.files.warehouse_io import open_files_writer
from warehouse.money import Money
from warehouse.settings import Settings

SCHEMA = "analytics"
ROW_LIMIT = 40  # the LIMIT of the summaries that have one

# mart -> (title, query returning a header row's worth of columns); each query is small.
SUMMARIES: dict[str, tuple[str, str]] = {
    "fct_settlement_statements": (
        "Statements by currency and status",
        "SELECT currency, status, count(*) AS statements, "
        "CAST(sum(opening_balance_minor) AS VARCHAR(40)) AS opening_balance_minor, "
        "CAST(sum(gross_minor) AS VARCHAR(40)) AS gross_minor, "
        "CAST(sum(refunds_minor) AS VARCHAR(40)) AS refunds_minor, "
        "CAST(sum(chargebacks_minor) AS VARCHAR(40)) AS chargebacks_minor, "
        "CAST(sum(fees_minor) AS VARCHAR(40)) AS fees_minor, "
        "CAST(sum(adjustments_minor) AS VARCHAR(40)) AS adjustments_minor, "
        "CAST(sum(net_activity_minor) AS VARCHAR(40)) AS net_activity_minor, "
        "CAST(sum(payouts_minor) AS VARCHAR(40)) AS payouts_minor, "
        "CAST(sum(closing_balance_minor) AS VARCHAR(40)) AS closing_balance_minor "
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
        "Breaks by class, status and currency",
        "SELECT break_type, status, currency, count(*) AS breaks, "
        "CAST(sum(abs(coalesce(delta_minor, 0))) AS VARCHAR(40)) AS abs_delta_minor, "
        "max(CASE WHEN status = 'open' THEN age_days END) AS oldest_open_days "
        "FROM analytics.fct_reconciliation_breaks GROUP BY break_type, status, currency "
        "ORDER BY break_type, status, currency"),
    "rpt_reconciliation_daily": (
        "Match rate per channel and currency, latest 7 days",
        "SELECT day, channel, currency, matched_count, "
        "CAST(matched_amount_minor AS VARCHAR(40)) AS matched_amount_minor, match_rate, "
        "break_count, CAST(break_amount_minor AS VARCHAR(40)) AS break_amount_minor, "
        "pending_count, oldest_open_break_days "
        "FROM analytics.rpt_reconciliation_daily "
        "WHERE day > (SELECT max(day) FROM analytics.rpt_reconciliation_daily) - 7 "
        f"ORDER BY day DESC, channel, currency LIMIT {ROW_LIMIT}"),
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
        f"ORDER BY day DESC, currency, settlement_currency LIMIT {ROW_LIMIT}"),
    "fct_agent_commission_statements": (
        "Agent commissions by currency",
        "SELECT currency, count(*) AS statements, "
        "CAST(sum(opening_balance_minor) AS VARCHAR(40)) AS opening_balance_minor, "
        "CAST(sum(earned_minor) AS VARCHAR(40)) AS earned_minor, "
        "CAST(sum(reversed_minor) AS VARCHAR(40)) AS reversed_minor, "
        "CAST(sum(net_minor) AS VARCHAR(40)) AS net_minor, "
        "CAST(sum(closing_balance_minor) AS VARCHAR(40)) AS closing_balance_minor "
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
        "SELECT match_type, currency, count(*) AS matches, "
        "CAST(sum(amount_minor) AS VARCHAR(40)) AS amount_minor "
        "FROM analytics.fct_reconciliation_matches GROUP BY match_type, currency "
        "ORDER BY match_type, currency"),
    "rpt_x402_endpoint_daily": (
        "x402 revenue per endpoint (all days)",
        "SELECT merchant_id, path_pattern, currency, sum(calls) AS calls, "
        "sum(paid_calls) AS paid_calls, "
        "CAST(sum(revenue_minor) AS VARCHAR(40)) AS revenue_minor, "
        "CAST(sum(net_revenue_minor) AS VARCHAR(40)) AS net_revenue_minor "
        "FROM analytics.rpt_x402_endpoint_daily GROUP BY merchant_id, path_pattern, currency "
        f"ORDER BY merchant_id, path_pattern, currency LIMIT {ROW_LIMIT}"),
    "rpt_agent_portfolio_daily": (
        "Agent portfolios, latest 7 days",
        "SELECT agent_id, currency, sum(payment_count) AS payments, "
        "CAST(sum(captured_minor) AS VARCHAR(40)) AS captured_minor, "
        "CAST(sum(commission_net_minor) AS VARCHAR(40)) AS commission_net_minor "
        "FROM analytics.rpt_agent_portfolio_daily "
        "WHERE day > (SELECT max(day) FROM analytics.rpt_agent_portfolio_daily) - 7 "
        f"GROUP BY agent_id, currency ORDER BY agent_id, currency LIMIT {ROW_LIMIT}"),
}


def markdown_table(columns: list[str], rows: list[tuple]) -> str:
    """Rows as a markdown table. A `<name>_minor` column is shown as `<name>` in major units of
    the row's currency (`<x>_settlement_minor` in its `settlement_currency`), by the money core."""
    money: dict[int, int] = {}  # amount column -> its currency column
    for i, name in enumerate(columns):
        currency = _currency_column(name, columns) if name.endswith("_minor") else None
        if currency is not None:
            money[i] = currency

    def cell(row: tuple, i: int) -> str:
        value = row[i]
        if value is None:
            return ""
        if i in money and row[money[i]] is not None:
            value = Money(int(value), str(row[money[i]]))
        return str(value).replace("|", "\\|")

    header = [name.removesuffix("_minor") if i in money else name
              for i, name in enumerate(columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row, i) for i in range(len(columns))) + " |"
              for row in rows]
    return "\n".join(lines)


def _currency_column(name: str, columns: list[str]) -> int | None:
    wanted = "settlement_currency" if name.endswith("_settlement_minor") else "currency"
    return columns.index(wanted) if wanted in columns else None


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
            except Exception:  # noqa: BLE001 - metadata is a courtesy, never a failure
                _rollback(writer)
                continue
            meta: dict[str, dg.MetadataValue] = {
                "dagster/row_count": dg.MetadataValue.int(int(count))}
            out[model] = meta
            if model not in SUMMARIES:
                continue
            title, sql = SUMMARIES[model]
            try:
                columns, rows = _query_with_columns(writer, sql)
            except Exception as exc:  # noqa: BLE001 - the row count stands without it
                _rollback(writer)
                meta["summary"] = dg.MetadataValue.md(
                    f"**{title}**\n\nnot available: {type(exc).__name__}")
                continue
            cut = f" (first {ROW_LIMIT} rows)" if len(rows) >= ROW_LIMIT else ""
            meta["summary"] = dg.MetadataValue.md(
                f"**{title}**{cut}\n\n{markdown_table(columns, rows)}")
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
