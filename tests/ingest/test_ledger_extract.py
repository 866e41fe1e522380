"""Ledger extract: SQLite/Postgres source into DuckDB/Postgres warehouse, idempotent, atomic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from ingest.ledger import extract_ledger
from tests.serving.admin_helpers import bearer, operator
from tests.serving.helpers import make_api
from warehouse.models import Withdrawal


def warehouse_rows(settings, sql):
    if settings.warehouse_engine == "duckdb":
        import duckdb

        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            return con.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(settings.warehouse_target) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(params=["duckdb", "postgres"])
def settings(request, oltp_url, make_settings, pg_url_factory):
    if request.param == "duckdb":
        return make_settings(database_url=oltp_url)
    return make_settings(database_url=oltp_url, warehouse_url=pg_url_factory())


@pytest.fixture
def pg_url_factory():
    from tests.conftest import create_pg_database, drop_pg_database, require_postgres

    made = []

    def make():
        require_postgres()
        made.append(create_pg_database("ch_wh"))
        return made[-1]

    yield make
    for url in made:
        drop_pg_database(url)


def test_extract_loads_each_row_once_and_catches_updates(settings):
    api = make_api(settings)
    _, key = api.merchant(settlement_currency="ETH", kyc_tier=3)
    big = api.pay(key, amount="123456789012345678901", currency="ETH", method={"type": "crypto"})
    small = api.pay(key, amount="1000").json()["id"]
    first = extract_ledger(settings)
    counts = {t.table: t.rows for t in first.tables}
    assert counts["payments"] == 2 and counts["ledger_entries"] == 4 and counts["merchants"] == 1

    # Re-run with nothing new: rows in the overlap window are re-read but replaced, not doubled.
    extract_ledger(settings)
    assert warehouse_rows(settings, "SELECT count(*) FROM raw.payments") == [(2,)]
    assert warehouse_rows(settings, "SELECT count(*) FROM raw.ledger_entries") == [(4,)]

    # A refund updates a payment already loaded: the new state replaces the old row.
    api.refund(key, small, amount="400")
    extract_ledger(settings)
    rows = warehouse_rows(settings, "SELECT id, status, refunded_minor, amount_minor FROM raw.payments ORDER BY amount_minor")
    assert [(r[1], int(r[2])) for r in rows] == [("partially_refunded", 400), ("success", 0)]
    assert int(rows[1][3]) == 123456789012345678901  # exact above 2^63
    assert big.json()["id"] == rows[1][0]
    assert warehouse_rows(settings, "SELECT count(*), sum(amount_minor) FROM raw.ledger_entries")[0][0] == 6
    assert warehouse_rows(settings, "SELECT count(*) FROM raw.refunds") == [(1,)]


def test_extract_loads_adjustments_and_withdrawals(settings):
    api = make_api(settings)
    merchant_id, _ = api.merchant()
    resp = api.client.post(
        f"/api/v1/merchants/{merchant_id}/adjustments",
        json={"amount_minor": "-123456789012345678901", "currency": "USD", "reason": "late fee"},
        headers={**bearer(operator(api, "finance")), "Idempotency-Key": uuid.uuid4().hex,
                 "Clearhouse-Test-Clock": "2026-11-20T09:30:00Z"})
    assert resp.status_code == 201, resp.text
    adjustment = resp.json()
    with Session(api.engine) as s:
        s.add(Withdrawal(id="po_extract_1", owner_type="merchant", owner_id=merchant_id,
                         amount_minor=4000, currency="USD", status="requested",
                         destination="acct-1"))
        s.commit()
    counts = {t.table: t.rows for t in extract_ledger(settings).tables}
    assert counts["settlement_adjustments"] == 1 and counts["withdrawals"] == 1
    rows = warehouse_rows(settings, "SELECT id, merchant_id, amount_minor, currency, reason, "
                          "created_by, effective_at FROM raw.settlement_adjustments")
    assert [(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6]) for r in rows] == [
        (adjustment["id"], merchant_id, -123456789012345678901, "USD", "late fee",
         adjustment["created_by"], datetime(2026, 11, 20, 9, 30))]  # exact, signed, naive UTC

    # A decision updates the withdrawal: the new state replaces the raw row.
    with Session(api.engine) as s:
        w = s.get(Withdrawal, "po_extract_1")
        w.status, w.decided_by = "approved", "finance:usr_x"
        w.decided_at = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
        s.commit()
    extract_ledger(settings)
    assert warehouse_rows(settings, "SELECT id, owner_type, owner_id, amount_minor, status, "
                          "decided_by, decided_at FROM raw.withdrawals") == [
        ("po_extract_1", "merchant", merchant_id, 4000, "approved", "finance:usr_x",
         datetime(2026, 11, 21, 8, 0))]
    assert warehouse_rows(settings, "SELECT count(*) FROM raw.settlement_adjustments") == [(1,)]


def test_extract_without_overlap_skips_old_rows(settings):
    api = make_api(settings)
    _, key = api.merchant()
    api.pay(key)
    assert extract_ledger(settings).rows > 0
    second = {t.table: t.rows for t in extract_ledger(settings, overlap=timedelta(0)).tables}
    # Only rows at exactly the high-water mark are read again (>=), never older ones.
    assert second["payments"] <= 1


def test_failed_extract_leaves_the_warehouse_as_it_was(settings, monkeypatch):
    api = make_api(settings)
    _, key = api.merchant()
    api.pay(key)
    extract_ledger(settings)
    before = warehouse_rows(settings, "SELECT count(*) FROM raw.payments")
    api.pay(key)
    import ingest.ledger as ledger

    real_load = None

    def exploding_open(s):
        writer = ledger.open_writer.__wrapped__(s)
        nonlocal real_load
        real_load = writer.load

        def load(table, batch):
            if table.name == "refunds":
                raise RuntimeError("disk full")
            real_load(table, batch)

        writer.load = load
        return writer

    exploding_open.__wrapped__ = None
    original = ledger.open_writer
    exploding_open.__wrapped__ = original
    monkeypatch.setattr(ledger, "open_writer", exploding_open)
    api.refund(key, api.pay(key).json()["id"])
    with pytest.raises(RuntimeError, match="disk full"):
        extract_ledger(settings)
    monkeypatch.setattr(ledger, "open_writer", original)
    assert warehouse_rows(settings, "SELECT count(*) FROM raw.payments") == before
    after = extract_ledger(settings)
    assert warehouse_rows(settings, "SELECT count(*) FROM raw.payments") == [(3,)]
    assert {t.table: t.rows for t in after.tables}["refunds"] == 1


def test_extract_streams_tables_in_many_batches_without_loss_or_doubles(settings, monkeypatch):
    """The extract hands each table to the warehouse as a stream of record batches (from SQLite
    through the reader process's stream file); with two rows per batch every table spans several
    batches, on the first load (streamed once) and on a re-run (read again to replace)."""
    import ingest.ledger as ledger

    monkeypatch.setattr(ledger, "BATCH_ROWS", 2)
    api = make_api(settings)
    _, key = api.merchant()
    amounts = [1000 + i for i in range(5)]
    ids = [api.pay(key, amount=str(a)).json()["id"] for a in amounts]
    for _ in range(2):  # the first load, then the overlap window read again
        counts = {t.table: t.rows for t in extract_ledger(settings).tables}
        assert counts["payments"] == 5 and counts["ledger_entries"] == 10
        assert warehouse_rows(settings, "SELECT id, amount_minor FROM raw.payments ORDER BY id") \
            == sorted((i, a) for i, a in zip(ids, amounts, strict=True))
        assert warehouse_rows(settings, "SELECT count(*), count(DISTINCT id), sum(amount_minor) "
                              "FROM raw.ledger_entries") == [(10, 10, 0)]
