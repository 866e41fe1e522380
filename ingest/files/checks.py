"""Checks on the file-sourced raw tables, run by Dagster as asset checks (and usable alone).

Each returns a `CheckOutcome`: passed or not, a one-line description and a few example rows, so
the failure says what is wrong and where. Plain SQL, identical on DuckDB and Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.raw_schema import RAW_SCHEMA

R = RAW_SCHEMA


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    count: int = 0
    examples: list[dict] = field(default_factory=list)


def _rows(writer, sql: str, columns: list[str]) -> list[dict]:
    return [dict(zip(columns, row, strict=True)) for row in writer.fetchall(sql)]


def statement_balance_continuity(writer) -> CheckOutcome:
    """Per account and currency, each booked statement opens with the previous one's closing
    (amount and the balance's own currency; rows loaded before balances had one: the
    statement's)."""
    sql = f"""
        WITH s AS (
            SELECT account_id, currency, statement_uid, closing_date, opening_balance_minor,
                   COALESCE(opening_currency, currency) AS opening_currency,
                   LAG(closing_balance_minor) OVER w AS previous_closing,
                   LAG(COALESCE(closing_currency, currency)) OVER w AS previous_closing_currency,
                   LAG(statement_uid) OVER w AS previous_statement
            FROM {R}.bank_statements
            WHERE superseded_by IS NULL AND opening_balance_minor IS NOT NULL
              AND closing_balance_minor IS NOT NULL AND closing_date IS NOT NULL
            WINDOW w AS (PARTITION BY account_id, currency
                         ORDER BY closing_date, sequence_number, statement_uid)
        )
        SELECT account_id, currency, previous_statement, statement_uid,
               CAST(previous_closing AS VARCHAR(40)), CAST(opening_balance_minor AS VARCHAR(40))
        FROM s WHERE previous_closing IS NOT NULL
          AND (previous_closing <> opening_balance_minor
               OR previous_closing_currency <> opening_currency)
        ORDER BY account_id, statement_uid"""
    gaps = _rows(writer, sql, ["account_id", "currency", "previous_statement", "statement",
                               "previous_closing_minor", "opening_minor"])
    return CheckOutcome(not gaps, f"{len(gaps)} statement(s) do not open at the previous closing",
                        len(gaps), gaps[:5])


def statement_arithmetic(writer) -> CheckOutcome:
    """Statements whose own arithmetic fails (opening + lines != closing) are loaded flagged."""
    sql = f"""SELECT statement_uid, account_id, message_type, balance_check
              FROM {R}.bank_statements
              WHERE superseded_by IS NULL AND balance_check = 'mismatch'
              ORDER BY statement_uid"""
    bad = _rows(writer, sql, ["statement", "account_id", "message_type", "balance_check"])
    return CheckOutcome(not bad, f"{len(bad)} statement(s) where opening + lines != closing",
                        len(bad), bad[:5])


def duplicate_rows(writer, table: str, key: str) -> CheckOutcome:
    sql = f"""SELECT {key}, COUNT(*) FROM {R}.{table} GROUP BY {key} HAVING COUNT(*) > 1
              ORDER BY {key}"""
    dupes = _rows(writer, sql, [key, "copies"])
    return CheckOutcome(not dupes, f"{len(dupes)} duplicate {key}(s) in raw.{table}",
                        len(dupes), dupes[:5])


def duplicate_current_psp_transactions(writer) -> CheckOutcome:
    """The same PSP transaction (format, channel, type, references, time and amount) current in
    more than one file: psp_line_id is per file and line, so a bill whose rows also came in
    another current file (an ALL and a REFUND bill of one day, a copy the supersession key did
    not recognise) would count twice without this check."""
    sql = f"""SELECT format, channel, record_type, channel_reference, merchant_reference,
                     CAST(gross_minor AS VARCHAR(40)), COUNT(DISTINCT file_id)
              FROM {R}.psp_lines
              WHERE superseded_by IS NULL AND channel_reference IS NOT NULL
              GROUP BY format, channel, record_type, channel_reference, merchant_reference,
                       transaction_at, gross_minor
              HAVING COUNT(DISTINCT file_id) > 1
              ORDER BY format, channel, channel_reference"""
    dupes = _rows(writer, sql, ["format", "channel", "record_type", "channel_reference",
                                "merchant_reference", "gross_minor", "files"])
    return CheckOutcome(not dupes, f"{len(dupes)} PSP transaction(s) current in more than one "
                        "file", len(dupes), dupes[:5])


def late_bank_statements(writer, grace_days: int = 1) -> CheckOutcome:
    """Freshness per account: an account is late when its newest current statement closes more
    than `grace_days` before the newest statement of any account (clock-free, like
    late_psp_channels, so a replayed or simulated day works too)."""
    sql = f"""
        WITH latest AS (
            SELECT account_id, currency, MAX(COALESCE(closing_date, to_date)) AS last_day
            FROM {R}.bank_statements
            WHERE superseded_by IS NULL AND COALESCE(closing_date, to_date) IS NOT NULL
            GROUP BY account_id, currency)
        SELECT account_id, currency, CAST(last_day AS VARCHAR(10)),
               CAST((SELECT MAX(last_day) FROM latest) AS VARCHAR(10))
        FROM latest
        WHERE last_day < (SELECT MAX(last_day) FROM latest) - {int(grace_days)}
        ORDER BY account_id, currency"""
    late = _rows(writer, sql, ["account_id", "currency", "last_statement_day",
                               "newest_day_any_account"])
    return CheckOutcome(not late, f"{len(late)} account(s) with a late bank statement",
                        len(late), late[:5])


def stale_fx_rates(writer, grace_days: int = 4) -> CheckOutcome:
    """Freshness of the ECB rates: the newest rate date may trail the newest settlement or
    statement day by at most `grace_days` (the ECB publishes on TARGET business days: a weekend
    and a holiday). Clock-free; passes while there are no rates or nothing to convert."""
    sql = f"""
        WITH newest AS (
            SELECT MAX(d) AS day FROM (
                SELECT MAX(settlement_date) AS d FROM {R}.psp_lines WHERE superseded_by IS NULL
                UNION ALL
                SELECT MAX(closing_date) FROM {R}.bank_statements WHERE superseded_by IS NULL
            ) AS days),
        rates AS (SELECT MAX(rate_date) AS day FROM {R}.fx_rates)
        SELECT CAST(rates.day AS VARCHAR(10)), CAST(newest.day AS VARCHAR(10))
        FROM rates, newest
        WHERE rates.day IS NOT NULL AND newest.day IS NOT NULL
          AND rates.day < newest.day - {int(grace_days)}"""
    stale = _rows(writer, sql, ["newest_rate_day", "newest_data_day"])
    return CheckOutcome(not stale, "the newest ECB rates are older than the data they convert"
                        if stale else "ECB rates are current", len(stale), stale)


def duplicate_current_statements(writer) -> CheckOutcome:
    """At most one current (not superseded) file per statement key."""
    sql = f"""SELECT supersession_key, COUNT(DISTINCT file_id) FROM {R}.bank_statements
              WHERE superseded_by IS NULL AND supersession_key IS NOT NULL
              GROUP BY supersession_key HAVING COUNT(DISTINCT file_id) > 1"""
    dupes = _rows(writer, sql, ["statement_key", "files"])
    return CheckOutcome(not dupes, f"{len(dupes)} statement(s) current in more than one file",
                        len(dupes), dupes[:5])


def duplicate_current_fraud_reports(writer) -> CheckOutcome:
    """At most one current (not superseded) row per fraud report_id."""
    sql = f"""SELECT report_id, COUNT(*) FROM {R}.fraud_reports WHERE superseded_by IS NULL
              GROUP BY report_id HAVING COUNT(*) > 1 ORDER BY report_id"""
    dupes = _rows(writer, sql, ["report_id", "current_rows"])
    return CheckOutcome(not dupes, f"{len(dupes)} fraud report(s) current in more than one row",
                        len(dupes), dupes[:5])


def late_psp_channels(writer, grace_days: int = 1) -> CheckOutcome:
    """A channel is late when its newest settlement file is more than `grace_days` older than
    the newest file of any channel (clock-free, so a replayed or simulated day works too)."""
    sql = f"""
        WITH latest AS (
            SELECT channel, MAX(settlement_date) AS last_day FROM {R}.psp_lines
            WHERE superseded_by IS NULL AND channel IS NOT NULL AND settlement_date IS NOT NULL
            GROUP BY channel)
        SELECT channel, CAST(last_day AS VARCHAR(10)),
               CAST((SELECT MAX(last_day) FROM latest) AS VARCHAR(10))
        FROM latest
        WHERE last_day < (SELECT MAX(last_day) FROM latest) - {int(grace_days)}
        ORDER BY channel"""
    late = _rows(writer, sql, ["channel", "last_file_day", "newest_day_any_channel"])
    return CheckOutcome(not late, f"{len(late)} channel(s) with a late settlement file",
                        len(late), late[:5])


def quarantined_files(writer) -> CheckOutcome:
    sql = f"""SELECT source, original_name, reason, location FROM {R}.landed_files
              WHERE status = 'quarantined' ORDER BY processed_at DESC"""
    rows = _rows(writer, sql, ["source", "file", "reason", "location"])
    return CheckOutcome(not rows, f"{len(rows)} file(s) in quarantine", len(rows), rows[:5])
