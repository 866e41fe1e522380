"""Audit (2026-12-05): statement downloads through the API, black box.

GET /api/v1/settlements/{entity_id}?period=...&format=csv|pdf: api.md's error envelope for a bad
period or format, Content-Type / Content-Disposition, CSV columns with integer minor units and a
currency, a real PDF (read back with pypdf) with header, period, balances and lines, and a
statement of thousands of lines that streams in bounded chunks.
"""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from tests.serving.admin_helpers import (
    bearer,
    operator,
    publish_statement_marts,
    publish_statements,
)
from tests.serving.helpers import sqlite_api

DAY = date(2026, 11, 20)


@pytest.fixture
def world(tmp_path, make_settings):
    settings, api = sqlite_api(tmp_path, make_settings)
    merchant_id, key = api.merchant("Downloads Shop")
    publish_statements(settings, [merchant_id], day=DAY)
    return api, settings, merchant_id, key


def _get(api, key, entity_id, query):
    return api.client.get(f"/api/v1/settlements/{entity_id}?{query}", headers=bearer(key))


def _assert_envelope(resp, status, code, field):
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"]
    assert field in str(error["details"])


def test_unknown_format_is_a_422_naming_the_field(world):
    api, _settings, merchant_id, key = world
    resp = _get(api, key, merchant_id, f"period={DAY}&format=xlsx")
    assert resp.status_code == 422, resp.text
    assert "format" in str(resp.json()["error"]["details"])


@pytest.mark.parametrize("period", [
    "2026-13", "2026-02-30", "20261120", "2026/11/20", "2026-11-20..2026-11-01",
    "2025-01-01..2026-12-31", "2026-11-01..", "..2026-11-01", "", "last-month",
])
def test_malformed_period_is_a_422_invalid_period(world, period):
    api, _settings, merchant_id, key = world
    _assert_envelope(_get(api, key, merchant_id, f"period={period}&format=csv"), 422,
                     "invalid_period", "period")


def test_missing_period_is_a_422_invalid_period(world):
    api, _settings, merchant_id, key = world
    _assert_envelope(_get(api, key, merchant_id, "format=csv"), 422, "invalid_period", "period")


@pytest.mark.parametrize("fmt", ["csv", "pdf"])
def test_a_period_in_the_future_is_a_422_not_an_empty_statement(world, fmt):
    api, _settings, merchant_id, key = world
    _assert_envelope(_get(api, key, merchant_id, f"period=2099-01&format={fmt}"), 422,
                     "invalid_period", "period")


def test_a_past_period_without_activity_is_an_empty_csv_not_an_error(world):
    api, _settings, merchant_id, key = world
    resp = _get(api, key, merchant_id, "period=2026-10-01&format=csv")
    assert resp.status_code == 200
    assert resp.text.splitlines()[0].startswith("statement_id,")
    assert len(resp.text.splitlines()) == 1


def test_csv_headers_columns_and_integer_minor_units(world):
    from serving.statements import CSV_COLUMNS

    api, _settings, merchant_id, key = world
    resp = _get(api, key, merchant_id, f"period={DAY}&format=csv")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f'{merchant_id}_{DAY}.csv"' in disposition
    reader = csv.DictReader(io.StringIO(resp.text))
    assert reader.fieldnames == CSV_COLUMNS
    rows = list(reader)
    assert [r["line_type"] for r in rows] == ["opening_balance", "payment", "closing_balance"]
    for row in rows:
        assert row["currency"] == "USD"
        for column in ("txn_gross_minor", "txn_fee_minor", "gross_minor", "fee_minor",
                       "net_minor", "balance_minor"):
            assert row[column] == "" or row[column].lstrip("-").isdigit(), (column, row[column])
    payment = rows[1]
    assert (payment["gross_minor"], payment["fee_minor"], payment["net_minor"],
            payment["balance_minor"], payment["payment_id"]) == ("1000", "29", "971", "971", "pay_x")
    assert payment["occurred_at"].endswith("Z")


def test_pdf_is_a_real_document_with_header_period_balances_and_lines(world):
    from pypdf import PdfReader

    api, _settings, merchant_id, key = world
    resp = _get(api, key, merchant_id, f"period={DAY}&format=pdf")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/pdf"
    assert f'{merchant_id}_{DAY}.pdf"' in resp.headers["content-disposition"]
    reader = PdfReader(io.BytesIO(resp.content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    for needle in ("Downloads Shop", merchant_id, "2026-11-20", "pay_x", "9.71 USD"):
        assert needle in text, needle
    assert "pening" in text and "losing" in text  # opening / closing balance


def _publish_big_statement(settings, merchant_id: str, lines: int) -> None:
    """One daily statement with `lines` payment lines of 1000 (fee 29), as the pipeline
    publishes it (Parquet snapshots)."""
    import duckdb

    from warehouse.published import published_path

    publish_statements(settings, [merchant_id], day=DAY)
    path = published_path(settings, "fct_settlement_statement_lines")
    con = duckdb.connect()
    sid = f"{merchant_id}:USD:{DAY}"
    con.execute(f"""COPY (SELECT '{sid}' AS statement_id, '{merchant_id}' AS merchant_id,
        DATE '{DAY}' AS period_start, DATE '{DAY}' AS period_end, 'payment' AS line_type,
        'payment:pay_' || i AS line_id, 'pay_' || i AS payment_id, NULL::VARCHAR AS refund_id,
        NULL::VARCHAR AS payout_id, NULL::VARCHAR AS adjustment_id,
        TIMESTAMP '{DAY} 00:00:00' + to_seconds(i) AS occurred_at, 'USD' AS txn_currency,
        1000::DECIMAL(38,0) AS txn_gross_minor, 29::DECIMAL(38,0) AS txn_fee_minor,
        NULL::VARCHAR AS fx_rate_id, 1::DECIMAL(28,12) AS fx_rate,
        1000::DECIMAL(38,0) AS gross_minor, 29::DECIMAL(38,0) AS fee_minor,
        971::DECIMAL(38,0) AS net_minor, NULL::VARCHAR AS description,
        NULL::VARCHAR AS created_by FROM range({lines}) t(i)) TO '{path}' (FORMAT parquet)""")
    con.close()


def test_a_statement_of_thousands_of_lines_streams_in_bounded_chunks(world):
    from serving.statements import stream_csv

    api, settings, merchant_id, key = world
    _publish_big_statement(settings, merchant_id, 20_000)
    chunks = list(stream_csv(settings, merchant_id, DAY, DAY))
    body = "".join(chunks)
    assert body.count("\n") == 1 + 1 + 20_000 + 1
    # one statement, but not one string: the lines go out a batch at a time
    assert max(len(c) for c in chunks) < 512 * 1024, [len(c) for c in chunks][:5]
    resp = _get(api, key, merchant_id, f"period={DAY}&format=csv")
    assert resp.status_code == 200 and resp.text == body
    assert "content-length" not in resp.headers  # chunked, not buffered


def test_a_statement_of_thousands_of_lines_renders_as_pdf(world):
    from pypdf import PdfReader

    api, settings, merchant_id, key = world
    _publish_big_statement(settings, merchant_id, 3_000)
    resp = _get(api, key, merchant_id, f"period={DAY}&format=pdf")
    assert resp.status_code == 200
    reader = PdfReader(io.BytesIO(resp.content))
    assert len(reader.pages) > 10
    assert "pay_2999" in reader.pages[-1].extract_text() + reader.pages[-2].extract_text()


def test_finance_reads_any_merchants_statement(world):
    api, _settings, merchant_id, _key = world
    finance = operator(api, "finance")
    assert _get(api, finance, merchant_id, f"period={DAY}&format=csv").status_code == 200


def test_the_download_carries_every_figure_of_the_statement_and_who_adjusted(world):
    """settlement.md: the statement shows opening, gross, refunds, chargebacks, fees, adjustments
    (manual, with reason and who), net_activity, payouts and closing. Each figure published
    with a value of its own must land in its own CSV column of the closing_balance row, and
    the adjustment's author in its line's created_by (and in the PDF)."""
    from pypdf import PdfReader

    api, settings, merchant_id, key = world
    sid = f"{merchant_id}:USD:{DAY}"
    # opening 500 + gross 10,000 - refunds 1,200 - chargebacks 800 - fees 290 - adjustments 150
    # = net_activity 8,060; - payouts 3,000 = closing 5,060
    head = (sid, merchant_id, "daily", DAY, DAY, date(2026, 11, 22), "closed", "USD", 500,
            10_000, 1_200, 800, 290, 150, 8_060, 3_000, 5_060)
    def at(hour: int) -> str:
        return f"{DAY} {hour}:00:00"

    lines = [
        (sid, merchant_id, DAY, DAY, "payment", "payment:pay_1", "pay_1", None, None, None, at(10),
         "USD", 10_000, 290, None, 1, 10_000, 290, 9_710, None, None),
        (sid, merchant_id, DAY, DAY, "refund", "refund:re_1", "pay_1", "re_1", None, None, at(11),
         "USD", -1_200, 0, None, 1, -1_200, 0, -1_200, None, None),
        (sid, merchant_id, DAY, DAY, "chargeback", "chargeback:psp_1", "pay_1", None, None, None,
         at(12), "USD", -800, 0, None, 1, -800, 0, -800, None, None),
        (sid, merchant_id, DAY, DAY, "adjustment", "adjustment:adj_1", None, None, None, "adj_1",
         at(13), "USD", -150, 0, None, 1, -150, 0, -150, "chargeback handling fee", "usr_finance_1"),
        (sid, merchant_id, DAY, DAY, "payout", "payout:wd_1", None, None, "wd_1", None, at(14),
         "USD", -3_000, 0, None, 1, -3_000, 0, -3_000, None, None),
    ]
    publish_statement_marts(settings, [head], lines)

    resp = _get(api, key, merchant_id, f"period={DAY}&format=csv")
    assert resp.status_code == 200, resp.text
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["line_type"] for r in rows] == ["opening_balance", "payment", "refund",
                                              "chargeback", "adjustment", "payout",
                                              "closing_balance"]
    closing = rows[-1]
    assert {k: closing[k] for k in (
        "opening_balance_minor", "gross_minor", "refunds_minor", "chargebacks_minor",
        "fee_minor", "adjustments_minor", "net_activity_minor", "payouts_minor",
        "balance_minor", "net_minor", "settles_on")} == {
        "opening_balance_minor": "500", "gross_minor": "10000", "refunds_minor": "1200",
        "chargebacks_minor": "800", "fee_minor": "290", "adjustments_minor": "150",
        "net_activity_minor": "8060", "payouts_minor": "3000", "balance_minor": "5060",
        "net_minor": "4560", "settles_on": "2026-11-22"}
    assert int(rows[-2]["balance_minor"]) == 5_060  # the running balance meets the closing
    adjustment = rows[4]
    assert (adjustment["adjustment_id"], adjustment["description"],
            adjustment["created_by"]) == ("adj_1", "chargeback handling fee", "usr_finance_1")
    assert {r["created_by"] for r in rows if r["line_type"] != "adjustment"} == {""}

    pdf = _get(api, key, merchant_id, f"period={DAY}&format=pdf")
    assert pdf.status_code == 200
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "chargeback handling fee; by usr_finance_1" in text
    for label, amount in (("Chargebacks", "8.00"), ("Adjustments", "1.50"), ("Payouts", "30.00"),
                          ("Net activity", "80.60")):
        assert label in text and amount in text, label
