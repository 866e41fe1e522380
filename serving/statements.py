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
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from serving.errors import ApiError
from warehouse.connections import to_libpq_url
from warehouse.published import MARTS_SCHEMA, published_path
from warehouse.settings import Settings

# One CSV row per statement line, framed by an opening_balance and a closing_balance row per
# statement; balance_minor is the running balance after the row. The closing_balance row also
# carries every figure of the statement (settlement.md): gross_minor and fee_minor are its gross
# and fees, and the columns after `description` its opening, refunds, chargebacks, adjustments,
# net activity and payouts (closing = balance_minor). created_by names who made a manual
# adjustment. Columns were only ever added at the end, so older readers keep working.
CSV_COLUMNS = ["statement_id", "merchant_id", "settlement_cycle", "period_start", "period_end",
               "status", "currency", "line_type", "line_id", "payment_id", "refund_id",
               "payout_id", "adjustment_id", "occurred_at", "txn_currency", "txn_gross_minor",
               "txn_fee_minor", "fx_rate_id", "fx_rate", "gross_minor", "fee_minor", "net_minor",
               "balance_minor", "description", "created_by", "settles_on",
               "opening_balance_minor", "refunds_minor", "chargebacks_minor",
               "adjustments_minor", "net_activity_minor", "payouts_minor"]
# The statement figures the closing_balance row carries in columns of their own.
CLOSING_FIGURES = ("opening_balance_minor", "refunds_minor", "chargebacks_minor",
                   "adjustments_minor", "net_activity_minor", "payouts_minor")

STATEMENT_FIELDS = ("statement_id", "merchant_id", "settlement_cycle", "period_start",
                    "period_end", "settles_on", "status", "currency", "opening_balance_minor",
                    "gross_minor", "refunds_minor", "chargebacks_minor", "fees_minor",
                    "adjustments_minor", "net_activity_minor", "payouts_minor",
                    "closing_balance_minor")
LINE_FIELDS = ("statement_id", "line_type", "line_id", "payment_id", "refund_id", "payout_id",
               "adjustment_id", "occurred_at", "txn_currency", "txn_gross_minor", "txn_fee_minor",
               "fx_rate_id", "fx_rate", "gross_minor", "fee_minor", "net_minor", "description",
               "created_by")

# What the SQL below names in braces -> the mart (a published Parquet file on DuckDB).
MARTS = {"statements": "fct_settlement_statements", "lines": "fct_settlement_statement_lines",
         "agent_statements": "fct_agent_commission_statements",
         "agent_lines": "fct_agent_commission_statement_lines"}
AGENT_CSV_COLUMNS = ["statement_id", "agent_id", "period_start", "period_end", "currency",
                     "line_type", "model", "level", "payment_count", "refund_count",
                     "earned_minor", "reversed_minor", "net_minor", "balance_minor", "line_id",
                     "description"]

# A statement's rows go out in chunks of this many lines, so a statement of any size streams
# with bounded memory (one chunk per statement would hold a month of lines in one string).
ROWS_PER_CHUNK = 1000

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def parse_period(period: str | None, today: date | None = None) -> tuple[date, date]:
    """'2026-11-20' (a day), '2026-11' (a month) or '2026-11-01..2026-11-07'; end inclusive.
    With `today`, a period that starts after it is refused: no statement can exist for it yet
    (an empty file would read as "nothing happened")."""
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
    if today is not None and start > today:
        raise ApiError(422, "invalid_period",
                       f"period starts after today ({today.isoformat()}): no statement exists "
                       "for it yet", {"field": "period", "today": today.isoformat()})
    return start, end


def _fetch(settings: Settings, sql: str, params: list) -> Iterator[tuple]:
    """The rows of `sql` over the published marts ({alias} placeholders, `?` parameters): on
    DuckDB from the published Parquet files, on Postgres from the marts, streamed."""
    if settings.warehouse_engine == "duckdb":
        import duckdb

        files = {alias: published_path(settings, mart) for alias, mart in MARTS.items()
                 if "{" + alias + "}" in sql}
        if not all(path.exists() for path in files.values()):
            raise ApiError(503, "statements_not_published",
                           "no statements have been published yet: run the pipeline first")
        con = duckdb.connect()
        try:
            cursor = con.execute(sql.format(**{alias: f"read_parquet('{path}')"
                                               for alias, path in files.items()}), params)
            while batch := cursor.fetchmany(2000):
                yield from batch
        finally:
            con.close()
        return
    import psycopg

    with psycopg.connect(to_libpq_url(settings.warehouse_target)) as pg:
        marts = sql.format(**{alias: f"{MARTS_SCHEMA}.{mart}" for alias, mart in MARTS.items()})
        with pg.cursor(name="statement_stream") as stream:  # server-side: streams large periods
            stream.itersize = 2000
            stream.execute(marts.replace("?", "%s"), params)
            yield from stream


def statements(settings: Settings, merchant_id: str, start: date, end: date) -> list[dict]:
    """The merchant's statements whose period overlaps start..end (a monthly statement shows for
    any day of its month), as dicts of STATEMENT_FIELDS."""
    sql = (f"SELECT {', '.join(STATEMENT_FIELDS)} FROM {{statements}} WHERE merchant_id = ? "
           "AND period_start <= ? AND period_end >= ? ORDER BY period_start, statement_id")
    return [dict(zip(STATEMENT_FIELDS, row, strict=True))
            for row in _fetch(settings, sql, [merchant_id, end, start])]


@dataclass(frozen=True)
class SettledBalance:
    """An owner's settled balance in one currency - what its statements whose periods ended add
    up to, named after the latest of them - and the payouts (paid withdrawals) those statements
    have already deducted."""

    currency: str
    statement_id: str
    period_end: date
    closing_balance_minor: int
    paid_out_minor: int = 0


def settled_balances(settings: Settings, merchant_id: str, day: date,
                     currency: str | None = None) -> list[SettledBalance]:
    """Per currency, what the merchant's statements that have settled by `day` add up to, as the
    pipeline computed them (fees included): the movement of each (closing - opening: its
    activity less its payouts), with those payouts. A statement has settled when its settles_on
    - period_end + the T+N in force when it closed, which a later change of the merchant's T+N
    never moves (an open statement's: the N of the last run) - is on or before `day`: raising N
    never makes a settled statement unavailable again, lowering it never pays out early one that
    closed under the longer N. The sum is the latest such statement's closing balance - except
    after a cycle change, when a statement of the new cycle can end before an overlapping one of
    the old cycle that started earlier: the latest one's closing would carry the old statement's
    activity (the balances chain in order of period start) before its period is over; the sum
    counts exactly the statements that settled.

    Nothing published yet (no Parquet snapshot on DuckDB, no analytics table on Postgres) means
    no settled balance: an empty list, not an error.
    """
    return _settled_balances(
        settings, "statements", "merchant_id", merchant_id, day, currency,
        paid_out="sum(payouts_minor) OVER (PARTITION BY currency)",
        balance="sum(closing_balance_minor - opening_balance_minor) OVER (PARTITION BY currency)",
        cutoff="settles_on")


def settled_commission_balances(settings: Settings, agent_id: str, settled_through: date,
                                currency: str | None = None) -> list[SettledBalance]:
    """Per currency, what the agent's commission statements whose period ended on or before
    `settled_through` add up to (their net summed): everything it has earned, net of reversals
    and adjustments, in periods that are over. That is the latest such statement's closing
    balance - except after a cycle change, when a statement of the new cycle can end before an
    overlapping one of the old cycle: the sum counts exactly the periods that ended. Commission
    statements do not deduct payouts (settlement.md lists commission rows only), so
    paid_out_minor is 0 and the withdrawals are all deducted by the caller."""
    return _settled_balances(settings, "agent_statements", "agent_id", agent_id, settled_through,
                           currency, paid_out="0",
                           balance="sum(net_minor) OVER (PARTITION BY currency)")


def _settled_balances(settings: Settings, mart: str, owner_column: str, owner_id: str,
                      through: date, currency: str | None, paid_out: str, balance: str,
                      cutoff: str = "period_end") -> list[SettledBalance]:
    """Per currency, over the owner's statements in `mart` whose `cutoff` day (period_end or
    settles_on) is on or before `through`: `balance` and `paid_out` (SQL window sums over
    them), named after the latest of them. Nothing published yet: []."""
    if (settings.warehouse_engine == "duckdb"
            and not published_path(settings, MARTS[mart]).exists()):
        return []
    where = f"{owner_column} = ? AND {cutoff} <= ?" + (" AND currency = ?" if currency else "")
    params: list = [owner_id, through] + ([currency] if currency else [])
    sql = ("SELECT currency, statement_id, period_end, settled_balance, paid_out FROM ("
           f"SELECT currency, statement_id, period_end, {balance} AS settled_balance, "
           "row_number() OVER "
           "(PARTITION BY currency ORDER BY period_end DESC, statement_id DESC) AS rn, "
           f"{paid_out} AS paid_out "
           f"FROM {{{mart}}} WHERE {where}) latest WHERE rn = 1 ORDER BY currency")
    try:
        rows = list(_fetch(settings, sql, params))
    except ApiError as exc:
        if exc.code == "statements_not_published":
            return []
        raise
    except Exception as exc:  # Postgres warehouse before the first pipeline run
        if type(exc).__name__ == "UndefinedTable":
            return []
        raise
    return [SettledBalance(ccy, sid, end if isinstance(end, date) else date.fromisoformat(str(end)),
                           int(closing), int(paid_out or 0))
            for ccy, sid, end, closing, paid_out in rows]


def statement_lines(settings: Settings, merchant_id: str, start: date,
                    end: date) -> Iterator[dict]:
    """The lines of those statements, in statement order, then by time."""
    sql = (f"SELECT {', '.join(LINE_FIELDS)} FROM {{lines}} WHERE merchant_id = ? "
           "AND period_start <= ? AND period_end >= ? "
           "ORDER BY period_start, statement_id, occurred_at, line_id")
    for row in _fetch(settings, sql, [merchant_id, end, start]):
        yield dict(zip(LINE_FIELDS, row, strict=True))


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):  # timestamps in UTC with Z (api.md), aware or naive UTC
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if hasattr(value, "isoformat"):  # a date
        return value.isoformat()
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal) and value != value.to_integral_value():
        return format(value.normalize(), "f")  # an FX rate: exact, never through float
    return str(int(value))  # minor units (Decimal(38,0) / NUMERIC / int)


def stream_csv(settings: Settings, merchant_id: str, start: date, end: date) -> Iterator[str]:
    """Opening balance, every line with its running balance, closing balance; per statement."""
    heads = statements(settings, merchant_id, start, end)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n", restval="")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writeheader()
    lines = statement_lines(settings, merchant_id, start, end)
    pending = next(lines, None)
    for head in heads:
        frame = {key: _text(head[key]) for key in ("statement_id", "merchant_id",
                                                   "settlement_cycle", "period_start",
                                                   "period_end", "status", "currency",
                                                   "settles_on")}
        balance = int(head["opening_balance_minor"])
        writer.writerow({**frame, "line_type": "opening_balance", "balance_minor": balance})
        rows = 0
        while pending is not None and pending["statement_id"] == head["statement_id"]:
            balance += int(pending["net_minor"])
            writer.writerow({**frame, **{k: _text(v) for k, v in pending.items()},
                             "balance_minor": balance})
            pending = next(lines, None)
            rows += 1
            if rows % ROWS_PER_CHUNK == 0:
                yield flush()
        writer.writerow({**frame, "line_type": "closing_balance",
                         "gross_minor": _text(head["gross_minor"]),
                         "fee_minor": _text(head["fees_minor"]),
                         "net_minor": _text(int(head["closing_balance_minor"])
                                            - int(head["opening_balance_minor"])),
                         "balance_minor": _text(head["closing_balance_minor"]),
                         **{key: _text(head[key]) for key in CLOSING_FIGURES}})
        yield flush()
    yield flush()


def merchants_with_statements(settings: Settings, start: date, end: date) -> list[str]:
    sql = ("SELECT DISTINCT merchant_id FROM {statements} WHERE period_start <= ? "
           "AND period_end >= ? ORDER BY merchant_id")
    return [row[0] for row in _fetch(settings, sql, [end, start])]


def _write_atomically(path, chunks) -> int:
    """Write the chunks to a temporary file beside `path`, then rename it into place."""
    import os

    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
    os.replace(tmp, path)
    return path.stat().st_size


def agents_with_statements(settings: Settings, start: date, end: date) -> list[str]:
    sql = ("SELECT DISTINCT agent_id FROM {agent_statements} WHERE period_start <= ? "
           "AND period_end >= ? ORDER BY agent_id")
    return [row[0] for row in _fetch(settings, sql, [end, start])]


class BooksNotClosed(RuntimeError):
    """Statement files for a day are written from books closed through that day."""


def statements_left_open(settings: Settings, day: date) -> int:
    """Published statements whose period ended by `day` and are still open: the close of `day`
    (the pipeline as of the day after) has not been published."""
    sql = "SELECT count(*) FROM {statements} WHERE period_end <= ? AND status = 'open'"
    [(count,)] = list(_fetch(settings, sql, [day]))
    return int(count)


def write_statement_files(settings: Settings, day: date,
                          names: dict[str, str] | None = None) -> dict[str, int]:
    """Write, for every merchant with a statement whose period covers the day (a weekly or
    monthly statement shows its period to date), the statement under HOME/statements/<day>/ as
    CSV and PDF, and every agent's commission statement covering the day under
    HOME/statements/<day>/agents/ (each file atomically: a temporary file renamed into place);
    returns the CSV sizes by merchant or agent id. `names`: ids -> names for the PDF headers."""
    from serving import statement_pdf
    from warehouse.published import pin

    settings = pin(settings)  # every file from one published version
    left_open = statements_left_open(settings, day)
    if left_open:  # e.g. the daily close stopped at a blocking check: no files from stale books
        after = day + timedelta(days=1)
        raise BooksNotClosed(
            f"the published books are not closed through {day}: {left_open} statement(s) "
            f"ending by then are still open - the close (the pipeline as of {after}) has not "
            f"run or did not publish; run `clearhouse pipeline --as-of {after}` first")
    folder = settings.statements_dir / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    names = names or {}
    written = {}
    for merchant_id in merchants_with_statements(settings, day, day):
        written[merchant_id] = _write_atomically(
            folder / f"{merchant_id}.csv", stream_csv(settings, merchant_id, day, day))
        _write_atomically(folder / f"{merchant_id}.pdf", [statement_pdf.render(
            settings, merchant_id, names.get(merchant_id, merchant_id), day, day)])
    agents = agents_with_statements(settings, day, day)
    if agents:
        (folder / "agents").mkdir(exist_ok=True)
    for agent_id in agents:
        written[agent_id] = _write_atomically(
            folder / "agents" / f"{agent_id}.csv", stream_agent_csv(settings, agent_id, day, day))
        _write_atomically(folder / "agents" / f"{agent_id}.pdf", [statement_pdf.render_agent(
            settings, agent_id, names.get(agent_id, agent_id), day, day)])
    return written


def stream_agent_csv(settings: Settings, agent_id: str, start: date, end: date) -> Iterator[str]:
    """An agent's commission statements (settlement.md): per statement an opening balance, one
    'commission' line per model and level (earned, reversed, net), an 'adjustment' line per late
    commission row or correction (naming it), and the closing balance."""
    heads = list(_fetch(
        settings,
        "SELECT statement_id, period_start, period_end, currency, opening_balance_minor, "
        "earned_minor, reversed_minor, net_minor, closing_balance_minor, payment_count, "
        "refund_count FROM {agent_statements} WHERE agent_id = ? AND period_start <= ? "
        "AND period_end >= ? ORDER BY period_start, statement_id", [agent_id, end, start]))
    lines = _fetch(
        settings,
        "SELECT statement_id, line_type, model, level, payment_count, refund_count, "
        "earned_minor, reversed_minor, net_minor, line_id, description FROM {agent_lines} "
        "WHERE agent_id = ? AND period_start <= ? AND period_end >= ? "
        "ORDER BY period_start, statement_id, line_type DESC, level, model, line_id",
        [agent_id, end, start])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(AGENT_CSV_COLUMNS)
    pending = next(lines, None)
    for (statement_id, p_start, p_end, ccy, opening, earned, reversed_, net, closing, payments,
         refunds) in heads:
        prefix = [statement_id, agent_id, _text(p_start), _text(p_end), ccy]
        writer.writerow(prefix + ["opening_balance", "", "", "", "", "", "", "", _text(opening),
                                  "", ""])
        balance = int(opening)
        rows = 0
        while pending is not None and pending[0] == statement_id:
            (_sid, line_type, model, level, n_pay, n_ref, l_earned, l_reversed, l_net, line_id,
             description) = pending
            balance += int(l_net)
            writer.writerow(prefix + [line_type, model or "", level, n_pay, n_ref,
                                      _text(l_earned), _text(l_reversed), _text(l_net),
                                      _text(balance), line_id, description or ""])
            pending = next(lines, None)
            rows += 1
            if rows % ROWS_PER_CHUNK == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        writer.writerow(prefix + ["closing_balance", "", "", payments, refunds, _text(earned),
                                  _text(reversed_), _text(net), _text(closing), "", ""])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
