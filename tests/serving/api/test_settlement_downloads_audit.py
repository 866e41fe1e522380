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

from tests.serving.admin_helpers import bearer, operator, publish_statements
from tests.serving.helpers import make_api

DAY = date(2026, 11, 20)


@pytest.fixture
def world(tmp_path, make_settings):
    from warehouse.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'oltp.sqlite'}"
    upgrade(url)
    settings = make_settings(database_url=url)
    api = make_api(settings)
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
        971::DECIMAL(38,0) AS net_minor, NULL::VARCHAR AS description
        FROM range({lines}) t(i)) TO '{path}' (FORMAT parquet)""")
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
