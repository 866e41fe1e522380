"""A merchant's available balance counts the statements that have settled: settles_on (period_end
+ the T+N in force when the statement closed, as the statements mart records it) on or before
today. Raising T+N later moves the payout day of open statements only: a statement that settled
under T+1 stays available after the merchant moves to T+3, and one that closed under T+3 is not
paid out early when it moves back to T+1. On SQLite and Postgres (the API's database), from the
Parquet snapshot the pipeline publishes; serving.statements read from Postgres analytics too."""

from __future__ import annotations

from datetime import date, timedelta

from serving import statements
from tests.serving.admin_helpers import (
    bearer,
    create_postgres_statements,
    publish_statement_marts,
)
from tests.serving.helpers import make_api

MOVEMENT = 971  # each statement: a 1000 USD capture with a 29 fee


def _heads(merchant_id: str, periods: list[tuple[date, int, str]]) -> list[tuple]:
    """Daily USD statements, balances chained: rows of (period_end, N it closed with, status)."""
    rows, opening = [], 0
    for end, delay, status in periods:
        closing = opening + MOVEMENT
        rows.append((f"{merchant_id}:USD:{end.isoformat()}", merchant_id, "daily", end, end,
                     end + timedelta(days=delay), status, "USD", opening, 1000, 0, 0, 29, 0,
                     closing, 0, closing))
        opening = closing
    return rows


def _balance(api, key, day: str) -> dict:
    resp = api.client.get("/api/v1/balances", params={"currency": "USD"},
                          headers={**bearer(key), "Clearhouse-Test-Clock": f"{day}T12:00:00Z"})
    assert resp.status_code == 200, resp.text
    (row,) = resp.json()["data"]
    return row


def _set_delay(api, merchant_id: str, days: int) -> None:
    resp = api.client.patch(f"/api/v1/merchants/{merchant_id}",
                            json={"settlement_delay_days": days}, headers=bearer(api.admin_token))
    assert resp.status_code == 200, resp.text


D = date(2026, 11, 19)


def test_a_statement_settled_under_t_plus_1_stays_available_after_t_plus_3(oltp_url,
                                                                           make_settings):
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    merchant_id, key = api.merchant(settlement_delay_days=1)
    # as of 11-22 under T+1: 11-19, 11-20 and 11-21 closed and settle on 11-20, 11-21, 11-22
    publish_statement_marts(settings, _heads(merchant_id, [
        (D, 1, "closed"), (D + timedelta(1), 1, "closed"), (D + timedelta(2), 1, "closed"),
        (D + timedelta(3), 1, "open")]), [])
    before = _balance(api, key, "2026-11-22")
    assert (before["available_minor"], before["statement"]["id"]) == \
        (str(3 * MOVEMENT), f"{merchant_id}:USD:2026-11-21")

    # T+3 from now on: the pipeline's next snapshot keeps the closed statements' settles_on and
    # gives the open one the new N; what had settled stays available
    _set_delay(api, merchant_id, 3)
    publish_statement_marts(settings, _heads(merchant_id, [
        (D, 1, "closed"), (D + timedelta(1), 1, "closed"), (D + timedelta(2), 1, "closed"),
        (D + timedelta(3), 3, "open")]), [])
    after = _balance(api, key, "2026-11-22")
    assert (after["available_minor"], after["settled_minor"], after["statement"]["id"]) == \
        (str(3 * MOVEMENT), str(3 * MOVEMENT), f"{merchant_id}:USD:2026-11-21")
    assert after["settled_through"] == "2026-11-19"  # today - the current T+3: informative

    # 11-22 closes under T+3 (settles 11-25): not before
    publish_statement_marts(settings, _heads(merchant_id, [
        (D, 1, "closed"), (D + timedelta(1), 1, "closed"), (D + timedelta(2), 1, "closed"),
        (D + timedelta(3), 3, "closed"), (D + timedelta(4), 3, "open")]), [])
    assert _balance(api, key, "2026-11-24")["available_minor"] == str(3 * MOVEMENT)
    assert _balance(api, key, "2026-11-25")["available_minor"] == str(4 * MOVEMENT)


def test_a_statement_closed_under_t_plus_3_is_not_paid_out_early_after_t_plus_1(oltp_url,
                                                                              make_settings):
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    merchant_id, key = api.merchant(settlement_delay_days=3)
    _set_delay(api, merchant_id, 1)
    # 11-19 closed under T+3 (settles 11-22); 11-20 closed under T+1 (settles 11-21)
    publish_statement_marts(settings, _heads(merchant_id, [
        (D, 3, "closed"), (D + timedelta(1), 1, "closed"), (D + timedelta(2), 1, "open")]), [])
    row = _balance(api, key, "2026-11-21")
    assert (row["available_minor"], row["statement"]["id"]) == \
        (str(MOVEMENT), f"{merchant_id}:USD:2026-11-20")  # 11-20's own movement, not 11-19's
    # 11-19 settles on 11-22, 11-21 (T+1) too
    assert _balance(api, key, "2026-11-22")["available_minor"] == str(3 * MOVEMENT)


ROWS = [  # merchant, period_end, settles_on, opening, closing, payouts
    ("mer_a", date(2026, 11, 19), date(2026, 11, 20), 0, 500, 100),
    ("mer_a", date(2026, 11, 20), date(2026, 11, 23), 500, 971, 0),  # closed under T+3
    ("mer_a", date(2026, 11, 21), date(2026, 11, 22), 971, 1500, 50),  # closed under T+1
]


def _check(settings) -> None:
    got = statements.settled_balances(settings, "mer_a", date(2026, 11, 22))
    assert got == [statements.SettledBalance("USD", "mer_a:USD:2026-11-21", date(2026, 11, 21),
                                             500 + 529, 150)]
    assert statements.settled_balances(settings, "mer_a", date(2026, 11, 19)) == []


def test_settled_by_payout_day_from_parquet_and_postgres(make_settings, pg_url):
    settings = make_settings()
    publish_statement_marts(settings, [
        (f"{m}:USD:{end}", m, "daily", end, end, settles, "closed", "USD", opening, 0, 0, 0, 0,
         0, closing + payouts, payouts, closing)
        for m, end, settles, opening, closing, payouts in ROWS], [])
    _check(settings)

    settings = make_settings(warehouse_url=pg_url)
    create_postgres_statements(pg_url, [
        (f"{m}:USD:{end}", m, end, end, settles, "USD", opening, closing, payouts)
        for m, end, settles, opening, closing, payouts in ROWS])
    _check(settings)
