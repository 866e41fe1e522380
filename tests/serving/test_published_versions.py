"""The statement snapshots the API serves on a DuckDB warehouse are published as whole versions:
a download reads every mart from the version current when it started, even when a run publishes
a new one while the download streams."""

from __future__ import annotations

import csv
import io
from datetime import date

import duckdb

from serving import statements
from warehouse import published
from warehouse.settings import Settings

DAY = date(2026, 11, 20)
MONEY = "DECIMAL(38,0)"


def _warehouse(amount: int, lines: int) -> duckdb.DuckDBPyConnection:
    """A warehouse whose one statement has `lines` payment lines of `amount` each."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA analytics")
    con.execute(f"""CREATE TABLE analytics.fct_settlement_statements AS SELECT
        'st_1' AS statement_id, 'mer_1' AS merchant_id, 'daily' AS settlement_cycle,
        DATE '{DAY}' AS period_start, DATE '{DAY}' AS period_end, DATE '{DAY}' AS settles_on,
        'closed' AS status, 'USD' AS currency, CAST(0 AS {MONEY}) AS opening_balance_minor,
        CAST({amount * lines} AS {MONEY}) AS gross_minor, CAST(0 AS {MONEY}) AS refunds_minor,
        CAST(0 AS {MONEY}) AS chargebacks_minor, CAST(0 AS {MONEY}) AS fees_minor,
        CAST(0 AS {MONEY}) AS adjustments_minor,
        CAST({amount * lines} AS {MONEY}) AS net_activity_minor,
        CAST(0 AS {MONEY}) AS payouts_minor,
        CAST({amount * lines} AS {MONEY}) AS closing_balance_minor""")
    con.execute(f"""CREATE TABLE analytics.fct_settlement_statement_lines AS SELECT
        'st_1' AS statement_id, 'mer_1' AS merchant_id, DATE '{DAY}' AS period_start,
        DATE '{DAY}' AS period_end, 'payment' AS line_type, 'ln_' || i AS line_id,
        'pay_' || i AS payment_id, NULL AS refund_id, NULL AS payout_id, NULL AS adjustment_id,
        TIMESTAMP '{DAY} 10:00:00' + i * INTERVAL 1 SECOND AS occurred_at, 'USD' AS txn_currency,
        CAST({amount} AS {MONEY}) AS txn_gross_minor, CAST(0 AS {MONEY}) AS txn_fee_minor,
        NULL AS fx_rate_id, CAST(1 AS DECIMAL(28,12)) AS fx_rate,
        CAST({amount} AS {MONEY}) AS gross_minor, CAST(0 AS {MONEY}) AS fee_minor,
        CAST({amount} AS {MONEY}) AS net_minor, NULL AS description, NULL AS created_by
        FROM range({lines}) t(i)""")
    for mart in ("fct_agent_commission_statements", "fct_agent_commission_statement_lines"):
        con.execute(f"CREATE TABLE analytics.{mart} (statement_id VARCHAR)")
    return con


def _publish(settings: Settings, amount: int, lines: int) -> None:
    con = _warehouse(amount, lines)
    try:
        published.publish_from_duckdb(settings, con)
    finally:
        con.close()


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_download_reads_one_version_while_a_run_publishes_the_next(tmp_path):
    """A statement is read as its head, then its lines (the PDF and the CSV alike): a run that
    publishes between the two must not pair the old head with the new lines."""
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path}/api.sqlite")
    _publish(settings, amount=100, lines=2500)  # more than one chunk of lines
    pinned = published.pin(settings)
    [head] = statements.statements(pinned, "mer_1", DAY, DAY)
    _publish(settings, amount=7, lines=3)  # a run publishes meanwhile
    lines = list(statements.statement_lines(pinned, "mer_1", DAY, DAY))
    assert len(lines) == 2500 and {line["net_minor"] for line in lines} == {100}
    assert head["closing_balance_minor"] == sum(line["net_minor"] for line in lines)
    # a download that starts now reads the new version
    fresh = _rows("".join(statements.stream_csv(published.pin(settings), "mer_1", DAY, DAY)))
    assert [r["net_minor"] for r in fresh if r["line_type"] == "payment"] == ["7"] * 3


def test_versions_are_whole_and_the_oldest_are_pruned(tmp_path):
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path}/api.sqlite")
    settings.published_dir.mkdir(parents=True)
    flat = settings.published_dir / "fct_settlement_statements.parquet"
    flat.write_bytes(b"a snapshot of the layout before versions")
    for run in range(published.KEEP_VERSIONS + 2):
        _publish(settings, amount=run + 1, lines=1)
    versions = sorted(p.name for p in settings.published_dir.iterdir() if p.is_dir())
    assert len(versions) == published.KEEP_VERSIONS
    current = (settings.published_dir / published.CURRENT).read_text().strip()
    assert current == versions[-1]
    assert sorted(p.name for p in (settings.published_dir / current).iterdir()) == sorted(
        f"{mart}.parquet" for mart in published.PUBLISHED_MARTS)
    assert not flat.exists()  # no stale flat snapshot left beside the versions
    assert not [p for p in settings.published_dir.iterdir() if p.name.startswith(".")]
    [line] = list(statements.statement_lines(settings, "mer_1", DAY, DAY))
    assert line["net_minor"] == published.KEEP_VERSIONS + 2
