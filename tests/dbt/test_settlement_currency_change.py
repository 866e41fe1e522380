"""A merchant's settlement currency changed (EUR -> USD) after a EUR statement closed with a
balance, which the merchant then withdraws in EUR (the API allows it: the balance is settled in
EUR). The payout pays out the EUR balance, so it goes on a EUR statement unconverted and EUR
closes at 0; the USD statements are untouched by it. Before, the payout was converted into USD at
the payout day's rate: USD went to -10,682 and EUR stayed at 9,800 for good (the statements
said both that the platform owed 98.00 EUR and that the merchant owed 106.82 USD).
New payments after the change settle in USD, converted as before. On DuckDB and Postgres."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.test_cycle_change_mid_period import _build_as_of
from tests.dbt.test_settlement import (
    T0,
    _daily_merchant_on_cards,
    _fx_rows,
    _insert,
    _payment_rows,
    ts,
)
from warehouse.money import FxRate, Money, convert, fee_minor

PRICE = (200, 0)  # bps, fixed: mer_x's EUR and USD price
RATE_0306 = "1.0900"


def _load(warehouse) -> None:
    _daily_merchant_on_cards(warehouse, "mer_x", "EUR")
    _insert(warehouse, "prices", [
        {"id": f"prc_x_{ccy}", "subject_type": "merchant", "subject_id": "mer_x",
         "currency": ccy, "rate_bps": PRICE[0], "fixed_minor": PRICE[1], "valid_from": T0,
         "created_at": T0, "updated_at": T0} for ccy in ("EUR", "USD")])
    _insert(warehouse, "payments",
            _payment_rows([("px1", "mer_x", 10_000, "EUR", "2024-03-04 10:00:00")]))
    _insert(warehouse, "fx_rates", _fx_rows({"2024-03-04": {"USD": "1.0850"},
                                             "2024-03-06": {"USD": RATE_0306}}))


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_payout_of_the_old_currency_pays_out_that_balance(engine, request, tmp_path_factory,
                                                           dbt_build):
    warehouse = request.getfixturevalue(f"{engine}_warehouse")
    _load(warehouse)
    first = _build_as_of(warehouse, tmp_path_factory, dbt_build, "ccy1", "2024-03-05")
    eur_balance = 10_000 - fee_minor(10_000, *PRICE)
    assert (first["mer_x:EUR:2024-03-04"]["status"],
            first["mer_x:EUR:2024-03-04"]["closing_balance_minor"]) == ("closed", eur_balance)

    warehouse.execute_many(
        f"UPDATE {RAW_SCHEMA}.merchants SET settlement_currency = ? WHERE id = ?",
        [("USD", "mer_x")])
    _insert(warehouse, "withdrawals", [
        {"id": "po_x", "owner_type": "merchant", "owner_id": "mer_x",
         "amount_minor": eur_balance, "currency": "EUR", "status": "paid",
         "decided_by": "usr_ops", "decided_at": ts("2024-03-06 09:00:00"),
         "paid_at": ts("2024-03-06 10:00:00"), "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "payments",
            _payment_rows([("px2", "mer_x", 5_000, "EUR", "2024-03-06 11:00:00")]))
    second = _build_as_of(warehouse, tmp_path_factory, dbt_build, "ccy2", "2024-03-07")

    assert second["mer_x:EUR:2024-03-04"] == first["mer_x:EUR:2024-03-04"]  # closed: unchanged
    lines = {r["line_id"]: r for r in warehouse.query(
        "select * from analytics.fct_settlement_statement_lines where merchant_id = 'mer_x'")}
    payout = lines["payout:po_x"]
    assert (payout["statement_id"], payout["gross_minor"], payout["fx_rate_id"]) == (
        "mer_x:EUR:2024-03-06", -eur_balance, None)
    assert second["mer_x:EUR:2024-03-06"]["opening_balance_minor"] == eur_balance
    assert second["mer_x:EUR:2024-03-06"]["closing_balance_minor"] == 0

    # the payment after the change settles in USD at the day's rate; nothing else is in USD
    rate = FxRate("ecb:2024-03-06:EUR:USD", "EUR", "USD", Decimal(RATE_0306), "ecb",
                  date(2024, 3, 6))
    gross = convert(Money(5_000, "EUR"), rate).money.amount_minor
    fee = convert(Money(fee_minor(5_000, *PRICE), "EUR"), rate).money.amount_minor
    assert (lines["payment:px2"]["statement_id"], lines["payment:px2"]["gross_minor"],
            lines["payment:px2"]["fx_rate_id"]) == ("mer_x:USD:2024-03-06", gross,
                                                    "ecb:2024-03-06:EUR:USD")
    usd = {sid: row for sid, row in second.items() if sid.startswith("mer_x:USD:")}
    assert usd["mer_x:USD:2024-03-06"]["closing_balance_minor"] == gross - fee
    assert all(row["closing_balance_minor"] in (0, gross - fee) for row in usd.values()), usd
