"""stg_fraud_reports on DuckDB and Postgres, end to end: the demo's writer drops two files into the
landing zone (the second updates one report and adds one), the landing loader loads them, and
`dbt build --select stg_fraud_reports` (the view and its tests) returns one typed row per report:
the version of the file loaded last."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from ingest.files.formats.fraud_reports import write_fraud_reports
from ingest.files.loader import load_landing

FIRST = [
    {"report_id": "fr_1", "payment_id": "pay_1", "merchant_id": "mer_a", "kind": "stolen_card",
     "source": "chargeback", "reported_at": dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC),
     "amount_minor": 12550, "currency": "USD"},
    {"report_id": "fr_2", "payment_id": "pay_2", "merchant_id": "mer_a",
     "kind": "account_takeover", "source": "issuer_report",
     "reported_at": "2026-12-01T11:30:00+01:00"},
    {"report_id": "fr_3", "payment_id": "pay_3", "merchant_id": "mer_b",
     "kind": "mule_cash_out", "source": "internal_review",
     "reported_at": dt.datetime(2026, 12, 1, 23, 59, 59, 500000),
     "amount_minor": 123456789012345678901, "currency": "ETH"},  # wei, beyond int64
]
SECOND = [  # fr_1 reclassified and its amount corrected; fr_4 new
    {**FIRST[0], "kind": "friendly_fraud", "amount_minor": 12000},
    {"report_id": "fr_4", "payment_id": "pay_4", "merchant_id": "mer_c", "kind": "card_testing",
     "source": "customer_claim", "reported_at": dt.datetime(2026, 12, 2, 8, 15),
     "amount_minor": 0, "currency": "JPY"},
]
EXPECTED = [
    ("fr_1", "pay_1", "mer_a", "friendly_fraud", "chargeback", dt.datetime(2026, 12, 1, 10),
     12000, "USD", "second"),
    ("fr_2", "pay_2", "mer_a", "account_takeover", "issuer_report",
     dt.datetime(2026, 12, 1, 10, 30), None, None, "first"),
    ("fr_3", "pay_3", "mer_b", "mule_cash_out", "internal_review",
     dt.datetime(2026, 12, 1, 23, 59, 59, 500000), 123456789012345678901, "ETH", "first"),
    ("fr_4", "pay_4", "mer_c", "card_testing", "customer_claim", dt.datetime(2026, 12, 2, 8, 15),
     0, "JPY", "second"),
]


def _warehouse_url(warehouse) -> str:
    env = warehouse.env
    if warehouse.engine == "duckdb":
        return f"duckdb:///{env['CLEARHOUSE_DUCKDB_PATH']}"
    return (f"postgresql://{env['CLEARHOUSE_PG_USER']}@{env['CLEARHOUSE_PG_HOST']}:"
            f"{env['CLEARHOUSE_PG_PORT']}/{env['CLEARHOUSE_PG_DBNAME']}")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request):
    return request.getfixturevalue(f"{request.param}_warehouse")


def test_stg_fraud_reports_has_one_current_typed_row_per_report(warehouse, make_settings,
                                                                 tmp_path, dbt_build):
    settings = make_settings(home=tmp_path / "home", warehouse_url=_warehouse_url(warehouse))
    files = {}
    for name, day, reports in (("first", dt.date(2026, 12, 1), FIRST),
                               ("second", dt.date(2026, 12, 2), SECOND)):
        write_fraud_reports(settings.landing_dir, day, reports)
        (outcome,) = load_landing(settings).files  # one file per run: a clear load order
        assert outcome.status == "loaded", outcome
        files[name] = outcome.file_id

    proc = dbt_build(warehouse, tmp_path / "dbt", ("--select", "stg_fraud_reports"))
    assert proc.returncode == 0, warehouse.dbt_output[-4000:]
    results = {r["unique_id"]: r["status"] for r in warehouse.run_results["results"]}
    assert results["model.clearhouse.stg_fraud_reports"] == "success"
    tests = {k: v for k, v in results.items() if k.startswith("test.")}
    assert len(tests) >= 8 and set(tests.values()) == {"pass"}, tests

    got = warehouse.query(
        "select report_id, payment_id, merchant_id, kind, source, reported_at, "
        "cast(amount_minor as varchar(40)) as amount_text, currency, file_id "
        "from analytics.stg_fraud_reports order by report_id")
    by_file = {v: k for k, v in files.items()}
    assert [(r["report_id"], r["payment_id"], r["merchant_id"], r["kind"], r["source"],
             r["reported_at"], None if r["amount_text"] is None else int(r["amount_text"]),
             r["currency"], by_file[r["file_id"]]) for r in got] == EXPECTED

    # Typed: amounts are exact DECIMAL/NUMERIC(38,0), times timestamps (not text).
    amount = warehouse.query("select amount_minor from analytics.stg_fraud_reports "
                             "where report_id = 'fr_3'")[0]["amount_minor"]
    assert isinstance(amount, Decimal) and amount == Decimal(123456789012345678901)
    assert isinstance(got[0]["reported_at"], dt.datetime)
    # The raw table keeps the superseded version, marked.
    raw = warehouse.query("select kind, file_id, superseded_by from raw.fraud_reports "
                          "where report_id = 'fr_1' order by superseded_by nulls first")
    assert [(r["kind"], by_file[r["file_id"]], r["superseded_by"]) for r in raw] == [
        ("friendly_fraud", "second", None), ("stolen_card", "first", files["second"])]

    # Rows that reach raw some other way than the loader (a backfill, no superseded_by set): the
    # view applies the same rule, the latest load of a report_id wins.
    warehouse.execute_many(
        "insert into raw.fraud_reports (fraud_report_line_id, file_id, line_number, report_id, "
        "payment_id, merchant_id, kind, source, reported_at, _loaded_at) "
        "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [("backfill:2", "backfill", 2, "fr_2", "pay_2", "mer_a", "other", "issuer_report",
          dt.datetime(2026, 12, 1, 10, 30), dt.datetime(2999, 1, 1))])
    after = warehouse.query("select report_id, kind, file_id from analytics.stg_fraud_reports "
                            "order by report_id")
    assert [(r["report_id"], r["kind"], r["file_id"]) for r in after] == [
        ("fr_1", "friendly_fraud", files["second"]), ("fr_2", "other", "backfill"),
        ("fr_3", "mule_cash_out", files["first"]), ("fr_4", "card_testing", files["second"])]
