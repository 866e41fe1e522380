"""commission.md "Prices": fee(price) = round_half_up(amount * rate_bps / 10000)
+ fixed_minor[currency] "(missing fixed for that currency = 0, and a data-quality warning)".

Second commission/settlement audit: a price entered through the API without a fixed amount for a
currency (a channel's `fixed_minor` dict leaving a currency out, as the README's own example
does; POST /prices or a merchant's pricing without `fixed_minor`) must reach the warehouse as
missing, so the pipeline counts it as 0 and warns - not as an explicit 0, which it cannot tell
from "no fixed fee on purpose". The platform's own default pricing (290 bps, no fixed fee) is a
price the platform chose: an explicit 0, no warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.serving.admin_helpers import admin
from tests.serving.helpers import make_api
from warehouse.models import Price


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def _fixed(api, subject_id: str) -> dict[str, object]:
    with Session(api.engine) as s:
        return {p.currency: p.fixed_minor for p in s.scalars(
            select(Price).where(Price.subject_id == subject_id))}


def test_a_currency_left_out_of_a_channel_price_has_no_fixed_amount(api):
    resp = api.client.post("/api/v1/channels", headers=admin(api), json={
        "name": "acquirer-x", "type": "card",
        "currencies": [{"currency": "USD"}, {"currency": "EUR"}],
        "price": {"rate_bps": 120, "fixed_minor": {"USD": "30"}}})
    assert resp.status_code == 201, resp.text
    prices = {c["currency"]: c["price"]["fixed_minor"] for c in resp.json()["currencies"]}
    assert prices == {"USD": "30", "EUR": None}
    assert _fixed(api, resp.json()["id"]) == {"USD": 30, "EUR": None}


def test_a_price_posted_without_fixed_minor_has_no_fixed_amount(api):
    merchant_id, _key = api.merchant("Shop")
    resp = api.client.post("/api/v1/prices", headers=admin(api), json={
        "subject_type": "merchant", "subject_id": merchant_id, "currency": "JPY",
        "rate_bps": 325})
    assert resp.status_code == 201, resp.text
    assert resp.json()["fixed_minor"] is None
    assert _fixed(api, merchant_id)["JPY"] is None


def test_merchant_pricing_without_fixed_minor_and_the_default_pricing(api):
    resp = api.client.post("/api/v1/merchants", headers=admin(api), json={
        "name": "Priced", "pricing": [{"currency": "USD", "rate_bps": 250},
                                      {"currency": "EUR", "rate_bps": 250, "fixed_minor": "25"}]})
    assert resp.status_code == 201, resp.text
    assert _fixed(api, resp.json()["id"]) == {"USD": None, "EUR": 25}
    default = api.client.post("/api/v1/merchants", headers=admin(api), json={"name": "Default"})
    assert default.status_code == 201, default.text
    assert set(_fixed(api, default.json()["id"]).values()) == {0}  # chosen by the platform


@pytest.mark.parametrize("oltp_url", ["sqlite"], indirect=True)
def test_the_missing_fixed_amount_reaches_the_pipeline_and_warns(api, make_settings, oltp_url,
                                                                  tmp_path: Path):
    from ingest.ledger import extract_ledger
    from tests.dbt.conftest import run_dbt_build

    settings = make_settings(database_url=oltp_url)
    merchant_id, _key = api.merchant("Shop")
    assert api.client.post("/api/v1/prices", headers=admin(api), json={
        "subject_type": "merchant", "subject_id": merchant_id, "currency": "KWD",
        "rate_bps": 250}).status_code == 201
    extract_ledger(settings)

    class _Warehouse:  # what run_dbt_build needs of tests.dbt.conftest.Warehouse
        engine = "duckdb"
        env = {"CLEARHOUSE_DBT_TARGET": "duckdb",
               "CLEARHOUSE_DUCKDB_PATH": str(settings.duckdb_path)}
        dbt_output = ""
        run_results = None

    warehouse = _Warehouse()
    run_dbt_build(warehouse, tmp_path / "dbt", ("--select", "stg_clearhouse__prices"))
    statuses = {r["unique_id"]: r["status"] for r in warehouse.run_results["results"]}
    warned = [uid for uid, status in statuses.items()
              if status == "warn" and "fixed_minor" in uid]
    assert warned, (statuses, warehouse.dbt_output[-3000:])
