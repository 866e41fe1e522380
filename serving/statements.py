"""Settlement statements as the API serves them: read from the warehouse's marts, streamed as CSV.

DuckDB warehouse: read the Parquet snapshots published after each run (never the live file).
Postgres warehouse: read analytics.* with a server-side cursor.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from serving.errors import ApiError
from warehouse.connections import to_libpq_url
from warehouse.published import MARTS_SCHEMA, published_path
from warehouse.settings import Settings

CSV_COLUMNS = ["statement_id", "merchant_id", "period_start", "period_end", "currency",
               "line_type", "line_id", "payment_id", "refund_id", "occurred_at", "gross_minor",
               "fee_minor", "net_minor", "balance_minor"]

STATEMENT_COLUMNS = ("statement_id, merchant_id, period_start, period_end, currency, "
                     "opening_balance_minor, gross_minor, refunds_minor, fees_minor, "
                     "net_activity_minor, payouts_minor, closing_balance_minor")
LINE_COLUMNS = "statement_id, line_type, line_id, payment_id, refund_id, occurred_at, gross_minor, fee_minor, net_minor"

# What the SQL below names in braces -> the mart (a published Parquet file on DuckDB).
MARTS = {"statements": "fct_settlement_statements", "lines": "fct_settlement_statement_lines",
         "agent_statements": "fct_agent_commission_statements",
         "agent_lines": "fct_agent_commission_statement_lines"}
AGENT_CSV_COLUMNS = ["statement_id", "agent_id", "period_start", "period_end", "currency",
                     "line_type", "model", "level", "payment_count", "refund_count",
                     "earned_minor", "reversed_minor", "net_minor", "balance_minor"]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def parse_period(period: str | None) -> tuple[date, date]:
    """'2026-11-20' (a day), '2026-11' (a month) or '2026-11-01..2026-11-07'; end inclusive."""
    try:
        if period is None:
            raise ValueError("missing")
        if ".." in period:
            start_text, end_text = period.split("..", 1)
            start, end = date.fromisoformat(start_text), date.fromisoformat(end_text)
        elif _DAY.match(period):
            start = end = date.fromisoformat(period)
        elif _MONTH.match(period):
            start = date.fromisoformat(period + "-01")
            end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        else:
            raise ValueError(period)
    except ValueError:
        raise ApiError(422, "invalid_period",
                       "period must be a day (2026-11-20), a month (2026-11) or a range "
                       "(2026-11-01..2026-11-07)", {"field": "period"}) from None
    if end < start or (end - start).days > 366:
        raise ApiError(422, "invalid_period", "period must run forward and span at most a year",
                       {"field": "period"})
    return start, end


def _fetch(settings: Settings, sql_duck: str, sql_pg: str, params: list) -> Iterator[tuple]:
    if settings.warehouse_engine == "duckdb":
        import duckdb

        files = {alias: published_path(settings, mart) for alias, mart in MARTS.items()
                 if "{" + alias + "}" in sql_duck}
        if not all(path.exists() for path in files.values()):
            raise ApiError(503, "statements_not_published",
                           "no statements have been published yet: run the pipeline first")
        con = duckdb.connect()
        try:
            sql = sql_duck.format(**{alias: f"read_parquet('{path}')"
                                     for alias, path in files.items()})
            cursor = con.execute(sql, params)
            while batch := cursor.fetchmany(2000):
                yield from batch
        finally:
            con.close()
        return
    import psycopg

    with psycopg.connect(to_libpq_url(settings.warehouse_target)) as con:
        sql = sql_pg.format(**{alias: f"{MARTS_SCHEMA}.{mart}" for alias, mart in MARTS.items()})
        with con.cursor(name="statement_stream") as cursor:  # server-side: streams large periods
            cursor.itersize = 2000
            cursor.execute(sql.replace("?", "%s"), params)
            yield from cursor


def statements(settings: Settings, merchant_id: str, start: date, end: date) -> list[tuple]:
    sql = (f"SELECT {STATEMENT_COLUMNS} FROM {{statements}} WHERE merchant_id = ? "
           "AND period_start >= ? AND period_start <= ? ORDER BY statement_id")
    return list(_fetch(settings, sql, sql, [merchant_id, start, end]))


@dataclass(frozen=True)
class SettledBalance:
    """A merchant's closing balance in one currency, from its latest settled statement."""

    currency: str
    statement_id: str
    period_end: date
    closing_balance_minor: int


def settled_balances(settings: Settings, merchant_id: str, settled_through: date,
                     currency: str | None = None) -> list[SettledBalance]:
    """Per currency, the closing balance of the merchant's latest statement whose period ended on
    or before `settled_through`, as the pipeline computed it (fees included).

    Nothing published yet (no Parquet snapshot on DuckDB, no analytics table on Postgres) means
    no settled balance: an empty list, not an error.
    """
    if (settings.warehouse_engine == "duckdb"
            and not published_path(settings, "fct_settlement_statements").exists()):
        return []
    where = "merchant_id = ? AND period_end <= ?" + (" AND currency = ?" if currency else "")
    params: list = [merchant_id, settled_through] + ([currency] if currency else [])
    sql = ("SELECT currency, statement_id, period_end, closing_balance_minor FROM ("
           "SELECT currency, statement_id, period_end, closing_balance_minor, row_number() OVER "
           "(PARTITION BY currency ORDER BY period_end DESC, statement_id DESC) AS rn "
           f"FROM {{statements}} WHERE {where}) latest WHERE rn = 1 ORDER BY currency")
    try:
        rows = list(_fetch(settings, sql, sql, params))
    except ApiError as exc:
        if exc.code == "statements_not_published":
            return []
        raise
    except Exception as exc:  # Postgres warehouse before the first pipeline run
        if type(exc).__name__ == "UndefinedTable":
            return []
        raise
    return [SettledBalance(ccy, sid, end if isinstance(end, date) else date.fromisoformat(str(end)),
                           int(closing)) for ccy, sid, end, closing in rows]


def statement_lines(settings: Settings, merchant_id: str, start: date,
                    end: date) -> Iterator[tuple]:
    sql = (f"SELECT {LINE_COLUMNS} FROM {{lines}} WHERE merchant_id = ? "
           "AND period_start >= ? AND period_start <= ? ORDER BY statement_id, occurred_at, line_id")
    return _fetch(settings, sql, sql, [merchant_id, start, end])


def _text(value) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        return text + "Z" if "T" in text and not text.endswith("Z") and "+" not in text else text
    return str(int(value)) if not isinstance(value, str) else value


def stream_csv(settings: Settings, merchant_id: str, start: date, end: date) -> Iterator[str]:
    """Opening balance, every line with its running balance, closing balance; per statement."""
    heads = statements(settings, merchant_id, start, end)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    by_id = {h[0]: h for h in heads}
    lines = statement_lines(settings, merchant_id, start, end)
    pending = next(lines, None)
    for head in heads:
        (statement_id, _m, p_start, p_end, ccy, opening, _gross, _refunds, fees, net_activity,
         _payouts, closing) = head
        prefix = [statement_id, merchant_id, _text(p_start), _text(p_end), ccy]
        balance = int(opening)
        writer.writerow(prefix + ["opening_balance", "", "", "", "", "", "", "", _text(balance)])
        gross_total = fee_total = 0
        while pending is not None and pending[0] == statement_id:
            (_sid, line_type, line_id, payment_id, refund_id, occurred_at, gross, fee,
             net) = pending
            balance += int(net)
            gross_total += int(gross)
            fee_total += int(fee)
            writer.writerow(prefix + [line_type, line_id, payment_id or "", refund_id or "",
                                      _text(occurred_at), _text(gross), _text(fee), _text(net),
                                      _text(balance)])
            pending = next(lines, None)
        writer.writerow(prefix + ["closing_balance", "", "", "", "", _text(gross_total),
                                  _text(fee_total), _text(net_activity), _text(closing)])
        yield flush()
    while pending is not None and pending[0] not in by_id:  # defensive: lines w/o statement
        pending = next(lines, None)
    yield flush()


def merchants_with_statements(settings: Settings, start: date, end: date) -> list[str]:
    sql = ("SELECT DISTINCT merchant_id FROM {statements} WHERE period_start >= ? "
           "AND period_start <= ? ORDER BY merchant_id")
    return [row[0] for row in _fetch(settings, sql, sql, [start, end])]


def write_statement_files(settings: Settings, day: date,
                          names: dict[str, str] | None = None) -> dict[str, int]:
    """Write each merchant's statement for a day under HOME/statements/<day>/ as CSV and PDF
    (each atomically: a temporary file renamed into place); returns the CSV sizes."""
    import os

    from serving import statement_pdf

    folder = settings.statements_dir / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for merchant_id in merchants_with_statements(settings, day, day):
        final = folder / f"{merchant_id}.csv"
        tmp = final.with_suffix(".csv.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            for chunk in stream_csv(settings, merchant_id, day, day):
                fh.write(chunk)
        os.replace(tmp, final)
        written[merchant_id] = final.stat().st_size
        pdf = folder / f"{merchant_id}.pdf"
        pdf_tmp = pdf.with_suffix(".pdf.tmp")
        pdf_tmp.write_bytes(statement_pdf.render(
            settings, merchant_id, (names or {}).get(merchant_id, merchant_id), day, day))
        os.replace(pdf_tmp, pdf)
    return written


def stream_agent_csv(settings: Settings, agent_id: str, start: date, end: date) -> Iterator[str]:
    """An agent's commission statements (settlement.md): per statement an opening balance, one
    line per model and level (earned, reversed, net) and the closing balance."""
    heads = list(_fetch(settings, *(2 * [
        "SELECT statement_id, period_start, period_end, currency, opening_balance_minor, "
        "earned_minor, reversed_minor, net_minor, closing_balance_minor, payment_count, "
        "refund_count FROM {agent_statements} WHERE agent_id = ? AND period_start >= ? "
        "AND period_start <= ? ORDER BY statement_id"]), [agent_id, start, end]))
    lines = _fetch(settings, *(2 * [
        "SELECT statement_id, model, level, payment_count, refund_count, earned_minor, "
        "reversed_minor, net_minor FROM {agent_lines} WHERE agent_id = ? AND period_start >= ? "
        "AND period_start <= ? ORDER BY statement_id, level, model"]), [agent_id, start, end])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(AGENT_CSV_COLUMNS)
    pending = next(lines, None)
    for (statement_id, p_start, p_end, ccy, opening, earned, reversed_, net, closing, payments,
         refunds) in heads:
        prefix = [statement_id, agent_id, _text(p_start), _text(p_end), ccy]
        writer.writerow(prefix + ["opening_balance", "", "", "", "", "", "", "", _text(opening)])
        balance = int(opening)
        while pending is not None and pending[0] == statement_id:
            _sid, model, level, n_pay, n_ref, l_earned, l_reversed, l_net = pending
            balance += int(l_net)
            writer.writerow(prefix + ["commission", model or "", level, n_pay, n_ref,
                                      _text(l_earned), _text(l_reversed), _text(l_net),
                                      _text(balance)])
            pending = next(lines, None)
        writer.writerow(prefix + ["closing_balance", "", "", payments, refunds, _text(earned),
                                  _text(reversed_), _text(net), _text(closing)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
