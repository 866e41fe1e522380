"""An item settled in kind (no FX rate for its currency: a line in its own currency on a second
statement) whose rate arrives after its period closed (settlement.md: late data for a closed
period lands in the next open period as an adjustment naming the item): the closed in-kind
statement stays as it was; the period open at the next run reverses the in-kind line in its own
currency and books the item converted, both naming it; a later change to the item is corrected
in the settlement currency at the rate it was converted with. On DuckDB and Postgres. (A module
of its own: the warehouse fixtures are per module.)"""

from __future__ import annotations

import json
from datetime import date

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.test_settlement import (
    T0,
    _daily_merchant_on_cards,
    _fx_rows,
    _insert,
    _payment_rows,
    _rate,
    settlement_snapshot,
)
from warehouse.money import Money, convert, fee_minor

PAYMENT = ("pk1", "mer_k", 10_000, "GBP", "2024-03-01 10:00:00")
RATES_FIRST = {"2024-03-01": {"USD": "1.0850"}}  # no GBP rate yet: pk1 settles in kind
RATES_LATE = {"2024-03-01": {"GBP": "0.8550"}}  # arrives after 03-01 closed
PRICE, NEW_PRICE = (200, 0), (300, 0)  # mer_k's GBP price; then corrected retroactively


def _load(warehouse) -> None:
    _daily_merchant_on_cards(warehouse, "mer_k", "USD")
    _insert(warehouse, "prices", [
        {"id": "prc_mer_k_GBP", "subject_type": "merchant", "subject_id": "mer_k",
         "currency": "GBP", "rate_bps": PRICE[0], "fixed_minor": PRICE[1], "valid_from": T0,
         "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "payments", _payment_rows([PAYMENT]))
    _insert(warehouse, "fx_rates", _fx_rows(RATES_FIRST))


def _build(warehouse, tmp_path_factory, dbt_build, name: str, as_of: str) -> dict:
    proc = dbt_build(warehouse, tmp_path_factory.mktemp(f"in_kind_{warehouse.engine}_{name}"),
                     ("--vars", json.dumps({"settlement_as_of": as_of, "recon_as_of": as_of})))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    return settlement_snapshot(warehouse, "mer_k")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def builds(request, tmp_path_factory, dbt_build):
    warehouse = request.getfixturevalue(f"{request.param}_warehouse")
    _load(warehouse)
    first = _build(warehouse, tmp_path_factory, dbt_build, "1", "2024-03-02")
    _insert(warehouse, "fx_rates", _fx_rows(RATES_LATE))
    second = _build(warehouse, tmp_path_factory, dbt_build, "2", "2024-03-03")
    again = _build(warehouse, tmp_path_factory, dbt_build, "2_again", "2024-03-03")
    warehouse.execute_many(
        f"UPDATE {RAW_SCHEMA}.prices SET rate_bps = ?, fixed_minor = ? WHERE id = ?",
        [(*NEW_PRICE, "prc_mer_k_GBP")])
    third = _build(warehouse, tmp_path_factory, dbt_build, "3", "2024-03-04")
    return first, second, again, third


def _money(line: dict) -> tuple:
    return (line["statement_id"], line["currency"], line["line_type"], line["is_correction"],
            int(line["txn_gross_minor"]), int(line["txn_fee_minor"]), int(line["gross_minor"]),
            int(line["fee_minor"]), int(line["net_minor"]), line["fx_rate_id"],
            line["fx_derivation"])


def test_a_rate_that_arrives_late_converts_the_in_kind_line_in_the_open_period(builds):
    first, second, again, third = builds
    amount, fee = PAYMENT[2], fee_minor(PAYMENT[2], *PRICE)
    # first build: no GBP rate, so pk1 is settled in kind on a GBP statement, which closes
    own = first["lines"]["payment:pk1"]
    assert _money(own) == ("mer_k:GBP:2024-03-01", "GBP", "payment", False, amount, fee, amount,
                           fee, amount - fee, None, "in_kind")
    assert first["statements"]["mer_k:GBP:2024-03-01"]["status"] == "closed"

    # the rate arrives: the closed GBP statement and its line do not move ...
    assert second["lines"]["payment:pk1"] == own
    assert second["statements"]["mer_k:GBP:2024-03-01"] == \
        first["statements"]["mer_k:GBP:2024-03-01"]
    # ... the open period takes the in-kind line back in GBP and books pk1 converted in USD
    rate = _rate("GBP", "USD", date(2024, 3, 1), {**RATES_FIRST, "2024-03-01": {
        **RATES_FIRST["2024-03-01"], **RATES_LATE["2024-03-01"]}})
    usd_gross, usd_fee = (convert(Money(v, "GBP"), rate).money.amount_minor for v in (amount, fee))
    reversal, rebooked = second["lines"]["correction:payment:pk1:1"], \
        second["lines"]["correction:payment:pk1:2"]
    assert _money(reversal) == ("mer_k:GBP:2024-03-03", "GBP", "adjustment", True, -amount, -fee,
                                -amount, -fee, -(amount - fee), None, "in_kind")
    assert _money(rebooked)[:-1] == ("mer_k:USD:2024-03-03", "USD", "adjustment", True, amount,
                                     fee, usd_gross, usd_fee, usd_gross - usd_fee, rate.rate_id)
    for line in (reversal, rebooked):
        assert "payment:pk1" in line["description"] and line["item_id"] == "payment:pk1"
        assert line["natural_period_start"] == date(2024, 3, 1) and line["is_late"]
    assert {sid: int(s["closing_balance_minor"]) for sid, s in second["statements"].items()
            if sid.endswith("2024-03-03")} == {"mer_k:GBP:2024-03-03": 0,
                                               "mer_k:USD:2024-03-03": usd_gross - usd_fee}
    assert again == second  # booked once

    # a later price change is corrected in USD at the rate pk1 was converted with
    new_fee = fee_minor(amount, *NEW_PRICE)
    correction = third["lines"]["correction:payment:pk1:3"]
    delta_usd = convert(Money(new_fee - fee, "GBP"), rate).money.amount_minor
    assert _money(correction)[:-1] == ("mer_k:USD:2024-03-04", "USD", "adjustment", True, 0,
                                       new_fee - fee, 0, delta_usd, -delta_usd, rate.rate_id)
    assert not [k for k in third["lines"] if k.startswith("correction:") and k not in (
        "correction:payment:pk1:1", "correction:payment:pk1:2", "correction:payment:pk1:3")]
